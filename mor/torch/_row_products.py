r"""Products of long rows on CUDA (Triton): the memory-bound steps of the device Lanczos.

Both read a basis of ``m`` rows of ``n`` entries once, at the bandwidth of the device, where a
batched GEMM with 4 output rows and a reduction over ``n = 2^20`` runs few tiles per filter:

- `inner` ``(F, a, m) = x y^T`` for rows ``x`` ``(F, a, n)`` and ``y`` ``(F, m, n)`` in
  float64: each program sums a ``(BLOCK_J, CHUNK)`` tile of ``y`` against the ``a`` rows of
  ``x`` (read from L2: the programs of one chunk of ``n`` run side by side), the partial sums
  of the chunks added in a fixed order afterwards (deterministic);
- `subtract_combination` ``w -= c r`` in place, ``w`` ``(F, a, n)`` float64, ``c``
  ``(F, a, m)`` float64 and ``r`` ``(F, m, n)`` float32 (the re-orthogonalisation's update
  from the rounded basis) or float64 (the three-term recurrence): each program takes
  ``BLOCK_T`` columns of every row of ``r``, the combination accumulated in float64; and
  `combination` ``c r`` by the same kernel (Cholesky QR's products with the inverse factor).

`inner` and `subtract_combination` also take an index of filters: the rows ``x``, ``w`` and
``c`` are then those filters' only, and each program reads its filter's rows of ``y`` or ``r``
in place (the deflated Lanczos re-orthogonalises only the filters that need it without
copying their bases). Both also take a second set of float64 rows (``y2``, ``r2``: the last
two Lanczos blocks beside the locked vectors, which lie apart in the basis), and the update
can sum the Gram matrix ``w w^T`` of its result in the same pass (each program its columns'
share, added afterwards in a fixed order), so that a deflated step reads ``w`` twice where
its projection, recurrence and Cholesky QR apart read it six times.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

#: Columns of ``n`` per program of `inner` (the partial sums: ``n / CHUNK`` per output).
CHUNK = 1 << 14
#: Multiply-adds fused (one rounding instead of two), chosen explicitly: Triton 3.9 warns
#: that its default changes in 3.10.
FMA = True
#: Tile shapes (rows of the basis, columns, warps): compiled for sm_90 without spilling, at
#: 74 and 116-118 registers a thread (Triton 3.9). In the whole Lanczos on an H100 they took
#: balanced truncation's pairs at 2^20 from 0.185 to 0.162 s a filter against torch's
#: products (`benchmarks/RESULTS.md`); other tiles are not yet timed
#: (`benchmarks/bench_gpu_projection.py --sweep` times these and others).
INNER_BLOCK_J, INNER_BLOCK_T, INNER_WARPS = 16, 64, 8
UPDATE_BLOCK_J, UPDATE_BLOCK_T, UPDATE_WARPS = 8, 128, 4


@triton.jit
def _inner_kernel(x_ptr, y_ptr, y2_ptr, out_ptr, filters_ptr, n, rows, m, m2, sxf, sxi, syf,
                  syj, sy2f, sy2j, CHUNK: tl.constexpr, BI: tl.constexpr, BJ: tl.constexpr,
                  BT: tl.constexpr, SELECTED: tl.constexpr):
    jb, s, f = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    if SELECTED:  # the program's filter of y
        fy = tl.load(filters_ptr + f).to(tl.int64)
    else:
        fy = f.to(tl.int64)
    i = tl.arange(0, BI)
    first = tl.cdiv(m, BJ)  # the blocks of y's rows; y2's after them
    if jb < first:
        j = jb * BJ + tl.arange(0, BJ)
        jmask = j < m
        y_rows = y_ptr + fy * syf + j[:, None].to(tl.int64) * syj
        column = j
    else:
        j = (jb - first) * BJ + tl.arange(0, BJ)
        jmask = j < m2
        y_rows = y2_ptr + fy * sy2f + j[:, None].to(tl.int64) * sy2j
        column = m + j
    imask = i < rows
    x_rows = x_ptr + f.to(tl.int64) * sxf + i[:, None] * sxi
    acc = tl.zeros((BI, BJ, BT), dtype=tl.float64)
    start = s * CHUNK
    for t0 in range(start, tl.minimum(start + CHUNK, n), BT):
        t = t0 + tl.arange(0, BT)
        tmask = t < n
        xv = tl.load(x_rows + t[None, :], mask=imask[:, None] & tmask[None, :], other=0.0)
        yv = tl.load(y_rows + t[None, :], mask=jmask[:, None] & tmask[None, :], other=0.0,
                     eviction_policy="evict_first")
        acc += xv[:, None, :] * yv[None, :, :]
    out = out_ptr + ((f * tl.num_programs(1) + s) * rows + i[:, None]) * (m + m2) + column[None, :]
    tl.store(out, tl.sum(acc, axis=2), mask=imask[:, None] & jmask[None, :])


@triton.jit
def _update_kernel(w_ptr, c_ptr, r_ptr, r2_ptr, gram_ptr, filters_ptr, n, rows, m, m2, swf, swi,
                   scf, sci, srf, srj, sr2f, sr2j, BI: tl.constexpr, BJ: tl.constexpr,
                   BT: tl.constexpr, SUBTRACT: tl.constexpr, SELECTED: tl.constexpr,
                   GRAM: tl.constexpr):
    tb, f = tl.program_id(0), tl.program_id(1)
    if SELECTED:  # the program's filter of r
        fr = tl.load(filters_ptr + f).to(tl.int64)
    else:
        fr = f.to(tl.int64)
    i = tl.arange(0, BI)
    t = tb * BT + tl.arange(0, BT)
    imask, tmask = i < rows, t < n
    acc = tl.zeros((BI, BT), dtype=tl.float64)
    for j0 in range(0, m, BJ):  # the rows of r, then of r2 (float64)
        j = j0 + tl.arange(0, BJ)
        jmask = j < m
        c = tl.load(c_ptr + f * scf + i[:, None] * sci + j[None, :],
                    mask=imask[:, None] & jmask[None, :], other=0.0)
        r = tl.load(r_ptr + fr * srf + j[:, None].to(tl.int64) * srj + t[None, :],
                    mask=jmask[:, None] & tmask[None, :], other=0.0,
                    eviction_policy="evict_first")
        acc += tl.sum(c[:, :, None] * r.to(tl.float64)[None, :, :], axis=1)
    for j0 in range(0, m2, BJ):
        j = j0 + tl.arange(0, BJ)
        jmask = j < m2
        c = tl.load(c_ptr + f * scf + i[:, None] * sci + m + j[None, :],
                    mask=imask[:, None] & jmask[None, :], other=0.0)
        r = tl.load(r2_ptr + fr * sr2f + j[:, None].to(tl.int64) * sr2j + t[None, :],
                    mask=jmask[:, None] & tmask[None, :], other=0.0)
        acc += tl.sum(c[:, :, None] * r[None, :, :], axis=1)
    w = w_ptr + f.to(tl.int64) * swf + i[:, None] * swi + t[None, :]
    wmask = imask[:, None] & tmask[None, :]
    if SUBTRACT:
        acc = tl.load(w, mask=wmask, other=0.0) - acc
    tl.store(w, acc, mask=wmask)
    if GRAM:  # the tile's share of the result's Gram matrix (zero outside it)
        gram = tl.sum(acc[:, None, :] * acc[None, :, :], axis=2)
        out = gram_ptr + ((f * tl.num_programs(0) + tb) * BI + i[:, None]) * BI + i[None, :]
        tl.store(out, gram)


def inner(x: torch.Tensor, y: torch.Tensor, filters: torch.Tensor | None = None,
          y2: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ y^T`` ``(F, a, m)`` for float64 rows ``x`` ``(F, a, n)`` and ``y`` ``(F, m, n)``
    on a CUDA device (rows contiguous: unit stride along ``n``); with ``filters`` (``(S,)``
    int64), ``x`` ``(S, a, n)`` against ``y[filters]``, without a copy of ``y``; with ``y2``
    ``(F, m2, n)`` (float64), ``x [y; y2]^T`` ``(F, a, m + m2)`` in the same pass over
    ``x``, without a copy of either."""
    f, a, n = x.shape
    m, m2 = y.shape[1], 0 if y2 is None else y2.shape[1]
    y2 = y if y2 is None else y2
    splits = triton.cdiv(n, CHUNK)
    partial = torch.empty((f, splits, a, m + m2), dtype=torch.float64, device=x.device)
    if f and a and m + m2 and n:
        grid = (triton.cdiv(m, INNER_BLOCK_J) + triton.cdiv(m2, INNER_BLOCK_J), splits, f)
        _inner_kernel[grid](x, y, y2, partial, x if filters is None else filters, n, a, m, m2,
                            x.stride(0), x.stride(1), y.stride(0), y.stride(1), y2.stride(0),
                            y2.stride(1), CHUNK=CHUNK, BI=triton.next_power_of_2(a),
                            BJ=INNER_BLOCK_J, BT=INNER_BLOCK_T, SELECTED=filters is not None,
                            num_warps=INNER_WARPS, enable_fp_fusion=FMA)
    return partial.sum(dim=1)


def subtract_combination(w: torch.Tensor, c: torch.Tensor, r: torch.Tensor,
                         filters: torch.Tensor | None = None, r2: torch.Tensor | None = None,
                         gram: bool = False) -> torch.Tensor | None:
    """``w -= c @ r`` in place: ``w`` ``(F, a, n)`` float64, ``c`` ``(F, a, m)`` float64,
    ``r`` ``(F, m, n)`` float32 or float64, on a CUDA device (rows of ``w`` and ``r``
    contiguous); with ``filters`` (``(S,)`` int64), ``w`` and ``c`` of ``S`` filters and
    ``r[filters]``, without a copy of ``r``; with ``r2`` ``(F, m2, n)`` (float64), ``w -= c
    [r; r2]`` (``c`` ``(F, a, m + m2)``) in one pass. With ``gram``, returns the new ``w w^T``
    ``(F, a, a)``, summed in the same pass."""
    return _combination(w, c, r, True, filters, r2, gram)


def combination(c: torch.Tensor, r: torch.Tensor, gram: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``c @ r`` ``(F, a, n)`` float64 for ``c`` ``(F, a, m)`` float64 and ``r``
    ``(F, m, n)`` (rows contiguous) on a CUDA device: `subtract_combination`'s kernel,
    written without reading an output first. With ``gram``, returns ``(c r, (c r)
    (c r)^T)``, the second summed in the same pass."""
    make = torch.empty if c.shape[2] else torch.zeros  # (no rows: a zero combination)
    out = make((r.shape[0], c.shape[1], r.shape[2]), dtype=torch.float64, device=r.device)
    square = _combination(out, c, r, False, gram=gram)
    return (out, square) if gram else out


def _combination(w: torch.Tensor, c: torch.Tensor, r: torch.Tensor, subtract: bool,
                 filters: torch.Tensor | None = None, r2: torch.Tensor | None = None,
                 gram: bool = False) -> torch.Tensor | None:
    f, a, n = w.shape
    m, m2 = r.shape[1], 0 if r2 is None else r2.shape[1]
    r2 = r if r2 is None else r2
    rows = triton.next_power_of_2(max(a, 1))
    tiles = triton.cdiv(n, UPDATE_BLOCK_T)
    square = (torch.empty((f, tiles, rows, rows), dtype=torch.float64, device=w.device)
              if gram else None)
    if f and a and n and m + m2:
        c = c.contiguous()
        _update_kernel[(tiles, f)](
            w, c, r, r2, w if square is None else square, w if filters is None else filters,
            n, a, m, m2, w.stride(0), w.stride(1), c.stride(0), c.stride(1), r.stride(0),
            r.stride(1), r2.stride(0), r2.stride(1), BI=rows, BJ=UPDATE_BLOCK_J,
            BT=UPDATE_BLOCK_T, SUBTRACT=subtract, SELECTED=filters is not None, GRAM=gram,
            num_warps=UPDATE_WARPS, enable_fp_fusion=FMA)
    elif gram:  # no rows: the Gram of w as it is
        square = (w @ w.transpose(1, 2))[:, None]
    if gram:
        return square.sum(dim=1)[:, :a, :a]
    return None
