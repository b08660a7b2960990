"""The fused decode step on CUDA (Triton): one launch, the state read and written once.

Each program takes ``BLOCK_B`` batch rows of ``BLOCK_C`` channels with all their modes as a
``(BLOCK_B, BLOCK_C, MODES, 2)`` tile (real and imaginary parts innermost, so loads and stores
are contiguous and vectorised), loads the channels' parameters once, reads the state once,
and writes the new state and the output.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _step_kernel(u_ptr, state_ptr, lam_ptr, res_ptr, direct_ptr, map_ptr, y_ptr,
                 batch, channels, modes, MODES: tl.constexpr, BLOCK_B: tl.constexpr,
                 BLOCK_C: tl.constexpr):
    b = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    n = tl.arange(0, MODES)
    k = tl.arange(0, 2)
    cmask = c < channels
    pmask = (cmask[:, None, None] & (n[None, :, None] < modes)) & (k[None, None, :] < 2)
    # parameters, once per program for all its batch rows: (BLOCK_C, MODES, 2)
    f = tl.load(map_ptr + c, mask=cmask, other=0)
    inner = n[None, :, None] * 2 + k[None, None, :]
    coef = f[:, None, None] * (modes * 2) + inner
    lr, li = tl.split(tl.load(lam_ptr + coef, mask=pmask, other=0.0))
    rr, ri = tl.split(tl.load(res_ptr + coef, mask=pmask, other=0.0))
    d = tl.load(direct_ptr + f, mask=cmask, other=0.0)
    # state and activations: (BLOCK_B, BLOCK_C, MODES, 2)
    bc = b[:, None] * channels + c[None, :]
    bcmask = (b[:, None] < batch) & cmask[None, :]
    u = tl.load(u_ptr + bc, mask=bcmask, other=0.0).to(tl.float32)
    s = bc[:, :, None, None] * (modes * 2) + inner[None]
    smask = bcmask[:, :, None, None] & pmask[None]
    # the state streams through once: keep it from evicting the parameters from L2
    xr, xi = tl.split(tl.load(state_ptr + s, mask=smask, other=0.0,
                              eviction_policy="evict_first"))
    y = tl.sum(rr[None] * xr - ri[None] * xi, axis=2) + d[None, :] * u
    new = tl.join(lr[None] * xr - li[None] * xi + u[:, :, None], lr[None] * xi + li[None] * xr)
    tl.store(state_ptr + s, new, mask=smask, cache_modifier=".cs")
    tl.store(y_ptr + bc, y.to(y_ptr.dtype.element_ty), mask=bcmask)


#: (channels, modes) pairs per program, batch rows per program, warps: measured on an H200
#: (benchmarks/RESULTS.md): small tiles in single warps keep the most loads in flight.
PAIRS, ROWS, WARPS = 64, 2, 1


def triton_step(u_t: torch.Tensor, state: torch.Tensor, lam: torch.Tensor, res: torch.Tensor,
                direct: torch.Tensor, channel_map: torch.Tensor) -> torch.Tensor:
    """``y_t`` for ``u_t`` (``(B, C)``), updating ``state`` (``(B, C, m, 2)``, float32) in place."""
    batch, channels = u_t.shape
    modes = lam.shape[1]
    u_t = u_t.contiguous()
    y = torch.empty_like(u_t)
    width = triton.next_power_of_2(modes)
    block = max(1, min(PAIRS // width, triton.next_power_of_2(channels)))
    rows = min(ROWS, triton.next_power_of_2(batch))
    grid = (triton.cdiv(batch, rows), triton.cdiv(channels, block))
    _step_kernel[grid](u_t, state, lam, res, direct, channel_map, y, batch, channels, modes,
                       MODES=width, BLOCK_B=rows, BLOCK_C=block, num_warps=WARPS)
    return y
