"""Reduction of FIR filters (or dense systems) to stable real modal models: `mor.reduce`.

`reduce` runs in steps: the request checked (`_check_request`, the method's options by
`mor.methods.base.Method.check_options`), the source flattened (`_Source`), the size found
(`_given_order`, `_given_modes` or the tolerance search `_searched`), the failure policy applied
(`_failures`) and the errors reported (`_errors`, with each method's own `bounds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from mor._numerics import freq
from mor.analysis.compare import model_errors
from mor.conventions import (CONVERSION_RTOL, Scale, as_filters, check_norm, check_order,
                             check_tol, relative)
from mor.methods import Method, Models, get_method
from mor.systems.modal import ModalSSM
from mor.systems.statespace import StateSpace

DEFAULT_MAX_ORDER = 64
#: What `reduce` may do with a filter whose model fails (see its ``on_fail``).
ON_FAIL = ("raise", "flag", "best")
#: The errors `reduce` can report.
ERRORS = ("l2", "tail", "hinf", "f32_deviation")
#: A dense system's ``f32_deviation`` is measured over at most this many taps
#: (`statespace_length`).
F32_MAX_LENGTH = 1 << 16
#: The tol search computes the Hankel factorisation for this many orders first.
TOL_FIRST_ORDER = 24
#: A model whose ``hinf`` exceeds both the order-0 model's and balanced truncation's bound
#: by this factor fails (`blown_up`). Measured on Prony, matrix-pencil and Padé models of
#: ``firwin``/``remez`` designs (63 to 511 taps, orders 8 to 64) and trained filters: the
#: poor-but-sound ones reach 500 times those references, the broken ones (resonances within
#: ``1e-9`` of the circle, residues up to ``3e8``) ``1e8`` to ``1e11`` times the filter's peak.
BLOWN_UP_FACTOR = 1e3


def model_orders(models: Models, scale: Scale | None = None) -> np.ndarray:
    """McMillan degree of each model as returned (a live conjugate pair counts 2, a real pole
    1): a method may return fewer poles than asked for (Padé's degree reduction, dropped
    unstable poles, Glover's step where ``sigma_d ~ sigma_{d+1}``). A mode is live where its
    residue, scaled back by ``scale`` (the flat batch's), is not zero (its real part for a
    real pole, as `ModalSSM.from_compact` keeps it)."""
    residues = models.residues
    if scale is not None:  # a residue may underflow to zero at the input's scale
        residues = Scale(scale.exponents.reshape(-1), scale.what).down(residues, degree=-1)
    real = models.poles.imag == 0
    live = np.where(real, residues.real, residues) != 0
    return (live * np.where(real, 1, 2)).sum(axis=1).astype(np.int64)


def reduce(h, order=None, *, modes: int | None = None, tol: float | None = None,
           method: str = "balanced", norm: str = "l2", max_order: int | None = None,
           on_fail: str = "raise", allow_unstable: bool = False,
           errors: tuple[str, ...] = ERRORS,
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
        low-order filter) gets its rank, flagged ``rank_capped`` in ``info``, as does a
        model of lower order than asked for (Padé's degree reduction, dropped poles, Glover's
        step where ``sigma_d ~ sigma_{d+1}``): ``info`` describes the model returned.
    modes : int
        Cap on compact modes (the GPU state size): the largest order whose model has at most
        ``modes`` compact modes (a conjugate pair or a real pole each take one).
    tol : float
        Relative error tolerance in ``norm``: per filter the smallest order whose *achieved*
        error meets it. The search scans orders upward from a proven lower bound (0 for ``l2``;
        for ``hinf`` the first ``d`` with ``sigma_{d+1} <= tol max|H|``, by AAK) up to
        ``max_order``.
    method : str
        A registered method (`mor.methods`), each with its options documented in its own
        ``from_fir``:

        ============  ===================================================================
        ``balanced``  square-root balanced truncation, `mor.methods.balanced.BalancedFamily`
                      (also takes a ``StateSpace``)
        ``hankel``    optimal Hankel-norm approximation,
                      `mor.methods.hankel_norm.HankelNormFamily` (also a ``StateSpace``)
        ``pencil``    matrix pencil, `mor.methods.prony.PencilFamily`
        ``prony``     linear prediction, `mor.methods.prony.PronyFamily`
        ``pade``      robust Padé at infinity, `mor.methods.prony.PadeFamily`
        ``aaa``       AAA on the unit circle, `mor.methods.aaa.AAAFamily`
        ``modal``     variable-projection modal fitting, `mor.methods.modal.ModalFamily`
        ``irka``      discrete-time TF-IRKA, `mor.methods.irka.IrkaFamily`
        ============  ===================================================================

        An option the method does not take is a ``ValueError`` naming the options it takes.
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
    errors : tuple of {"l2", "tail", "hinf", "f32_deviation"}
        The achieved errors to compute and report in ``info`` (all by default; ``hinf`` brings
        the ``aak`` and ``bt_bound`` figures). The ``tol`` search computes its own norm anyway.
        For a ``StateSpace`` only ``hinf`` (with its figures) and ``f32_deviation`` are
        computed: a dense system has no taps to measure ``l2`` and ``tail`` on.

    **method_options
        The chosen method's options (see ``method``).

    Returns
    -------
    ModalSSM
        With ``info`` holding the entries defined in `mor.conventions.INFO`: per filter the
        model's ``order``, the achieved ``l2``, ``tail`` and ``hinf`` errors with ``peak``,
        ``aak`` (``sigma_{d+1}/max|H|``) and ``bt_bound`` (``2 sum_{i>d} sigma_i / max|H|``),
        ``f32_deviation`` (what the model loses run in float32 as inference engines run it,
        `ModalSSM.float32_deviation`, over the ``L`` taps; for a ``StateSpace`` over
        `statespace_length` taps; a failed filter's is its order-0 model's, as its ``l2``),
        ``failed``, ``reason``, ``conversion_error``, ``poles_touched``, ``met_tol`` and
        ``search_start`` (``tol``) or ``rank_capped`` (``order``, ``modes``), what the method
        adds (``"hankel"``: ``truncation_tail``, ``glover_bound``; ``"modal"``, ``"irka"``:
        ``iterations``, ``converged``; ``"modal"`` with ``init="homotopy"``:
        ``homotopy_extra``); and ``method``, ``method_options`` and ``search``.

    Raises
    ------
    ValueError
        For invalid filters (NaN or Inf taps name the filter), orders, tolerances, methods or
        options, and, with ``on_fail="raise"``, for filters whose model fails (the first five
        named with their reasons).

    See Also
    --------
    mor.select_order : the orders a tolerance needs, without the models.
    mor.distill : every filter of a model, in parallel, with a report.
    mor.compare : the same errors for any model.

    Notes
    -----
    Every method returns a stable real model whose ``hinf`` error is at least the AAK bound
    ``sigma_{d+1}`` [1]_; balanced truncation [2]_ [3]_ guarantees at most ``2 sum_{i>d}
    sigma_i``, optimal Hankel-norm approximation [1]_ [4]_ reaches ``sigma_{d+1}`` in the
    Hankel norm. A model whose diagonalisation loses more than ``1e-6`` (relative) of its
    Markov parameters (near-defective poles) fails like an unstable one, as does a model whose
    method could not build it (the method's reason) and one whose ``hinf`` (when reported) is
    more than `BLOWN_UP_FACTOR` times both the order-0 model's bound and balanced
    truncation's guarantee (`blown_up`). ``info`` describes the model returned: its order
    (``rank_capped`` where it is below the one asked for) and the bounds at that order.

    References
    ----------
    .. [1] V. M. Adamjan, D. Z. Arov and M. G. Krein, "Analytic properties of Schmidt pairs for
       a Hankel operator and the generalized Schur-Takagi problem", *Math. USSR Sbornik* 15,
       1971.
    .. [2] S.-Y. Kung, "A new identification and model reduction algorithm via singular value
       decomposition", *12th Asilomar Conf. on Circuits, Systems and Computers*, 1978.
    .. [3] U. M. Al-Saggaf and G. F. Franklin, "Model reduction via balanced realizations: an
       extension and frequency weighting techniques", *IEEE Trans. Automat. Control* 33(7),
       1988.
    .. [4] K. Glover, "All optimal Hankel-norm approximations of linear multivariable systems
       and their L-infinity error bounds", *Int. J. Control* 39(6), 1984.

    Examples
    --------
    A filter of order 3 (a damped cosine and a real mode) is recovered at order 3; at order 2
    the ``hinf`` error lies between the AAK bound and balanced truncation's:

    >>> import numpy as np
    >>> import mor
    >>> k = np.arange(200)
    >>> h = 0.9**k * np.cos(0.4 * k) + 0.5 * 0.6**k
    >>> exact = mor.reduce(h, 3)
    >>> print(exact.order, exact.modes, bool(exact.info["l2"] < 1e-10))
    3 2 True
    >>> print(sorted(f"{abs(p):.6f} at {np.angle(p):.6f}" for p in exact.compact()[0]))
    ['0.600000 at 0.000000', '0.900000 at 0.400000']
    >>> fit = mor.reduce(h, 2)
    >>> info = fit.info
    >>> print(f"aak {info['aak']:.3f} <= hinf {info['hinf']:.3f} <= bt {info['bt_bound']:.3f}")
    aak 0.024 <= hinf 0.040 <= bt 0.049

    The smallest order that meets a tolerance, and an option the method does not take:

    >>> print(mor.reduce(h, tol=1e-3, norm="hinf", method="hankel").order)
    3
    >>> mor.reduce(h, 2, method="prony", dc_match=True)
    Traceback (most recent call last):
    ...
    ValueError: method 'prony' does not take 'dc_match'; it takes: unstable, tail_weight
    """
    _check_request(order, modes, tol, on_fail, errors)
    norm = check_norm(norm)
    family_of = get_method(method)
    source = _Source.of(h, family_of, method_options, tol)
    info: dict[str, Any] = {"method": method, "method_options": dict(method_options)}
    if order is not None:
        sized = _given_order(source, order)
    elif modes is not None:
        sized = _given_modes(source, modes)
    else:
        sized = _searched(source, tol, norm, max_order, method)
    info["search"] = sized.search
    models = sized.models
    # what the models returned are, whatever the method was asked for
    orders = model_orders(models, source.scale)
    achieved = _errors(source, sized.groups, models, orders, errors)
    failed, reason = _failures(source, sized, on_fail, allow_unstable, achieved)
    if failed.any():
        models.poles[failed], models.residues[failed] = 0, 0
        models.direct[failed] = source.own_direct[failed]
        models.conversion_error[failed] = 0.0
        orders = np.where(failed, 0, orders)
        redone = _errors(source, sized.groups, models, orders, errors, failed)
        for key, value in redone.items():
            achieved[key][failed] = value[failed]
    batch = source.batch
    for key, value in achieved.items():
        info[key] = value.reshape(batch)
    info["conversion_error"] = models.conversion_error.reshape(batch)
    info["poles_touched"] = models.poles_touched.reshape(batch)
    for key, value in models.diagnostics.items():
        info[key] = value.reshape(batch)
    info["failed"] = failed.reshape(batch)
    info["reason"] = reason.reshape(batch)
    if sized.met is None:
        info["rank_capped"] = ((orders < sized.requested) & ~failed).reshape(batch)
    else:
        info["met_tol"] = (sized.met & ~failed).reshape(batch)
        info["search_start"] = sized.search_start.reshape(batch)
    m = models.width
    scale = source.scale
    if "peak" in info:
        info["peak"] = scale.up(info["peak"], name="the peak |H|")
    return ModalSSM.from_compact(models.poles.reshape(batch + (m,)),
                                 scale.up(models.residues.reshape(batch + (m,)),
                                          name="a residue"),
                                 scale.up(models.direct.reshape(batch), name="the direct term"),
                                 info=info)


def _check_request(order, modes, tol, on_fail: str, errors) -> None:
    """The size (exactly one of ``order``, ``modes``, ``tol``), failure policy and errors."""
    unknown = set(errors) - set(ERRORS)
    if unknown:
        raise ValueError(f"errors must name {', '.join(map(repr, ERRORS))}, got "
                         f"{sorted(unknown)}")
    if on_fail not in ON_FAIL:
        raise ValueError(f"on_fail must be one of {ON_FAIL}, got {on_fail!r}")
    given = [name for name, v in (("order", order), ("modes", modes), ("tol", tol))
             if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of order, modes and tol (got {given or 'none'})")


@dataclass
class _Source:
    """What is being reduced, flattened to a batch of ``count`` filters or systems, each divided
    by a power of two (`mor.conventions.Scale`: the reduction works on scale-free data and its
    results are scaled back exactly), and how the method builds its families of it."""

    flat: np.ndarray | StateSpace
    batch: tuple[int, ...]
    size: int  # L - 1 (filters) or the number of states
    own_direct: np.ndarray
    build: Callable[..., Method]
    options: dict[str, Any]
    scale: Scale

    @classmethod
    def of(cls, h, family_of: type[Method], options: dict[str, Any], tol) -> "_Source":
        if isinstance(h, StateSpace):
            if not family_of.takes_statespace:
                raise ValueError(f"method {family_of.name!r} takes FIR filters; for a StateSpace "
                                 f"use 'balanced' or 'hankel'")
            if tol is not None:
                raise ValueError("tol needs FIR filters (its errors are defined on the taps); "
                                 "give order or modes for a StateSpace")
            family_of.check_options(options, statespace=True)
            size = h.n_states
            b, c = h.b.reshape(-1, size), h.c.reshape(-1, size)
            # H = D + C (zI - A)^-1 B scales with B and C: each is brought to [1/2, 1)
            sb = Scale.of(np.abs(b).max(axis=-1, initial=0.0))
            sc = Scale.of(np.abs(c).max(axis=-1, initial=0.0))
            scale = Scale(sb.exponents + sc.exponents, "system")
            flat = StateSpace(h.a.reshape((-1, size, size)), sb.down(b), sc.down(c),
                              scale.down(h.d.reshape(-1)))
            return cls(flat, h.shape, size, flat.d, family_of.from_statespace, options,
                       Scale(scale.exponents.reshape(h.shape), "system"))
        family_of.check_options(options)
        h = as_filters(h)
        size = h.shape[-1] - 1
        scale = Scale.of_filters(h)
        flat = scale.down(h).reshape(-1, size + 1)
        return cls(flat, h.shape[:-1], size, flat[:, 0], family_of.from_fir, options, scale)

    @property
    def count(self) -> int:
        return int(np.prod(self.batch, dtype=np.int64))

    @property
    def is_system(self) -> bool:
        return isinstance(self.flat, StateSpace)

    def family(self, rows: np.ndarray | None, max_order: int) -> Method:
        flat = self.flat if rows is None else self.flat[rows]
        return self.build(flat, max_order, **self.options)


@dataclass
class _Sized:
    """The models of the size step: orders and models per filter, the families they came from
    (``(indices, family, rows in the family)``), and with ``tol`` whether each met it."""

    orders: np.ndarray
    models: Models
    groups: list[tuple[np.ndarray, Method, np.ndarray]]
    requested: np.ndarray
    search: str
    met: np.ndarray | None = None
    search_start: np.ndarray | None = None
    unmet: str = ""  # the reason given to a filter that misses the tolerance


def _given_order(source: _Source, order) -> _Sized:
    everyone = np.arange(source.count)
    requested = np.broadcast_to(check_order(order, source.size + 1), source.batch).reshape(-1)
    family = source.family(None, int(requested.max(initial=0)))
    orders = np.minimum(requested, family.rank)
    return _Sized(orders, family.model(orders), [(everyone, family, everyone)], requested,
                  "order given")


def _given_modes(source: _Source, modes) -> _Sized:
    everyone = np.arange(source.count)
    modes = int(check_order(modes, source.size + 1, "modes"))
    cap = min(source.size, 2 * modes)
    family = source.family(None, cap)
    requested = np.minimum(np.full(source.count, cap), family.rank)
    orders, models = _largest_within_modes(family, requested, modes)
    return _Sized(orders, models, [(everyone, family, everyone)], requested,
                  f"largest order <= {cap} with at most {modes} modes")


def _searched(source: _Source, tol, norm: str, max_order, method: str) -> _Sized:
    tol = check_tol(tol)
    top = min(source.size, DEFAULT_MAX_ORDER) if max_order is None else int(
        check_order(max_order, source.size + 1, "max_order"))
    orders, models, met, start, groups = _tol_search(source, tol, norm, top)
    search = (f"orders scanned upward from a proven lower bound "
              f"({'AAK' if norm == 'hinf' else 'zero'}) to {top}, the Hankel factorisation "
              f"computed for {TOL_FIRST_ORDER} orders first and doubled for the filters that "
              f"need more")
    first = groups[0][1].start
    if first is not None:
        search += (f"; on the {first.name or 'start'} models, then the {method} fit downward "
                   f"from the order found while it meets the tolerance")
    return _Sized(orders, models, groups, orders, search, met, start,
                  f"no order <= {top} meets {norm} <= {tol:g}")


def _failures(source: _Source, sized: _Sized, on_fail: str, allow_unstable: bool,
              achieved: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per filter whether its model fails and why; raises for ``on_fail="raise"``.

    A model fails where its method could not build it (the method's reason), where its modal
    form is inaccurate (near-defective poles), where a pole lies on or outside the unit
    circle, and where its ``hinf`` error (when reported) is `BLOWN_UP_FACTOR` times both what
    the order-0 model a failed filter gets can have and balanced truncation's guarantee at its
    order (`blown_up`).
    """
    count, models = source.count, sized.models
    reason = np.full(count, "", dtype=object)
    if sized.met is not None:
        reason[~sized.met] = sized.unmet
    why = models.reasons
    own = why != ""  # the method's own reason comes first (an unmet tolerance's included)
    reason[own] = why[own]
    lost = models.conversion_error
    inaccurate = (lost > CONVERSION_RTOL) & (reason == "") & (sized.met is None)
    for i in np.flatnonzero(inaccurate):
        reason[i] = (f"near-defective poles: the modal form is off by {lost[i]:.1e} (relative) "
                     f"on the Markov parameters; try a lower order")
    unstable = np.zeros(count, dtype=bool) if allow_unstable else ~ModalSSM.from_compact(
        models.poles, models.residues, models.direct).is_stable()
    reason[unstable & (reason == "")] = "a pole on or outside the unit circle"
    blown = blown_up(achieved, source.own_direct) & ~own & ~unstable
    for i in np.flatnonzero(blown & ((reason == "") | (reason == sized.unmet))):
        live = models.residues[i] != 0
        closest = (1 - np.abs(models.poles[i][live])).min(initial=np.inf)
        reason[i] = (f"hinf error {achieved['hinf'][i]:.3g} (relative to max |H|) is more than "
                     f"{BLOWN_UP_FACTOR:g} times both the order-0 model's bound "
                     f"{1 + abs(source.own_direct[i]) / achieved['peak'][i]:.3g} and balanced "
                     f"truncation's {achieved['bt_bound'][i]:.3g} at order "
                     f"{achieved['order'][i]}: a resonance the filter does not have (a pole "
                     f"{closest:.1e} inside the unit circle, residues up to "
                     f"{np.abs(models.residues[i]).max(initial=0.0) / achieved['peak'][i]:.1e}"
                     f" max |H|)")
    failed = reason != ""
    if on_fail == "best" and sized.met is not None:
        # an unmet tolerance keeps its best stable model, not one that is broken
        failed &= sized.met | unstable | own | blown
    if failed.any() and on_fail == "raise":
        bad = np.flatnonzero(failed)
        where = "; ".join(f"filter {tuple(int(j) for j in np.unravel_index(i, source.batch))}: "
                          f"{reason[i]}" for i in bad[:5])
        raise ValueError(f"{bad.size} filter(s) failed ({where}{'; ...' if bad.size > 5 else ''})"
                         "; pass on_fail='flag' to keep going")
    return failed, reason


def blown_up(achieved: dict[str, np.ndarray], own_direct: np.ndarray) -> np.ndarray:
    """Where a model's ``hinf`` error says it is broken (``False`` where ``hinf`` is not
    reported or is infinite: a pole on or outside the circle is judged apart).

    Two references bound what a sane model of order ``d`` may cost: the order-0 model (the
    direct term ``h[0]`` alone, what a failed filter gets) has
    ``hinf <= 1 + |h[0]| / max|H|``, and balanced truncation guarantees
    ``hinf <= bt_bound = 2 sum_{i>d} sigma_i / max|H|`` at the same order. A model above the
    larger of the two by the factor `BLOWN_UP_FACTOR` is worse than dropping every mode by
    orders of magnitude, beyond anything a guaranteed method returns: its response has a
    resonance the filter does not have (typically poles within ``1e-9`` of the circle with
    residues that cancel on the taps, so that ``l2`` over the taps may still look fine).
    """
    if "hinf" not in achieved or "bt_bound" not in achieved:
        return np.zeros(own_direct.shape[0], dtype=bool)
    peak, hinf = achieved["peak"], achieved["hinf"]
    trivial = 1.0 + np.divide(np.abs(own_direct), peak, out=np.zeros(peak.shape),
                              where=peak > 0)
    limit = BLOWN_UP_FACTOR * np.maximum(trivial, achieved["bt_bound"])
    return np.isfinite(hinf) & (hinf > limit)


def _errors(source: _Source, groups, models: Models, orders: np.ndarray, errors,
            rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The achieved errors, the AAK and BT figures and the method's own bounds per filter
    (only for the filters where the mask ``rows`` holds, when given; the others are zero)."""
    achieved: dict[str, np.ndarray] = {}
    for idx, family, local in groups:
        if rows is not None:
            idx, local = idx[rows[idx]], local[rows[idx]]
            if idx.size == 0:
                continue
        part = models.take(idx)
        if source.is_system:
            sys = source.flat
            got = _system_errors(StateSpace(sys.a[idx], sys.b[idx], sys.c[idx], sys.d[idx]),
                                 family.hsv[local], part, orders[idx], errors,
                                 family.response(local))
        else:
            hsv = family.hsv[local] if "hinf" in errors else None  # AAK and BT figures only
            got = model_errors(source.flat[idx], part.poles, part.residues, part.direct,
                               orders[idx], hsv, errors)
        got |= family.bounds(got, local, part)
        for key, value in got.items():
            achieved.setdefault(key, np.zeros(source.count, dtype=value.dtype))[idx] = value
    return achieved


def _system_errors(sys: StateSpace, hsv: np.ndarray, model: Models, orders, errors,
                   full=None) -> dict[str, np.ndarray]:
    """``hinf`` of reduced dense systems, with the exact AAK and BT bounds from their whole
    Hankel spectra ``hsv``, and ``f32_deviation`` over `statespace_length` taps; ``full`` is
    their frequency response where the family has it (`Method.response`)."""
    out = {"order": orders.copy()}
    if "f32_deviation" in errors:
        out["f32_deviation"] = np.zeros(orders.size)
        lengths = statespace_length(sys)
        for length in np.unique(lengths):
            at = lengths == length
            out["f32_deviation"][at] = ModalSSM.from_compact(
                model.poles[at], model.residues[at], model.direct[at]
            ).float32_deviation(int(length))
    if "hinf" not in errors:
        return out
    if full is None:
        full = freq.DenseResponse(sys.a, sys.b, sys.c, sys.d)
    peak = freq.peak_magnitude(full)[0]
    reduced = freq.ModalResponse(model.poles, model.residues, model.direct)
    err = freq.peak_magnitude(freq.Difference(full, reduced))[0]
    hsv = np.concatenate([hsv, np.zeros((orders.size, 1))], axis=1)
    tail = np.cumsum(hsv[:, ::-1], axis=1)[:, ::-1]
    idx = np.minimum(orders, hsv.shape[1] - 1)[:, None]
    return out | {"peak": peak, "hinf": relative(err, peak),
                  "aak": relative(np.take_along_axis(hsv, idx, 1)[:, 0], peak),
                  "bt_bound": relative(2 * np.take_along_axis(tail, idx, 1)[:, 0], peak)}


def statespace_length(sys: StateSpace) -> np.ndarray:
    """The taps over which the float32 deviation of a dense system's model is measured (per
    system of a flat batch): a system has no length ``L`` of its own, so this is its response's
    duration, the number of states plus one (the taps of an FIR filter's shift realisation,
    whose reduction then reports what the filter's does) or the steps its slowest pole takes
    to decay below float32's epsilon, ``log(eps_32) / log(rho(A))``, whichever is longer;
    at most `F32_MAX_LENGTH` (also where ``rho(A) >= 1``). The deviation's largest terms
    (``k |lambda|^k`` at ``k ~ 1 / (1 - |lambda|)``) lie well within it."""
    count, n = sys.a.shape[0], sys.a.shape[-1]
    if n == 0:
        return np.ones(count, dtype=np.int64)
    with np.errstate(all="ignore"):
        try:
            rho = np.abs(np.linalg.eigvals(sys.a)).max(axis=-1)
        except np.linalg.LinAlgError:  # no convergence: the longest
            rho = np.ones(count)
        steps = np.where(rho < 1, np.log(np.finfo(np.float32).eps) / np.log(rho), np.inf)
    steps = np.where(np.isfinite(steps), np.ceil(steps), F32_MAX_LENGTH)
    return np.clip(np.maximum(steps, n + 1), 1, F32_MAX_LENGTH).astype(np.int64)


def _largest_within_modes(family: Method, cap: np.ndarray, modes: int
                          ) -> tuple[np.ndarray, Models]:
    """Per filter the largest order ``<= cap`` whose model has at most ``modes`` compact modes.

    A family fitted from another (``family.start``) keeps its start's modes: the orders are
    searched on the start first, so that the costly fit normally runs once."""
    orders = cap.copy() if family.start is None else \
        _largest_within_modes(family.start, cap, modes)[0]
    pending = np.arange(cap.size)
    width = max(modes, 1)
    out = Models.empty(cap.size, width, family.d)
    while pending.size:
        part = family.model(orders[pending], pending)
        fits = (part.residues != 0).sum(axis=1) <= modes
        k = min(part.width, width)
        done = part.take(fits)
        out.put(pending[fits], Models(done.poles[:, :k], done.residues[:, :k], done.direct,
                                      done.conversion_error, done.poles_touched,
                                      done.diagnostics, done.reason))
        pending = pending[~fits]
        orders[pending] -= 1
    return orders, out


def _tol_search(source: _Source, tol: float, norm: str, top: int):
    """Per filter the smallest order ``<= top`` whose achieved ``norm`` error is ``<= tol``.

    The Hankel factorisation is computed for `TOL_FIRST_ORDER` orders first and, for the
    filters whose scan runs past it, again with twice as many, until ``top``: the search costs
    little more than one reduction at the orders it finds. Returns the orders, the `Models`,
    ``met``, the scan's proven start and the groups ``(indices, family, rows in the family)``
    the models came from.
    """
    flat, f = source.flat, source.count
    orders = np.zeros(f, dtype=np.int64)
    met = np.zeros(f, dtype=bool)
    start = np.zeros(f, dtype=np.int64)
    first = np.zeros(f, dtype=np.int64)
    peak = freq.peak_magnitude(freq.FirResponse(flat))[0] if norm == "hinf" else None
    parts, groups = [], []
    pending, k = np.arange(f), min(top, TOL_FIRST_ORDER)
    while pending.size:
        family = source.family(pending, k)
        sub_peak = None if peak is None else peak[pending]
        o, ok, lower, model = _scan(flat[pending], family, tol, norm, k, first[pending],
                                    sub_peak)
        start[pending] = lower
        more = ~ok & (np.minimum(family.rank, k) == k) & (k < top)
        done = ~more
        orders[pending[done]], met[pending[done]] = o[done], ok[done]
        parts.append((pending[done], model.take(done)))
        groups.append((pending[done], family, np.flatnonzero(done)))
        first[pending[more]] = np.maximum(lower[more], k + 1)
        pending, k = pending[more], min(top, 2 * k)
    return orders, Models.stack(f, parts), met, start, groups


def _scan(h: np.ndarray, family: Method, tol: float, norm: str, top: int, first: np.ndarray,
          peak: np.ndarray | None):
    """Scan orders upward from ``max(first, AAK start)`` to ``min(top, rank)`` per filter."""
    if family.start is not None:
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
        part = family.model(orders[pending], pending)
        err = model_errors(h[pending], part.poles, part.residues, part.direct, orders[pending],
                           hsv[pending], norms=(norm,),
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


def _scan_fitted(h: np.ndarray, family: Method, tol: float, norm: str, top: int,
                 first: np.ndarray, peak: np.ndarray | None):
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
    kept = Models.empty(f, int(orders.max(initial=0)), np.zeros(f))
    floor = np.maximum(lower, first)
    pending, first_fit = np.arange(f), True
    while pending.size:
        part = family.model(orders[pending], pending)
        err = model_errors(h[pending], part.poles, part.residues, part.direct, orders[pending],
                           hsv[pending], norms=(norm,),
                           peak=None if peak is None else peak[pending])[norm]
        ok = err <= tol
        keep = ok | first_fit  # the start's order: the result where the fit does not meet tol
        kept.put(pending[keep], part.take(keep))
        met[pending[ok]] = True
        final[pending[ok]] = orders[pending[ok]]
        pending, first_fit = pending[ok & (orders[pending] > floor[pending])], False
        orders[pending] -= 1
    return final, met, lower, kept
