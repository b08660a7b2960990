"""``mor.select_order``: the orders a tolerance needs, per filter."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mor.drivers.reduction import reduce


@dataclass(frozen=True)
class OrderSelection:
    """Orders chosen per filter (arrays of the batch shape) and what they achieve.

    Attributes
    ----------
    order : ndarray
        The smallest order whose achieved error meets ``tol`` (``-1`` where none up to
        ``max_order`` does).
    met : ndarray
        Whether ``tol`` was met.
    error : ndarray
        The achieved error in ``norm`` at ``order`` (``nan`` where not met).
    aak : ndarray
        ``sigma_{d+1} / max|H|`` at ``order``: for ``norm="hinf"`` no model of that order does
        better (``nan`` where not met or for ``norm="l2"``).
    modes : ndarray
        Compact modes of the chosen model (the GPU state size; ``-1`` where not met).
    tol, norm, method, max_order
        The request.
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
        """Counts of chosen orders (``-1``: not met), over all filters or per index of ``axis``
        (e.g. ``axis=0`` for a ``(layers, channels)`` batch: one histogram per layer)."""
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
    r"""The smallest order per filter whose achieved ``norm`` error meets ``tol``.

    The search of `mor.reduce` with ``tol`` (orders scanned upward from a proven lower
    bound, reusing the Hankel factorisation), keeping the orders and the errors: a filter
    that no order up to ``max_order`` satisfies gets ``order = -1`` and ``met = False``,
    never a smaller order in disguise.

    Parameters
    ----------
    h : array_like ``(..., L)``
        Real FIR filters.
    tol : float
        Relative error tolerance.
    norm : {"l2", "hinf"}
    method : {"balanced", "hankel"}
    max_order : int, optional
        Largest order tried (default ``min(L - 1, 64)``).
    **method_options
        Passed to the method (see `mor.reduce`).

    Returns
    -------
    OrderSelection
        ``order``, ``met``, ``error``, ``aak``, ``modes`` per filter; ``histogram()`` and a
        printable summary.
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
