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
``1e-2``), up to ``TAIL_STAGES`` stages, and the last fit within the limit is kept. A fit is kept
only where its ``l2`` (in the weighted loss with a ``weight``) is at most the start's: the result
is never worse than its initialisation, and the start is returned where no stage qualifies.
``tail`` and ``hinf`` are reported beside ``l2``.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

from mor._numerics.lm import levenberg_marquardt
from mor._numerics.parallel import map_chunks
from mor.fitting.varpro import ModalProjection
from mor.methods.prony import PoleFamily
from mor.fitting.least_squares import fit_residues
from mor.systems.modal import ModalSSM

#: ``limit_tail``: stages of the penalty continuation, the weight's growth per stage, and the
#: smallest weight it grows from.
TAIL_STAGES = 6
TAIL_GROWTH = 10 ** 0.5
TAIL_FLOOR = 1e-2
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


class ModalFamily(PoleFamily):
    """Variable-projection modal fits, started from another method's models."""

    name = "modal"

    @classmethod
    def from_fir(cls, h: np.ndarray, max_order: int, *, init: str | ModalSSM = "balanced",
                 max_iter: int = 15, tail_weight: float = 0.1, limit_tail: bool = True,
                 weight=None, **init_options) -> "ModalFamily":
        """``init``: a method's name, or a stable `ModalSSM` per filter (then ``order`` must be
        each model's order). ``weight``: FIR taps ``w``; poles and residues then minimise
        ``||w * (h - h_hat)||`` over the window (the error spectrum weighted by
        ``|W(e^{iw})|^2``)."""
        if weight is not None:
            weight = np.asarray(weight, dtype=np.float64)
            if weight.ndim != 1 or weight.size == 0 or not np.isfinite(weight).all():
                raise ValueError(f"weight must be finite 1-D FIR taps, got shape {weight.shape}")
        fit = (max_iter, tail_weight, limit_tail, weight)
        if isinstance(init, ModalSSM):
            return cls._from_models(h, max_order, init, fit)
        from mor.drivers.reduction import METHODS

        if init not in METHODS or init == "modal":
            raise ValueError(f"init must be a ModalSSM or one of "
                             f"{sorted(set(METHODS) - {'modal'})}, got {init!r}")
        start = METHODS[init].from_fir(h, max_order, **init_options)

        def find_poles(order, rows):
            poles, residues, _, _, _ = start.model(np.full(rows.size, order), rows)
            return _fitted(h, rows, order, poles, residues, *fit)

        family = cls(h, max_order, "reflect", find_poles, hsv=start.hsv,  # one factorisation
                     weight_filter=weight)
        family.start = start  # a fit has its start's modes: orders for `modes=` come from it
        return family

    @classmethod
    def _from_models(cls, h, max_order, init: ModalSSM, fit: tuple):
        count = int(np.prod(init.shape, dtype=np.int64))
        if count != h.shape[0]:
            raise ValueError(f"init holds {count} models for {h.shape[0]} filters")
        if not np.all(init.is_stable()):
            raise ValueError("init has poles on or outside the unit circle")
        poles, residues, _ = (a.reshape(h.shape[0], -1) for a in init.compact())
        given = np.asarray(init.order).reshape(-1)

        def find_poles(order, rows):
            wrong = rows[given[rows] != order]
            if wrong.size:
                raise ValueError(f"init model {int(wrong[0])} has order "
                                 f"{int(given[wrong[0]])}, but order {order} was asked: pass "
                                 f"order= with the models' orders")
            return _fitted(h, rows, order, poles[rows], residues[rows], *fit)

        return cls(h, max_order, "reflect", find_poles, weight_filter=fit[-1])


def _fitted(h, rows, order, poles, residues, max_iter, tail_weight, limit_tail, weight
            ) -> np.ndarray:
    """Full (conjugate-closed) fitted poles ``(rows, order)`` from compact starting models;
    the filters are fitted in batches of one structure (pairs, real poles), all batches spread
    over the worker threads."""
    out = np.full((rows.size, order), np.nan, dtype=np.complex128)
    live = (residues != 0) & (np.abs(poles) < 1)
    pair = live & (poles.imag != 0)
    structure = np.stack([pair.sum(axis=1), (live & ~pair).sum(axis=1)], axis=1)
    batches = []
    for pairs, reals in np.unique(structure, axis=0):
        group = np.flatnonzero((structure[:, 0] == pairs) & (structure[:, 1] == reals))
        # compact starting poles, pairs first
        start = np.stack([np.concatenate([poles[r][pair[r]], poles[r][live[r] & ~pair[r]]])
                          for r in group])
        per_filter = 96 * (pairs + reals) ** 2 if weight is None \
            else 8 * h.shape[1] * (2 * pairs + reals)
        size = int(np.clip(CHUNK_BYTES // max(1, per_filter), 1, MAX_CHUNK))
        batches += [(group[i:i + size], start[i:i + size], int(pairs), int(reals))
                    for i in range(0, group.size, size)]

    def fit(sl):
        for group, start, pairs, reals in batches[sl]:
            fitted = _fit_poles(h[rows[group]], start, pairs, reals, max_iter, tail_weight,
                                limit_tail, weight)
            out[group, : 2 * pairs + reals] = np.concatenate(
                [fitted, np.conj(fitted[:, :pairs])], axis=1)

    map_chunks(fit, len(batches), 1)
    return out


def _fit_poles(h: np.ndarray, poles: np.ndarray, pairs: int, reals: int, max_iter: int,
               tail_weight: float, limit_tail: bool = True,
               weight: np.ndarray | None = None) -> np.ndarray:
    """Compact poles ``(B, m)`` (pairs first) minimising the projected l2 residual plus the
    weighted tail energy, from ``poles`` (stable); see the module notes for ``limit_tail``.
    The stages judge fits by the projection; where its design is conditioned beyond
    `CHECK_COND` (at the start or the end) or its tail energy cancels to rounding (clustered
    poles with huge opposing residues), the fit kept is checked once more as the family will
    report it, with the residues `fit_residues` gives its poles (which may differ from the
    projection's where a design is nearly singular), and a filter it leaves worse than its
    start keeps the start."""
    if poles.shape[1] == 0 or h.shape[1] - 1 <= 2 * pairs + reals:
        return poles  # nothing to fit, or no more taps than unknowns
    start = ModalProjection(h, pairs, reals, tail_weight, weight)
    x0 = start.parameters(poles)
    first = start.evaluate(x0, np.arange(h.shape[0]))
    allowed = np.sqrt(first.tail.value) * (1 + 1e-9) + 1e-9 * np.linalg.norm(h, axis=1)
    window = np.einsum("bk,bk->b", first.res, first.res)  # the start's (weighted) l2^2
    x, best, pending = x0.copy(), x0.copy(), np.arange(h.shape[0])
    weights = np.full(h.shape[0], float(tail_weight))
    suspect = ~(first.cond <= CHECK_COND) | first.tail.cancelled  # of the start or the fit
    for _ in range(TAIL_STAGES if limit_tail else 1):
        sub = ModalProjection(h[pending], pairs, reals, weights[pending], weight)
        x[pending] = levenberg_marquardt(sub, x[pending], max_iter=max_iter)[0]
        end = sub.evaluate(x[pending], np.arange(pending.size))
        held = np.einsum("bk,bk->b", end.res, end.res) <= window[pending]
        if limit_tail:
            held &= np.sqrt(end.tail.value) <= allowed[pending]
        best[pending[held]] = x[pending[held]]
        suspect[pending[held]] |= ~(end.cond[held] <= CHECK_COND) | end.tail.cancelled[held]
        pending = pending[~held]
        weights[pending] = np.maximum(weights[pending], TAIL_FLOOR) * TAIL_GROWTH
        if pending.size == 0:
            break
    moved = np.flatnonzero(np.any(best != x0, axis=1) & suspect)
    if moved.size:
        before = _reported_errors(h[moved], start.poles(x0[moved]), weight)
        after = _reported_errors(h[moved], start.poles(best[moved]), weight)
        worse = after[0] > before[0]
        if limit_tail:
            worse |= after[1] > before[1] * (1 + 1e-9) + 1e-9 * np.linalg.norm(h[moved], axis=1)
        best[moved[worse]] = x0[moved[worse]]
    return start.poles(best)  # the filters still pending keep their start


def _reported_errors(h: np.ndarray, poles: np.ndarray, weight: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(||w * (h - h_hat)||, ||h_hat[L:]||)`` per filter for compact ``poles`` with the
    least-squares residues of `fit_residues` (what the family reports)."""
    live = np.ones(poles.shape, dtype=bool)
    residues, direct = fit_residues(h, poles, live, weight_filter=weight)
    model = ModalSSM.from_compact(poles, residues, direct)
    error = h - model.impulse(h.shape[1])
    if weight is not None:
        error = scipy.signal.lfilter(weight, [1.0], error, axis=1)
    return np.linalg.norm(error, axis=1), model.tail_norm(h.shape[1])
