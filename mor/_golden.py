"""Batched golden-section search."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


def golden_max(fn: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray,
               iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Maximise unimodal functions on ``[lo, hi]``, elementwise over arrays of brackets.

    ``fn`` maps an array of points (the shape of ``lo``) to their values. Each iteration costs
    one evaluation of ``fn`` and shrinks every bracket by ``0.618``. Returns the best point
    and its value.
    """
    lo, hi = np.array(lo, dtype=float), np.array(hi, dtype=float)
    c = hi - _GOLDEN * (hi - lo)
    d = lo + _GOLDEN * (hi - lo)
    fc, fd = fn(c), fn(d)
    for _ in range(iterations):
        left = fc > fd
        hi = np.where(left, d, hi)
        lo = np.where(left, lo, c)
        new = np.where(left, hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo))
        fnew = fn(new)
        c, d, fc, fd = (np.where(left, new, d), np.where(left, c, new),
                        np.where(left, fnew, fd), np.where(left, fc, fnew))
    return np.where(fc > fd, c, d), np.maximum(fc, fd)
