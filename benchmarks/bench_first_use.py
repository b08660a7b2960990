"""Fast by default (issue 19.3): the tolerance run, the CLI against the library, first-use
compilation and the demo, each in a fresh process as a user meets them.

* the 1024 shared filters (L = 2048) at ``tol=1e-2`` (l2) with balanced truncation (the
  default method for a tolerance), with mor's default parallelism: ``mor.distill`` in a fresh
  Python process (the call alone, and the whole process: imports, reading the filters, loading
  the compiled kernels from Numba's cache) against ``mor distill FILE --tol 1e-2 --method
  balanced`` (a fresh process that also writes the bank and prints the summary), alternated,
  ``--repeats`` times each (medians); the two banks compared (orders, poles, residues, errors);
* first use: ``mor warmup`` with an empty Numba cache (``NUMBA_CACHE_DIR`` set to a new
  folder: every kernel compiled), then again on that cache (loaded only);
* ``mor demo`` (a fresh process) and the warm-up time it reports (excluded from its timings);
* the CLI once more with OpenMP's threads spinning (``OMP_WAIT_POLICY=ACTIVE``) and sleeping
  (mor's default) between Numba's parallel regions.

The 1-minute load average is recorded before and after each timed run (other jobs share the
machine). Run ``python benchmarks/bench_first_use.py [--quick] [--repeats N]``.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import _common as C  # noqa: E402  (also puts the checkout first on sys.path)

NAME = "bench_first_use"
TOL = 1e-2
MOR = [sys.executable, "-m", "mor.cli"]

#: The library call, in a fresh process: prints the call's seconds and the process's (JSON).
LIBRARY = """
import json, sys, time
import numpy as np
import mor
from mor._numerics.compilation import compilations
h = np.load(sys.argv[1])
start = time.perf_counter()
out = mor.distill(h, tol={tol}, method="balanced")
call = time.perf_counter() - start
out.bank.save(sys.argv[2])
np.save(sys.argv[3], np.stack([out.report.columns[c].astype(float)
                               for c in ("order", "l2", "tail", "hinf", "aak", "f32_deviation")]))
print(json.dumps({{"call": call, "compiled": compilations(),
                  "met": int(out.report.columns["met_tol"].sum())}}))
"""


def load1() -> float:
    return os.getloadavg()[0]


def run(cmd, env=None, check=True) -> tuple[subprocess.CompletedProcess, float, list]:
    """Run ``cmd``; its wall seconds and the load average before and after."""
    before = load1()
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - start
    if check and done.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{done.stdout}\n{done.stderr}")
    return done, seconds, [before, load1()]


def tolerance_run(h: np.ndarray, repeats: int, log) -> dict:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "filters.npy"
        np.save(src, h)
        script = LIBRARY.format(tol=TOL)
        for rep in range(repeats):
            lib, lib_wall, lib_load = run([sys.executable, "-c", script, str(src),
                                           str(tmp / "lib.npz"), str(tmp / "lib_cols.npy")])
            got = json.loads(lib.stdout.strip().splitlines()[-1])
            cli, cli_wall, cli_load = run([*MOR, "distill", str(src), "--tol", str(TOL),
                                           "--method", "balanced", "--out",
                                           str(tmp / "cli.npz")])
            inner = float(re.search(r"filters in ([0-9.]+) s", cli.stdout).group(1))
            rows.append({"library_call": got["call"], "library_process": lib_wall,
                         "library_compiled": got["compiled"], "cli_process": cli_wall,
                         "cli_distill": inner, "load_library": lib_load, "load_cli": cli_load})
            log(f"  run {rep + 1}: library call {got['call']:.2f} s (process {lib_wall:.2f} s, "
                f"{got['compiled']} compiled), CLI {cli_wall:.2f} s (distill {inner:.1f} s); "
                f"load {lib_load[0]:.2f}-{cli_load[1]:.2f}")
        import mor
        a, b = mor.load(tmp / "lib.npz"), mor.load(tmp / "cli.npz")
        cols = np.load(tmp / "lib_cols.npy")
        same = {"orders": bool(np.array_equal(a.order, b.order)),
                "poles": bool(np.array_equal(a.compact()[0], b.compact()[0])),
                "residues": bool(np.array_equal(a.compact()[1], b.compact()[1])),
                "l2": bool(np.array_equal(np.asarray(a.info["l2"], float),
                                          np.asarray(b.info["l2"], float)))}
    med = {k: statistics.median(r[k] for r in rows)
           for k in ("library_call", "library_process", "cli_process", "cli_distill")}
    return {"runs": rows, "median": med, "met": got["met"], "filters": int(h.size // h.shape[-1]),
            "ratio_cli_to_call": med["cli_process"] / med["library_call"],
            "ratio_cli_to_process": med["cli_process"] / med["library_process"],
            "same_results": same, "median_order": float(np.median(cols[0])),
            "max_l2_met": float(cols[1][cols[1] <= TOL].max())}


def spinning(h: np.ndarray, log) -> dict:
    """The CLI run once more with OpenMP's threads spinning between parallel regions
    (``OMP_WAIT_POLICY=ACTIVE``; mor sets ``PASSIVE`` unless the environment says otherwise)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "filters.npy"
        np.save(src, h)
        out = {}
        for policy in ("ACTIVE", "PASSIVE"):
            cmd = ["/usr/bin/time", "-f", "%U %S", *MOR, "distill", str(src), "--tol", str(TOL),
                   "--method", "balanced", "--out", str(Path(tmp) / "bank.npz")]
            done, seconds, load = run(cmd, {"OMP_WAIT_POLICY": policy})
            user, system = map(float, done.stderr.strip().splitlines()[-1].split())
            out[policy] = {"seconds": seconds, "cpu_seconds": user + system, "load": load}
            log(f"  OMP_WAIT_POLICY={policy}: {seconds:.1f} s, CPU {user + system:.1f} s, "
                f"load {load[0]:.2f}-{load[1]:.2f}")
    return out


def first_use(log) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {"NUMBA_CACHE_DIR": cache}
        cold, cold_s, cold_load = run([*MOR, "warmup"], env)
        warm, warm_s, warm_load = run([*MOR, "warmup"], env)
    compiled = int(re.search(r"compiled (\d+) kernel", cold.stdout).group(1))
    log(f"  empty cache: {cold_s:.1f} s ({compiled} signatures); again: {warm_s:.1f} s")
    return {"cold_seconds": cold_s, "compiled": compiled, "cold_load": cold_load,
            "cold_output": cold.stdout.strip(), "warm_seconds": warm_s, "warm_load": warm_load,
            "warm_output": warm.stdout.strip(),
            "idempotent": "already compiled" in warm.stdout}


def demo(log) -> dict:
    done, seconds, load = run([*MOR, "demo"])
    ready = float(re.search(r"Numba kernels ready in ([0-9.]+) s", done.stdout).group(1))
    compiled = "compiled now" in done.stdout
    log(f"  mor demo: {seconds:.1f} s, of which kernels ready (cache) {ready:.1f} s")
    return {"seconds": seconds, "warmup_seconds": ready, "compiled_in_demo": compiled,
            "load": load, "output": done.stdout}


def render(meta, tol, first, dem, spin) -> str:
    m = tol["median"]
    loads = [x for r in tol["runs"] for x in r["load_library"] + r["load_cli"]]
    lines = [C.header_block("Fast by default: the tolerance run, first use, the demo "
                            "(`bench_first_use.py`)", meta)]
    lines.append(f"{tol['filters']} shared trained filters (L = 2048), `tol=1e-2` (l2), "
                 f"balanced truncation (the default for a tolerance), mor's default "
                 f"parallelism; each run a fresh process, the kernels loaded from Numba's cache "
                 f"(`mor warmup` done), medians of {len(tol['runs'])} alternated runs; "
                 f"1-minute load average {min(loads):.2f} to {max(loads):.2f} during them "
                 f"(2 cores).\n")
    lines += [C.md_table(
        ["run", "median time", "vs the library call"],
        [["`mor.distill(h, tol=1e-2, method=\"balanced\")`: the call", C.fmt_t(m["library_call"]),
          "1.00x"],
         ["the same, whole Python process (imports, np.load, kernels from the cache, save)",
          C.fmt_t(m["library_process"]), f"{m['library_process'] / m['library_call']:.2f}x"],
         ["`mor distill filters.npy --tol 1e-2 --method balanced` (whole process)",
          C.fmt_t(m["cli_process"]), f"{tol['ratio_cli_to_call']:.2f}x"],
         ["  of which the distillation (as the CLI reports it)", C.fmt_t(m["cli_distill"]),
          f"{m['cli_distill'] / m['library_call']:.2f}x"]]), ""]
    same = tol["same_results"]
    lines.append(f"Targets: under 60 s, the CLI within 1.2x of the library. {tol['met']} of "
                 f"{tol['filters']} filters met the tolerance, median order "
                 f"{tol['median_order']:g}; the CLI's bank equals the library's "
                 f"(orders {same['orders']}, poles {same['poles']}, residues "
                 f"{same['residues']}, l2 {same['l2']}).\n")
    a, p = spin["ACTIVE"], spin["PASSIVE"]
    lines.append(f"OpenMP's wait policy (the CLI run once each): threads spinning between "
                 f"Numba's parallel regions (`OMP_WAIT_POLICY=ACTIVE`) {C.fmt_t(a['seconds'])}, "
                 f"CPU {C.fmt_t(a['cpu_seconds'])} (load {a['load'][0]:.2f}-{a['load'][1]:.2f})"
                 f"; sleeping (`PASSIVE`, mor's default unless the environment sets it) "
                 f"{C.fmt_t(p['seconds'])}, CPU {C.fmt_t(p['cpu_seconds'])} (load "
                 f"{p['load'][0]:.2f}-{p['load'][1]:.2f}). Spinning costs most where another "
                 "job holds a core: 51.8 s against 21.9 s (CPU 32.2 s against 13.3 s) was "
                 "measured so on 2026-12-06 at 06:50 UTC, load average 4-7.\n")
    lines.append(f"First use (`mor warmup` with `NUMBA_CACHE_DIR` an empty folder): "
                 f"{C.fmt_t(first['cold_seconds'])} to compile {first['compiled']} kernel "
                 f"signatures (load {first['cold_load'][0]:.2f}-{first['cold_load'][1]:.2f}); "
                 f"run again on that cache {C.fmt_t(first['warm_seconds'])}, compiling nothing "
                 f"({first['idempotent']}). The Makefile's set-up runs it once; without it the "
                 "first compilation in a process prints a notice.\n")
    lines.append(f"`mor demo` (fresh process, default arguments): {C.fmt_t(dem['seconds'])} in "
                 f"all, of which {C.fmt_t(dem['warmup_seconds'])} readying the kernels from the "
                 f"cache, which its printed timings exclude (load {dem['load'][0]:.2f}-"
                 f"{dem['load'][1]:.2f}).\n")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    log = C.log
    script_start = time.perf_counter()
    filters = C.load_filters()
    h = filters[:, :16] if args.quick else filters
    log("mor warmup (the default cache, as after set-up)")
    run([*MOR, "warmup"])
    log("first use: an empty Numba cache")
    first = first_use(log)
    log(f"tolerance run: library and CLI, {args.repeats} times each")
    tol = tolerance_run(h, 1 if args.quick else args.repeats, log)
    log("mor demo")
    dem = demo(log)
    log("OpenMP wait policy")
    spin = spinning(h, log)
    meta = C.metadata(script_start, loadavg_end=os.getloadavg())
    report = render(meta, tol, first, dem, spin)
    print(report)
    name = NAME + ("_quick" if args.quick else "")
    C.write_json(name, {"meta": meta, "tolerance_run": tol, "first_use": first, "demo": dem,
                          "omp_wait_policy": spin})
    log(f"wrote {C.write_section(name, report)}")


if __name__ == "__main__":
    main()
