r"""Each layer's filters fitted for their output error on calibration data (`distill_module`).

Start: the plain fit of every filter (`mor.distill`). Pass 0 records each layer's output
metric on the span of the plain fit's poles (`mor.torch.calibration`) and re-solves the
residues for it, the poles and the tail held (`mor.refit_residues`); a filter keeps the better
of the two in its metric ``J``. Each further pass is one damped Gauss-Newton step of the poles
(`mor.fitting.metric_poles.pole_step`, exact: the metric was recorded with the poles'
derivative sequences in its span), a new recording on the span of the stepped poles, which
measures ``J`` there exactly, and a residue re-solve; a filter takes the step where ``J``
drops and its float32 figure stays within ``max(F32_RTOL, its own)``, else keeps its model;
the damping follows Nielsen's rule on the ratio of the actual to the predicted decrease
(`mor._numerics.lm`). A filter stops stepping once the predicted decrease is below
`STEP_RTOL` of its ``J``, or its model is exact to rounding (`EXACT`). No filter ends with a
larger ``J`` than its plain fit.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mor._numerics.lm import MAX_DAMPING, update_damping
from mor.analysis.compare import compare
from mor.conventions import relative
from mor.drivers.distillation import Report
from mor.fitting.constrained import residues_in_metric
from mor.fitting.metric_poles import pole_step
from mor.methods.base import F32_RTOL
from mor.methods.modal import _float32_figure as float32_figure
from mor.systems.modal import ModalSSM
from mor.torch.calibration import OutputMetric, output_basis, record

#: Marquardt's damping of the first step (dimensionless; `mor.fitting.metric_poles`).
INITIAL_DAMPING = 0.1
#: A filter stops stepping when the predicted decrease is below this fraction of its ``J``,
#: or its ``J`` is below `EXACT` of the filter's own output energy (a model exact to rounding).
STEP_RTOL = 1e-6
EXACT = 1e-24


class _Layer:
    """One layer's filters, the best model of each so far, and the metric on its span.

    Built by pass 0 (module notes) from the plain fits ``bank`` and the metric recorded on
    their span."""

    def __init__(self, taps: np.ndarray, bank: ModalSSM, report: Report, metric: OutputMetric):
        self.report, self.metric = report, metric
        self.ok = ~np.asarray(report.columns["failed"], dtype=bool).reshape(-1)
        self.taps = np.where(self.ok[:, None], taps, 0.0)
        self.poles, self.residues, self.direct = bank.compact()
        count, rows = len(taps), np.flatnonzero(self.ok)
        self.energy_h = np.full(count, np.nan)  # J(h): the layer's output energy per filter
        self.energy_h[rows] = metric.energy(self.taps[rows], rows)
        self.plain = np.full(count, np.nan)  # J of the plain fit
        self.plain[rows] = metric.energy(self.taps[rows] - bank[rows].impulse(taps.shape[1]),
                                         rows)
        self.energy = self.plain.copy()  # J of the model kept
        self.tail = np.zeros(count)  # relative tail bound: the plain fit's
        self.damping, self.growth = np.full(count, INITIAL_DAMPING), np.full(count, 2.0)
        self.predicted = np.zeros(count)  # the decrease the last step's linear model predicted
        self.mu = np.zeros(count)  # the tail hold's multiplier at the kept model
        self.steps = np.zeros(count, dtype=np.int64)  # pole steps taken
        self.residues_only = np.zeros(count, dtype=bool)  # pass 0's re-solve kept
        self.active = self.ok.copy()
        if rows.size:
            refit = residues_in_metric(self.taps[rows], bank[rows], metric.factor(rows), True)
            self.tail[rows] = refit.info["tail_allowed"]
            self._take(rows, refit, metric)
            self.residues_only = self.energy < self.plain

    @property
    def bank(self) -> ModalSSM:
        return ModalSSM.from_compact(self.poles, self.residues, self.direct)

    def step(self) -> ModalSSM | None:
        """The models with the active filters' poles stepped (None where none is left)."""
        self.active &= self.damping <= MAX_DAMPING  # no descent left at working precision
        rows = np.flatnonzero(self.active)
        if rows.size == 0:
            return None
        current = self.bank
        poles, decrease = pole_step(self.taps[rows], current[rows], self.metric.factor(rows),
                                    self.damping[rows], self.mu[rows])
        self.predicted[rows] = decrease
        done = (decrease <= STEP_RTOL * self.energy[rows]) \
            | (self.energy[rows] <= EXACT * self.energy_h[rows])
        self.active[rows[done]] = False
        if done.all():
            return None
        candidate, residues, direct = current.compact()  # the modes in pole_step's order
        candidate[rows[~done]] = poles[~done]
        return ModalSSM.from_compact(candidate, residues, direct)

    def judge(self, candidate: ModalSSM, metric: OutputMetric) -> None:
        """The active filters' stepped poles, their residues re-solved in ``metric`` (recorded
        on ``candidate``'s span), taken where ``J`` drops (module notes)."""
        rows = np.flatnonzero(self.active)
        refit = residues_in_metric(self.taps[rows], candidate[rows], metric.factor(rows),
                                   self.tail[rows])
        own = float32_figure(self.taps[rows], self.poles[rows], self.residues[rows])
        before = self.energy[rows]
        taken = self._take(rows, refit, metric,
                           float32_figure(self.taps[rows], *refit.compact()[:2])
                           <= np.maximum(F32_RTOL, own))
        self.steps[rows[taken]] += 1
        gain = (before - self.energy[rows]) / self.predicted[rows]
        self.damping[rows], self.growth[rows] = update_damping(
            self.damping[rows], self.growth[rows], gain, taken)

    def _take(self, rows: np.ndarray, models: ModalSSM, metric: OutputMetric,
              allowed: np.ndarray | bool = True) -> np.ndarray:
        """``models`` (one per row of ``rows``) put in place where ``allowed`` and their ``J``
        in ``metric`` is below the kept model's; which were."""
        trial = metric.energy(self.taps[rows] - models.impulse(self.taps.shape[1]), rows)
        taken = (trial < self.energy[rows]) & allowed
        better = rows[taken]
        chosen = models[taken]
        p, r, d = chosen.compact()
        width = max(self.poles.shape[1], p.shape[1])  # compact forms order modes by weight
        self.poles, self.residues = _pad(self.poles, width), _pad(self.residues, width)
        self.poles[better], self.residues[better] = _pad(p, width), _pad(r, width)
        self.direct[better] = d
        self.energy[better] = trial[taken]
        mu = np.asarray(chosen.info["mu"], dtype=np.float64)
        self.mu[better] = np.where(np.isfinite(mu), mu, 0.0)
        self.metric = _merge(self.metric, metric, better)
        return taken

    def finish(self) -> None:
        """The report's columns for the models put in place (see `distill_module`)."""
        columns, ok, energy_h = self.report.columns, self.ok, self.energy_h
        columns["l2_plain"] = np.array(columns["l2"], dtype=np.float64)
        if ok.any():
            errors = compare(self.taps[ok], self.bank[ok])
            for c in ("l2", "tail", "hinf", "f32_deviation"):
                column = np.array(columns[c], dtype=np.float64)
                column[ok] = getattr(errors, c)
                columns[c] = column
        columns["output_error_plain"] = _relative(self.plain, energy_h)
        columns["output_error"] = _relative(self.energy, energy_h)
        columns["calibrated"] = self.residues_only | (self.steps > 0)
        columns["pole_steps"] = self.steps
        total = float(energy_h[ok].sum()) if ok.any() else 0.0
        self.report.request["calibration"] = {
            "output_error_plain": float(_relative(self.plain[ok].sum(), total)),
            "output_error": float(_relative(self.energy[ok].sum(), total)),
            "positions": self.metric.positions,
            "pole_steps_taken": int(self.steps.sum())}


def fit_outputs(model: nn.Module, calibration: Iterable, fitted: Mapping,
                weights: Mapping[str, torch.Tensor], pole_steps: int, progress: bool = False
                ) -> dict[str, ModalSSM]:
    """Each layer's bank fitted for its output error (module notes); the reports of
    ``fitted`` (name to ``(taps, bank, report)``) updated in place; ``progress`` shows a bar
    over the passes."""
    clock = _Clock()
    bar = tqdm(total=1 + pole_steps, desc="calibration passes", disable=not progress)
    bases = {name: output_basis(np.where(np.isfinite(taps), taps, 0.0), bank, pole_steps > 0)
             for name, (taps, bank, _) in fitted.items()}
    metrics = clock(record, model, calibration, bases, weights)
    layers = {name: _Layer(taps, bank, report, metrics[name])
              for name, (taps, bank, report) in fitted.items()}
    bar.update()
    for _ in range(pole_steps):
        candidates = {n: c for n, layer in layers.items() if (c := layer.step()) is not None}
        if not candidates:
            break
        metrics = clock(record, model, calibration,
                        {n: output_basis(layers[n].taps, c, True) for n, c in candidates.items()},
                        {n: w for n, w in weights.items() if n in candidates})
        for name, candidate in candidates.items():
            layers[name].judge(candidate, metrics[name])
        bar.update()
    bar.close()
    for layer in layers.values():
        layer.finish()
        layer.report.request["calibration"].update(passes=clock.calls,
                                                   recording_seconds=clock.seconds)
    return {name: layer.bank for name, layer in layers.items()}


class _Clock:
    """Calls a function, counting the calls and their wall-clock seconds."""

    def __init__(self):
        self.calls, self.seconds = 0, 0.0

    def __call__(self, function, *args):
        start = time.perf_counter()
        try:
            return function(*args)
        finally:
            self.calls += 1
            self.seconds += time.perf_counter() - start


def _merge(metric: OutputMetric, other: OutputMetric, rows: np.ndarray) -> OutputMetric:
    """``metric`` with the rows ``rows`` taken from ``other`` (the same layer; widths padded)."""
    if other is metric:
        return metric
    width = max(metric.basis.shape[2], other.basis.shape[2])
    basis, gram = _widen(metric, width)
    wider_basis, wider_gram = _widen(other, width)
    basis[rows], gram[rows] = wider_basis[rows], wider_gram[rows]
    return OutputMetric(basis, gram, metric.headwise, metric.positions)


def _widen(metric: OutputMetric, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The basis and Gram matrices padded with zero columns to ``width``."""
    grow = width - metric.basis.shape[2]
    return (np.pad(metric.basis, ((0, 0), (0, 0), (0, grow))),
            np.pad(metric.gram, ((0, 0), (0, grow), (0, grow))))


def _pad(a: np.ndarray, width: int) -> np.ndarray:
    return np.pad(a, ((0, 0), (0, width - a.shape[1])))


def _relative(j, energy):
    """``sqrt(J(e) / J(h))`` (``sqrt(J(e))`` where ``J(h) = 0``; `mor.conventions`)."""
    return np.sqrt(relative(np.maximum(j, 0.0), energy))
