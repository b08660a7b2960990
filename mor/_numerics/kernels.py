"""Numba kernels for the loops NumPy cannot batch well, each with a NumPy reference.

The tests compare every kernel against its reference. Kernels work on flattened batches
(first axis = filter) and are compiled with ``cache=True``.
"""

from __future__ import annotations

import math
import threading

import numba
import numpy as np

#: Kernel calls with less work than this (inner-loop steps) run on the calling thread: a
#: parallel region costs 20-60 us to wake Numba's pool on an idle machine (OpenMP layer,
#: measured) and milliseconds when the cores are busy with other work (3.3 ms per call was
#: measured for the 4-point transforms of the H-infinity refinement).
PARALLEL_MIN_WORK = 1 << 18
#: The kernels that `mor.compare`'s error report calls release the GIL (``nogil``), so that
#: another Python thread runs meanwhile (`mor.distill` with ``device=`` feeds the GPU from
#: one thread while another reports on the chunk before); their parallel builds run one at a
#: time (each takes every core, and Numba's workqueue threading layer aborts on concurrent
#: parallel calls).
_PARALLEL = threading.Lock()
#: Taps per block of the float64 impulse response (`impulse_compact`): within a block the
#: powers of a pole come from a table built by repeated multiplication, so their rounding
#: grows with the lag in the block, at most ``B``, instead of the lag itself (``2^20`` for
#: the longest filters); the block powers themselves are carried in double-double.
POWER_BLOCK = 1024


def _run(threads, serial, work: int, *args) -> None:
    """``threads(*args)`` (under `_PARALLEL`) where ``work`` reaches `PARALLEL_MIN_WORK` and
    the calling thread has more than one Numba thread, else ``serial(*args)`` (work mapped
    over threads by `mor._numerics.parallel.map_filters` runs serial kernels side by side)."""
    if work >= PARALLEL_MIN_WORK and numba.get_num_threads() > 1:
        with _PARALLEL:
            threads(*args)
    else:
        serial(*args)


# ---------------------------------------------------------------- compensated (double-double)
# Error-free transformations (Knuth's two-sum, Dekker's split and two-product): a value is an
# unevaluated sum hi + lo of two doubles, about 106 bits.

@numba.njit(cache=True, inline="always")
def _two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@numba.njit(cache=True, inline="always")
def _split(a):
    c = 134217729.0 * a  # 2^27 + 1
    hi = c - (c - a)
    return hi, a - hi


@numba.njit(cache=True, inline="always")
def _two_prod(a, b):
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


@numba.njit(cache=True, inline="always")
def _dd_add(ah, al, bh, bl):
    s, e = _two_sum(ah, bh)
    e += al + bl
    return _two_sum(s, e)


@numba.njit(cache=True, inline="always")
def _dd_mul(ah, al, bh, bl):
    p, e = _two_prod(ah, bh)
    e += ah * bl + al * bh
    return _two_sum(p, e)


@numba.njit(cache=True, inline="always")
def _dd_cmul(xr, xrl, xi, xil, yr, yrl, yi, yil):
    # (xr + i xi)(yr + i yi), each part a double-double
    a, al = _dd_mul(xr, xrl, yr, yrl)
    b, bl = _dd_mul(xi, xil, yi, yil)
    c, cl = _dd_mul(xr, xrl, yi, yil)
    d, dl = _dd_mul(xi, xil, yr, yrl)
    re, rel = _dd_add(a, al, -b, -bl)
    im, iml = _dd_add(c, cl, d, dl)
    return re, rel, im, iml


@numba.njit(cache=True)
def _dd_cpow(p, e):
    # p^e (e >= 1) in double-double, by squaring: relative error about log2(e) eps^2
    rr, rrl, ri, ril = 1.0, 0.0, 0.0, 0.0
    br, brl, bi, bil = p.real, 0.0, p.imag, 0.0
    while e:
        if e & 1:
            rr, rrl, ri, ril = _dd_cmul(rr, rrl, ri, ril, br, brl, bi, bil)
        e >>= 1
        if e:
            br, brl, bi, bil = _dd_cmul(br, brl, bi, bil, br, brl, bi, bil)
    return rr, rrl, ri, ril


@numba.njit(cache=True)
def _mode_stop(p, z, floor, length):
    # the first lag past the mode: where |z lambda^(k-1)| falls below the floor
    stop = length
    if floor > 0 and abs(p) < 1.0:
        steps = 0.0 if p == 0 else math.log(floor / abs(z)) / math.log(abs(p))
        if steps < length:  # never past the row: out of bounds corrupts the heap
            stop = min(length, max(2, int(steps) + 2))
    return stop


@numba.njit(cache=True)
def _add_mode_recurrence(out, f, p, z, stop):
    # out[f, k] += Re z lambda^(k-1), the powers by repeated multiplication (as engines run)
    if p.imag == 0 and z.imag == 0:  # a real mode in real arithmetic: the same values
        x, q = z.real, p.real
        for k in range(1, stop):
            out[f, k] += x
            x *= q
        return
    for k in range(1, stop):
        out[f, k] += z.real
        z *= p


@numba.njit(cache=True)
def _add_modes_blocked(out, f, poles, residues, chosen, stops, block):
    # out[f, k] += Re R lambda^(qB) lambda^r for k - 1 = qB + r and the chosen modes, block
    # by block (each block of the row stays in cache while every mode adds to it): the tables
    # lambda^r (r < B) by repeated multiplication, lambda^(qB) in double-double (rounded once
    # a block)
    count = chosen.shape[0]
    table_re, table_im = np.empty((count, block)), np.empty((count, block))
    power = np.zeros((count, 4))  # lambda^(qB): real part (hi, lo), imaginary part (hi, lo)
    step = np.empty((count, 4))  # lambda^B, alike
    end = 0
    for j in range(count):
        p = poles[f, chosen[j]]
        t = 1.0 + 0.0j
        for r in range(block):
            table_re[j, r], table_im[j, r] = t.real, t.imag
            t *= p
        power[j, 0] = 1.0
        step[j, 0], step[j, 1], step[j, 2], step[j, 3] = _dd_cpow(p, block)
        end = max(end, stops[j])
    for base in range(1, end, block):
        for j in range(count):
            if base >= stops[j]:
                continue
            b = residues[f, chosen[j]] * complex(power[j, 0], power[j, 2])
            br, bi = b.real, b.imag
            size = min(block, stops[j] - base)
            taps, t_re, t_im = out[f, base:base + size], table_re[j, :size], table_im[j, :size]
            for r in range(size):  # 1-D views: a loop the compiler vectorises
                taps[r] += br * t_re[r] - bi * t_im[r]
            power[j, 0], power[j, 1], power[j, 2], power[j, 3] = _dd_cmul(
                power[j, 0], power[j, 1], power[j, 2], power[j, 3],
                step[j, 0], step[j, 1], step[j, 2], step[j, 3])


@numba.njit(cache=True)
def _impulse_row(poles, residues, direct, length, floor, block, out, f):
    out[f, 0] = direct[f]
    for k in range(1, length):
        out[f, k] = 0.0
    chosen = np.empty(poles.shape[1], dtype=np.int64)
    stops = np.empty(poles.shape[1], dtype=np.int64)
    count = 0
    for n in range(poles.shape[1]):
        z = residues[f, n]
        if z == 0:
            continue
        p = poles[f, n]
        stop = _mode_stop(p, z, floor, length)
        # (within one block the recurrence rounds alike; outside the circle the block powers
        # could overflow)
        if block and stop - 1 > block and abs(p) <= 1.0:
            chosen[count], stops[count] = n, stop
            count += 1
        else:
            _add_mode_recurrence(out, f, p, z, stop)
    if count:
        _add_modes_blocked(out, f, poles, residues, chosen[:count], stops[:count], block)


@numba.njit(cache=True, parallel=True, nogil=True)
def _impulse_threads(poles, residues, direct, length, floor, block, out):
    for f in numba.prange(poles.shape[0]):
        _impulse_row(poles, residues, direct, length, floor, block, out, f)


@numba.njit(cache=True, nogil=True)
def _impulse_serial(poles, residues, direct, length, floor, block, out):
    for f in range(poles.shape[0]):
        _impulse_row(poles, residues, direct, length, floor, block, out, f)


def impulse_compact(poles: np.ndarray, residues: np.ndarray, direct: np.ndarray,
                    length: int, dtype=np.float64, floor: float = 0.0) -> np.ndarray:
    """``h[0] = D``, ``h[k] = Re sum_n R_n lambda_n^{k-1}`` for a flat batch ``(F, m)``.

    In float64 the power of a mode on or inside the unit circle is taken as
    ``lambda^(k-1) = lambda^(qB) lambda^r`` (``k - 1 = qB + r``, ``B = POWER_BLOCK``): the
    table ``lambda^r`` by repeated multiplication, the block powers in double-double, so the
    relative error of a power grows like ``r eps`` within a block, not ``k eps`` along the
    row (`mor.analysis.compare.rounding_bound`), and the taps of a block are independent
    multiply-adds. Outside the circle the powers are accumulated by repeated multiplication
    (error ``k eps``). With ``dtype=np.float32`` the parameters are rounded to complex64 /
    float32 and the recurrence ``z <- lambda z`` runs in single precision, as inference engines
    run a bank (the real parts summed).

    With ``floor > 0`` a stable mode stops once ``|R lambda^{k-1}|`` is below it: an entry then
    changes by less than ``m floor`` (``m`` modes). At the smallest normal float64 this skips
    the subnormal numbers of a long decay, whose arithmetic is several times slower (the
    grid of a dense system of 1006 poles, many of modulus near 0.998, 1.1 s instead of
    0.2 s); it is not scale-free, so it is off by default.
    """
    real = np.dtype(dtype)
    cplx = np.result_type(real, np.complex64)
    poles = np.ascontiguousarray(poles, dtype=cplx)
    residues = np.ascontiguousarray(residues, dtype=cplx)
    direct = np.ascontiguousarray(direct, dtype=real)
    out = np.empty((poles.shape[0], length), dtype=real)
    block = POWER_BLOCK if real == np.float64 else 0
    if length > 0:
        _run(_impulse_threads, _impulse_serial, poles.size * length, poles, residues, direct,
             length, float(floor), block, out)
    return out


def impulse_compact_reference(poles: np.ndarray, residues: np.ndarray, direct: np.ndarray,
                              length: int) -> np.ndarray:
    """NumPy reference for `impulse_compact` (explicit powers; memory ``F * m * L``)."""
    k = np.arange(max(length - 1, 0))
    vander = poles[:, :, None] ** k
    out = np.empty((poles.shape[0], length))
    if length > 0:
        out[:, 0] = direct
        out[:, 1:] = np.real(np.einsum("fn,fnk->fk", residues, vander))
    return out


@numba.njit(cache=True)
def _fir_dtft_block(h, rows, w, out, b):
    # four independent Horner chains at once: each step waits on the previous multiply, so
    # interleaving pairs hides that latency (3.5x); a short last block repeats its last pair
    length, n = h.shape[1], w.shape[0]
    j0, j1, j2, j3 = 4 * b, min(4 * b + 1, n - 1), min(4 * b + 2, n - 1), min(4 * b + 3, n - 1)
    z0, z1 = np.exp(-1j * w[j0]), np.exp(-1j * w[j1])
    z2, z3 = np.exp(-1j * w[j2]), np.exp(-1j * w[j3])
    f0, f1, f2, f3 = rows[j0], rows[j1], rows[j2], rows[j3]
    a0, a1, a2, a3 = 0j, 0j, 0j, 0j
    for k in range(length - 1, -1, -1):
        a0 = a0 * z0 + h[f0, k]
        a1 = a1 * z1 + h[f1, k]
        a2 = a2 * z2 + h[f2, k]
        a3 = a3 * z3 + h[f3, k]
    out[j0], out[j1], out[j2], out[j3] = a0, a1, a2, a3


@numba.njit(cache=True, parallel=True, nogil=True)
def _fir_dtft_threads(h, rows, w, out):
    for b in numba.prange((w.shape[0] + 3) // 4):
        _fir_dtft_block(h, rows, w, out, b)


@numba.njit(cache=True, nogil=True)
def _fir_dtft_serial(h, rows, w, out):
    for b in range((w.shape[0] + 3) // 4):
        _fir_dtft_block(h, rows, w, out, b)


def fir_dtft(h: np.ndarray, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``H_f(e^{iw_j}) = sum_k h[f, k] e^{-i w_j k}`` for pairs ``(f, w_j) = (rows[j], w[j])``.

    Horner's rule, ``O(L)`` per pair; ``h`` has shape ``(F, L)``, ``rows`` and ``w`` ``(K,)``.
    """
    h = np.ascontiguousarray(h, dtype=np.float64)
    w = np.ascontiguousarray(w, dtype=np.float64)
    out = np.empty(w.shape, dtype=np.complex128)
    _run(_fir_dtft_threads, _fir_dtft_serial, w.size * h.shape[1], h,
         np.ascontiguousarray(rows, dtype=np.int64), w, out)
    return out


def fir_dtft_reference(h: np.ndarray, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
    """NumPy reference for `fir_dtft`."""
    k = np.arange(h.shape[1])
    return (h[rows] * np.exp(-1j * w[:, None] * k)).sum(axis=1)


@numba.njit(cache=True)
def _grid_maxima_row(grid, unstable, least, most, close_rtol, peak, arg, top, count, f):
    size = grid.shape[1]
    count[f] = 0
    if unstable[f]:
        peak[f], arg[f] = np.inf, 0
        return
    best, at = -1.0, 0
    for j in range(size):  # the first maximum, or the first NaN (as `np.argmax`)
        v = abs(grid[f, j])
        if v != v:
            best, at = v, j
            break
        if v > best:
            best, at = v, j
    peak[f], arg[f] = best, at
    if not math.isfinite(best):
        return
    value = np.empty(most)
    index = np.empty(most, dtype=np.int64)
    held, low = 0, 0  # candidates held, the slot of the least of them
    for j in range(size):
        mid = abs(grid[f, j])
        if mid < 0.5 * best:
            continue
        left = abs(grid[f, j - 1]) if j > 0 else abs(grid[f, min(1, size - 1)])
        right = abs(grid[f, j + 1]) if j + 1 < size else abs(grid[f, max(size - 2, 0)])
        if not (mid >= left and mid >= right):
            continue
        curve = 2.0 * mid - left - right
        est = mid + (right - left) ** 2 / (8.0 * curve) if curve > 0 else mid
        if not math.isfinite(est):
            continue
        if held < most:
            value[held], index[held] = est, j
            held += 1
        elif est > value[low]:
            value[low], index[low] = est, j
        else:
            continue
        if held == most:
            low = 0
            for i in range(1, most):
                if value[i] < value[low]:
                    low = i
    order = np.argsort(-value[:held], kind="mergesort")
    close = 0
    for i in range(held):
        if value[i] >= (1.0 - close_rtol) * value[order[0]]:
            close += 1
    keep = min(held, max(least, close))
    for i in range(keep):
        top[f, i] = index[order[i]]
    count[f] = keep


@numba.njit(cache=True, parallel=True, nogil=True)
def _grid_maxima_threads(grid, unstable, least, most, close_rtol, peak, arg, top, count):
    for f in numba.prange(grid.shape[0]):
        _grid_maxima_row(grid, unstable, least, most, close_rtol, peak, arg, top, count, f)


@numba.njit(cache=True, nogil=True)
def _grid_maxima_serial(grid, unstable, least, most, close_rtol, peak, arg, top, count):
    for f in range(grid.shape[0]):
        _grid_maxima_row(grid, unstable, least, most, close_rtol, peak, arg, top, count, f)


def grid_maxima(grid: np.ndarray, unstable: np.ndarray, least: int, most: int,
                close_rtol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The peak of ``|grid|`` per row and its local maxima worth refining, in one pass.

    For rows ``(F, G)`` of samples of a response on ``[0, pi]`` (the ends mirrored: an even,
    ``2 pi``-periodic magnitude), a sample ``|g_j|`` is a candidate where it is a local
    maximum that reaches half the row's peak; it is ranked by the vertex of the parabola
    through it and its neighbours, ``|g_j| + (r - l)^2 / (8 (2 |g_j| - l - r))`` (itself
    where the curvature is not negative), and the row keeps its best ``least``, more where
    more lie within ``close_rtol`` of the best (at most ``most``). ``unstable`` rows have the
    peak ``inf`` and no candidates; so has a row whose peak is not finite (``NaN`` where one
    is NaN, as `np.argmax`).

    Returns ``peak`` and ``arg`` ``(F,)``, ``top`` ``(F, most)`` (the kept samples'
    indices, best first) and ``count`` ``(F,)`` (how many of ``top`` are kept).
    """
    grid = np.ascontiguousarray(grid)
    f = grid.shape[0]
    peak, arg = np.empty(f), np.empty(f, dtype=np.int64)
    top, count = np.zeros((f, most), dtype=np.int64), np.empty(f, dtype=np.int64)
    _run(_grid_maxima_threads, _grid_maxima_serial, grid.size, grid,
         np.ascontiguousarray(unstable, dtype=np.bool_), least, most, close_rtol, peak, arg, top,
         count)
    return peak, arg, top, count


def grid_maxima_reference(grid: np.ndarray, unstable: np.ndarray, least: int, most: int,
                          close_rtol: float):
    """NumPy reference for `grid_maxima` (``top``'s kept entries in any order)."""
    with np.errstate(all="ignore"):
        mag = np.abs(grid)
    mag[unstable] = np.inf
    arg = mag.argmax(axis=1)
    peak = mag[np.arange(mag.shape[0]), arg]
    padded = np.concatenate([mag[:, 1:2], mag, mag[:, -2:-1]], axis=1)
    left, right = padded[:, :-2], padded[:, 2:]
    with np.errstate(all="ignore"):
        curve = 2 * mag - left - right
        est = np.where(curve > 0, mag + (right - left) ** 2 / (8 * curve), mag)
    est = np.where((mag >= left) & (mag >= right) & (mag >= 0.5 * peak[:, None])
                   & ~unstable[:, None] & np.isfinite(est), est, -np.inf)
    best = est.max(axis=1, initial=-np.inf)
    close = (est >= (1 - close_rtol) * best[:, None]) & np.isfinite(est)
    keep = np.minimum(np.minimum(np.isfinite(est).sum(axis=1),
                                 np.maximum(least, close.sum(axis=1))), most)
    top = np.zeros((mag.shape[0], most), dtype=np.int64)
    for row in range(mag.shape[0]):
        order = np.argsort(-est[row], kind="stable")[:keep[row]]
        top[row, :keep[row]] = order
    return peak, arg, top, keep


@numba.njit(cache=True, nogil=True)
def _markov_numba(a, b, c, count, out):
    for f in range(a.shape[0]):
        x = b[f].copy()
        for k in range(count):
            out[f, k] = np.dot(c[f], x)
            x = np.dot(a[f], x)


def markov_parameters(a: np.ndarray, b: np.ndarray, c: np.ndarray, count: int) -> np.ndarray:
    """Markov parameters ``C A^k B``, ``k < count``, of a flat batch of dense systems
    (``a`` of shape ``(F, n, n)``, ``b`` and ``c`` ``(F, n)``)."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    c = np.ascontiguousarray(c, dtype=np.float64)
    out = np.empty((a.shape[0], count))
    _markov_numba(a, b, c, count, out)
    return out


def markov_parameters_reference(a: np.ndarray, b: np.ndarray, c: np.ndarray,
                                count: int) -> np.ndarray:
    """NumPy reference for `markov_parameters`."""
    out = np.empty((a.shape[0], count))
    x = b
    for k in range(count):
        out[:, k] = np.einsum("fi,fi->f", c, x)
        x = np.einsum("fij,fj->fi", a, x)
    return out


@numba.njit(cache=True, parallel=True, nogil=True)
def _impulse_error_dd_rows(h, poles, residues, direct, rows, out):
    length = h.shape[1]
    for j in numba.prange(rows.shape[0]):
        f = rows[j]
        out[j, 0] = h[f, 0] - direct[f]
        for k in range(1, length):
            out[j, k] = 0.0
        # per tap k: h[k] - Re sum_n R_n lambda_n^(k-1), every product and sum in double-double
        acc_hi = np.empty(length)
        acc_lo = np.zeros(length)
        for k in range(length):
            acc_hi[k] = h[f, k]
        acc_hi[0] = out[j, 0]
        for n in range(poles.shape[1]):
            r = residues[f, n]
            if r == 0:
                continue
            pr, pi = poles[f, n].real, poles[f, n].imag
            zr, zrl, zi, zil = r.real, 0.0, r.imag, 0.0  # z = R lambda^(k-1), starting at R
            for k in range(1, length):
                acc_hi[k], acc_lo[k] = _dd_add(acc_hi[k], acc_lo[k], -zr, -zrl)
                zr, zrl, zi, zil = _dd_cmul(zr, zrl, zi, zil, pr, 0.0, pi, 0.0)  # z <- z lambda
        for k in range(1, length):
            out[j, k] = acc_hi[k] + acc_lo[k]


def impulse_error_compensated(h: np.ndarray, poles: np.ndarray, residues: np.ndarray,
                              direct: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``h[f, k] - h_hat[f, k]`` for ``f`` in ``rows``, ``k < L``, of compact modal models
    ``(F, m)`` (as `impulse_compact`), accurate to a few ulps of each difference.

    The powers ``lambda^(k-1)``, their products with the residues and the sums are carried in
    double-double arithmetic (error-free transformations, about 106 bits), so that residues
    that cancel (clustered poles with large opposite residues, ``sum |R lambda^k|`` far above
    ``|h_hat[k]|``) lose nothing the result keeps: the error of ``lambda^k`` grows like
    ``k eps^2``. Many times the cost of `impulse_compact`, for the filters that need it.
    """
    h = np.ascontiguousarray(h, dtype=np.float64)
    poles = np.ascontiguousarray(poles, dtype=np.complex128)
    residues = np.ascontiguousarray(residues, dtype=np.complex128)
    direct = np.ascontiguousarray(direct, dtype=np.float64)
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    out = np.empty((rows.shape[0], h.shape[1]))
    with _PARALLEL:
        _impulse_error_dd_rows(h, poles, residues, direct, rows, out)
    return out
