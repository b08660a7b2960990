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
default) or the caller (``init=ModalSSM``); ``init="homotopy"`` fits from balanced truncation
with 2 and 4 more modes, prunes to the modes of largest energy and refits, keeping per filter the
best of those and the plain fit (`ModalFamily.from_fir`). The direct term is ``h[0]`` exactly.
Each trial point costs ``O(L m + m^3)`` per filter (closed-form Gram sums,
`mor.fitting._varpro_kernels`); ``max_iter`` bounds the trial points per stage (below). On the
1024 shared trained filters (``L = 2048``) a fit at 16 modes costs about 17 CPU seconds, 9.5 s
of wall time on two cores (32 modes: 58 CPU s, 33 s; ``benchmarks/bench_modal.py``,
``benchmarks/RESULTS.md``). With ``tol`` the order is searched on the start's models and the
fit descends from the order found (`mor.drivers.reduction`).

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
1e-4 to 5e-2 without it), nor where its state gain (`STATE_GAIN_MAX`: how much relative
rounding of the recurrent state reaches the output, which an engine's float32 prefill and
decode steps incur beyond the impulse response) exceeds the larger of `STATE_GAIN_MAX` and its
start's: the fits stay as safe in float32 as the balanced truncations they start from.
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
from mor.methods.base import F32_RTOL, ROUNDED_L2_RTOL, PoleMethod, get_method, register
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
            poles), ``"homotopy"`` (the order homotopy from ``"balanced"``, below), or a stable
            `mor.ModalSSM` per filter (then ``order`` in `mor.reduce` must be each model's
            order). Any other value is a ``ValueError``. With ``real_poles`` only ``None``
            (the greedy real-pole start, `RealPoleStart`) or a `mor.ModalSSM` whose poles are
            all real in ``(0, 1)`` (e.g. a layer read by
            `mor.export.from_vortex_state_dict`; a pole below ``1e-2`` starts at ``1e-2``);
            a method's name is a ``ValueError`` (balanced truncation's
            poles are complex in general, and they are never cast).
        init_options : dict, optional
            Options of the ``init`` method (checked against it; of ``"balanced"`` for
            ``"homotopy"``).
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

        **Order homotopy** (``init="homotopy"``). A fit from balanced truncation (BT) stays
        in the basin of BT's poles; fitting more modes than asked and discarding the weakest
        lets poles move to where the filter needs them. For a filter whose BT model of order
        ``d`` (the order asked for, or the one ``modes=``/``tol=`` find on BT's models) has
        ``s`` compact modes, and for each ``e`` in `HOMOTOPY_EXTRA` ``= (2, 4)``:

        1. fit, as above, from BT's model of the largest order ``<= d + 2e`` with at most
           ``s + e`` modes (a family of BT up to ``2 max(e)`` orders higher);
        2. keep its modes of largest energy, with least-squares compact residues ``R_n``,

           .. math:: E_n = \frac{|R_n|^2}{1 - |\lambda_n|^2},

           greedily in decreasing ``E_n`` while at most ``s`` modes and order ``d`` are used
           (a pair counts 2 in the order);
        3. fit again from those poles, with the tail and float32 deviation held to those of
           the BT start at order ``d`` (its poles with least-squares residues), not to the
           pruned model's.

        Per filter the candidate of smallest ``l2`` (in the weighted loss with a ``weight``,
        with the residues the model gets) is kept among the fit from BT (exactly
        ``init="balanced"``'s, always a candidate) and those refits that meet, as reported,
        ``tail <= `` BT start's (with ``limit_tail``) and ``f32_deviation <= max(F32_RTOL,
        `` BT start's)``; a refit whose float32 deviation exceeds `F32_RTOL` (and so may be
        rounded to complex64 poles, at an ``l2`` up to `ROUNDED_L2_RTOL` higher) must win by
        that factor. So on every filter the result is at least as good in ``l2`` as
        ``init="balanced"``'s, stable, its tail at most the BT start's and no more
        float32-sensitive. ``info["homotopy_extra"]`` says which candidate won (``e``, or 0
        for the fit from BT). The homotopy came from a study of starts
        (``benchmarks/bench_modal_starts.py``), which fitted with larger budgets.

        Cost: five fits per filter instead of one (two of them with 2 and 4 more modes),
        about 3 to 5 times ``init="balanced"``'s time with ``modes=``/``order=``
        (``benchmarks/bench_modal_homotopy.py``: 2.6x, 2.9x and 4.2x at 2, 4 and 8 modes
        on the 1024 shared filters). With ``tol`` every order the search evaluates on the
        fitted family (the BT order found, then one lower at a time while the fit meets
        ``tol``) costs that much, and since the homotopy's fits meet the tolerance at lower
        orders more often the descent takes more steps: on 64 shared filters (every 16th)
        ``tol=3e-2`` took 8x ``init="balanced"``'s time and ``tol=1e-2`` 6x, for mean orders
        12.9 against 14.2 and 23.6 against 24.5 (a lower order on 26 and 23 filters, a higher
        one on none).
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
            homotopy = init == HOMOTOPY
            try:
                starter = get_method("balanced" if homotopy else init)
            except ValueError as exc:
                raise ValueError(f"init: {exc}, or {HOMOTOPY!r} (the order homotopy from "
                                 f"'balanced'), or a ModalSSM") from None
            starter.check_options(init_options or {})
            start = starter.from_fir(h, max_order, **(init_options or {}))
            wide: list = []  # the homotopy's wider start, made when first asked

            def wider():
                # up to 2 max(HOMOTOPY_EXTRA) orders above the largest asked for; a family of
                # its own, so that the fit from the start is exactly init="balanced"'s
                if not wide:
                    top = min(max_order + 2 * max(HOMOTOPY_EXTRA), h.shape[1] - 1)
                    wide.append(starter.from_fir(h, top, **(init_options or {})))
                return wide[0]

        def find_poles(order, rows):
            if init == HOMOTOPY:
                return _homotopy(h, rows, order, start, wider(), fit)
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
    with the ``iterations`` and ``converged`` diagnostics per row (`_fit_compact`)."""
    fitted, pair, iterations, converged = _fit_compact(h, rows, poles, residues, fit)
    return _full(fitted, pair, order), {"iterations": iterations, "converged": converged}


def _full(compact: np.ndarray, pair: np.ndarray, order: int) -> np.ndarray:
    """Full (conjugate-closed) poles ``(F, order)``, NaN-padded, of compact poles ``(F, w)``
    (NaN where unused) with ``pair`` marking the conjugate pairs."""
    out = np.full((compact.shape[0], order), np.nan, dtype=np.complex128)
    for r in range(compact.shape[0]):
        used = np.isfinite(compact[r])
        full = np.concatenate([compact[r][used], np.conj(compact[r][used & pair[r]])])
        out[r, : full.size] = full
    return out


def _fit_compact(h, rows, poles, residues, fit: _Settings, limits=None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fitted compact poles ``(rows, w)`` (pairs first, NaN-padded; ``w`` the most live
    modes of a start), which of them are pairs, and the ``iterations`` and ``converged`` per
    row, from compact starting models ``poles``, ``residues`` (live where the residue is not
    zero and the pole inside the circle); the filters are fitted in batches of one structure
    (pairs, real poles), all batches spread over the worker threads. ``limits``: ``(tail,
    f32)`` per row, the tail and float32 deviation a fit may reach (`_fit_poles`), instead of
    its own start's."""
    iterations = np.zeros(rows.size, dtype=np.int64)
    converged = np.ones(rows.size, dtype=bool)
    live = (residues != 0) & (np.abs(poles) < 1)
    pair = live & (poles.imag != 0)
    width = int(live.sum(axis=1).max(initial=0))
    out = np.full((rows.size, width), np.nan, dtype=np.complex128)
    is_pair = np.zeros((rows.size, width), dtype=bool)
    structure = np.stack([pair.sum(axis=1), (live & ~pair).sum(axis=1)], axis=1)
    batches = []
    for pairs, reals in np.unique(structure, axis=0):
        group = np.flatnonzero((structure[:, 0] == pairs) & (structure[:, 1] == reals))
        is_pair[group, :pairs] = True
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
            given = None if limits is None else tuple(a[group] for a in limits)
            fitted, iterations[group], converged[group] = _fit_poles(
                h[rows[group]], start, pairs, reals, fit, given)
            out[group, : pairs + reals] = fitted

    map_chunks(run, len(batches), 1)
    return out, is_pair, iterations, converged


def _fit_poles(h: np.ndarray, poles: np.ndarray, pairs: int, reals: int, fit: _Settings,
               limits: tuple[np.ndarray, np.ndarray] | None = None
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
    f32_allowed = np.maximum(_float32_figure(h, first.lam, first.residues), F32_RTOL)
    if limits is not None:
        allowed, f32_allowed = limits
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
        f32 = _float32_figure(h[pending], end.lam, end.residues)
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
        if limit_tail and limits is not None:
            worse |= after[1] > allowed[moved]
        elif limit_tail:
            worse |= after[1] > before[1] * (1 + HOLD_RTOL) + HOLD_RTOL * np.linalg.norm(
                h[moved], axis=1)
        best[moved[worse]] = x0[moved[worse]]
    return start.poles(best), trials, converged  # filters still pending keep their start


def _reported_errors(h: np.ndarray, poles: np.ndarray, weight: np.ndarray | None,
                     live: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(||w * (h - h_hat)||, ||h_hat[L:]||, `_float32_figure`)`` per filter for compact
    ``poles`` (the modes where ``live``, all by default) with the least-squares residues of
    `fit_residues` (what the family reports)."""
    if live is None:
        live = np.ones(poles.shape, dtype=bool)
    poles = np.where(live, poles, 0)
    residues, direct = fit_residues(h, poles, live, weight_filter=weight)
    model = ModalSSM.from_compact(poles, residues, direct)
    error = h - model.impulse(h.shape[1])
    if weight is not None:
        error = scipy.signal.lfilter(weight, [1.0], error, axis=1)
    return (np.linalg.norm(error, axis=1), model.tail_norm(h.shape[1]),
            _float32_figure(h, poles, residues))


#: The largest state gain a fit may reach where its start's is lower:
#:
#: .. math::
#:
#:     \gamma = \sum_n |R_n| / \sqrt{1 - |\lambda_n|^2} \,/\, \|h[1:]\|_2,
#:
#: the factor by which relative errors of the recurrent state reach the output, relative to
#: the output's rms, for white input (mode ``n``'s state has rms ``1 / sqrt(1 - |lambda|^2)``).
#: Engines form and carry the state in float32 (StripedHyena's FFT prefill with errors of
#: about ``eps_32`` of its size), so residues that cancel cost decode precision that the
#: impulse response does not show: trained layer 0 at order 16, a fit with ``gamma = 7560``
#: decoded 2.1e-4 off float64 in StripedHyena after a 2048-token prompt, float32 deviation
#: 2.5e-7; fits with ``gamma`` of 500 to 960 decoded 3e-5 to 6e-5 off (about ``1e-7 gamma``)
#: and so did mor's own float32 layer, independently; the balanced truncations have ``gamma``
#: about 2. Held to 200 on all 1024 shared filters, 17 to 33 fits change at 2, 4, 8 modes and
#: order 16 (their ``l2`` up to 2x their unheld fit's), the median ``l2`` by at most 1.5%.
STATE_GAIN_MAX = 200.0


def _state_gain(h: np.ndarray, poles: np.ndarray, residues: np.ndarray) -> np.ndarray:
    """`STATE_GAIN_MAX`'s ``gamma`` of compact models fitted to the taps ``h`` (``inf`` for a
    live pole on or outside the circle, or modes fitted to zero taps)."""
    live = residues != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.where(live, np.abs(residues) / np.sqrt(1 - np.abs(poles) ** 2), 0.0)
        spread = np.where(live & (np.abs(poles) >= 1), np.inf, spread).sum(axis=1)
        norm = np.linalg.norm(h[:, 1:], axis=1)
        return np.where(spread == 0, 0.0, spread / norm)


def _float32_figure(h: np.ndarray, poles: np.ndarray, residues: np.ndarray) -> np.ndarray:
    """What the fits hold to ``max(F32_RTOL, start's)``: the larger of
    `ModalSSM.float32_deviation` over the taps of ``h`` (``h[0]`` the direct term, as every
    fit has it) and the state gain scaled so that `STATE_GAIN_MAX` is `F32_RTOL`."""
    deviation = ModalSSM.from_compact(poles, residues, h[:, 0]).float32_deviation(h.shape[1])
    return np.maximum(deviation, _state_gain(h, poles, residues) * (F32_RTOL / STATE_GAIN_MAX))


#: Order homotopy (``init="homotopy"``): the extra compact modes fitted before the pruning.
HOMOTOPY_EXTRA = (2, 4)
HOMOTOPY = "homotopy"


def _homotopy(h: np.ndarray, rows: np.ndarray, order: int, start, wide, fit: _Settings
              ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The order homotopy of ``init="homotopy"`` (`ModalFamily.from_fir`) for the filters
    ``rows`` at ``order``: full fitted poles ``(rows, order)`` (NaN-padded) and the
    diagnostics ``iterations`` (all fits), ``converged`` (the fit kept) and
    ``homotopy_extra`` (the extra modes of the fit kept, 0 for the fit from the start).
    ``start`` is the family ``init="balanced"`` starts from, ``wide`` the same method's family
    up to ``2 max(HOMOTOPY_EXTRA)`` orders higher, from which the wider fits start."""
    f = rows.size
    hr = h[rows]
    norm = np.linalg.norm(hr, axis=1)
    begin = start.model(np.full(f, order), rows)
    live0 = (begin.residues != 0) & (np.abs(begin.poles) < 1)
    modes0 = live0.sum(axis=1)
    l2_0, tail_0, f32_0 = _reported_errors(hr, begin.poles, fit.weight, live0)
    tail_allowed = tail_0 * (1 + HOLD_RTOL) + HOLD_RTOL * norm
    f32_allowed = np.maximum(f32_0, F32_RTOL)
    fitted, pair, iterations, converged = _fit_compact(h, rows, begin.poles, begin.residues, fit)
    best_l2 = _reported_errors(hr, np.nan_to_num(fitted), fit.weight, np.isfinite(fitted))[0]
    best = _full(fitted, pair, order)
    extra_kept = np.zeros(f, dtype=np.int64)
    for extra in HOMOTOPY_EXTRA:
        # the start's largest order up to `order + 2 extra` with at most `extra` more modes
        big = np.minimum(order + 2 * extra, wide.rank[rows])
        sel = np.flatnonzero((big > order) & (modes0 > 0))
        models = None
        while sel.size:
            models = wide.model(big[sel], rows[sel])
            over = ((models.residues != 0).sum(axis=1) > modes0[sel] + extra) & (big[sel] > order)
            if not over.any():
                break
            big[sel[over]] -= 1
            keep = big[sel] > order
            sel = sel[keep]
            models = None
        if not sel.size or models is None:
            continue
        grown, grown_pair, used, _ = _fit_compact(h, rows[sel], models.poles, models.residues,
                                                  fit)
        iterations[sel] += used
        # prune to the start's modes and order by the modes' energy |R|^2 / (1 - |lambda|^2)
        live = np.isfinite(grown)
        lam = np.where(live, grown, 0)
        res, _ = fit_residues(hr[sel], lam, live, weight_filter=fit.weight)
        energy = np.where(live, np.abs(res) ** 2 / (1 - np.abs(lam) ** 2), -np.inf)
        rank = np.argsort(-energy, axis=1, kind="stable")
        kept = np.zeros(live.shape, dtype=bool)
        used_modes = np.zeros(sel.size, dtype=np.int64)
        used_order = np.zeros(sel.size, dtype=np.int64)
        index = np.arange(sel.size)
        for j in range(rank.shape[1]):
            col = rank[:, j]
            cost = np.where(grown_pair[index, col], 2, 1)
            take = (live[index, col] & (used_modes < modes0[sel])
                    & (used_order + cost <= order))
            kept[index[take], col[take]] = True
            used_modes += take
            used_order += np.where(take, cost, 0)
        limits = (tail_allowed[sel], f32_allowed[sel])
        refit, refit_pair, used, done = _fit_compact(
            h, rows[sel], np.where(kept, lam, 0), np.where(kept, res, 0), fit, limits)
        iterations[sel] += used
        l2, tail, f32 = _reported_errors(hr[sel], np.nan_to_num(refit), fit.weight,
                                         np.isfinite(refit))
        # a model beyond F32_RTOL may be rounded (`PoleMethod._float32_safe`), at an l2 up to
        # ROUNDED_L2_RTOL higher: it must win by that margin
        margin = np.where(f32 > F32_RTOL, 1 + ROUNDED_L2_RTOL, 1.0)
        better = np.isfinite(l2) & (l2 * margin < best_l2[sel]) & (f32 <= f32_allowed[sel])
        if fit.limit_tail:
            better &= tail <= tail_allowed[sel]
        win = sel[better]
        best[win] = _full(refit[better], refit_pair[better], order)
        best_l2[win], extra_kept[win], converged[win] = l2[better], extra, done[better]
    return best, {"iterations": iterations, "converged": converged,
                  "homotopy_extra": extra_kept}
