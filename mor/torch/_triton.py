"""The fused decode step on CUDA (Triton): one launch, the state read and written once.

Each program takes ``BLOCK_C`` channels of one batch row and all their modes as a
``(BLOCK_C, MODES, 2)`` tile (real and imaginary parts innermost, so loads and stores are
contiguous and vectorised), reads the state once, and writes the new state and the output.
Small batches get small blocks, so that there are enough programs to fill the GPU.
"""

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
    k = tl.arange(0, 2)
    cmask = c < channels
    mask = (cmask[:, None, None] & (n[None, :, None] < modes)) & (k[None, None, :] < 2)
    f = tl.load(map_ptr + c, mask=cmask, other=0)
    u = tl.load(u_ptr + b * channels + c, mask=cmask, other=0.0).to(tl.float32)
    inner = n[None, :, None] * 2 + k[None, None, :]
    coef = f[:, None, None] * (modes * 2) + inner
    lr, li = tl.split(tl.load(lam_ptr + coef, mask=mask, other=0.0))
    rr, ri = tl.split(tl.load(res_ptr + coef, mask=mask, other=0.0))
    s = (b * channels + c)[:, None, None] * (modes * 2) + inner
    xr, xi = tl.split(tl.load(state_ptr + s, mask=mask, other=0.0))
    d = tl.load(direct_ptr + f, mask=cmask, other=0.0)
    y = tl.sum(rr * xr - ri * xi, axis=1) + d * u
    new = tl.join(lr * xr - li * xi + u[:, None], lr * xi + li * xr)
    tl.store(state_ptr + s, new, mask=mask)
    tl.store(y_ptr + b * channels + c, y.to(y_ptr.dtype.element_ty), mask=cmask)


def triton_step(u_t: torch.Tensor, state: torch.Tensor, lam: torch.Tensor, res: torch.Tensor,
                direct: torch.Tensor, channel_map: torch.Tensor) -> torch.Tensor:
    """``y_t`` for ``u_t`` (``(B, C)``), updating ``state`` (``(B, C, m, 2)``, float32) in place."""
    batch, channels = u_t.shape
    modes = lam.shape[1]
    u_t = u_t.contiguous()
    y = torch.empty_like(u_t)
    width = triton.next_power_of_2(modes)
    # about 4 waves of programs on 132 SMs, at most 4096 (channel, mode) pairs per program
    block = triton.next_power_of_2(max(1, batch * channels // 2048))
    block = max(4, min(block, 4096 // width, triton.next_power_of_2(channels)))
    grid = (batch, triton.cdiv(channels, block))
    _step_kernel[grid](u_t, state, lam, res, direct, channel_map, y, channels, modes,
                       MODES=width, BLOCK_C=block, num_warps=4 if block * width >= 1024 else 2)
    return y
