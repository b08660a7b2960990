"""The error report of long filters (issue 22) on two checkouts of mor, in one run.

`mor.distill` with ``device="cuda"`` reduces a chunk on the GPU while the CPU reports on the
chunk before (`mor.compare`'s figures: ``l2``, ``tail``, ``hinf``, ``f32_deviation``); at
``L = 2^20`` that report cost more CPU time a filter than the GPU's balanced truncation. This
script times it per figure on the balanced-truncation models of order 32 committed in
``results/bench_gpu_long_cpu.npz`` (the CPU path's, issue 22's filters, seeds 0-15), at the
lengths given, for checkout A (e.g. a ``git worktree`` of the revision before a change) and
this one, alternating A, B in fresh processes on one thread; and compares the figures: the
largest relative difference per figure, and how many filters ``l2`` recomputed in
double-double (where the rounding bound of the plain impulse response exceeds ``1e-7`` of the
error).

Run ``python benchmarks/bench_report_long.py A_DIR [--lengths 65536 1048576] [--repeats 2]``
(writes ``results/bench_report_long.json`` and its section of ``RESULTS.md``).
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import _common as C  # noqa: E402

NAME = "bench_report_long"
MODELS = C.RESULTS_DIR / "bench_gpu_long_cpu.npz"
NORMS = ("l2", "tail", "hinf", "f32_deviation")
FIGURES = ("l2", "tail", "hinf", "aak", "bt_bound", "f32_deviation")


def workload(out: Path, lengths: tuple[int, ...]) -> None:
    """Run in a child whose ``sys.path`` starts with one checkout: per length the seconds a
    filter of each figure and of the whole report, the figures, and the double-double count."""
    from mor.analysis import compare

    C.log(f"{out.name}: {compare.__file__}")
    C.pin_threads()
    models = np.load(MODELS)
    found = {}
    counted = []
    original = compare.impulse_error_compensated

    def counting(h, poles, residues, direct, rows):
        counted.append(len(rows))
        return original(h, poles, residues, direct, rows)
    compare.impulse_error_compensated = counting
    for length in lengths:
        count = models[f"poles_{length}"].shape[0]
        h = C.long_filters(length, count)
        args = (h, models[f"poles_{length}"], models[f"residues_{length}"],
                models[f"direct_{length}"], np.full(count, 32), models[f"sigma_{length}"])
        compare.model_errors(*(a[:1] for a in args))  # warm-up (Numba kernels, FFT plans)
        row = {}
        for norm in NORMS:
            start = time.perf_counter()
            compare.model_errors(*args, norms=(norm,))
            row[f"{norm}_s"] = (time.perf_counter() - start) / count
        counted.clear()
        start = time.perf_counter()
        figures = compare.model_errors(*args)
        row["report_s"] = (time.perf_counter() - start) / count
        row["double_double_filters"] = sum(counted)
        row["figures"] = {k: figures[k].tolist() for k in FIGURES}
        found[str(length)] = row
        C.log(f"{out.name} L={length}: " + json.dumps({k: v for k, v in row.items()
                                                       if k != "figures"}))
    out.write_text(json.dumps(found))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a_dir", type=Path, help="the other checkout (before)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[65536, 262144, 1048576])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    script_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="mor_report_"))
    runs = {"A": [], "B": []}
    for rep in range(args.repeats):
        for tag, root in (("A", args.a_dir.resolve()), ("B", C.ROOT)):
            out = tmp / f"{tag}{rep}.json"
            # mor imported first: `_common` puts this checkout at the head of sys.path
            code = (f"import sys, importlib.util; sys.path[:0] = [{str(root)!r}, "
                    f"{str(C.ROOT / 'benchmarks')!r}]; import mor; "
                    f"spec = importlib.util.spec_from_file_location('bench_report_long', "
                    f"{__file__!r}); mod = importlib.util.module_from_spec(spec); "
                    f"spec.loader.exec_module(mod); "
                    f"mod.workload(__import__('pathlib').Path({str(out)!r}), "
                    f"{tuple(args.lengths)!r})")
            subprocess.run([sys.executable, "-c", code], check=True)
            runs[tag].append(json.loads(out.read_text()))
    rows = []
    for length in map(str, args.lengths):
        best = {tag: {key: min(r[length][key] for r in runs[tag])
                      for key in [f"{n}_s" for n in NORMS] + ["report_s"]} for tag in runs}
        a, b = runs["A"][0][length], runs["B"][0][length]
        gap = {k: float(np.max(np.abs(np.subtract(a["figures"][k], b["figures"][k]))
                               / np.maximum(np.abs(a["figures"][k]), 1e-300)))
               for k in FIGURES}
        rows.append({"length": int(length), "a": best["A"], "b": best["B"],
                     "double_double_filters": {"a": a["double_double_filters"],
                                               "b": b["double_double_filters"]},
                     "filters": len(a["figures"]["l2"]), "relative_gap": gap})
    meta = C.metadata(script_start, a=str(args.a_dir), repeats=args.repeats)
    C.write_json(NAME, {"meta": meta, "rows": rows})
    table = C.md_table(
        ["L", "filters", "figure", "A s/filter", "B s/filter", "B / A"],
        [[str(r["length"]), str(r["filters"]), key.removesuffix("_s"),
          f"{r['a'][key]:.4f}", f"{r['b'][key]:.4f}", f"{r['b'][key] / r['a'][key]:.2f}"]
         for r in rows for key in [f"{n}_s" for n in NORMS] + ["report_s"]])
    gaps = C.md_table(
        ["L", "double-double filters (A / B)"] + list(FIGURES),
        [[str(r["length"]), f"{r['double_double_filters']['a']} / "
          f"{r['double_double_filters']['b']}"] + [f"{r['relative_gap'][k]:.1e}"
                                                  for k in FIGURES] for r in rows])
    body = "\n".join([C.header_block("Error report of long filters (`bench_report_long`)", meta),
                      f"A = `{args.a_dir}`, B = this checkout; best of {args.repeats} "
                      "runs each, one thread; CPU models of order 32 "
                      "(`results/bench_gpu_long_cpu.npz`).", "", table, "",
                      "Largest relative difference of each figure, A against B:", "", gaps])
    print(body)
    C.write_section(NAME, body)


if __name__ == "__main__":
    main()
