"""The defaults' time and fit (issue 19.1): ``mor.distill`` with no method flag against the
methods a user would otherwise pick, on all 1024 shared filters (L = 2048).

At ``modes=m`` (m = 2, 4, 8) each is run in this process, one after another, with mor's default
parallelism (Numba threads over the cores; kernels compiled first by ``mor warmup``):

* ``auto`` — the default: modal fitting, from the order homotopy at 2 modes
  (`mor.drivers.distillation.AUTO_HOMOTOPY_MODES`) and from balanced truncation beyond, its
  residues then re-solved for the window metric (``mor.refit_residues(metric="window")``;
  the table says ``residues: window``);
* ``modal`` — ``method="modal"`` (from balanced truncation at every size);
* ``balanced`` — balanced truncation;
* ``balanced+hankel`` — the default before issue 19 (the better per filter of balanced
  truncation and Hankel-norm approximation): both runs' times added, and per filter the
  smaller ``l2`` (what it kept).

Per method: wall time (median of ``--repeats``) and median / worst relative ``l2`` over the
taps. The held-out quality of the same methods on the e2e language models is in
``benchmarks/e2e/RESULTS.md`` and ``docs/defaults.md``. The 1-minute load average is recorded
before and after (other jobs may share the machine). Run ``python
benchmarks/bench_defaults.py [--quick] [--repeats N]``.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
import mor  # noqa: E402
from mor.warmup import warmup  # noqa: E402

NAME = "bench_defaults"
MODES = (2, 4, 8)
METHODS = ("auto", "modal", "balanced", "hankel")


def run(h: np.ndarray, method: str, modes: int, repeats: int) -> dict:
    """Median wall time over ``repeats`` runs of ``mor.distill`` and the last run's errors."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = mor.distill(h, modes=modes, method=method)
        times.append(time.perf_counter() - start)
    cols = out.report.columns
    return {"seconds": statistics.median(times), "l2": np.asarray(cols["l2"], float),
            "kept": sorted(set(np.asarray(cols["method"]).ravel())),
            "options": out.report.request["options"]
            | ({"residues": "window"} if out.report.request["residues"] == "window" else {})}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 filters, one repeat")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    start = time.perf_counter()
    C.pin_threads()
    warmup()
    h = C.load_filters().reshape(-1, 2048)
    if args.quick:
        h = h[:: h.shape[0] // 64]
    rows = []
    for modes in MODES:
        load_before = os.getloadavg()[0]
        runs = {m: run(h, m, modes, args.repeats) for m in METHODS}
        load_after = os.getloadavg()[0]
        mixed = np.minimum(runs["balanced"]["l2"], runs["hankel"]["l2"])
        entries = [(m, runs[m]["seconds"], runs[m]["l2"], runs[m]["options"])
                   for m in ("auto", "modal", "balanced")]
        entries.append(("balanced+hankel", runs["balanced"]["seconds"]
                        + runs["hankel"]["seconds"], mixed, {}))
        for name, seconds, l2, options in entries:
            rows.append({"modes": modes, "method": name, "seconds": seconds,
                         "l2_median": float(np.median(l2)), "l2_max": float(l2.max()),
                         "options": options, "load": [load_before, load_after]})
            C.log(f"modes={modes} {name}: {seconds:.1f} s, l2 median {np.median(l2):.4f}")
    meta = C.metadata(start, filters=int(h.shape[0]))
    auto = {r["modes"]: r for r in rows if r["method"] == "auto"}
    table = [[r["modes"], r["method"] + (f" ({r['options']})" if r["options"] else ""),
              f"{r['seconds']:.1f}", f"{r['seconds'] / auto[r['modes']]['seconds']:.2f}",
              f"{r['l2_median']:.4f}", f"{r['l2_max']:.3f}",
              f"{r['load'][0]:.1f} / {r['load'][1]:.1f}"] for r in rows]
    report = "\n".join([
        C.header_block("The defaults' time and fit (`bench_defaults.py`)", meta),
        "",
        f"`mor.distill(filters, modes=m)` with no method flag (`auto`) against the methods a "
        f"user would otherwise pick, on {h.shape[0]} shared filters (L = 2048), one after "
        "another in one process, mor's default parallelism; `balanced+hankel` is the default "
        "before issue 19 (both runs' times added; per filter the smaller l2). Relative l2 "
        "over the taps. Held-out quality: `docs/defaults.md`.\n",
        C.md_table(["modes", "method", "seconds", "time / auto", "l2 median", "l2 worst",
                    "load before / after"], table)])
    print(report)
    if not args.quick:
        C.write_json(NAME, {"meta": meta, "rows": rows})
        C.write_section(NAME, report)


if __name__ == "__main__":
    main()
