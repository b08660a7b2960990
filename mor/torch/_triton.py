"""The fused decode step on CUDA (Triton): one launch, the state read and written once."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _step_kernel(u_ptr, state_ptr, lam_ptr, res_ptr, direct_ptr, map_ptr, y_ptr,
                 channels, modes, MODES: tl.constexpr, BLOCK_C: tl.constexpr):
    b = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    n = tl.arange(0, MODES)
    cmask = c < channels
    mask = cmask[:, None] & (n[None, :] < modes)
    f = tl.load(map_ptr + c, mask=cmask, other=0)
    u = tl.load(u_ptr + b * channels + c, mask=cmask, other=0.0).to(tl.float32)
    coef = (f[:, None] * modes + n[None, :]) * 2
    lr = tl.load(lam_ptr + coef, mask=mask, other=0.0)
    li = tl.load(lam_ptr + coef + 1, mask=mask, other=0.0)
    rr = tl.load(res_ptr + coef, mask=mask, other=0.0)
    ri = tl.load(res_ptr + coef + 1, mask=mask, other=0.0)
    s = ((b * channels + c)[:, None] * modes + n[None, :]) * 2
    xr = tl.load(state_ptr + s, mask=mask, other=0.0)
    xi = tl.load(state_ptr + s + 1, mask=mask, other=0.0)
    d = tl.load(direct_ptr + f, mask=cmask, other=0.0)
    y = tl.sum(rr * xr - ri * xi, axis=1) + d * u
    tl.store(state_ptr + s, lr * xr - li * xi + u[:, None], mask=mask)
    tl.store(state_ptr + s + 1, lr * xi + li * xr, mask=mask)
    tl.store(y_ptr + b * channels + c, y.to(y_ptr.dtype.element_ty), mask=cmask)


def triton_step(u_t: torch.Tensor, state: torch.Tensor, lam: torch.Tensor, res: torch.Tensor,
                direct: torch.Tensor, channel_map: torch.Tensor) -> torch.Tensor:
    """``y_t`` for ``u_t`` (``(B, C)``), updating ``state`` (``(B, C, m, 2)``, float32) in place."""
    batch, channels = u_t.shape
    modes = lam.shape[1]
    u_t = u_t.contiguous()
    y = torch.empty_like(u_t)
    width = triton.next_power_of_2(modes)
    block = max(1, min(256, 2048 // width))
    grid = (batch, triton.cdiv(channels, block))
    _step_kernel[grid](u_t, state, lam, res, direct, channel_map, y, channels, modes,
                       MODES=width, BLOCK_C=block, num_warps=4)
    return y
