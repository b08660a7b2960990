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

from mor.conventions import Scale, as_filters, check_order
from mor.analysis.spectrum import KRYLOV_RTOL, device_blocks, hankel_svd


@dataclass(frozen=True)
class ErrorBounds:
    r"""A-priori bounds on the H-infinity error of order-``d`` models, per order and filter.

    Returned by `error_bounds`; every array has shape ``(..., K)``, entry ``[..., d]`` for the
    order ``d = 0 .. K-1``. The bounds are absolute (divide by ``max |H|`` for the relative
    ``hinf`` of `mor.compare`) and concern the H-infinity norm only: neither bounds the ``l2``
    error over the taps.

    Attributes
    ----------
    hsv : ndarray, shape (..., K)
        The Hankel singular values ``sigma_1 >= ... >= sigma_K``.
    aak : ndarray, shape (..., K)
        ``aak[..., d] = sigma_{d+1}``: every model of order ``d`` has
        ``||H - H_hat||_inf >= sigma_{d+1}`` (Adamjan, Arov & Krein): no model of that order
        does better.
    bt : ndarray, shape (..., K)
        ``bt[..., d] >= 2 sum_{i>d} sigma_i``: balanced truncation of order ``d`` does at least
        this well. Exact when the whole spectrum was computed (``exact_tail``); otherwise the
        values beyond ``sigma_K`` enter through the certified estimate
        ``sum_{i>K} sigma_i <= sqrt((N - K) (||H||_F^2 - sum_{i<=K} sigma_i^2))``.
    exact_tail : bool
        Whether all ``N = L - 1`` singular values were computed.

    See Also
    --------
    error_bounds : Computes these bounds.

    mor.compare : The achieved errors of a model, beside ``aak`` and ``bt`` at its order.

    Examples
    --------
    >>> import numpy as np
    >>> import mor
    >>> k = np.arange(64)
    >>> bounds = mor.error_bounds(0.5**k * np.cos(0.3 * k))
    >>> bounds.exact_tail
    True
    >>> print(np.round(bounds.aak[:3], 6))
    [0.57717  0.025872 0.      ]
    """

    hsv: np.ndarray
    aak: np.ndarray
    bt: np.ndarray
    exact_tail: bool


def hankel_frobenius_sq(h: np.ndarray) -> np.ndarray:
    """``||H||_F^2 = sum_{m=1}^{L-1} m h[m]^2`` (tap ``h[m]`` lies on ``m`` entries of ``H``)."""
    weighted = np.square(h, dtype=float)
    weighted *= np.arange(h.shape[-1])
    return weighted.sum(axis=-1)  # pairwise summation: its rounding is in the BT bound's margin


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


def error_bounds(h, max_order: int | None = None, *, device=None) -> ErrorBounds:
    r"""AAK lower and balanced-truncation upper bounds on the H-infinity error, per order.

    For a filter with Hankel singular values ``sigma_1 >= sigma_2 >= ...`` (see
    `hankel_singular_values`) and every order ``d``:

    .. math::

        \sigma_{d+1} \;\le\; \min_{\deg \hat H \le d} \|H - \hat H\|_\infty
        \;\le\; \|H - H_d^{\mathrm{BT}}\|_\infty \;\le\; 2 \sum_{i > d} \sigma_i ,

    the lower bound for every stable or unstable model of order ``d`` (Adamjan, Arov & Krein
    [1]; it bounds the Hankel norm of the error as well), the upper bound for balanced
    truncation ``H_d^BT`` of order ``d`` (Enns [2], Glover [3]; in discrete time Al-Saggaf &
    Franklin [4]). Optimal Hankel-norm approximation (``mor.reduce(..., method="hankel")``)
    halves the upper bound [3].

    Parameters
    ----------
    h : array_like, shape (..., L)
        Real FIR filters, ``L >= 2``.
    max_order : int, optional
        Largest order ``d`` of interest (``0 <= d <= L - 2``); the bounds are returned for
        ``d = 0 .. max_order`` from the leading ``max_order + 1`` Hankel singular values (the
        Krylov path where that is cheaper, see `hankel_singular_values`), the rest entering
        ``bt`` through a certified estimate. Default: all orders, from the full (dense)
        spectrum.
    device : str or torch.device, optional
        A torch device (``"cuda"``) for the leading values, as in `hankel_singular_values`
        (``import mor.torch`` first; ``max_order`` required).

    Returns
    -------
    ErrorBounds
        ``hsv``, ``aak[..., d] = sigma_{d+1}`` and ``bt[..., d] >= 2 sum_{i>d} sigma_i``, each
        of shape ``(..., K)`` with ``K = max_order + 1`` (``L - 1`` by default), and
        ``exact_tail``.

    Raises
    ------
    ValueError
        If ``h`` is not a real finite array of shape ``(..., L)``, ``L = 1`` (order 0 is
        exact), or ``max_order`` is out of range.

    See Also
    --------
    hankel_singular_values : The values the bounds are made of.

    mor.compare : The errors a model achieves, beside these bounds at its order.

    mor.select_order : The smallest order whose achieved error meets a tolerance.

    Notes
    -----
    The bounds are absolute; `mor.compare` and ``mor.reduce(...).info`` report them relative
    to ``max |H|`` (``aak`` and ``bt_bound``). With the leading ``K`` values only, the tail
    ``sum_{i>K} sigma_i`` is bounded by Cauchy-Schwarz from the Frobenius norm,
    ``||H||_F^2 = sum_m m h[m]^2``, so ``bt`` stays a guaranteed upper bound (a few ulps of
    ``||H||_F^2`` are added for rounding).

    References
    ----------
    .. [1] V. M. Adamjan, D. Z. Arov and M. G. Krein, "Analytic properties of Schmidt pairs for
       a Hankel operator and the generalized Schur-Takagi problem," *Math. USSR-Sbornik*,
       vol. 15, no. 1, pp. 31-73, 1971.

    .. [2] D. F. Enns, "Model reduction with balanced realizations: an error bound and a
       frequency weighted generalization," in *Proc. 23rd IEEE Conference on Decision and
       Control*, 1984, pp. 127-132.

    .. [3] K. Glover, "All optimal Hankel-norm approximations of linear multivariable systems
       and their L-infinity error bounds," *International Journal of Control*, vol. 39,
       no. 6, pp. 1115-1193, 1984.

    .. [4] U. M. Al-Saggaf and G. F. Franklin, "An error bound for a discrete reduced order
       model of a linear multivariable system," *IEEE Transactions on Automatic Control*,
       vol. 32, no. 9, pp. 815-819, 1987.

    Examples
    --------
    The decaying cosine ``h[k] = 0.5^k cos(0.3 k)`` is of order 2: from order 2 on both
    bounds vanish.

    >>> import numpy as np
    >>> import mor
    >>> k = np.arange(64)
    >>> h = 0.5**k * np.cos(0.3 * k)
    >>> bounds = mor.error_bounds(h)
    >>> print(np.round(bounds.aak[:4], 6))
    [0.57717  0.025872 0.       0.      ]
    >>> print(np.round(bounds.bt[:4], 6))
    [1.206083 0.051744 0.       0.      ]

    The bounds frame what balanced truncation achieves:

    >>> from mor.demo import hyena_like_filters
    >>> filters = hyena_like_filters(4, 256)
    >>> bounds = mor.error_bounds(filters, max_order=8)
    >>> bounds.aak.shape
    (4, 9)
    >>> ssm = mor.reduce(filters, 8)
    >>> errors = mor.compare(filters, ssm)
    >>> error = errors.hinf * errors.peak  # the absolute H-infinity error
    >>> print(bool(np.all((bounds.aak[:, 8] <= error) & (error <= bounds.bt[:, 8]))))
    True
    """
    h = as_filters(h)
    size = h.shape[-1] - 1
    if size == 0:
        raise ValueError("a filter of length 1 has no Hankel spectrum: order 0 is exact")
    # an integer >= 0 (checked as orders are), then d <= L - 2: order d needs sigma_{d+1}
    k = size if max_order is None else int(check_order(max_order, np.iinfo(np.int64).max,
                                                       "max_order")) + 1
    if k > size:
        raise ValueError(f"max_order must be <= L - 2 = {size - 1} for filters of length "
                         f"{size + 1} (the bounds of order d need sigma_(d+1)), got {k - 1}")
    scale = Scale.of_filters(h)  # computed on [1/2, 1)-scaled filters, scaled back exactly
    scaled = scale.down(h)
    if device is None:
        hsv = hankel_svd(scaled, k, vectors=False)[0]
    elif max_order is None:
        raise ValueError("device= computes the leading values: give max_order")
    else:
        flat = scaled.reshape(-1, h.shape[-1])
        hsv = device_blocks(flat, k, rtol=KRYLOV_RTOL, device=device, vectors=False)["sigma"]
        hsv = hsv.reshape(h.shape[:-1] + (k,))
    bounds = bounds_from_hsv(hsv, hankel_frobenius_sq(scaled), size)
    return ErrorBounds(hsv=scale.up(bounds.hsv, name="the Hankel singular values"),
                       aak=scale.up(bounds.aak, name="the AAK bounds"),
                       bt=scale.up(bounds.bt, name="the balanced-truncation bounds"),
                       exact_tail=bounds.exact_tail)
