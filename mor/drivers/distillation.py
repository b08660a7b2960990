"""``mor.distill``: every filter of a model to a modal bank, with a report, in parallel."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numba
import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from mor.conventions import check_norm
from mor.drivers.reduction import ON_FAIL, reduce
from mor.fitting.constrained import refit_residues
from mor.methods import Method, get_method
from mor.methods.base import F32_RTOL
from mor.methods.modal import _float32_figure as float32_figure
from mor.systems.modal import ModalSSM, load

#: Methods ``method="auto"`` runs, by request: for a size (``order``/``modes``) in ``l2``,
#: variable-projection modal fitting (in held-out bits per byte of distilled language models
#: it loses 3.6-7x less than balanced truncation at 2 modes, 10-22x from the order homotopy:
#: ``docs/defaults.md``); in
#: ``hinf``, the better per filter of balanced truncation and Hankel-norm approximation; for a
#: tolerance, balanced truncation, the fastest order search that meets it.
AUTO_METHODS = {("size", "l2"): ("modal",), ("size", "hinf"): ("balanced", "hankel"),
                ("tol", "l2"): ("balanced",), ("tol", "hinf"): ("balanced",)}
#: With ``device=`` (a torch device for the Hankel decomposition of long filters, issue 22),
#: ``method="auto"`` is balanced truncation, the method with a device path.
DEVICE_AUTO_METHODS = ("balanced",)
#: With ``device=``, chunks in flight at once, in threads of this process: the device
#: decomposes one (one at a time, `mor.torch`) while the CPU builds and checks the models of
#: the one before (the error report).
DEVICE_CHUNKS_IN_FLIGHT = 2
#: Up to this many compact modes (``order`` up to twice it), ``method="auto"`` starts the modal
#: fits from the order homotopy (``init="homotopy"``): at 2 modes they lost 3x less held-out
#: quality than from balanced truncation on both e2e language models, at 2.6x the time; at 4
#: and 8 modes not less (``docs/defaults.md``).
AUTO_HOMOTOPY_MODES = 2
#: Above `AUTO_HOMOTOPY_MODES` modes (``order`` above twice it), ``method="auto"`` re-solves
#: the modal fits' residues for the window metric (`mor.refit_residues` with
#: ``metric="window"``: a convolution's output error over ``L`` positions for an input with
#: a mean), the poles and the tail held, keeping per filter the modal fit's own residues where
#: the float32 figure would pass its hold (``max(F32_RTOL, the fit's)``). On the e2e language
#: models' held-out loss at 4 / 8 modes: Hyena +0.024% / +0.023% -> +0.021% / +0.003% (within
#: the noise), MultiHyena +0.237% / +0.109% -> +0.088% / +0.022%; at 2 modes it cost more
#: than it gained (Hyena +0.053% -> +0.130%; ``docs/defaults.md``).
#: Per-filter report columns, in order: ``modes`` (compact modes of the model) and ``method``
#: (the method kept per filter) beside the `mor.reduce` ``info`` entries of the same names
#: (`mor.conventions.INFO`).
COLUMNS = ("order", "modes", "method", "l2", "tail", "hinf", "aak", "bt_bound",
           "f32_deviation", "met_tol", "failed", "reason", "conversion_error", "poles_touched")


@dataclass
class Report:
    """Per-filter results of a distillation (arrays of the batch shape) and the request."""

    columns: dict[str, np.ndarray]
    request: dict[str, Any]
    shape: tuple[int, ...] = field(default=())

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per layer (the leading batch axis; one row for a flat batch)."""
        layers = self.shape[0] if len(self.shape) >= 2 else 1
        rows = []
        for layer in range(layers):
            part = {k: np.asarray(v).reshape(layers, -1)[layer] for k, v in self.columns.items()}
            ok = ~part["failed"]
            ratio = part["hinf"][ok] / np.where(part["aak"][ok] > 0, part["aak"][ok], np.nan)
            rows.append({
                "layer": layer, "filters": int(ok.size),
                "missed": int((ok & ~part["met_tol"]).sum()), "failed": int((~ok).sum()),
                "order_median": float(np.median(part["order"][ok])) if ok.any() else None,
                "order_max": int(part["order"][ok].max()) if ok.any() else None,
                "modes_max": int(part["modes"][ok].max()) if ok.any() else None,
                "l2_median": float(np.median(part["l2"][ok])) if ok.any() else None,
                "hinf_median": float(np.median(part["hinf"][ok])) if ok.any() else None,
                # the worst filter: a bank is as safe in float32 as its worst channel
                "f32_deviation_max": float(part["f32_deviation"][ok].max())
                if ok.any() else None,
                # None where no model has a finite ratio (all exact: aak = 0)
                "hinf_over_aak_median": float(np.nanmedian(ratio))
                if np.isfinite(ratio).any() else None,
                "methods": {m: int((part["method"][ok] == m).sum())
                            for m in np.unique(part["method"][ok])}})
        return rows

    def __str__(self) -> str:
        head = ("layer", "filters", "missed", "failed", "order med/max", "modes max", "l2 med",
                "hinf med", "hinf/aak med", "f32 dev max", "methods")
        rows = [head]
        for r in self.summary_rows():
            fmt = (lambda x: "-" if x is None else f"{x:.2e}")
            rows.append((str(r["layer"]), str(r["filters"]), str(r["missed"]), str(r["failed"]),
                         f"{r['order_median']}/{r['order_max']}", str(r["modes_max"]),
                         fmt(r["l2_median"]), fmt(r["hinf_median"]),
                         "-" if r["hinf_over_aak_median"] is None
                         else f"{r['hinf_over_aak_median']:.2f}", fmt(r["f32_deviation_max"]),
                         ", ".join(f"{k} {v}" for k, v in r["methods"].items())))
        widths = [max(len(row[j]) for row in rows) for j in range(len(head))]
        return "\n".join("  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows)

    def missed(self) -> list[tuple[int, ...]]:
        """The filters whose model misses the tolerance (kept with ``on_fail="best"``,
        ``met_tol`` false), by their index in the batch shape."""
        return self._indices(~self.columns["met_tol"] & ~self.columns["failed"])

    def failures(self) -> list[tuple[int, ...]]:
        """The filters that failed (order 0, ``reason`` says why), by their index in the batch
        shape."""
        return self._indices(self.columns["failed"])

    def _indices(self, mask) -> list[tuple[int, ...]]:
        return [tuple(int(j) for j in np.unravel_index(i, self.shape))
                for i in np.flatnonzero(mask)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the request, a per-layer summary, the per-filter columns, and the
        filters that missed the tolerance (``missed``: index, order, error in the norm of the
        tolerance, reason) and that failed (``failed``: index, reason)."""
        def plain(v):
            v = np.asarray(v)
            return np.where(np.isfinite(v), v, None).tolist() if v.dtype.kind == "f" \
                else v.tolist()

        norm = self.request.get("norm", "l2")
        missed = [{"index": list(i), "order": int(self.columns["order"][i]),
                   norm: float(self.columns[norm][i]), "reason": self.columns["reason"][i]}
                  for i in self.missed()]
        failed = [{"index": list(i), "reason": self.columns["reason"][i]}
                  for i in self.failures()]
        return {"request": self.request, "shape": list(self.shape),
                "summary": self.summary_rows(), "missed": missed, "failed": failed,
                "filters": {k: plain(v) for k, v in self.columns.items()}}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)


@dataclass
class Distillation:
    """A distilled model: the ``bank`` of modal filters and its ``report``."""

    bank: ModalSSM
    report: Report


def distill(filters, order=None, *, modes: int | None = None, tol: float | None = None,
            method: str = "auto", norm: str = "l2", max_order: int | None = None,
            on_fail: str = "best", executor: Executor | None = None, workers: int = 1,
            threads: int | None = None, chunk_size: int = 64, shard_dir: str | os.PathLike | None = None,
            resume: bool = False, progress: bool = False, **options) -> Distillation:
    r"""Distill every filter of a model into a bank of modal state-space models.

    Filters are independent: they are cut into chunks of ``chunk_size`` and reduced with
    :func:`mor.reduce` on ``executor`` (any ``concurrent.futures.Executor``, e.g. a Dask
    ``Client(...).get_executor()``), on a local process pool of ``workers`` processes, or
    here when ``workers == 1``. Each worker gets ``threads`` Numba threads (default
    ``max(1, cores // workers)``) and one BLAS thread, so that workers do not oversubscribe
    the cores; a run here keeps the caller's settings.

    Parameters
    ----------
    filters : array_like ``(..., L)``
        E.g. ``(layers, channels, L)``. Filters with NaN or Inf taps are reported by index as
        failed and get order 0 (unless ``on_fail="raise"``) instead of stopping the others.
    order, modes, tol, norm, max_order
        As in :func:`mor.reduce` (exactly one of ``order``, ``modes``, ``tol``).
    method : str
        ``"auto"`` or a registered method (see :func:`mor.reduce`). ``"auto"`` runs the
        methods ``AUTO_METHODS`` gives for the request, chosen by measured model quality and
        time (``docs/defaults.md``): for ``order``/``modes`` in ``l2``, ``"modal"``: up to
        `AUTO_HOMOTOPY_MODES` modes from the order homotopy (``init="homotopy"``; never
        worse than balanced truncation in ``l2``), beyond from balanced truncation with the
        residues re-solved for a convolution's output error over the window
        (`mor.refit_residues` with ``metric="window"``, the poles and the tail held;
        ``report.request["residues"]`` says ``"window"``); in ``hinf``, ``"balanced"`` and
        ``"hankel"``, keeping per filter the one with the smaller error; for ``tol``,
        ``"balanced"``; with ``device=``, ``"balanced"`` (`DEVICE_AUTO_METHODS`). The report
        says which method built each filter, its request the options used.
    on_fail : {"best", "flag", "raise"}
        ``"best"`` (default): with ``tol``, a filter that no order up to ``max_order`` meets
        keeps its most accurate stable model, with ``met_tol`` false and its error in the
        report (`Report.missed`), as in :func:`mor.reduce`; a filter whose model fails
        otherwise (NaN or Inf taps, no stable model) gets order 0 and a reason in the report
        (`Report.failures`). ``"flag"``: a filter that misses the tolerance fails too, with
        order 0. ``"raise"``: the first filter that fails raises.
    shard_dir : path, optional
        Write each finished chunk there as a bank file; with ``resume=True`` chunks already
        written are read back instead of computed again, so an interrupted run loses nothing
        it wrote. The folder's ``manifest.json`` records the settings (request, chunk size,
        ``on_fail``, a checksum of the filters): resuming with other settings, or a new run
        (``resume=False``) in a folder holding shards, raises `ShardMismatch` (a
        ``ValueError`` naming the settings that differ) before any filter is reduced.
    progress : bool
        Show a progress bar over chunks.
    **options
        The method's options (see :func:`mor.reduce`); with ``"auto"``, each of its methods
        gets those it takes, and an option none takes is a ``ValueError``. ``device="cuda"``
        (after ``import mor.torch``): the Hankel decompositions of balanced truncation on
        that torch device, for long filters (block Lanczos, `mor.hankel_singular_values`),
        in this process (no ``workers`` or ``executor``).

    Returns
    -------
    Distillation
        ``bank`` (a `ModalSSM` of the batch shape) and ``report``.

    Raises
    ------
    ValueError
        For invalid filters (shape, dtype), sizes, methods or options (checked before any
        filter is reduced), shards of other settings, and with ``on_fail="raise"`` the first
        filter that fails (by its index in the batch).

    See Also
    --------
    mor.reduce : one batch, in this process.
    mor.torch.distill_module : the long convolutions of a torch model swapped for recurrences.

    Examples
    --------
    Two layers of three filters, each at 4 compact modes (the GPU state size), fitted by
    modal fitting (``method="auto"`` for a size in ``l2``):

    >>> import mor
    >>> from mor.demo import hyena_like_filters
    >>> filters = hyena_like_filters(6, 256).reshape(2, 3, 256)
    >>> out = mor.distill(filters, modes=4)
    >>> print(out.bank.shape, out.bank.modes.max())
    (2, 3) 4
    >>> print(set(out.report.columns["method"].ravel()))
    {'modal'}
    >>> print([row["filters"] for row in out.report.summary_rows()])
    [3, 3]

    A tolerance out of reach below ``max_order`` keeps each filter's most accurate model,
    listed by index as missing it (``on_fail="flag"`` would give them order 0):

    >>> out = mor.distill(filters, tol=1e-6, max_order=4)
    >>> print(out.bank.order.min(), out.report.missed()[:2], out.report.failures())
    4 [(0, 0), (0, 1)] []
    """
    check_norm(norm)
    if options.get("device") is not None:  # a torch device, named in the report and manifest
        if executor is not None or workers > 1:
            raise ValueError("device= runs the reductions in this process on that device: "
                             "leave executor and workers out")
        options = {**options, "device": str(options["device"])}
    candidates = _candidates(method, options, "tol" if tol is not None else "size", norm)
    window = method == "auto" and _window_residues(order, modes, tol, norm, options)
    if method == "auto":
        options = _auto_options(options, order, modes, tol, norm)
    if on_fail not in ON_FAIL:
        raise ValueError(f"on_fail must be one of {ON_FAIL}, got {on_fail!r}")
    if chunk_size < 1 or workers < 1:
        raise ValueError(f"chunk_size and workers must be >= 1, got {chunk_size}, {workers}")
    array = np.asarray(filters)
    if array.ndim == 0 or array.size == 0 or np.iscomplexobj(array) or not (
            np.issubdtype(array.dtype, np.number) or array.dtype == bool):  # as `reduce`'s
        raise ValueError(f"filters must be a non-empty real array of shape (..., L), got dtype "
                         f"{array.dtype} and shape {array.shape}")
    batch, length = array.shape[:-1], array.shape[-1]
    # as given (a memory map stays on disk): each chunk is made float64 where it is reduced,
    # the filters with NaN or Inf taps reduced as zero filters (`_distill_chunk`)
    flat = array.reshape(-1, length)
    bad = np.concatenate([~np.isfinite(flat[i:i + chunk_size]).all(axis=1)
                          for i in range(0, flat.shape[0], chunk_size)])
    if bad.any() and on_fail == "raise":
        first = tuple(int(i) for i in np.unravel_index(np.flatnonzero(bad)[0], batch))
        raise ValueError(f"filters has NaN or Inf taps in filter {first}")
    request = {"order": None if order is None else np.asarray(order).tolist(), "modes": modes,
               "tol": tol, "norm": norm, "method": method, "max_order": max_order,
               "options": options, "shape": list(array.shape),
               "residues": "window" if window else "fit"}
    if threads is None and (executor is not None or workers > 1):
        threads = max(1, (os.cpu_count() or 1) // workers)
    job = partial(_distill_chunk, order=order, modes=modes, tol=tol, norm=norm,
                  candidates=candidates, max_order=max_order, threads=threads, options=options,
                  keep_best=on_fail == "best", window_residues=window)
    chunks = [(s, min(s + chunk_size, flat.shape[0])) for s in range(0, flat.shape[0],
                                                                     chunk_size)]
    if order is not None and np.ndim(order):
        orders = np.broadcast_to(np.asarray(order), batch).reshape(-1)
        job_inputs = [(flat[a:b], orders[a:b]) for a, b in chunks]
    else:
        job_inputs = [(flat[a:b], None) for a, b in chunks]
    if "device" in options and len(chunks) > 1:
        executor, workers = None, DEVICE_CHUNKS_IN_FLIGHT
    results = _run(job, job_inputs, chunks, executor, workers, shard_dir, resume, request,
                   progress, in_threads="device" in options)
    bank, columns = _assemble(results, batch)
    if bad.any():  # reduced as zero filters: their figures say nothing of the filters
        for i in np.flatnonzero(bad):
            columns["failed"].reshape(-1)[i] = True
            columns["met_tol"].reshape(-1)[i] = False
            columns["reason"].reshape(-1)[i] = "NaN or Inf taps"
            for c in ("l2", "tail", "hinf", "aak", "bt_bound", "f32_deviation"):
                columns[c].reshape(-1)[i] = np.nan
    if on_fail == "raise" and columns["failed"].any():
        i = int(np.flatnonzero(columns["failed"].reshape(-1))[0])
        raise ValueError(f"filter {tuple(int(j) for j in np.unravel_index(i, batch))} failed: "
                         f"{columns['reason'].reshape(-1)[i]}")
    return Distillation(bank, Report(columns, request, tuple(batch)))


def _candidates(method: str, options: dict[str, Any], request: str, norm: str
                ) -> tuple[type[Method], ...]:
    """The method classes ``method`` names (``"auto"``: `AUTO_METHODS` of the ``request``,
    ``"size"`` or ``"tol"``, in ``norm``), with the options checked: each must be taken by the
    method, or with ``"auto"`` by at least one of its methods."""
    if method != "auto":
        try:
            chosen = get_method(method)
        except ValueError as exc:
            raise ValueError(f"{exc} (or 'auto')") from None
        chosen.check_options(options)
        return (chosen,)
    names = DEVICE_AUTO_METHODS if "device" in options else AUTO_METHODS[request, norm]
    candidates = tuple(get_method(name) for name in names)
    taken = {name for c in candidates for name in c.options()}
    unknown = sorted(set(options) - taken)
    if unknown:
        raise ValueError(f"method 'auto' (here {', '.join(names)}) does not take "
                         f"{', '.join(map(repr, unknown))}; its methods take: "
                         f"{', '.join(sorted(taken))}")
    return candidates


def _auto_options(options: dict[str, Any], order, modes: int | None, tol: float | None,
                  norm: str) -> dict[str, Any]:
    """``options`` with ``init="homotopy"`` where ``method="auto"`` fits modal models of at
    most `AUTO_HOMOTOPY_MODES` modes and the caller chose no start (nor real poles)."""
    asked = _modes_asked(order, modes)
    small = tol is None and norm == "l2" and asked is not None and asked <= AUTO_HOMOTOPY_MODES
    if small and "init" not in options and not options.get("real_poles", False) \
            and "device" not in options:
        return {**options, "init": "homotopy"}
    return options


def _modes_asked(order, modes: int | None) -> float | None:
    """The most compact modes a size request asks for (an order counts half), None for a
    tolerance or an empty order."""
    if modes is not None:
        return modes
    if order is not None and np.size(order) > 0:
        return float(np.max(order)) / 2
    return None


def _window_residues(order, modes: int | None, tol: float | None, norm: str,
                     options: dict[str, Any]) -> bool:
    """Whether ``method="auto"`` re-solves its modal fits' residues for the window metric:
    sizes above `AUTO_HOMOTOPY_MODES` modes in ``l2``, complex poles, on the CPU."""
    asked = _modes_asked(order, modes)
    large = tol is None and norm == "l2" and asked is not None and asked > AUTO_HOMOTOPY_MODES
    return large and not options.get("real_poles", False) and "device" not in options


def _refit_window(h: np.ndarray, fits: ModalSSM) -> ModalSSM:
    """``fits`` (flat) with residues re-solved for the window metric, tail held, per filter
    where the float32 figure stays within ``max(F32_RTOL, the fit's)``; ``info`` as the
    fits' with the errors of the models returned."""
    refit = refit_residues(h, fits, metric="window")
    ours, theirs = refit.compact(), fits.compact()
    within = float32_figure(h, *ours[:2]) <= np.maximum(F32_RTOL, float32_figure(h, *theirs[:2]))
    width = max(ours[0].shape[1], theirs[0].shape[1])  # compact forms order modes by weight
    ours, theirs = ([np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in form[:2]] + [form[2]]
                    for form in (ours, theirs))
    out = ModalSSM.from_compact(*(np.where(within.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
                                  for a, b in zip(ours, theirs)))
    out.info.update(fits.info)
    out.info.update({k: np.where(within, refit.info[k], fits.info[k])
                     for k in ("l2", "tail", "hinf", "aak", "bt_bound", "f32_deviation")})
    return out


def _distill_chunk(data, *, order, modes, tol, norm, candidates, max_order, threads, options,
                   keep_best=False, window_residues=False) -> dict[str, np.ndarray]:
    """Reduce one chunk (runs in a worker); returns plain arrays."""
    h, orders = data
    h = np.array(h, dtype=np.float64)
    h[~np.isfinite(h).all(axis=1)] = 0.0  # reported as failed by `distill`
    if threads is not None:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        limits = threadpool_limits(1)
    else:
        limits = None
    try:
        size = {"order": orders if orders is not None else order, "modes": modes, "tol": tol}
        # `candidates` holds the classes: unpickling them in a worker imports the modules that
        # register them, so methods registered outside mor reach worker processes too
        results = []
        for family_of in candidates:
            taken = family_of.options()
            opts = {k: v for k, v in options.items() if k in taken}
            results.append(reduce(h, norm=norm, method=family_of.name, max_order=max_order,
                                  on_fail="best" if keep_best else "flag", **size, **opts))
        if window_residues:
            results = [_refit_window(h, red) for red in results]
        return _choose(results, [c.name for c in candidates], norm, tol is not None)
    finally:
        if limits is not None:
            limits.restore_original_limits()


def _choose(results: list[ModalSSM], names, norm: str, by_tol: bool) -> dict[str, np.ndarray]:
    """Per filter the best of the candidate models."""
    f = results[0].shape[0]
    score = np.full((len(results), f), np.inf)
    unmet = np.full((len(results), f), np.inf)
    for j, red in enumerate(results):
        ok = ~red.info["failed"]
        err = np.asarray(red.info[norm], dtype=float)
        met = red.info.get("met_tol", ok) if by_tol else ok
        # with tol the smallest order wins and the error breaks ties (errors are below 1e6)
        score[j] = np.where(ok & met, err + (red.order * 1e6 if by_tol else 0.0), np.inf)
        unmet[j] = np.where(ok, err, np.inf)  # kept unmet models ("best"): the smaller error
    best = np.where(np.isfinite(score).any(axis=0), np.argmin(score, axis=0),
                    np.argmin(unmet, axis=0))
    width = max(r.compact()[0].shape[-1] for r in results)
    out = {"poles": np.zeros((f, width), complex), "residues": np.zeros((f, width), complex),
           "direct": np.zeros(f)}
    cols: dict[str, list] = {c: [] for c in COLUMNS}
    for i in range(f):
        red = results[best[i]]
        p, r, d = red.compact()
        out["poles"][i, : p.shape[1]], out["residues"][i, : p.shape[1]] = p[i], r[i]
        out["direct"][i] = d[i]
        for c in COLUMNS:
            if c == "method":
                cols[c].append(names[best[i]])
            elif c == "modes":
                cols[c].append(int(red.modes[i]))
            elif c == "met_tol":
                cols[c].append(bool(red.info.get("met_tol", ~red.info["failed"])[i]))
            else:
                cols[c].append(red.info[c][i])
    for c in COLUMNS:
        out[c] = np.asarray(cols[c], dtype=object if c in ("method", "reason") else None)
    return out


def _run(job, inputs, chunks, executor, workers, shard_dir, resume, request, progress,
         in_threads=False):
    """Run the chunks (skipping shards already written), writing shards as they finish; with
    several ``workers`` and no ``executor``, in that many processes (threads with
    ``in_threads``).

    The shard folder is checked before any work. A resumed run compares its settings (the
    filters' checksum among them) with the folder's manifest first; a fresh run checksums its
    filters in a thread beside the first chunks (about 6 ms a filter of 2^20 taps here) and
    writes the manifest before the first shard."""
    shards = None if shard_dir is None else Path(shard_dir)
    if resume and shards is None:
        raise ValueError("resume=True needs shard_dir: the folder of the run to continue")
    results: list[dict | None] = [None] * len(chunks)
    manifest = checksum = None  # a fresh run's settings, made beside the first chunks
    if shards is not None:
        recorded = _check_shard_dir(shards, resume)
        if recorded is None:
            checksum = ThreadPoolExecutor(1)
            manifest = checksum.submit(_shard_settings, job, inputs, chunks, request)
        else:
            _refuse_other_settings(shards, recorded,
                                   _shard_settings(job, inputs, chunks, request))
            for k, (a, b) in enumerate(chunks):
                results[k] = _read_shard(shards / _shard_name(a, b), request)
    todo = [k for k in range(len(chunks)) if results[k] is None]
    bar = tqdm(total=len(chunks), initial=len(chunks) - len(todo), disable=not progress,
               unit="chunk", desc="distilling")
    own = None
    if executor is None and workers > 1 and len(todo) > 1:
        own = executor = (ThreadPoolExecutor(workers) if in_threads else
                          ProcessPoolExecutor(workers, mp_context=get_context("spawn")))
    try:
        mapped = (executor.map(job, [inputs[k] for k in todo]) if executor is not None
                  else map(job, (inputs[k] for k in todo)))
        for k, result in zip(todo, mapped):
            results[k] = result
            if shards is not None:
                if manifest is not None:
                    _write_manifest(shards, manifest.result())
                    manifest = None
                _write_shard(shards / _shard_name(*chunks[k]), result, request)
            bar.update(1)
        if manifest is not None:  # no chunk to run
            _write_manifest(shards, manifest.result())
    finally:
        bar.close()
        if own is not None:
            own.shutdown()
        if checksum is not None:
            checksum.shutdown(wait=False)
    return results


def _shard_name(start: int, stop: int) -> str:
    return f"chunk_{start:09d}_{stop:09d}.npz"


#: The file in a shard folder that records the settings its shards were written with.
SHARD_MANIFEST = "manifest.json"


class ShardMismatch(ValueError):
    """A shard folder this call cannot use (raised before any filter is reduced).

    ``reason`` is ``"exists"`` (the folder holds shards and ``resume`` is false),
    ``"settings"`` (it was written with other settings; ``differences`` maps each setting
    that differs to ``(written, now)``) or ``"unknown"`` (shards without a manifest).
    """

    def __init__(self, message: str, folder: Path, reason: str,
                 differences: dict[str, tuple[Any, Any]] | None = None):
        super().__init__(message)
        self.folder, self.reason = Path(folder), reason
        self.differences = dict(differences or {})


def shard_files(folder: str | os.PathLike) -> list[Path]:
    """The chunk files already written in a shard folder (none if it does not exist)."""
    folder = Path(folder)
    return sorted(folder.glob("chunk_*.npz")) if folder.is_dir() else []


def _shard_settings(job, inputs, chunks, request: dict) -> dict[str, Any]:
    """Everything the shards of a run depend on, JSON-ready: the request, the chunking, the
    failure policy and a checksum of the filters (so that resuming on other filters of the
    same shape is refused)."""
    digest = hashlib.sha256()
    for taps, _ in inputs:  # per-filter orders are in the request
        # the float64 taps' buffer itself (no bytes copy: at 2^20 taps a copy had doubled
        # the checksum's time)
        digest.update(np.ascontiguousarray(taps, dtype=np.float64))
    keep_best = bool(getattr(job, "keywords", {}).get("keep_best", False))
    settings = dict(request)
    settings.update(chunk_size=chunks[0][1] - chunks[0][0] if chunks else 0,
                    on_fail="best" if keep_best else "flag or raise",
                    filters=f"sha256:{digest.hexdigest()}")
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def _shard_differences(written: dict, now: dict) -> dict[str, tuple[Any, Any]]:
    """The settings that differ (the filters' checksum only when their shape agrees)."""
    keys = sorted(set(written) | set(now), key=lambda k: (k == "filters", k != "shape", k))
    found = {k: (written.get(k), now.get(k)) for k in keys if written.get(k) != now.get(k)}
    if "shape" in found:
        found.pop("filters", None)
    return found


def _describe(key: str, written: Any, now: Any) -> str:
    """One setting that differs, for a message."""
    if key == "filters":
        return (f"filters: other taps (checksum {str(written)[7:19]}... there, "
                f"{str(now)[7:19]}... now)")
    text = [json.dumps(v, sort_keys=True, default=str) for v in (written, now)]
    text = [t if len(t) <= 60 else t[:57] + "..." for t in text]
    return f"{key} {text[0]} there, {text[1]} now"


def _check_shard_dir(folder: Path, resume: bool) -> dict[str, Any] | None:
    """Check that ``folder`` can take this run's shards; returns the settings its manifest
    records when resuming a run that wrote one, None for a fresh folder.

    A fresh run needs a folder without shards; a resumed one, shards with a manifest (or
    neither). Raises `ShardMismatch` otherwise, before any work.
    """
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"shard_dir {folder} is a file, not a folder")
    written = shard_files(folder)
    manifest = folder / SHARD_MANIFEST
    if not resume and written:
        raise ShardMismatch(f"{folder} already holds shards of an earlier run ({len(written)} "
                            "chunk files); pass resume=True to continue that run, or use an "
                            "empty directory", folder, "exists")
    if resume and manifest.exists():
        try:
            return json.loads(manifest.read_text())["settings"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ShardMismatch(f"cannot resume from {folder}: its {SHARD_MANIFEST} is not "
                                f"readable ({exc}); use an empty directory", folder,
                                "unknown") from exc
    if written:  # resume, but nothing says what the shards were written for
        raise ShardMismatch(f"cannot resume from {folder}: it holds shards but no "
                            f"{SHARD_MANIFEST} saying which settings they were written with; "
                            "use an empty directory", folder, "unknown")
    return None


def _refuse_other_settings(folder: Path, recorded: dict[str, Any],
                           settings: dict[str, Any]) -> None:
    """Raise `ShardMismatch` naming each setting in which this run differs from the one that
    wrote ``folder`` (``recorded``)."""
    differences = _shard_differences(recorded, settings)
    if differences:
        said = "; ".join(_describe(k, *pair) for k, pair in differences.items())
        raise ShardMismatch(f"cannot resume from {folder}: its shards were written with "
                            f"different settings ({said}); resume with the same settings "
                            "or use an empty directory", folder, "settings", differences)


def _write_manifest(folder: Path, settings: dict[str, Any]) -> None:
    """Record a fresh run's ``settings`` in ``folder`` (created), before its first shard."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / SHARD_MANIFEST
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps({"format": 1, "settings": settings}, indent=1, sort_keys=True))
    os.replace(tmp, manifest)  # atomic


def _write_shard(path: Path, result: dict, request: dict) -> None:
    info = {c: result[c] for c in COLUMNS}
    info["request"] = json.dumps(request, sort_keys=True, default=str)
    bank = ModalSSM.from_compact(result["poles"], result["residues"], result["direct"],
                                 info=info)
    tmp = path.with_suffix(".tmp")
    bank.save(tmp)
    os.replace(tmp, path)  # atomic: a killed run leaves whole shards or none


def _read_shard(path: Path, request: dict) -> dict | None:
    if not path.exists():
        return None
    bank = load(path)
    if bank.info.get("request") != json.dumps(request, sort_keys=True, default=str):
        raise ValueError(f"{path} was written for a different request; use another directory")
    poles, residues, direct = bank.compact()
    out = {"poles": poles, "residues": residues, "direct": direct}
    if "f32_deviation" not in bank.info:  # a shard written before the column was reported
        bank.info["f32_deviation"] = bank.float32_deviation(int(request["shape"][-1]))
    out.update({c: bank.info[c] for c in COLUMNS})
    return out


def _assemble(results: list[dict], batch: tuple[int, ...]):
    width = max(r["poles"].shape[1] for r in results)
    pad = (lambda a: np.pad(a, ((0, 0), (0, width - a.shape[1]))))
    poles = np.concatenate([pad(r["poles"]) for r in results])
    residues = np.concatenate([pad(r["residues"]) for r in results])
    direct = np.concatenate([r["direct"] for r in results])
    columns = {c: np.concatenate([np.asarray(r[c]) for r in results]).reshape(batch)
               for c in COLUMNS}
    for c in ("method", "reason"):
        columns[c] = columns[c].astype(object)
    for c in ("met_tol", "failed"):
        columns[c] = columns[c].astype(bool)
    info = dict(columns)
    bank = ModalSSM.from_compact(poles.reshape(batch + (width,)),
                                 residues.reshape(batch + (width,)), direct.reshape(batch),
                                 info=info)
    return bank, columns
