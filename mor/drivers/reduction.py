"""Reduction of FIR filters (or dense systems) to stable real modal models: `mor.reduce`."""

from __future__ import annotations

from typing import Any

import numpy as np

from mor._numerics import freq
from mor.conventions import as_filters, check_norm, check_order, check_tol, relative
from mor.methods.aaa import AAAFamily
from mor.methods.balanced import BalancedFamily
from mor.methods.hankel_norm import HankelNormFamily
from mor.methods.irka import IrkaFamily
from mor.methods.modal import ModalFamily
from mor.methods.prony import PadeFamily, PencilFamily, PronyFamily
from mor.analysis.compare import model_errors
from mor.systems.modal import ModalSSM
from mor.systems.statespace import StateSpace

METHODS = {"balanced": BalancedFamily, "hankel": HankelNormFamily, "pencil": PencilFamily,
           "prony": PronyFamily, "pade": PadeFamily, "aaa": AAAFamily, "modal": ModalFamily,
           "irka": IrkaFamily}
DEFAULT_MAX_ORDER = 64
#: What `reduce` may do with a filter whose model fails (see its ``on_fail``).
ON_FAIL = ("raise", "flag", "best")
#: The tol search computes the Hankel factorisation for this many orders first.
TOL_FIRST_ORDER = 24
#: A model whose modal form lost more than this (relative, on its Markov parameters) fails.
CONVERSION_RTOL = 1e-6


def reduce(h, order=None, *, modes: int | None = None, tol: float | None = None,
           method: str = "balanced", norm: str = "l2", max_order: int | None = None,
           on_fail: str = "raise", allow_unstable: bool = False,
           errors: tuple[str, ...] = ("l2", "tail", "hinf"),
           **method_options: Any) -> ModalSSM:
    r"""Reduce FIR filters to stable real modal state-space models.

    Exactly one of ``order``, ``modes`` and ``tol`` says how large the models are.

    Parameters
    ----------
    h : array_like ``(..., L)`` or StateSpace
        Real FIR filters (taps ``h[0..L-1]``), or dense systems (``order`` or ``modes`` only).
    order : int or array_like of int
        McMillan degree per filter (broadcast over the batch), ``0 <= order <= L - 1``.
        ``order=0`` is the direct term alone. A filter whose Hankel rank is lower (an exactly
        low-order filter) gets its rank, flagged ``rank_capped`` in ``info``.
    modes : int
        Cap on compact modes (the GPU state size): the largest order whose model has at most
        ``modes`` compact modes (a conjugate pair or a real pole each take one).
    tol : float
        Relative error tolerance in ``norm``: per filter the smallest order whose *achieved*
        error meets it. The search scans orders upward from a proven lower bound (0 for ``l2``;
        for ``hinf`` the first ``d`` with ``sigma_{d+1} <= tol max|H|``, by AAK) up to
        ``max_order``.
    method : {"balanced", "hankel", "pencil", "prony", "pade", "aaa", "modal", "irka"}
        ``"balanced"``: square-root balanced truncation (`mor.methods.balanced`); options
        ``dc_match`` (bool, singular-perturbation DC matching), ``hankel_method`` and ``rtol``
        (see `mor.hankel_singular_values`). ``"hankel"``: optimal Hankel-norm
        approximation (`mor.methods.hankel_norm`); options ``intermediate_order``,
        ``direct`` (``"hinf"``: the H-infinity-optimal direct term, or ``"keep"``),
        ``hankel_method``, ``rtol``. Both also take a ``StateSpace``. ``"pencil"`` (matrix
        pencil) and ``"prony"`` (linear prediction): poles from the taps and least-squares
        residues (:mod:`mor.methods.prony`); option ``unstable`` (``"reflect"``, ``"drop"`` or
        ``"keep"``; the count is ``info["poles_touched"]``), and ``pencil`` for the pencil.
        ``"pade"``: robust Padé at infinity (Gonnet-Güttel-Trefethen). ``"modal"``: poles
        optimised for the ``l2`` error by variable projection (:mod:`mor.methods.modal`),
        started from ``init`` (another method, ``"balanced"`` by default, or a stable
        `ModalSSM` per filter, with ``order`` its models' orders), ``max_iter`` (trial points
        per continuation stage, 15), ``tail_weight`` (0.1), ``limit_tail`` (the tail held to at
        most the start's) and ``weight`` (FIR taps of a frequency weight).
        ``"irka"``: discrete-time H2-optimal poles by TF-IRKA (Loewner pencils of transfer function
        samples at the poles' mirror images, :mod:`mor.methods.irka`), started from BT; options
        ``max_iter``, ``rtol``. ``"aaa"``: AAA on the unit circle with conjugate-symmetric support
        points (:mod:`mor.methods.aaa`), the same stability options, ``samples`` (grid size)
        and ``tail_weight`` (``1``: the residues fit the taps followed by zeros over all time,
        the model's tail included; ``0``: the taps alone).
    norm : {"l2", "hinf"}
        The norm of ``tol``.
    max_order : int, optional
        Largest order the ``tol`` search tries (default ``min(L - 1, 64)``).
    on_fail : {"raise", "flag", "best"}
        What to do with a filter whose model fails (no order up to ``max_order`` meets ``tol``,
        or a pole on or outside the unit circle): raise ``ValueError``, or give it order 0 and
        say why in ``info["reason"]`` (``info["failed"]`` is true). ``"best"`` differs from
        ``"flag"`` for ``tol`` only: a filter that no order up to ``max_order`` meets keeps the
        stable model of smallest error found, with ``info["met_tol"]`` false and the reason
        given (a language model is better served by its closest model than by a zero filter).
    allow_unstable : bool
        Keep models with poles of modulus ``>= 1`` instead of failing them.
    errors : tuple of {"l2", "tail", "hinf"}
        The achieved errors to compute and report in ``info`` (all by default; ``hinf`` brings
        the ``aak`` and ``bt_bound`` figures). The ``tol`` search computes its own norm anyway.

    Returns
    -------
    ModalSSM
        With ``info`` holding, per filter: ``order``, the achieved ``l2``, ``tail`` and
        ``hinf`` errors, ``aak`` (``sigma_{d+1}/max|H|``) and ``bt_bound``
        (``2 sum_{i>d} sigma_i / max|H|``), ``met_tol``, ``rank_capped``, ``failed``,
        ``reason``, ``conversion_error`` (for ``"hankel"`` also ``truncation_tail`` and
        ``glover_bound = sum_{i>d} sigma_i / max|H| + truncation_tail``); and ``method``,
        ``method_options`` and ``search``.

    A model whose diagonalisation loses more than ``1e-6`` (relative) of its Markov parameters
    (near-defective poles) fails like an unstable one.
    """
    unknown = set(errors) - {"l2", "tail", "hinf"}
    if unknown:
        raise ValueError(f"errors must name 'l2', 'tail' or 'hinf', got {sorted(unknown)}")
    if on_fail not in ON_FAIL:
        raise ValueError(f"on_fail must be one of {ON_FAIL}, got {on_fail!r}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; available: {sorted(METHODS)}")
    given = [name for name, v in (("order", order), ("modes", modes), ("tol", tol))
             if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of order, modes and tol (got {given or 'none'})")
    norm = check_norm(norm)
    if isinstance(h, StateSpace):
        if not hasattr(METHODS[method], "from_statespace"):
            raise ValueError(f"method {method!r} takes FIR filters; for a StateSpace use "
                             f"'balanced' or 'hankel'")
        if tol is not None:
            raise ValueError("tol needs FIR filters (its errors are defined on the taps); give "
                             "order or modes for a StateSpace")
        batch, size = h.shape, h.n_states
        flat = StateSpace(h.a.reshape((-1, size, size)), h.b.reshape(-1, size),
                          h.c.reshape(-1, size), h.d.reshape(-1))
        build = METHODS[method].from_statespace
    else:
        h = as_filters(h)
        batch, size = h.shape[:-1], h.shape[-1] - 1
        flat = h.reshape(-1, size + 1)
        build = METHODS[method].from_fir
    f = int(np.prod(batch, dtype=np.int64))
    own_direct = flat.d if isinstance(h, StateSpace) else flat[:, 0]
    info: dict[str, Any] = {"method": method, "method_options": dict(method_options)}
    reason = np.full(f, "", dtype=object)
    met = None
    everyone = np.arange(f)
    if order is not None:
        requested = np.broadcast_to(check_order(order, size + 1), batch).reshape(-1)
        family = build(flat, int(requested.max(initial=0)), **method_options)
        orders = np.minimum(requested, family.rank)
        model = family.model(orders)
        groups = [(everyone, family, everyone)]
        info["search"] = "order given"
    elif modes is not None:
        modes = int(check_order(modes, size + 1, "modes"))
        cap = min(size, 2 * modes)
        family = build(flat, cap, **method_options)
        requested = np.minimum(np.full(f, cap), family.rank)
        orders, model = _largest_within_modes(family, requested, modes)
        groups = [(everyone, family, everyone)]
        info["search"] = f"largest order <= {cap} with at most {modes} modes"
    else:
        tol = check_tol(tol)
        top = min(size, DEFAULT_MAX_ORDER) if max_order is None else int(
            check_order(max_order, size + 1, "max_order"))
        orders, model, met, start, groups = _tol_search(flat, build, method_options, tol, norm,
                                                        top)
        info["search"] = (f"orders scanned upward from a proven lower bound "
                          f"({'AAK' if norm == 'hinf' else 'zero'}) to {top}, the Hankel "
                          f"factorisation computed for {TOL_FIRST_ORDER} orders first and "
                          f"doubled for the filters that need more")
        if getattr(groups[0][1], "start", None) is not None:
            info["search"] += (f"; on the {groups[0][1].start.name or 'start'} models, then "
                               f"the {method} fit downward from the order found while it "
                               f"meets the tolerance")
        info["search_start"] = start.reshape(batch)
        reason[~met] = f"no order <= {top} meets {norm} <= {tol:g}"
    *model, lost, touched = model
    inaccurate = (lost > CONVERSION_RTOL) & (reason == "") & (met is None)
    for i in np.flatnonzero(inaccurate):
        reason[i] = (f"near-defective poles: the modal form is off by {lost[i]:.1e} (relative) "
                     f"on the Markov parameters; try a lower order")
    unstable = np.zeros(f, dtype=bool) if allow_unstable else \
        ~ModalSSM.from_compact(*model).is_stable()
    reason[unstable & (reason == "")] = "a pole on or outside the unit circle"
    failed = reason != ""
    if on_fail == "best" and met is not None:
        failed &= met | unstable  # an unmet tolerance keeps its best stable model
    if failed.any() and on_fail == "raise":
        bad = np.flatnonzero(failed)
        where = "; ".join(f"filter {tuple(int(j) for j in np.unravel_index(i, batch))}: "
                          f"{reason[i]}" for i in bad[:5])
        raise ValueError(f"{bad.size} filter(s) failed ({where}{'; ...' if bad.size > 5 else ''})"
                         "; pass on_fail='flag' to keep going")
    poles, residues, direct = model
    if failed.any():
        poles[failed], residues[failed] = 0, 0
        direct[failed] = own_direct[failed]
        orders = np.where(failed, 0, orders)
        lost[failed] = 0.0
    achieved: dict[str, np.ndarray] = {}
    for idx, family, local in groups:
        part = (poles[idx], residues[idx], direct[idx])
        if isinstance(h, StateSpace):
            got = _system_errors(flat, family, part, orders[idx], errors)
        else:
            hsv = family.hsv[local] if "hinf" in errors else None  # AAK and BT figures only
            got = model_errors(flat[idx], *part, orders[idx], hsv, errors)
        if "peak" in got and isinstance(family, HankelNormFamily):
            # Glover: ||G - G_d - D||_inf <= sum_{i>d} sigma_i, plus the truncation tail
            got["truncation_tail"] = relative(family.tail[local], got["peak"])
            got["glover_bound"] = got["bt_bound"] / 2 + got["truncation_tail"]
        for key, value in got.items():
            achieved.setdefault(key, np.zeros(f, dtype=value.dtype))[idx] = value
    for key, value in achieved.items():
        info[key] = value.reshape(batch)
    info["conversion_error"] = lost.reshape(batch)
    info["poles_touched"] = touched.reshape(batch)
    info["failed"] = failed.reshape(batch)
    info["reason"] = reason.reshape(batch)
    if met is None:
        info["rank_capped"] = ((orders < requested) & ~failed).reshape(batch)
    else:
        info["met_tol"] = (met & ~failed).reshape(batch)
    m = poles.shape[-1]
    return ModalSSM.from_compact(poles.reshape(batch + (m,)), residues.reshape(batch + (m,)),
                                 direct.reshape(batch), info=info)


def _system_errors(sys: StateSpace, family, model, orders, errors) -> dict[str, np.ndarray]:
    """``hinf`` of reduced dense systems, with the exact AAK and BT bounds (full spectrum)."""
    if "hinf" not in errors:
        return {"order": orders.copy()}
    full = freq.DenseResponse(sys.a, sys.b, sys.c, sys.d)
    peak = freq.peak_magnitude(full)[0]
    err = freq.peak_magnitude(freq.Difference(full, freq.ModalResponse(*model)))[0]
    hsv = np.concatenate([family.hsv, np.zeros((orders.size, 1))], axis=1)
    tail = np.cumsum(hsv[:, ::-1], axis=1)[:, ::-1]
    idx = np.minimum(orders, hsv.shape[1] - 1)[:, None]
    return {"order": orders.copy(), "peak": peak, "hinf": relative(err, peak),
            "aak": relative(np.take_along_axis(hsv, idx, 1)[:, 0], peak),
            "bt_bound": relative(2 * np.take_along_axis(tail, idx, 1)[:, 0], peak)}


def _largest_within_modes(family, cap: np.ndarray, modes: int):
    """Per filter the largest order ``<= cap`` whose model has at most ``modes`` compact modes.

    A family fitted from another (``family.start``) keeps its start's modes: the orders are
    searched on the start first, so that the costly fit normally runs once."""
    start = getattr(family, "start", None)
    orders = cap.copy() if start is None else _largest_within_modes(start, cap, modes)[0]
    pending = np.arange(cap.size)
    width = max(modes, 1)
    poles = np.zeros((cap.size, width), dtype=np.complex128)
    residues = np.zeros_like(poles)
    direct = family.d.copy()
    lost = np.zeros(cap.size)
    touched = np.zeros(cap.size, dtype=np.int64)
    while pending.size:
        p, r, d, e, t = family.model(orders[pending], pending)
        fits = (r != 0).sum(axis=1) <= modes
        done = pending[fits]
        k = min(p.shape[1], width)
        poles[done, :k] = p[fits][:, :k]
        residues[done, :k] = r[fits][:, :k]
        direct[done] = d[fits]
        lost[done], touched[done] = e[fits], t[fits]
        pending = pending[~fits]
        orders[pending] -= 1
    return orders, (poles, residues, direct, lost, touched)


def _tol_search(flat: np.ndarray, build, options: dict, tol: float, norm: str, top: int):
    """Per filter the smallest order ``<= top`` whose achieved ``norm`` error is ``<= tol``.

    The Hankel factorisation is computed for ``TOL_FIRST_ORDER`` orders first and, for the
    filters whose scan runs past it, again with twice as many, until ``top``: the search costs
    little more than one reduction at the orders it finds. Returns the orders, the models
    ``(poles, residues, direct, conversion_error)``, ``met``, the scan's proven start and the
    groups ``(indices, family, rows in the family)`` the models came from.
    """
    f = flat.shape[0]
    orders = np.zeros(f, dtype=np.int64)
    met = np.zeros(f, dtype=bool)
    start = np.zeros(f, dtype=np.int64)
    first = np.zeros(f, dtype=np.int64)
    peak = freq.peak_magnitude(freq.FirResponse(flat))[0] if norm == "hinf" else None
    parts, groups = [], []
    pending, k = np.arange(f), min(top, TOL_FIRST_ORDER)
    while pending.size:
        family = build(flat[pending], k, **options)
        sub_peak = None if peak is None else peak[pending]
        o, ok, lower, model = _scan(flat[pending], family, tol, norm, k, first[pending], sub_peak)
        start[pending] = lower
        more = ~ok & (np.minimum(family.rank, k) == k) & (k < top)
        done = ~more
        orders[pending[done]], met[pending[done]] = o[done], ok[done]
        parts.append((pending[done], [x[done] for x in model]))
        groups.append((pending[done], family, np.flatnonzero(done)))
        first[pending[more]] = np.maximum(lower[more], k + 1)
        pending, k = pending[more], min(top, 2 * k)
    width = max((p[1][0].shape[1] for p in parts), default=0)
    poles = np.zeros((f, width), dtype=np.complex128)
    residues = np.zeros_like(poles)
    direct, lost, touched = np.zeros(f), np.zeros(f), np.zeros(f, dtype=np.int64)
    for idx, (p, r, d, e, t) in parts:
        poles[idx, : p.shape[1]], residues[idx, : p.shape[1]] = p, r
        direct[idx], lost[idx], touched[idx] = d, e, t
    return orders, (poles, residues, direct, lost, touched), met, start, groups


def _scan(h: np.ndarray, family, tol: float, norm: str, top: int, first: np.ndarray,
          peak: np.ndarray | None):
    """Scan orders upward from ``max(first, AAK start)`` to ``min(top, rank)`` per filter."""
    if getattr(family, "start", None) is not None:
        return _scan_fitted(h, family, tol, norm, top, first, peak)
    f = h.shape[0]
    hsv = family.hsv
    limit = np.minimum(family.rank, top)
    lower = np.zeros(f, dtype=np.int64)
    if norm == "hinf":  # AAK: no order d with sigma_{d+1} > tol max|H| can meet tol
        above = np.concatenate([hsv, np.zeros((f, 1))], axis=1) > tol * peak[:, None]
        lower = np.minimum(np.argmin(above, axis=1), limit + 1)
    orders = np.maximum(lower, first)
    met = np.zeros(f, dtype=bool)
    best = np.full(f, np.inf)
    best_order = np.minimum(orders, limit)
    pending = np.flatnonzero(orders <= limit)
    while pending.size:
        p, r, d, _, _ = family.model(orders[pending], pending)
        err = model_errors(h[pending], p, r, d, orders[pending], hsv[pending], norms=(norm,),
                           peak=None if peak is None else peak[pending])[norm]
        improved = err < best[pending]
        best[pending[improved]] = err[improved]
        best_order[pending[improved]] = orders[pending[improved]]
        ok = err <= tol
        met[pending[ok]] = True
        orders[pending[~ok]] += 1
        pending = pending[~ok & (orders[pending] <= limit[pending])]
    final = np.where(met, orders, best_order)
    return final, met, lower, family.model(final)


def _scan_fitted(h: np.ndarray, family, tol: float, norm: str, top: int, first: np.ndarray,
                 peak: np.ndarray | None):
    """`_scan` for a family fitted from another (``family.start``): the start's scan finds an
    order per filter, at which the fit is evaluated (in ``l2`` a fit is never worse than its
    start, so it meets ``tol`` wherever the start does) and from which it descends one order at
    a time while the fit still meets ``tol``: one costly fit per step, a few steps in all. The
    order found is the lowest of that descent (a fit below a failing order is not tried); its
    model is the one fitted there (kept, not fitted again)."""
    orders, _, lower, _ = _scan(h, family.start, tol, norm, top, first, peak)
    f = h.shape[0]
    hsv = family.hsv
    met = np.zeros(f, dtype=bool)
    final = orders.copy()
    width = int(orders.max(initial=0))
    kept = (np.zeros((f, width), dtype=np.complex128), np.zeros((f, width), dtype=np.complex128),
            np.zeros(f), np.zeros(f), np.zeros(f, dtype=np.int64))
    floor = np.maximum(lower, first)
    pending, first_fit = np.arange(f), True
    while pending.size:
        model = family.model(orders[pending], pending)
        err = model_errors(h[pending], *model[:3], orders[pending], hsv[pending], norms=(norm,),
                           peak=None if peak is None else peak[pending])[norm]
        ok = err <= tol
        keep = ok | first_fit  # the start's order: the result where the fit does not meet tol
        for out, part in zip(kept, model):
            if out.ndim == 2:
                out[pending[keep]] = 0
                out[pending[keep], : part.shape[1]] = part[keep]
            else:
                out[pending[keep]] = part[keep]
        met[pending[ok]] = True
        final[pending[ok]] = orders[pending[ok]]
        pending, first_fit = pending[ok & (orders[pending] > floor[pending])], False
        orders[pending] -= 1
    return final, met, lower, kept
