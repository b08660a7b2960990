"""Whole-model distillation throughput: workers, the CLI's overhead, a 1.3B-size extrapolation.

* ``mor.distill`` on all 1024 shared filters (L = 2048) at order 32: filters per second with
  one process on one thread, one process on all threads (mor's default in-process run), and
  a pool of 1 and 2 worker processes (one thread each);
* the same filters at a tolerance (``l2 <= 1e-2``), through the CLI (``mor distill``, a fresh
  process that reads the file and writes the bank) against the library call;
* the time a 1.3B-parameter model (24 layers x 2048 filters, L = 2048) would take, from the
  measured throughput.

Run ``python benchmarks/bench_distill.py [--quick]``.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import _common as C  # noqa: E402  (also puts the checkout first on sys.path)
from mor.drivers.distillation import distill  # noqa: E402

NAME = "bench_distill"
BIG_MODEL = 24 * 2048


def throughput(h, log) -> list[dict]:
    rows = []
    cases = [("in-process, 1 thread", dict(workers=1), 1),
             (f"in-process, {C.cores()} threads (default)", dict(workers=1), C.cores()),
             ("pool of 1 worker process, 1 thread", dict(workers=1, pool=True), 1),
             ("pool of 2 worker processes, 1 thread each", dict(workers=2), 1)]
    for label, kwargs, threads in cases:
        pool = kwargs.pop("pool", False)
        with C.mor_threads(threads):
            start = time.perf_counter()
            if pool:  # a one-process pool: the process overhead without the parallelism
                from concurrent.futures import ProcessPoolExecutor
                from multiprocessing import get_context
                with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as ex:
                    res = distill(h, 32, method="balanced", executor=ex, threads=1)
            else:
                res = distill(h, 32, method="balanced", **kwargs)
            seconds = time.perf_counter() - start
        rate = h.shape[0] * h.shape[1] / seconds
        rows.append({"case": label, "seconds": seconds, "filters_per_second": rate,
                     "failed": int(res.report.columns["failed"].sum())})
        log(f"  {label}: {seconds:.2f} s, {rate:.0f} filters/s")
    return rows


def cli_overhead(h, log) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "model.npy"
        np.save(src, h)
        with C.mor_threads(C.cores()):
            start = time.perf_counter()
            lib = distill(h, tol=1e-2, method="balanced")
            library = time.perf_counter() - start
        cmd = [sys.executable, "-m", "mor.cli", "distill", str(src), "--tol", "1e-2",
               "--method", "balanced", "--out", str(Path(tmp) / "bank.npz")]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env={
            k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"})
        cli = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(done.stderr)
    out = {"library_seconds": library, "cli_seconds": cli, "ratio": cli / library,
           "met": int(lib.report.columns["met_tol"].sum()),
           "median_order": float(np.median(lib.bank.order[lib.report.columns["met_tol"]]))}
    log(f"  library {library:.2f} s, CLI {cli:.2f} s ({cli / library:.2f}x)")
    return out


def render(meta, rows, cli, n) -> str:
    lines = [C.header_block("Whole-model distillation (`bench_distill.py`)", meta)]
    lines.append(f"`mor.distill(filters, 32, method=\"balanced\")` on {n} shared filters "
                 "(L = 2048).\n")
    base = rows[0]["seconds"]
    lines.append("Process pools start their workers by `spawn` (each imports NumPy, SciPy and "
                 "Numba: about a second), which the 1-worker pool row measures.\n")
    lines += [C.md_table(["run", "time", "filters/s", "speed-up over 1 thread"],
                         [[r["case"], C.fmt_t(r["seconds"]), f"{r['filters_per_second']:.0f}",
                           f"{base / r['seconds']:.2f}x"] for r in rows]), ""]
    best = max(r["filters_per_second"] for r in rows)
    lines.append(f"A 1.3B-parameter model (24 layers x 2048 filters = {BIG_MODEL} filters, "
                 f"L = 2048) at order 32 at the best rate here ({best:.0f} filters/s): about "
                 f"{BIG_MODEL / best / 60:.1f} minutes on these 2 cores.\n")
    lines.append(f"At a tolerance (`--tol 1e-2`, l2, balanced; {cli['met']} of {n} filters met "
                 f"it, median order {cli['median_order']:g}): the CLI (a fresh process: "
                 f"imports, reading the file, writing the bank) took {C.fmt_t(cli['cli_seconds'])}"
                 f" against {C.fmt_t(cli['library_seconds'])} for the library call "
                 f"({cli['ratio']:.2f}x; target at most 2x).\n")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args()

    log = C.log
    script_start = time.perf_counter()
    C.pin_threads()
    filters = C.load_filters()
    h = filters[:, :16] if args.quick else filters
    n = h.shape[0] * h.shape[1]
    distill(h[:, :2], 8, method="balanced")  # warm-up (numba kernels, FFT plans)
    log("throughput")
    rows = throughput(h, log)
    log("CLI against the library")
    cli = cli_overhead(h, log)
    meta = C.metadata(script_start)
    report = render(meta, rows, cli, n)
    print(report)
    name = NAME + ("_quick" if args.quick else "")
    C.write_json(name, {"meta": meta, "throughput": rows, "cli": cli})
    log(f"wrote {C.write_section(name, report)}")


if __name__ == "__main__":
    main()
