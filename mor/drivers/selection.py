"""``mor.select_order``: the orders a tolerance needs, per filter."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mor.drivers.reduction import reduce


@dataclass(frozen=True)
class OrderSelection:
    """Orders chosen per filter by `select_order`, and what they achieve.

    Arrays have the batch shape of the filters. ``print`` gives a summary (counts, the range
    and median of the orders met, the histogram); `histogram` counts the orders over all
    filters or per index of an axis (e.g. per layer).

    Attributes
    ----------
    order : ndarray of int
        The smallest order whose achieved error meets ``tol`` (``-1`` where none up to
        ``max_order`` does).
    met : ndarray of bool
        Whether ``tol`` was met.
    error : ndarray
        The achieved relative error in ``norm`` at ``order`` (``nan`` where not met).
    aak : ndarray
        ``sigma_{d+1} / max|H|`` at ``d = order``: for ``norm="hinf"`` no model of that order
        does better (``nan`` where not met or for ``norm="l2"``).
    modes : ndarray of int
        Compact modes of the chosen model (the GPU state size; ``-1`` where not met).
    tol : float
        The tolerance asked for.
    norm : str
        Its norm, ``"l2"`` or ``"hinf"``.
    method : str
        The reduction method.
    max_order : int or None
        The largest order tried (``None``: the default of `mor.reduce`).

    See Also
    --------
    select_order : Computes it.

    Examples
    --------
    >>> import numpy as np
    >>> import mor
    >>> k = np.arange(64)
    >>> h = np.stack([0.5**k, 0.5**k * np.cos(0.3 * k)])  # of order 1 and 2
    >>> selection = mor.select_order(h, 1e-6)
    >>> selection.order, selection.modes
    (array([1, 2]), array([1, 1]))
    >>> selection.histogram()
    {1: 1, 2: 1}
    >>> print(selection)
    order selection: l2 <= 1e-06 with method 'balanced' (max_order None)
      filters: 2, met: 2, not met: 0
      orders: min 1, median 1.5, max 2; modes: median 1
      histogram: 1: 1, 2: 1
    """

    order: np.ndarray
    met: np.ndarray
    error: np.ndarray
    aak: np.ndarray
    modes: np.ndarray
    tol: float
    norm: str
    method: str
    max_order: int | None

    def histogram(self, axis: int | None = None) -> dict:
        """Counts of the chosen orders (``-1``: not met).

        Parameters
        ----------
        axis : int, optional
            Count per index of this batch axis (e.g. ``axis=0`` for a ``(layers, channels)``
            batch: one histogram per layer); over all filters when omitted.

        Returns
        -------
        dict
            ``{order: count}`` in increasing order, or ``{index: {order: count}}`` per index
            of ``axis``.

        Examples
        --------
        >>> import numpy as np
        >>> import mor
        >>> k = np.arange(64)
        >>> h = np.stack([[0.5**k, 0.25**k],                             # order 1
        ...               [0.5**k * np.cos(0.3 * k), 0.5**k + (-0.25)**k]])  # order 2
        >>> mor.select_order(h, 1e-6).histogram(axis=0)
        {0: {1: 2}, 1: {2: 2}}
        """
        if axis is None:
            return _counts(self.order)
        moved = np.moveaxis(self.order, axis, 0)
        return {i: _counts(part) for i, part in enumerate(moved)}

    def __str__(self) -> str:
        met = self.order[self.met]
        lines = [f"order selection: {self.norm} <= {self.tol:g} with method {self.method!r} "
                 f"(max_order {self.max_order})",
                 f"  filters: {self.order.size}, met: {int(self.met.sum())}, "
                 f"not met: {int((~self.met).sum())}"]
        if met.size:
            lines.append(f"  orders: min {met.min()}, median {np.median(met):g}, "
                         f"max {met.max()}; modes: median {np.median(self.modes[self.met]):g}")
        lines.append("  histogram: " + ", ".join(f"{k}: {v}" for k, v in
                                                self.histogram().items()))
        return "\n".join(lines)


def _counts(orders: np.ndarray) -> dict[int, int]:
    values, counts = np.unique(orders, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def select_order(h, tol: float, *, norm: str = "l2", method: str = "balanced",
                 max_order: int | None = None, **method_options) -> OrderSelection:
    r"""The smallest order per filter whose achieved error meets a tolerance.

    For each filter ``h`` and its reductions ``H_d`` by ``method``:

    .. math::

        d^\star = \min \{\, d \le d_{\max} : e(h, H_d) \le \mathrm{tol} \,\},

    with ``e`` the relative ``l2`` error over the taps or the relative ``hinf`` error (see
    `mor.compare`), and ``d* = -1`` where no order up to ``max_order`` meets ``tol``. This
    is the search of ``mor.reduce(h, tol=tol)`` with the orders and errors kept: a filter
    that no order satisfies is reported as such (``met = False``), never given a smaller
    order in disguise.

    Parameters
    ----------
    h : array_like, shape (..., L)
        Real FIR filters.
    tol : float
        Relative error tolerance, ``> 0``.
    norm : {"l2", "hinf"}, optional
        The norm of ``tol`` (default ``"l2"``).
    method : str, optional
        A method of `mor.reduce` (default ``"balanced"``; ``"hankel"`` for optimal
        Hankel-norm approximation).
    max_order : int, optional
        Largest order tried (default ``min(L - 1, 64)``).
    **method_options
        Passed to the method (see `mor.reduce`).

    Returns
    -------
    OrderSelection
        ``order``, ``met``, ``error``, ``aak``, ``modes`` per filter; `OrderSelection.histogram`
        and a printable summary.

    Raises
    ------
    ValueError
        If ``h`` is not a real finite array of shape ``(..., L)``, ``tol`` is not a positive
        finite number, or ``norm``, ``method`` or ``max_order`` is invalid.

    See Also
    --------
    mor.reduce : The models themselves, for a tolerance (``tol=``) or an order.

    error_bounds : A-priori bounds per order, without building models.

    Notes
    -----
    The achieved error is not monotone in the order in general, so the orders are scanned
    upward from a proven lower bound: zero for ``l2``, and for ``hinf`` the first ``d`` with
    ``sigma_{d+1} <= tol max|H|``, below which no model of any method can meet ``tol`` (the
    AAK theorem [1]). Balanced truncation and Hankel-norm approximation reuse one Hankel
    factorisation across the scan, computed for 24 orders first and extended only for the
    filters that need more.

    References
    ----------
    .. [1] V. M. Adamjan, D. Z. Arov and M. G. Krein, "Analytic properties of Schmidt pairs for
       a Hankel operator and the generalized Schur-Takagi problem," *Math. USSR-Sbornik*,
       vol. 15, no. 1, pp. 31-73, 1971.

    Examples
    --------
    Exactly low-order filters need their order and no more:

    >>> import numpy as np
    >>> import mor
    >>> k = np.arange(64)
    >>> h = np.stack([0.5**k, 0.5**k * np.cos(0.3 * k)])  # of order 1 and 2
    >>> mor.select_order(h, 1e-6).order
    array([1, 2])

    Hyena-like filters at ``l2 <= 1e-2``: the first needs more than ``max_order = 24``.

    >>> from mor.demo import hyena_like_filters
    >>> filters = hyena_like_filters(4, 256)
    >>> selection = mor.select_order(filters, 1e-2, max_order=24)
    >>> selection.order, selection.met
    (array([-1, -1, 23, 10]), array([False, False,  True,  True]))
    >>> print(bool(np.all(selection.error[selection.met] <= 1e-2)))
    True
    """
    ssm = reduce(h, tol=tol, norm=norm, method=method, max_order=max_order, on_fail="flag",
                 errors=(norm,), **method_options)
    info = ssm.info
    met = np.asarray(info["met_tol"])
    order = np.where(met, ssm.order, -1)
    error = np.where(met, info[norm], np.nan)
    aak = np.where(met, info["aak"], np.nan) if norm == "hinf" else np.full(met.shape, np.nan)
    modes = np.where(met, ssm.modes, -1)
    return OrderSelection(order, met, error, aak, modes, float(tol), norm, method, max_order)
