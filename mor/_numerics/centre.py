r"""The real constant closest, in the largest deviation, to a set of complex points.

For points ``p_k = a_k + i c_k`` the real ``D`` minimising ``max_k |p_k - D|`` is the centre
on the real axis of the smallest disk containing them. With ``b_k = |p_k|^2``,

.. math::

    \max_k |p_k - D|^2 = D^2 + \max_k (b_k - 2 a_k D),

a parabola plus the upper envelope of lines of slopes ``-2 a_k``: convex and piecewise
quadratic. The envelope is built by the convex-hull trick (lines by increasing slope, one
pass), and the minimum lies on the segment where the derivative ``2 D - 2 a_k`` of the
active line ``k`` changes sign: at ``D = a_k`` inside a segment, or at a breakpoint. Exact, in
``O(m log m)`` for ``m`` points, where a search evaluates all points at every step.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _centre(a: np.ndarray, b: np.ndarray) -> float:
    """``argmin_D D^2 + max_k (b_k - 2 a_k D)`` for one set of points (module notes)."""
    order = np.argsort(-a)  # slopes -2 a_k increasing
    hull = np.empty(a.size, dtype=np.int64)
    top = 0
    for k in order:
        if top and a[hull[top - 1]] == a[k]:  # equal slopes: the higher line only
            if b[k] <= b[hull[top - 1]]:
                continue
            top -= 1
        while top >= 2:
            i, j = hull[top - 2], hull[top - 1]
            # j is never strictly above both i and k where k overtakes i no later than j does:
            # x(i, k) <= x(i, j), x(i, j) = (b_j - b_i) / (2 (a_j - a_i)), both denominators < 0
            if (b[k] - b[i]) * (a[j] - a[i]) <= (b[j] - b[i]) * (a[k] - a[i]):
                top -= 1
            else:
                break
        hull[top] = k
        top += 1
    # segment s holds line hull[s] between the breakpoints with its neighbours
    for s in range(top):
        k = hull[s]
        hi = np.inf
        if s + 1 < top:
            n = hull[s + 1]
            hi = (b[n] - b[k]) / (2.0 * (a[n] - a[k]))
        if a[k] <= hi:  # the derivative 2 (D - a_k) changes sign on or before this segment
            lo = -np.inf
            if s > 0:
                p = hull[s - 1]
                lo = (b[k] - b[p]) / (2.0 * (a[k] - a[p]))
            return max(a[k], lo)
    return a[hull[top - 1]]


@numba.njit(cache=True, nogil=True)
def _centres(points: np.ndarray) -> np.ndarray:
    out = np.empty(points.shape[0])
    for r in range(points.shape[0]):
        a = points[r].real.copy()
        b = a * a + points[r].imag * points[r].imag
        out[r] = _centre(a, b)
    return out


def real_centre(points: np.ndarray) -> np.ndarray:
    """Per row of ``points`` ``(F, m)`` (complex, ``m >= 1``), the real ``D`` minimising
    ``max_k |points_k - D|`` (module notes)."""
    return _centres(np.ascontiguousarray(points, dtype=np.complex128))
