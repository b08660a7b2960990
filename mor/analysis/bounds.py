r"""A-priori error bounds from the Hankel spectrum.

For every order ``d``:

* AAK lower bound: every system of order ``d`` has ``||H - H_hat||_inf >= sigma_{d+1}`` (and the
  same for the Hankel norm);
* balanced-truncation upper bound: BT of order ``d`` has ``||H - H_hat||_inf <= 2 sum_{i>d} sigma_i``.

Both are absolute (divide by ``max |H|`` for the relative ``hinf`` figure). Neither bounds the
``l2`` error over ``L`` taps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mor.conventions import as_filters, check_order
from mor.analysis.spectrum import hankel_svd


@dataclass(frozen=True)
class ErrorBounds:
    """Bounds per order ``d = 0 .. K-1``, each of shape ``(..., K)``.

    Attributes
    ----------
    hsv : ndarray
        ``sigma_1 .. sigma_K``.
    aak : ndarray
        ``aak[..., d] = sigma_{d+1}``: no order-``d`` model does better in H-infinity.
    bt : ndarray
        ``bt[..., d] >= 2 sum_{i>d} sigma_i``: BT of order ``d`` does at least this well. Exact
        when the whole spectrum was computed (``exact_tail``); otherwise the values beyond
        ``sigma_K`` enter through the certified estimate
        ``sum_{i>K} sigma_i <= sqrt((N - K) (||H||_F^2 - sum_{i<=K} sigma_i^2))``.
    exact_tail : bool
        Whether all ``L - 1`` singular values were computed.
    """

    hsv: np.ndarray
    aak: np.ndarray
    bt: np.ndarray
    exact_tail: bool


def hankel_frobenius_sq(h: np.ndarray) -> np.ndarray:
    """``||H||_F^2 = sum_{m=1}^{L-1} m h[m]^2`` (tap ``h[m]`` lies on ``m`` entries of ``H``)."""
    m = np.arange(h.shape[-1])
    return (m * h**2).sum(axis=-1)


def bounds_from_hsv(hsv: np.ndarray, frob_sq: np.ndarray, size: int) -> ErrorBounds:
    """`ErrorBounds` from the leading values ``hsv`` of a Hankel matrix of size ``size``."""
    k = hsv.shape[-1]
    exact = k >= size
    rest = np.zeros(hsv.shape[:-1])
    if not exact:
        captured = (hsv**2).sum(axis=-1)
        # the rounding of the difference is covered by a margin of a few ulps of ||H||_F^2
        remainder = np.maximum(frob_sq - captured, 0.0) + 8 * np.finfo(float).eps * frob_sq
        rest = np.sqrt((size - k) * remainder)
    tail = np.cumsum(hsv[..., ::-1], axis=-1)[..., ::-1]  # tail[d] = sum_{i>=d+1} sigma_i
    bt = 2 * (tail + rest[..., None])
    return ErrorBounds(hsv=hsv, aak=hsv.copy(), bt=bt, exact_tail=exact)


def error_bounds(h, max_order: int | None = None) -> ErrorBounds:
    r"""AAK lower and balanced-truncation upper bounds on the H-infinity error, per order.

    Parameters
    ----------
    h : array_like, shape ``(..., L)``
        Real FIR filters.
    max_order : int, optional
        Largest order ``d`` of interest (``0 <= d <= L - 2``); the bounds are returned for
        ``d = 0 .. max_order``. Default: all orders, from the full (dense) spectrum.

    Returns
    -------
    ErrorBounds
        With ``aak[..., d] = sigma_{d+1}`` and ``bt[..., d] >= 2 sum_{i>d} sigma_i``.
    """
    h = as_filters(h)
    size = h.shape[-1] - 1
    if size == 0:
        raise ValueError("a filter of length 1 has no Hankel spectrum: order 0 is exact")
    k = size if max_order is None else int(check_order(max_order, size, "max_order")) + 1
    hsv = hankel_svd(h, k, vectors=False)[0]
    return bounds_from_hsv(hsv, hankel_frobenius_sq(h), size)
