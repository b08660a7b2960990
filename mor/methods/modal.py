r"""Modal fitting by variable projection: poles optimised for the ``l2`` error over the taps.

For fixed poles the best residues are a linear least-squares solution; variable projection
eliminates them and minimises

.. math::

    \phi(\lambda) = \big\| h[1:] - V(\lambda) R^*(\lambda) \big\|_2^2 + t\, \|\hat h[L:]\|_2^2,
    \qquad R^*(\lambda) = \arg\min_R \| h[1:] - V(\lambda) R \|_2,

over the poles alone, by Levenberg-Marquardt (`mor._numerics.lm`) with the exact Golub-Pereyra normal
equations (`mor.fitting.varpro`), batched over the filters of one structure (how many pairs and
real poles) and run on worker threads (`mor._numerics.parallel`). The poles are parameterised so that every
iterate is stable and the model real: a pair ``lambda = rho sigmoid(a) e^{i b}`` (the conjugate
implied), a real pole ``lambda = rho tanh(c)``, with ``rho = 1 - 1e-9``; the structure comes from
the initial model, which any other method provides at the same order (``init="balanced"`` by
default) or the caller (``init=ModalSSM``). The direct term is ``h[0]`` exactly. Each trial point
costs ``O(L m + m^3)`` per filter (closed-form Gram sums, `mor.fitting._varpro_kernels`); ``max_iter``
bounds the trial points per stage (below). On the 1024 shared trained filters (``L = 2048``) a
fit at 16 modes costs about 17 CPU seconds, 9.5 s of wall time on two cores (32 modes: 58 CPU s,
33 s; ``benchmarks/bench_modal.py``, ``benchmarks/RESULTS.md``). With ``tol``
the order is searched on the start's models and the fit descends from the order found
(`mor.drivers.reduction`).

This targets the ``l2`` error over the ``L`` taps (the lags a language model uses), which balanced
truncation and Hankel-norm approximation do not. Fitting the taps alone lets poles crowd the circle
with large residues that cancel inside the window and explode after it, so the tail energy
``||h_hat[L:]||^2`` enters the objective with the weight ``t = tail_weight``. With
``limit_tail=True`` (default) the tail is moreover held to at most that of the start (its poles
with least-squares residues; up to ``1e-9 ||h||``) by a penalty continuation: a filter whose fit
ends above it is fitted again from where it ended with ``sqrt(10)`` times the weight (from at least
``1e-2``), up to ``tail_stages`` stages, and the last fit within the limit is kept. A fit is kept
only where its ``l2`` (in the weighted loss with a ``weight``) is at most the start's: the result
is never worse than its initialisation, and the start is returned where no stage qualifies.
Residues that cancel across poles near the circle may fit the taps in float64 and lose the
response in the float32 arithmetic inference engines run (`ModalSSM.float32_deviation`), so a
stage is also not kept where its float32 deviation exceeds the larger of `F32_RTOL` and its
start's (`mor.methods.base.F32_RTOL`; on the shared filters, 9 of 1024 16-mode fits reached
1e-4 to 5e-2 without it): the fits stay as safe in float32 as the balanced truncations they start
from.
``tail`` and ``hinf`` are reported beside ``l2``.

With ``real_poles=True`` every mode is one real pole ``lambda = a + (rho - a) sigmoid(c)`` in
``(a, rho)``, ``a = 1e-2`` (`mor.fitting.varpro.POSITIVE_FLOOR`: Vortex holds ``R / lambda``;
``log lambda`` to full relative accuracy near 1), the models Vortex's Hyena-LI layer runs
(`mor.export.to_vortex_state_dict`); ``modes=m`` then counts real poles (order ``m``).
Balanced truncation's poles are complex in general, so these fits start from `RealPoleStart`:
real poles chosen greedily (orthogonal least squares, then swaps) from a dense log-spaced
dictionary and the real positive poles of the filter's balanced truncations
(`mor.fitting.real_poles`), with least-squares residues; or from a given real-pole model
(``init=ModalSSM``, e.g. an Evo 2 layer with 16 real modes per channel read by
`mor.export.from_vortex_state_dict`, refined in place). The selection never lets residues cancel
beyond a bound, so a filter may get fewer real poles than asked for (``rank_capped``; about 10
to 15 at ``L = 2048``). The order search of ``tol`` runs on the greedy start's models. The AAK
bound beside ``hinf`` is for any model of the order, complex poles allowed: real-pole models sit
above it, far above on oscillating filters (Evo 2-style layers of 16 real poles reduced to 8:
``hinf`` a median 5 times the bound; `benchmarks/RESULTS.md`).
"""

from __future__ import annotations

import numpy as np
import scipy.signal

from dataclasses import dataclass

from mor._numerics.lm import levenberg_marquardt
from mor._numerics.parallel import map_chunks
from mor.fitting.least_squares import fit_residues
from mor.fitting.real_poles import RealPoleSelection
from mor.fitting.varpro import ModalProjection
from mor.methods.base import F32_RTOL, PoleMethod, get_method, register
from mor.systems.modal import ModalSSM

#: Filters fitted together in one batched Levenberg-Marquardt run: as many as keep about this
#: many bytes of working arrays per batch (the closed-form sums, ``96 m^2`` bytes per filter
#: of ``m`` modes; with a weight the explicit design, ``8 (L - 1) d`` for ``d`` real poles),
#: and at most `MAX_CHUNK`: large batches spread the per-iteration Python work (4 modes:
#: 64 filters per batch 1.5x faster than 16), batches in cache the rest (32 modes: 21).
CHUNK_BYTES = 2**21
MAX_CHUNK = 64
#: Fits whose design (column-scaled, at the start or the end) is conditioned beyond this are
#: checked with the residues of `fit_residues`; below it the two least-squares solutions
#: agree to about ``cond * eps`` and the projection's verdict stands.
CHECK_COND = 1e6
#: Slack of the tail hold and of the never-worse checks, relative (and times ``||h||``,
#: absolute): a fit may match its start's tail and error to rounding.
HOLD_RTOL = 1e-9


@dataclass(frozen=True)
class _Settings:
    """How a modal fit runs (the options of `ModalFamily.from_fir`)."""

    max_iter: int
    tail_weight: float
    limit_tail: bool
    tail_stages: int
    tail_growth: float
    tail_floor: float
    weight: np.ndarray | None
    positive: bool = False  # real poles in (0, 1) only (``real_poles``)


class RealPoleStart(PoleMethod):
    """The start of real-pole fits: real poles in ``(0, 1)`` chosen greedily
    (`mor.fitting.real_poles`: one selection path per filter, whose first ``d`` poles, refined
    by swaps, are the order-``d`` model) from a dense log-spaced dictionary and the real
    positive poles of the filter's balanced truncations of orders up to `HARVEST_ORDERS`, with
    least-squares residues. On a filter made of ``d`` real exponentials with positive poles
    balanced truncation of order ``d`` is exact and its poles are among the candidates. Not
    registered: it is what ``method="modal", real_poles=True`` starts from."""

    name = "greedy real-pole"

    @classmethod
    def from_fir(cls, h: np.ndarray, max_order: int, *, weight=None) -> "RealPoleStart":
        balanced = get_method("balanced").from_fir(h, max_order)
        found: dict = {}  # the selection, its paths and the harvest, made when first asked

        def find_poles(order, rows):
            if not found:
                top = min(max_order, HARVEST_ORDERS)
                extra, blocks = _real_candidates(balanced, top)
                found["selection"] = selection = RealPoleSelection(h, extra)
                found["path"] = selection.path(max_order)
                found["blocks"] = {o: b + selection.poles.shape[1] - extra.shape[1]
                                   for o, b in blocks.items()}
            selection = found["selection"]
            idx = selection.refine(found["path"][rows, :order], rows)
            if order in found["blocks"]:  # balanced truncation's real poles first
                if ("seeded", order) not in found:
                    found["seeded", order] = selection.path(
                        order, _seed(selection, found["blocks"][order]))
                other = selection.refine(found["seeded", order][rows], rows)
                better = ((other >= 0).sum(axis=1) >= (idx >= 0).sum(axis=1)) \
                    & (selection.explained(other, rows) > selection.explained(idx, rows))
                idx[better] = other[better]
            return selection.chosen_poles(idx, rows) + 0j, {}

        return cls(h, max_order, "reflect", find_poles, hsv=balanced.hsv,
                   weight_filter=weight)


#: `RealPoleStart` takes the real positive poles of balanced truncations of orders 1 to this.
HARVEST_ORDERS = 24


def _real_candidates(balanced, top: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The live real poles in ``(0, 1)`` of ``balanced``'s models of orders ``1..top`` per
    filter, ``(F, E)`` (NaN elsewhere), and per order the columns that hold its model."""
    count = balanced.d.shape[0]
    parts, blocks, start = [], {}, 0
    for order in range(1, top + 1):
        models = balanced.model(np.minimum(np.full(count, order), balanced.rank))
        p = models.poles
        keep = (models.residues != 0) & (p.imag == 0) & (p.real > 0) & (p.real < 1)
        parts.append(np.where(keep, p.real, np.nan))
        blocks[order] = np.arange(start, start + p.shape[1])
        start += p.shape[1]
    if not parts:
        return np.zeros((count, 0)), {}
    return np.concatenate(parts, axis=1), blocks


def _seed(selection: RealPoleSelection, columns: np.ndarray) -> np.ndarray:
    """The valid candidates among ``columns`` per filter, ``-1``-padded at the end."""
    valid = selection.valid[:, columns]
    order = np.argsort(~valid, axis=1, kind="stable")
    return np.where(np.take_along_axis(valid, order, 1), columns[order], -1)


@register
class ModalFamily(PoleMethod):
    """Variable-projection modal fits, started from another method's models."""

    name = "modal"

    @classmethod
    def from_fir(cls, h: np.ndarray, max_order: int, *, init: str | ModalSSM | None = None,
                 init_options: dict | None = None, max_iter: int = 15, tail_weight: float = 0.1,
                 limit_tail: bool = True, tail_stages: int = 6, tail_growth: float = 10 ** 0.5,
                 tail_floor: float = 1e-2, weight=None, real_poles: bool = False
                 ) -> "ModalFamily":
        r"""Modal fits of flat FIR filters ``h`` ``(F, L)`` up to ``max_order``.

        Parameters
        ----------
        h : ndarray ``(F, L)``
            The filters.
        max_order : int
            Largest order asked for.
        init : str or ModalSSM, optional
            Where the poles start: a registered method's name (``"balanced"`` by default; not
            ``"modal"``), whose models of the same order give the structure (pairs and real
            poles), or a stable `mor.ModalSSM` per filter (then ``order`` in `mor.reduce` must
            be each model's order). With ``real_poles`` only ``None`` (the greedy real-pole
            start, `RealPoleStart`) or a `mor.ModalSSM` whose poles are all real in ``(0, 1)``
            (e.g. a layer read by `mor.export.from_vortex_state_dict`; a pole below ``1e-2``
            starts at ``1e-2``); a method's name is a ``ValueError`` (balanced truncation's
            poles are complex in general, and they are never cast).
        init_options : dict, optional
            Options of the ``init`` method (checked against it).
        max_iter : int
            Levenberg-Marquardt trial points per continuation stage (15).
        tail_weight : float
            Weight ``t >= 0`` of the tail energy ``||h_hat[L:]||^2`` in the objective (0.1).
        limit_tail : bool
            Hold the tail to at most the start's by the penalty continuation (module notes).
        tail_stages : int
            Stages of that continuation (at least 1; 6).
        tail_growth : float
            Growth of the tail weight per stage (``> 1``; ``sqrt(10)``).
        tail_floor : float
            Smallest tail weight the continuation grows from (``> 0``; ``1e-2``).
        weight : array_like, optional
            FIR taps ``w`` of a frequency weight: poles and residues then minimise
            ``||w * (h - h_hat)||`` over the window (the error spectrum weighted by
            ``|W(e^{iw})|^2``).
        real_poles : bool
            Real poles in ``(0, 1)`` only (``[1e-2, 1)``), the models Vortex's Hyena-LI layer
            runs (``h[t] = sum R exp(t log_pole)``, `mor.export.to_vortex_state_dict`): every
            mode is one real pole (module notes), so ``modes=m`` in `mor.reduce` asks for ``m``
            real poles and the order equals the modes (a filter may get fewer: the start never
            lets residues cancel beyond a bound). The fit starts from `RealPoleStart` (or a
            given real-pole ``init``) and is refined as any other (tail hold, never worse than
            its start, float32 guard). The AAK bound ``sigma_{d+1}`` beside ``hinf`` holds for
            every order-``d`` model, complex poles allowed: a real-pole model may sit well above
            it (a filter that oscillates needs complex poles), as expected, not a failure of the
            fit.

        Notes
        -----
        ``info`` reports per filter ``iterations`` (trial points over all stages) and
        ``converged`` (the last stage run stopped by its convergence test, not by
        ``max_iter``).
        """
        if weight is not None:
            weight = np.asarray(weight, dtype=np.float64)
            if weight.ndim != 1 or weight.size == 0 or not np.isfinite(weight).all():
                raise ValueError(f"weight must be finite 1-D FIR taps, got shape {weight.shape}")
        if int(max_iter) < 0 or int(tail_stages) < 1:
            raise ValueError(f"max_iter must be >= 0 and tail_stages >= 1, got {max_iter} and "
                             f"{tail_stages}")
        if not (tail_weight >= 0 and tail_growth > 1 and tail_floor > 0):
            raise ValueError(f"need tail_weight >= 0, tail_growth > 1 and tail_floor > 0, got "
                             f"{tail_weight}, {tail_growth} and {tail_floor}")
        fit = _Settings(int(max_iter), float(tail_weight), bool(limit_tail), int(tail_stages),
                        float(tail_growth), float(tail_floor), weight, bool(real_poles))
        if isinstance(init, ModalSSM):
            if init_options:
                raise ValueError("init_options apply to an init method, not to given models")
            return cls._from_models(h, max_order, init, fit)
        if real_poles:
            if init is not None:
                raise ValueError(f"real_poles=True starts from its own real-pole fit (init=None)"
                                 f" or from a ModalSSM with real poles in (0, 1), not from "
                                 f"init={init!r}, whose poles are complex in general")
            if init_options:
                raise ValueError("init_options apply to an init method; real_poles=True starts "
                                 "from its own real-pole fit")
            start = RealPoleStart.from_fir(h, max_order, weight=weight)
        else:
            init = "balanced" if init is None else init
            if init == "modal":
                raise ValueError("init must be a ModalSSM or another method than 'modal'")
            try:
                starter = get_method(init)
            except ValueError as exc:
                raise ValueError(f"init: {exc}") from None
            starter.check_options(init_options or {})
            start = starter.from_fir(h, max_order, **(init_options or {}))

        def find_poles(order, rows):
            begin = start.model(np.full(rows.size, order), rows)
            return _fitted(h, rows, order, begin.poles, begin.residues, fit)

        family = cls(h, max_order, "reflect", find_poles, hsv=start.hsv,  # one factorisation
                     weight_filter=weight)
        family.start = start  # a fit has its start's modes: orders for `modes=` come from it
        return family

    @classmethod
    def _from_models(cls, h, max_order, init: ModalSSM, fit: _Settings):
        count = int(np.prod(init.shape, dtype=np.int64))
        if count != h.shape[0]:
            raise ValueError(f"init holds {count} models for {h.shape[0]} filters")
        if not np.all(init.is_stable()):
            raise ValueError("init has poles on or outside the unit circle")
        poles, residues, _ = (a.reshape(h.shape[0], -1) for a in init.compact())
        if fit.positive:
            bad = (residues != 0) & ((poles.imag != 0) | ~(poles.real > 0))
            if bad.any():
                row, col = (int(i) for i in np.argwhere(bad)[0])
                raise ValueError(f"real_poles=True: init model {row} has the pole "
                                 f"{complex(poles[row, col]):.6g}; a real-pole fit starts from "
                                 "real poles in (0, 1) only")
        given = np.asarray(init.order).reshape(-1)

        def find_poles(order, rows):
            wrong = rows[given[rows] != order]
            if wrong.size:
                raise ValueError(f"init model {int(wrong[0])} has order "
                                 f"{int(given[wrong[0]])}, but order {order} was asked: pass "
                                 f"order= with the models' orders")
            return _fitted(h, rows, order, poles[rows], residues[rows], fit)

        return cls(h, max_order, "reflect", find_poles, weight_filter=fit.weight)


def _fitted(h, rows, order, poles, residues, fit: _Settings
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Full (conjugate-closed) fitted poles ``(rows, order)`` from compact starting models,
    with the ``iterations`` and ``converged`` diagnostics per row; the filters are fitted in
    batches of one structure (pairs, real poles), all batches spread over the worker
    threads."""
    out = np.full((rows.size, order), np.nan, dtype=np.complex128)
    iterations = np.zeros(rows.size, dtype=np.int64)
    converged = np.ones(rows.size, dtype=bool)
    live = (residues != 0) & (np.abs(poles) < 1)
    pair = live & (poles.imag != 0)
    structure = np.stack([pair.sum(axis=1), (live & ~pair).sum(axis=1)], axis=1)
    batches = []
    for pairs, reals in np.unique(structure, axis=0):
        group = np.flatnonzero((structure[:, 0] == pairs) & (structure[:, 1] == reals))
        # compact starting poles, pairs first
        start = np.stack([np.concatenate([poles[r][pair[r]], poles[r][live[r] & ~pair[r]]])
                          for r in group])
        per_filter = 96 * (pairs + reals) ** 2 if fit.weight is None \
            else 8 * h.shape[1] * (2 * pairs + reals)
        size = int(np.clip(CHUNK_BYTES // max(1, per_filter), 1, MAX_CHUNK))
        batches += [(group[i:i + size], start[i:i + size], int(pairs), int(reals))
                    for i in range(0, group.size, size)]

    def run(sl):
        for group, start, pairs, reals in batches[sl]:
            fitted, iterations[group], converged[group] = _fit_poles(
                h[rows[group]], start, pairs, reals, fit)
            out[group, : 2 * pairs + reals] = np.concatenate(
                [fitted, np.conj(fitted[:, :pairs])], axis=1)

    map_chunks(run, len(batches), 1)
    return out, {"iterations": iterations, "converged": converged}


def _fit_poles(h: np.ndarray, poles: np.ndarray, pairs: int, reals: int, fit: _Settings
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compact poles ``(B, m)`` (pairs first) minimising the projected l2 residual plus the
    weighted tail energy, from ``poles`` (stable), with the trial points used and whether the
    last stage each filter ran converged; see the module notes for ``limit_tail``.
    The stages judge fits by the projection; where its design is conditioned beyond
    `CHECK_COND` (at the start or the end) or its tail energy cancels to rounding (clustered
    poles with huge opposing residues), the fit kept is checked once more as the family will
    report it, with the residues `fit_residues` gives its poles (which may differ from the
    projection's where a design is nearly singular), and a filter it leaves worse than its
    start keeps the start."""
    trials = np.zeros(h.shape[0], dtype=np.int64)
    converged = np.ones(h.shape[0], dtype=bool)
    if poles.shape[1] == 0 or h.shape[1] - 1 <= 2 * pairs + reals:
        return poles, trials, converged  # nothing to fit, or no more taps than unknowns
    weight, limit_tail = fit.weight, fit.limit_tail
    start = ModalProjection(h, pairs, reals, fit.tail_weight, weight, fit.positive)
    x0 = start.parameters(poles)
    first = start.evaluate(x0, np.arange(h.shape[0]))
    allowed = np.sqrt(first.tail.value) * (1 + HOLD_RTOL) + HOLD_RTOL * np.linalg.norm(h, axis=1)
    window = np.einsum("bk,bk->b", first.res, first.res)  # the start's (weighted) l2^2
    f32_allowed = np.maximum(_float32_deviation(h, first.lam, first.residues), F32_RTOL)
    x, best, pending = x0.copy(), x0.copy(), np.arange(h.shape[0])
    weights = np.full(h.shape[0], fit.tail_weight)
    suspect = ~(first.cond <= CHECK_COND) | first.tail.cancelled  # of the start or the fit
    for _ in range(fit.tail_stages if limit_tail else 1):
        sub = ModalProjection(h[pending], pairs, reals, weights[pending], weight, fit.positive)
        x[pending], used, converged[pending] = levenberg_marquardt(sub, x[pending],
                                                                   max_iter=fit.max_iter)
        trials[pending] += used
        end = sub.evaluate(x[pending], np.arange(pending.size))
        held = np.einsum("bk,bk->b", end.res, end.res) <= window[pending]
        if limit_tail:
            held &= np.sqrt(end.tail.value) <= allowed[pending]
        f32 = _float32_deviation(h[pending], end.lam, end.residues)
        held &= f32 <= f32_allowed[pending]
        best[pending[held]] = x[pending[held]]
        suspect[pending[held]] |= (~(end.cond[held] <= CHECK_COND) | end.tail.cancelled[held]
                                   | (f32[held] > F32_RTOL / 10))
        pending = pending[~held]
        weights[pending] = np.maximum(weights[pending], fit.tail_floor) * fit.tail_growth
        if pending.size == 0:
            break
    moved = np.flatnonzero(np.any(best != x0, axis=1) & suspect)
    if moved.size:
        before = _reported_errors(h[moved], start.poles(x0[moved]), weight)
        after = _reported_errors(h[moved], start.poles(best[moved]), weight)
        worse = (after[0] > before[0]) | (after[2] > f32_allowed[moved])
        if limit_tail:
            worse |= after[1] > before[1] * (1 + HOLD_RTOL) + HOLD_RTOL * np.linalg.norm(
                h[moved], axis=1)
        best[moved[worse]] = x0[moved[worse]]
    return start.poles(best), trials, converged  # filters still pending keep their start


def _reported_errors(h: np.ndarray, poles: np.ndarray, weight: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(||w * (h - h_hat)||, ||h_hat[L:]||, float32 deviation)`` per filter for compact
    ``poles`` with the least-squares residues of `fit_residues` (what the family reports)."""
    live = np.ones(poles.shape, dtype=bool)
    residues, direct = fit_residues(h, poles, live, weight_filter=weight)
    model = ModalSSM.from_compact(poles, residues, direct)
    error = h - model.impulse(h.shape[1])
    if weight is not None:
        error = scipy.signal.lfilter(weight, [1.0], error, axis=1)
    return (np.linalg.norm(error, axis=1), model.tail_norm(h.shape[1]),
            model.float32_deviation(h.shape[1]))


def _float32_deviation(h: np.ndarray, poles: np.ndarray, residues: np.ndarray) -> np.ndarray:
    """`ModalSSM.float32_deviation` over the taps of ``h`` of compact models (``h[0]`` the
    direct term, as every fit has it)."""
    return ModalSSM.from_compact(poles, residues, h[:, 0]).float32_deviation(h.shape[1])
