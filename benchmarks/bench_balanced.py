#!/usr/bin/env python
"""Balanced truncation of one FIR filter: mor against SLICOT AB09AD (slycot) and pyMOR.

One shared trained filter (``filters[0, 0, :L]``, float64, L = 1024 by default) is reduced to
orders 4, 8, 16, 32 and 64 by

* mor: ``mor.reduce(h, d)`` (default: Krylov Hankel SVD for long filters) and
  ``mor.reduce(h, d, hankel_method="dense")`` (full LAPACK SVD of the Hankel matrix);
* SLICOT ``AB09AD`` through slycot (``dico="D", job="B", equil="N"``: square-root balanced
  truncation, the code behind python-control's ``balred``) on the shift realisation
  ``(A = down-shift, B = e_1, C = h[1:], D = h[0])`` of order ``N = L - 1``;
* pyMOR ``BTReductor(LTIModel.from_matrices(A, B, C, D, sampling_time=1)).reduce(d)`` (a fresh
  model per order: pyMOR caches the Gramians on the model);
* pyMOR ``RandomizedERAReductor(h[1:].reshape(-1, 1, 1), sampling_time=1,
  feedthrough=h[:1].reshape(1, 1)).reduce(d)`` (default 2 power iterations) and, for reference,
  the exact ``ERAReductor`` (full SVD of the Hankel matrix) with the same arguments.

Every reduced model is measured the same way: its ``(A, B, C, D[, E])`` (``E^{-1} A``,
``E^{-1} B`` for pyMOR's descriptor models) goes through ``mor.ModalSSM.from_dense`` and
``mor.compare(h, ssm)``; ``hinf`` is the H-infinity error relative to ``max |H|`` (multiply by
``peak`` for the absolute error). mor's own models go to ``mor.compare`` directly. A batch row
times ``mor.reduce`` on all 1024 shared filters (L = 2048, order 32).
Run ``python benchmarks/bench_balanced.py [--quick]``.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

import _common as C  # noqa: E402  (also puts the checkout first on sys.path)
import mor  # noqa: E402

NAME = "bench_balanced"
TARGETS = {"speedup_vs_slow_bt": 300.0, "hinf_rel_to_dense": 0.01, "speedup_vs_rera": 3.0,
           "batch_seconds": 5.0}


# ---------------------------------------------------------------------------- measurement
def measure(h, a, b, c, d, e=None) -> dict:
    """Errors of a dense reduced model against the filter, through ``mor.compare``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if e is not None:
        e = np.asarray(e, dtype=np.float64)
        a, b = np.linalg.solve(e, a), np.linalg.solve(e, b)
    ssm = mor.ModalSSM.from_dense(a, b, np.asarray(c, dtype=np.float64).reshape(-1),
                                  float(np.asarray(d).reshape(-1)[0]))
    return errors_of(h, ssm)


def errors_of(h, ssm) -> dict:
    cmp = mor.compare(h, ssm)
    out = {k: float(np.asarray(getattr(cmp, k))) for k in ("hinf", "l2", "aak", "peak")}
    out["order"] = int(np.asarray(cmp.order))
    out["hinf_abs"] = out["hinf"] * out["peak"]
    out["stable"] = bool(np.asarray(ssm.is_stable()))
    return out


def shift_realization(h):
    sys_ = mor.StateSpace.from_fir(h)
    n = sys_.n_states
    return (np.asfortranarray(sys_.a), np.asfortranarray(sys_.b.reshape(n, 1)),
            np.asfortranarray(sys_.c.reshape(1, n)), np.array([[float(sys_.d)]]))


def run(fn, *, warmup=False, repeats=None):
    """``{"seconds", "times", "model"}`` (model from the first timed run) or ``{"error"}``."""
    models = []

    def call():
        out = fn()
        models.append(out)
        return out

    try:
        model, median, times = C.timed(call, repeats=repeats, warmup=warmup)
    except Exception as exc:  # noqa: BLE001 - a failing competitor is a result
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"seconds": median, "times": times, "model": model,
            "all_models": models[1:] if warmup else models}


# ---------------------------------------------------------------------------- competitors
def mor_default(h, d):
    return mor.reduce(h, d)


def mor_dense(h, d):
    return mor.reduce(h, d, hankel_method="dense")


def mor_core(h, d):
    """The reduction without reduce()'s error report (``errors=()``)."""
    return mor.reduce(h, d, errors=())


def slicot_ab09ad(mats, d):
    import slycot
    a, b, c, dd = mats
    n = a.shape[0]
    nr, ar, br, cr, _hsv = slycot.ab09ad("D", "B", "N", n, 1, 1, a.copy(order="F"),
                                         b.copy(order="F"), c.copy(order="F"), nr=d)
    return nr, ar, br, cr, dd


def pymor_bt(mats, d):
    from pymor.models.iosys import LTIModel
    from pymor.reductors.bt import BTReductor
    a, b, c, dd = mats
    fom = LTIModel.from_matrices(a, b, c, dd, sampling_time=1)
    return BTReductor(fom).reduce(d)


def pymor_rera(h, d):
    from pymor.reductors.era import RandomizedERAReductor
    return RandomizedERAReductor(h[1:].reshape(-1, 1, 1), sampling_time=1,
                                 feedthrough=h[:1].reshape(1, 1)).reduce(d)


def pymor_era(h, d):
    from pymor.reductors.era import ERAReductor
    return ERAReductor(h[1:].reshape(-1, 1, 1), sampling_time=1,
                       feedthrough=h[:1].reshape(1, 1)).reduce(d)


def pymor_errors(h, rom) -> dict:
    a, b, c, d, e = rom.to_matrices()
    out = measure(h, a, b, c, d, e)
    out["descriptor"] = e is not None and not np.allclose(e, np.eye(e.shape[0]))
    return out


# ---------------------------------------------------------------------------- benchmark parts
def bench_order(h, mats, d, log, with_slow=True):
    res = {}
    r = run(lambda: mor_default(h, d), warmup=True)
    if "model" in r:
        r["errors"] = errors_of(h, r["model"])
        r["info_hinf"] = float(np.asarray(r["model"].info["hinf"]))
    res["mor"] = r
    r = run(lambda: mor_core(h, d), warmup=True)
    r.pop("model", None)
    res["mor_core"] = r
    r = run(lambda: mor_dense(h, d))
    if "model" in r:
        r["errors"] = errors_of(h, r["model"])
    res["mor_dense"] = r
    if with_slow:
        r = run(lambda: slicot_ab09ad(mats, d))
        if "model" in r:
            nr, ar, br, cr, dd = r["model"]
            r["nr"] = int(nr)
            r["errors"] = measure(h, ar, br, cr, dd)
        res["ab09ad"] = r
        r = run(lambda: pymor_bt(mats, d), repeats=1)
        if "model" in r:
            r["errors"] = pymor_errors(h, r["model"])
        res["pymor_bt"] = r
    r = run(lambda: pymor_rera(h, d), warmup=True)
    if "model" in r:  # randomized: measure every timed run
        errs = [pymor_errors(h, m) for m in r["all_models"]]
        r["errors"] = errs[0]
        r["hinf_runs"] = [e["hinf"] for e in errs]
    res["pymor_rera"] = r
    r = run(lambda: pymor_era(h, d))
    if "model" in r:
        r["errors"] = pymor_errors(h, r["model"])
    res["pymor_era"] = r
    t_mor = res["mor"].get("seconds")
    ref = res["mor_dense"].get("errors", {}).get("hinf")
    for r in res.values():
        r.pop("model", None)
        r.pop("all_models", None)
        r["time_ratio_to_mor"] = r["seconds"] / t_mor if t_mor and "seconds" in r else None
        e = r.get("errors")
        r["hinf_ratio_to_dense_bt"] = e["hinf"] / ref if e and ref else None
    log(f"order {d}: " + ", ".join(
        f"{k} {C.fmt_t(v.get('seconds'))}" + (f" hinf {v['errors']['hinf']:.3e}"
                                              if "errors" in v else "")
        + (f" [{v['error']}]" if "error" in v else "") for k, v in res.items()))
    return {"order": d, "methods": res}


def control_balred_note(mats, d):
    """What python-control's balred does with a discrete-time system (recorded, not timed)."""
    try:
        import control
        a, b, c, dd = mats
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            red = control.balred(control.ss(a, b, c, dd, dt=1), d)
        return {"requested_order": d, "returned_states": int(red.nstates), "returned_dt": red.dt}
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def bench_batch(filters, n_filters, order, n_rera, log):
    hs = filters.reshape(-1, filters.shape[-1])[:n_filters]
    log(f"batch: mor.reduce on {hs.shape[0]} filters of L = {hs.shape[1]}, order {order}")
    out = {"n_filters": hs.shape[0], "L": hs.shape[1], "order": order, "cores": C.cores()}
    with C.mor_threads(out["cores"]):
        mor.reduce(hs[:64], order, on_fail="flag")  # warm-up, on the threads the runs use
        try:
            ssm = mor.reduce(hs, order)
            out["on_fail"] = "raise"
        except ValueError as exc:  # some filter failed: say so, and time the flagged run
            out["raise_error"] = str(exc)[:300]
            out["on_fail"] = "flag"
        ssm, out["mor_seconds"], _ = C.timed(
            lambda: mor.reduce(hs, order, on_fail=out["on_fail"]), repeats=3)
        out["mor_no_errors_seconds"] = C.timed(
            lambda: mor.reduce(hs, order, on_fail=out["on_fail"], errors=()), repeats=3)[1]
    log(f"  mor without the error report {C.fmt_t(out['mor_no_errors_seconds'])}")
    if out["cores"] > 1:
        start = time.perf_counter()
        mor.reduce(hs, order, on_fail=out["on_fail"])
        out["mor_one_core_seconds"] = time.perf_counter() - start
        log(f"  mor on one core {C.fmt_t(out['mor_one_core_seconds'])}")
    info = ssm.info
    for key in ("hinf", "l2", "aak"):
        out[f"{key}_median"] = float(np.median(info[key]))
        out[f"{key}_max"] = float(np.max(info[key]))
    out["failed"] = int(np.sum(info["failed"]))
    log(f"  mor {C.fmt_t(out['mor_seconds'])}, median hinf {out['hinf_median']:.2e}")
    if n_rera > 0:
        sample = hs[:n_rera]
        pymor_rera(sample[0], order)  # warm-up
        start = time.perf_counter()
        for h in sample:
            pymor_rera(h, order)
        per = (time.perf_counter() - start) / sample.shape[0]
        out["rera_seconds_per_filter"] = per
        out["rera_estimate_from"] = sample.shape[0]
        out["rera_seconds_estimated"] = per * hs.shape[0]
        log(f"  pyMOR RandomizedERA {C.fmt_t(per)} per filter")
    return out


# ---------------------------------------------------------------------------- report
LABELS = {"mor": "mor reduce (default)", "mor_core": "mor reduce(errors=())*",
          "mor_dense": "mor reduce (hankel_method=dense)", "ab09ad": "slycot AB09AD",
          "pymor_bt": "pyMOR BTReductor", "pymor_rera": "pyMOR RandomizedERA",
          "pymor_era": "pyMOR ERAReductor (full SVD)"}


def targets(orders, batch):
    """The issue's targets. Speed is judged on the reduction alone (``errors=()``: what
    AB09AD, BTReductor and RandomizedERA compute); the ratio to the default ``reduce``, which
    adds the error report, is given beside it."""
    rows = []
    for o in orders:
        m = o["methods"]
        t_core, t_mor = m["mor_core"].get("seconds"), m["mor"].get("seconds")
        for key, goal in (("ab09ad", "speedup_vs_slow_bt"), ("pymor_bt", "speedup_vs_slow_bt"),
                          ("pymor_rera", "speedup_vs_rera")):
            t = m.get(key, {}).get("seconds")
            if t is None or not t_core:
                continue
            ratio = t / t_core
            rows.append((f"d={o['order']}: mor ≥ {TARGETS[goal]:.0f}x faster than {LABELS[key]}",
                         f"{ratio:.3g}x (with the error report: {t / t_mor:.3g}x)",
                         ratio >= TARGETS[goal]))
        hr = m["mor"].get("hinf_ratio_to_dense_bt")
        if hr is not None:
            rows.append((f"d={o['order']}: mor hinf within 1% of dense BT",
                         f"{(hr - 1) * 100:+.3g}%", abs(hr - 1) <= TARGETS["hinf_rel_to_dense"]))
    if batch and batch["n_filters"] == 1024:
        rows.append((f"batch of 1024 filters < {TARGETS['batch_seconds']:.0f} s",
                     C.fmt_t(batch["mor_seconds"]), batch["mor_seconds"] < TARGETS["batch_seconds"]))
    return [{"target": t, "measured": v, "met": bool(ok)} for t, v, ok in rows]


def render(meta, orders, batch, note, tgts):
    lines = [C.header_block(f"Balanced truncation of one filter, L = {meta['L']} "
                            f"(`bench_balanced.py`)", meta)]
    lines.append(f"Filter: {meta['source']}. Wall time (median of repeats: 5 when a run takes "
                 "< 0.2 s, 3 when < 2 s, pyMOR BT once, each with a fresh model) and ratio to "
                 "mor's default `reduce` (> 1: mor is faster).\n")
    keys = [k for k in LABELS if any(k in o["methods"] for o in orders)]
    head = ["order"] + [x for k in keys for x in (LABELS[k], "÷mor")]
    table = []
    for o in orders:
        m = o["methods"]
        cells = [o["order"]]
        for k in keys:
            r = m.get(k, {})
            cells += [r.get("error", C.fmt_t(r.get("seconds")))[:40],
                      C.fmt_r(r.get("time_ratio_to_mor"))]
        table.append(cells)
    lines += [C.md_table(head, table), ""]
    lines.append("\\* `mor.reduce(h, d, errors=())`: the reduction alone; the default `reduce` "
                 "also reports the model's achieved l2, tail and H-inf errors and the bounds.\n")
    lines.append("H-infinity error relative to max|H| (all through `ModalSSM.from_dense` + "
                 "`mor.compare`) and its ratio to mor's dense BT; `aak` = σ_{d+1}/max|H| is "
                 "the least any order-d model can have.\n")
    keys = [k for k in keys if k != "mor_core"]
    head = ["order", "aak"] + [x for k in keys for x in (LABELS[k], "÷dense")]
    table = []
    for o in orders:
        m = o["methods"]
        aak = m["mor_dense"].get("errors", {}).get("aak")
        cells = [o["order"], C.fmt_e(aak, 3)]
        for k in keys:
            r = m.get(k, {})
            e = r.get("errors")
            txt = C.fmt_e(e["hinf"], 4) if e else r.get("error", "—")[:40]
            if k == "pymor_rera" and r.get("hinf_runs") and len(r["hinf_runs"]) > 1:
                txt += f" (max {max(r['hinf_runs']):.3e})"
            cells += [txt, f"{r['hinf_ratio_to_dense_bt']:.4f}"
                      if r.get("hinf_ratio_to_dense_bt") else "—"]
        table.append(cells)
    lines += [C.md_table(head, table), ""]
    abs_row = [f"d={o['order']}: {o['methods']['mor_dense']['errors']['hinf_abs']:.3e}"
               for o in orders if "errors" in o["methods"].get("mor_dense", {})]
    if abs_row:
        peak = orders[0]["methods"]["mor_dense"]["errors"]["peak"]
        lines.append(f"Absolute H-inf error of dense BT (max|H| = {peak:.4g}): "
                     + ", ".join(abs_row) + ".\n")
    if batch:
        lines.append(f"Batch: `mor.reduce(filters.reshape(-1, {batch['L']}), {batch['order']})` "
                     f"on {batch['n_filters']} filters (on_fail={batch['on_fail']}, "
                     f"{batch['failed']} failed). mor runs a batch on `numba.get_num_threads()` "
                     f"threads ({batch['cores']} here; everything else in the script runs with "
                     "one), median of 3 runs after a warm-up on those threads; the pyMOR loop "
                     "runs on one core.\n")
        rows = [["mor, one call", C.fmt_t(batch["mor_seconds"]), "1.00x",
                 f"{batch['hinf_median']:.2e} / {batch['hinf_max']:.2e}"],
                ["mor, same call with `errors=()` (no error report)",
                 C.fmt_t(batch["mor_no_errors_seconds"]),
                 C.fmt_r(batch["mor_no_errors_seconds"] / batch["mor_seconds"]), "—"]]
        if "mor_one_core_seconds" in batch:
            rows.append(["mor, same call on one thread (`numba.set_num_threads(1)`)",
                         C.fmt_t(batch["mor_one_core_seconds"]),
                         C.fmt_r(batch["mor_one_core_seconds"] / batch["mor_seconds"]), "—"])
        if "rera_seconds_estimated" in batch:
            rows.append([f"loop of pyMOR RandomizedERA (estimated from "
                         f"{batch['rera_estimate_from']} filters)",
                         C.fmt_t(batch["rera_seconds_estimated"]),
                         C.fmt_r(batch["rera_seconds_estimated"] / batch["mor_seconds"]), "—"])
        lines += [C.md_table(["method", "total time", "÷mor", "hinf median / max"], rows), ""]
    if note:
        lines.append(f"python-control `balred(ss(A, B, C, D, dt=1), {note.get('requested_order')})`"
                     f": {note}.\n")
    if tgts:
        lines.append("Targets (defined for L = 1024 and the batch of all 1024 filters"
                     + ("" if meta["L"] == 1024 else f"; this run has L = {meta['L']}, so the "
                        "speed-up rows do not test them") + "):\n")
        lines += [C.md_table(["target", "measured", "met"],
                             [[t["target"], t["measured"], "yes" if t["met"] else "**no**"]
                              for t in tgts]), ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: L = 256, order 8, batch of 16 filters")
    parser.add_argument("--length", type=int, default=None, help="filter length (default 1024)")
    parser.add_argument("--orders", type=int, nargs="+", default=None,
                        help="orders (default 4 8 16 32 64)")
    parser.add_argument("--batch", type=int, default=None,
                        help="filters in the batch row (default all 1024; 0 skips it)")
    parser.add_argument("--no-slow", action="store_true",
                        help="skip AB09AD and pyMOR BTReductor (seconds per order)")
    args = parser.parse_args(argv)
    length = args.length or (256 if args.quick else 1024)
    orders = args.orders or ([8] if args.quick else [4, 8, 16, 32, 64])
    n_batch = args.batch if args.batch is not None else (16 if args.quick else 1024)
    name = NAME + ("_quick" if args.quick else "")

    log = C.log
    script_start = time.perf_counter()
    C.pin_threads()
    try:
        from pymor.core.logger import set_log_levels
        set_log_levels({"pymor": "ERROR"})
    except ImportError:
        pass
    filters = C.load_filters()
    h = filters[0, 0, :length].copy()
    source = f"filters[0,0,:{length}]"
    mats = shift_realization(h)
    mor.compare(h, mor.reduce(h, 4))  # warm-up (numba kernels, FFT plans)
    results = [bench_order(h, mats, d, log, with_slow=not args.no_slow) for d in orders]
    note = control_balred_note(mats, orders[0])
    batch = bench_batch(filters, n_batch, 32, 4 if args.quick else 32, log) if n_batch else None
    tgts = targets(results, batch)
    meta = C.metadata(script_start, quick=args.quick, L=length, source=source)
    report = render(meta, results, batch, note, tgts)
    print(report)
    json_path = C.write_json(name, {"meta": meta, "orders": results, "batch": batch,
                                    "control_balred": note, "targets": tgts})
    md_path = C.write_section(name, report)
    log(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
