"""Batched golden-section search, optionally finished by parabolic interpolation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


def golden_max(fn: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray,
               iterations: int, polish: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Maximise unimodal functions on ``[lo, hi]``, elementwise over arrays of brackets.

    ``fn`` maps an array of points (the shape of ``lo``) to their values. Each iteration costs
    one evaluation of ``fn`` and shrinks every bracket by ``0.618``. ``polish`` steps of
    successive parabolic interpolation follow: the vertex of the parabola through the best
    point and its two evaluated neighbours (for a smooth maximum the error then falls like the
    cube of the spacing instead of by a constant factor); a step whose vertex leaves that
    interval, or whose neighbours were never evaluated (an original end of the bracket), leaves
    its element as it was. Returns the best point evaluated and its value.
    """
    lo, hi = np.array(lo, dtype=float), np.array(hi, dtype=float)
    f_lo, f_hi = np.full(lo.shape, np.nan), np.full(lo.shape, np.nan)
    c = hi - _GOLDEN * (hi - lo)
    d = lo + _GOLDEN * (hi - lo)
    fc, fd = fn(c), fn(d)
    for _ in range(iterations):
        left = fc > fd
        hi, f_hi = np.where(left, d, hi), np.where(left, fd, f_hi)
        lo, f_lo = np.where(left, lo, c), np.where(left, f_lo, fc)
        new = np.where(left, hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo))
        fnew = fn(new)
        c, d, fc, fd = (np.where(left, new, d), np.where(left, c, new),
                        np.where(left, fnew, fd), np.where(left, fc, fnew))
    # the best point (c or d) between its neighbours (lo, d) or (c, hi)
    left = fc > fd
    x = np.stack([np.where(left, lo, c), np.where(left, c, d), np.where(left, d, hi)])
    f = np.stack([np.where(left, f_lo, fc), np.where(left, fc, fd), np.where(left, fd, f_hi)])
    for _ in range(polish):
        x, f = _parabolic_step(fn, x, f)
    return x[1], f[1]


def _parabolic_step(fn, x: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One step of successive parabolic interpolation on triples ``x[0] < x[1] < x[2]`` with
    ``f[1]`` the largest; returns the new triple around the best point."""
    d0, d2 = x[1] - x[0], x[1] - x[2]
    with np.errstate(all="ignore"):  # infinite values (a pole an ulp inside) make no step
        g0, g2 = f[1] - f[0], f[1] - f[2]
        den = d0 * g2 - d2 * g0
        v = x[1] - 0.5 * (d0 * d0 * g2 - d2 * d2 * g0) / den
    usable = np.isfinite(v) & (den > 0) & (v > x[0]) & (v < x[2]) & (v != x[1])
    v = np.where(usable, v, x[1])
    fv = np.where(usable, fn(v), -np.inf)
    better = fv > f[1]
    right = v > x[1]
    # better: v becomes the middle, flanked by x[1] and the outer point on v's side;
    # otherwise x[1] stays, with v replacing the outer point on its side
    x0 = np.where(better, np.where(right, x[1], x[0]), np.where(right | ~usable, x[0], v))
    x2 = np.where(better, np.where(right, x[2], x[1]), np.where(right & usable, v, x[2]))
    f0 = np.where(better, np.where(right, f[1], f[0]), np.where(right | ~usable, f[0], fv))
    f2 = np.where(better, np.where(right, f[2], f[1]), np.where(right & usable, fv, f[2]))
    return (np.stack([x0, np.where(better, v, x[1]), x2]),
            np.stack([f0, np.where(better, fv, f[1]), f2]))
