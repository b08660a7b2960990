"""The fused decode step on CUDA (Triton): one launch, the state read and written once.

Power-of-two mode counts (``_flat_kernel``): each program takes ``BLOCK_B`` batch rows of
``PAIRS // modes`` channels; for one batch row those channels' states are one contiguous run
of ``2 * PAIRS`` floats, loaded and stored as a flat ``(BLOCK_B, 2 * PAIRS)`` tile (16-byte
vector accesses) and split into real and imaginary parts in registers. The channels' poles,
residues and direct terms are loaded once per program for all its batch rows. Other mode
counts (``_step_kernel``): a ``(BLOCK_B, BLOCK_C, MODES, 2)`` tile, modes padded to a power of
two and masked.
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


@triton.jit
def _flat_kernel(u_ptr, state_ptr, lam_ptr, res_ptr, direct_ptr, map_ptr, y_ptr,
                 batch, channels, MODES: tl.constexpr, BLOCK_B: tl.constexpr,
                 PAIRS: tl.constexpr):
    BLOCK_C: tl.constexpr = PAIRS // MODES
    b = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    c0 = tl.program_id(1) * BLOCK_C
    j = tl.arange(0, 2 * PAIRS)  # flat float index in the program's channels
    p = tl.arange(0, PAIRS)  # (channel, mode) pair index
    bmask = b < batch
    jmask = j < (channels - c0) * (2 * MODES)
    pmask = p < (channels - c0) * MODES
    # parameters, once per program for all its batch rows: (PAIRS,)
    f = tl.load(map_ptr + c0 + j // (2 * MODES), mask=jmask, other=0)
    coef = f * (2 * MODES) + j % (2 * MODES)
    lr, li = tl.split(tl.reshape(tl.load(lam_ptr + coef, mask=jmask, other=0.0), (PAIRS, 2)))
    rr, ri = tl.split(tl.reshape(tl.load(res_ptr + coef, mask=jmask, other=0.0), (PAIRS, 2)))
    # the state: (BLOCK_B, 2 * PAIRS) contiguous per row, streamed once
    row = b.to(tl.int64) * channels + c0
    s = row[:, None] * (2 * MODES) + j[None, :]
    smask = bmask[:, None] & jmask[None, :]
    x = tl.load(state_ptr + s, mask=smask, other=0.0, eviction_policy="evict_first")
    xr, xi = tl.split(tl.reshape(x, (BLOCK_B, PAIRS, 2)))
    # the input per pair (each channel's value repeated over its modes; L1 hits)
    up = tl.load(u_ptr + row[:, None] + p[None, :] // MODES,
                 mask=bmask[:, None] & pmask[None, :], other=0.0).to(tl.float32)
    new = tl.join(lr[None] * xr - li[None] * xi + up, lr[None] * xi + li[None] * xr)
    tl.store(state_ptr + s, tl.reshape(new, (BLOCK_B, 2 * PAIRS)), mask=smask,
             cache_modifier=".cs")
    # the output: (BLOCK_B, BLOCK_C)
    t = tl.reshape(rr[None] * xr - ri[None] * xi, (BLOCK_B, BLOCK_C, MODES))
    c = c0 + tl.arange(0, BLOCK_C)
    cmask = c < channels
    d = tl.load(direct_ptr + tl.load(map_ptr + c, mask=cmask, other=0), mask=cmask, other=0.0)
    bc = row[:, None] + tl.arange(0, BLOCK_C)[None, :]
    bcmask = bmask[:, None] & cmask[None, :]
    u = tl.load(u_ptr + bc, mask=bcmask, other=0.0).to(tl.float32)
    y = tl.sum(t, axis=2) + d[None, :] * u
    tl.store(y_ptr + bc, y.to(y_ptr.dtype.element_ty), mask=bcmask)


#: The tile per power-of-two mode count (batch rows, (channel, mode) pairs, warps per
#: program), measured on an H200 (``benchmarks/sweep_torch_tiles.py``, ``RESULTS.md``).
TILES = {8: (4, 128, 2), 16: (4, 256, 4), 32: (4, 256, 4)}
#: The largest tile for mode counts outside the table (64 and above).
TILE_DEFAULT = (2, 512, 2)
#: The padded kernel for other mode counts: pairs, batch rows, warps per program.
PAIRS, ROWS, WARPS = 64, 2, 1


def triton_step(u_t: torch.Tensor, state: torch.Tensor, lam: torch.Tensor, res: torch.Tensor,
                direct: torch.Tensor, channel_map: torch.Tensor, tile=None) -> torch.Tensor:
    """``y_t`` for ``u_t`` (``(B, C)``), updating ``state`` (``(B, C, m, 2)``, float32) in place.

    ``tile``: ``(rows, pairs, warps)`` instead of the table's (benchmarks only).
    """
    batch, channels = u_t.shape
    modes = lam.shape[1]
    u_t = u_t.contiguous()
    y = torch.empty_like(u_t)
    width = triton.next_power_of_2(modes)
    if width == modes:
        rows, pairs, warps = tile or TILES.get(modes, TILE_DEFAULT)
        pairs = max(pairs, modes)
        rows = min(rows, triton.next_power_of_2(batch))
        grid = (triton.cdiv(batch, rows), triton.cdiv(channels, pairs // modes))
        _flat_kernel[grid](u_t, state, lam, res, direct, channel_map, y, batch, channels,
                           MODES=modes, BLOCK_B=rows, PAIRS=pairs, num_warps=warps)
        return y
    block = max(1, min(PAIRS // width, triton.next_power_of_2(channels)))
    rows = min(ROWS, triton.next_power_of_2(batch))
    grid = (triton.cdiv(batch, rows), triton.cdiv(channels, block))
    _step_kernel[grid](u_t, state, lam, res, direct, channel_map, y, batch, channels, modes,
                       MODES=width, BLOCK_B=rows, BLOCK_C=block, num_warps=WARPS)
    return y
