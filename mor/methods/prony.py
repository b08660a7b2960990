r"""Prony-family methods: poles from the taps, residues by least squares.

Matrix pencil (``method="pencil"``, Hua-Sarkar, SVD-truncated)
    The square data Hankel matrix ``Y[i, j] = h[i + j + 1]`` (``i, j < P``, taps ``1..2P-1``,
    no zero padding; ``P = (L - 1) // 2`` by default) has rank ``n`` for an order-``n``
    filter. With ``U_d`` its ``d`` leading left singular vectors, the poles are the
    eigenvalues of the shift-invariance solution ``U_d[:-1]^+ U_d[1:]``. Exact for exactly
    rational filters; robust to noise through the truncation.

Prony (``method="prony"``, classical linear prediction)
    The order-``d`` recurrence ``h[k] = -sum_{j=1}^d a_j h[k-j]`` (``k = d+1 .. L-1``) solved by
    least squares; the poles are the roots of ``z^d + a_1 z^{d-1} + ... + a_d``. It minimises
    the prediction error, not the fit, and its polynomial degrades fast with the order (the
    benchmarks measure how fast): a baseline, not a recommendation.

Robust Padé (``method="pade"``, Gonnet, Güttel and Trefethen 2013) at ``z = infinity``
    The type ``(d, d)`` Padé approximant of ``H(z) = sum_k h[k] z^{-k}`` matches the Markov
    parameters ``h[1..2d]``: its denominator ``a`` solves the Toeplitz system
    ``sum_{j=0}^{d} a_j h[k-j] = 0`` (``k = d+1 .. 2d``). The robust variant takes ``a`` from
    the SVD of that ``d x (d+1)`` matrix and lowers ``d`` while the matrix is rank deficient
    (singular values below ``1e-13`` of the largest), which removes spurious pole-zero pairs;
    the poles are the roots of ``a``. It sees only the first ``2d + 1`` taps: a classical,
    local method.

All three then take the residues from `mor.fitting.least_squares.fit_residues` (least squares on all
``L`` taps, direct term ``h[0]``). Poles on or outside the unit circle are reflected
(``lambda -> 1 / conj(lambda)``, the default) or dropped (``unstable="drop"``), or kept with
``unstable="keep"`` (then `mor.reduce` fails them unless ``allow_unstable``); the number touched
is reported per filter (``poles_touched``).

``tail_weight=t`` adds the model's tail energy after the ``L`` taps to the residue fit (``t = 1``:
the zero-padded filter fitted over all time; AAA's default, 0 here). Measured on the benchmark's
sets (16 trained filters, ``L = 2048``; two ``firwin(255)`` designs), median relative hinf /
l2 without -> with the tail: pencil at order 32, trained 0.061 / 0.0029 -> 0.011 / 0.0030;
firwin at 16: pencil 17.8 / 0.48 -> 1.11 / 0.95, Prony 7.8 / 0.83 -> 1.2 / 0.90; Padé's
worst trained hinf at 16 1.56 -> 0.75. It trades l2 for the tail and hinf where the poles
sit near the circle (pencil on ``firwin``: the poles that carried the taps are silenced), so it
is an option here, not the default.
"""

from __future__ import annotations

import numpy as np

from mor.analysis.spectrum import hankel_svd
from mor.methods.base import PoleMethod, register

@register
class PencilFamily(PoleMethod):
    """Matrix-pencil poles; see the module notes."""

    name = "pencil"

    @classmethod
    def from_fir(cls, h: np.ndarray, max_order: int, *, pencil: int | None = None,
                 unstable: str = "reflect", hankel_method: str = "auto",
                 tail_weight: float = 0.0) -> "PencilFamily":
        """Matrix-pencil models of flat FIR filters ``h`` ``(F, L)`` up to ``max_order``.

        Parameters
        ----------
        pencil : int, optional
            Size ``P`` of the square data Hankel matrix, in ``[max(order, 1), (L-1)//2 + 1]``
            (default ``max((L - 1) // 2, 1)``; none is needed for order 0).
        unstable : {"reflect", "drop", "keep"}
            Poles on or outside the unit circle: reflected, dropped or kept (counted in
            ``info["poles_touched"]``).
        hankel_method : {"auto", "dense", "krylov"}
            How the singular vectors are computed (`mor.hankel_singular_values`).
        tail_weight : float
            Weight of the model's tail after lag ``L`` in the residue fit (module notes).
        """
        # at least 1 (a filter of 2 taps has the 1 x 1 pencil of its tap 1)
        size = max((h.shape[-1] - 1) // 2, 1) if pencil is None else int(pencil)
        if pencil is not None and not max_order <= size <= (h.shape[-1] - 1) // 2 + 1 or \
                size < max(max_order, 1):
            raise ValueError(f"the pencil parameter must lie in [max(order, 1), (L-1)//2 + 1], "
                             f"got {size} for order {max_order} and L = {h.shape[-1]}")
        if max_order == 0:  # the direct term alone: no poles to find
            return cls(h, 0, unstable, None, tail_weight=tail_weight)
        left = hankel_svd(h, min(max_order, size), method=hankel_method, size=size)[1]

        def find_poles(order, rows):  # shift invariance: U[:-1] X = U[1:]
            return np.stack([np.linalg.eigvals(np.linalg.lstsq(u[:-1, :order], u[1:, :order],
                                                               rcond=None)[0])
                             for u in left[rows]]), {}

        return cls(h, max_order, unstable, find_poles, tail_weight=tail_weight)


@register
class PronyFamily(PoleMethod):
    """Classical Prony (linear prediction) poles; see the module notes."""

    name = "prony"

    @classmethod
    def from_fir(cls, h: np.ndarray, max_order: int, *, unstable: str = "reflect",
                 tail_weight: float = 0.0) -> "PronyFamily":
        """Prony models of flat FIR filters ``h`` ``(F, L)`` up to ``max_order`` (needs
        ``L >= 2 max_order + 1``).

        Parameters
        ----------
        unstable : {"reflect", "drop", "keep"}
            Poles on or outside the unit circle: reflected, dropped or kept.
        tail_weight : float
            Weight of the model's tail after lag ``L`` in the residue fit (module notes).
        """
        if 2 * max_order > h.shape[-1] - 1:
            raise ValueError(f"Prony of order {max_order} needs at least {2 * max_order + 1} "
                             f"taps, got {h.shape[-1]}")

        def find_poles(order, rows):  # h[k] = -sum_j a_j h[k-j], k > order; roots of a(z)
            out = np.empty((rows.size, order), dtype=np.complex128)
            for r, i in enumerate(rows):
                g = h[i, 1:]
                past = np.stack([g[order - j: g.size - j] for j in range(1, order + 1)], axis=1)
                a = np.linalg.lstsq(past, -g[order:], rcond=None)[0]
                out[r] = np.roots(np.concatenate([[1.0], a]))
            return out, {}

        return cls(h, max_order, unstable, find_poles, tail_weight=tail_weight)


@register
class PadeFamily(PoleMethod):
    """Robust Padé poles at infinity; see the module notes."""

    name = "pade"

    @classmethod
    def from_fir(cls, h: np.ndarray, max_order: int, *, unstable: str = "reflect",
                 rank_rtol: float = 1e-13, tail_weight: float = 0.0) -> "PadeFamily":
        """Robust Padé models of flat FIR filters ``h`` ``(F, L)`` up to ``max_order`` (needs
        ``L >= 2 max_order + 1``).

        Parameters
        ----------
        unstable : {"reflect", "drop", "keep"}
            Poles on or outside the unit circle: reflected, dropped or kept.
        rank_rtol : float
            The Toeplitz matrix counts as rank deficient (the degree is lowered) where its
            smallest singular value is below this, relative to the largest.
        tail_weight : float
            Weight of the model's tail after lag ``L`` in the residue fit (module notes).
        """
        if 2 * max_order > h.shape[-1] - 1:
            raise ValueError(f"Padé of order {max_order} needs at least {2 * max_order + 1} "
                             f"taps, got {h.shape[-1]}")

        def find_poles(order, rows):
            out = np.full((rows.size, order), np.nan, dtype=np.complex128)
            for r, i in enumerate(rows):
                roots = _robust_pade_denominator(h[i], order, rank_rtol)
                out[r, : roots.size] = roots
            return out, {}

        return cls(h, max_order, unstable, find_poles, tail_weight=tail_weight)


def _robust_pade_denominator(h: np.ndarray, order: int, rank_rtol: float) -> np.ndarray:
    """Roots of the robust Padé denominator of degree at most ``order`` (fewer if rank
    deficient)."""
    for d in range(order, 0, -1):
        rows = np.arange(d + 1, 2 * d + 1)
        toeplitz = h[rows[:, None] - np.arange(d + 1)[None, :]]  # [k, j] = h[k - j]
        s, vh = np.linalg.svd(toeplitz, full_matrices=True)[1:]
        if s.size and s[-1] <= rank_rtol * s[0] and d > 1:
            continue  # rank deficient: a lower degree explains the taps as well
        a = vh[-1]
        if abs(a[0]) < np.finfo(float).tiny:
            continue
        return np.roots(a / a[0])
    return np.zeros(0, dtype=np.complex128)
