"""Balanced truncation of long filters with and without ``kth_rtol`` (issue 22), in one run.

`mor.reduce(..., method="balanced")` certifies the Krylov Hankel values to
``max(rtol sigma_1, kth_rtol sigma_{d+1})`` (``BT_RTOL = 1e-10``, ``BT_KTH_RTOL = 1e-3``),
the singular vectors to residual norms of ``1e3 rtol sigma_1`` either way. This script runs
both on the same filters, alternating, one thread: ``kth_rtol=0`` (``rtol`` alone, as before)
and the default. Per filter set and length: the CPU path's time per filter (``mor.reduce`` to
order 32 with its error report), the largest relative change of ``hinf``, ``aak`` and
``bt_bound``; and for ``L <= 2^18`` the GPU path's Hankel products per filter
(`mor.torch._spectrum.hankel_blocks` on CPU tensors: the counts do not depend on the device)
with the largest change of its values relative to ``sigma_1``. With ``--device cuda`` the GPU
path runs on that device at every length, timed, and ``--no-cpu-path`` leaves the CPU part
out (results in ``results/bench_bt_tolerance_cuda.json``, not in ``RESULTS.md``: its notes
take them).

Filters: issue 22's generator (seeds ``0..F-1``) and the shared trained filters
``np.interp``-olated onto ``L`` points (channel ``17 j`` of layer ``j mod 4``).

Run ``python benchmarks/bench_bt_tolerance.py [--lengths 65536 262144 1048576] [--filters 8]
[--device cuda --no-cpu-path]`` (writes ``results/bench_bt_tolerance.json`` and its section
of ``RESULTS.md``).
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
import mor  # noqa: E402
from mor.methods.balanced import BT_KTH_RTOL, BT_RTOL  # noqa: E402

NAME = "bench_bt_tolerance"
ORDER = 32
FIGURES = ("hinf", "aak", "bt_bound")
#: Lengths up to this also count the GPU path's Hankel products (on CPU tensors: slow).
DEVICE_COUNT_MAX = 1 << 18
VARIANTS = (("kth_rtol=0", 0.0), (f"kth_rtol={BT_KTH_RTOL:g}", BT_KTH_RTOL))


def filter_sets(length: int, count: int) -> dict[str, np.ndarray]:
    trained = C.load_filters()
    grid = np.linspace(0.0, trained.shape[-1] - 1.0, length)
    stretched = np.stack([np.interp(grid, np.arange(trained.shape[-1]),
                                    trained[j % trained.shape[0], 17 * j % trained.shape[1]])
                          for j in range(count)])
    return {"issue 22": C.long_filters(length, count), "shared, stretched": stretched}


def cpu_runs(h: np.ndarray, repeats: int) -> dict:
    """Each variant on each filter, alternating, best of ``repeats``: seconds and figures."""
    seconds = {name: np.full(h.shape[0], np.inf) for name, _ in VARIANTS}
    figures = {name: {} for name, _ in VARIANTS}
    for i in range(h.shape[0]):
        for _ in range(repeats):
            for name, kth in VARIANTS:
                start = time.perf_counter()
                model = mor.reduce(h[i], ORDER, method="balanced", kth_rtol=kth)
                seconds[name][i] = min(seconds[name][i], time.perf_counter() - start)
                for fig in FIGURES:
                    figures[name].setdefault(fig, np.zeros(h.shape[0]))[i] = model.info[fig]
    (a, _), (b, _) = VARIANTS
    change = {fig: float(np.max(np.abs(figures[b][fig] / figures[a][fig] - 1)))
              for fig in FIGURES}
    return {"seconds_per_filter": {name: float(s.mean()) for name, s in seconds.items()},
            "ratio": float(seconds[a].mean() / seconds[b].mean()),
            "largest_relative_change": change,
            "figures": {name: {k: v.tolist() for k, v in f.items()}
                        for name, f in figures.items()}}


def device_counts(h: np.ndarray, device: str) -> dict:
    """The GPU path's Hankel products per filter, values and seconds per filter (the batch
    as the device's memory allows) on ``device``."""
    from mor.torch._spectrum import hankel_blocks
    sync = C.device_sync(device)
    hankel_blocks(h[:1], ORDER + 1, rtol=BT_RTOL, device=device)  # compiles the kernels
    out, seconds = {}, {}
    for name, kth in VARIANTS:
        sync()
        start = time.perf_counter()
        out[name] = hankel_blocks(h, ORDER + 1, rtol=BT_RTOL, kth_rtol=kth, device=device)
        sync()
        seconds[name] = (time.perf_counter() - start) / h.shape[0]
    (a, _), (b, _) = VARIANTS
    sa, sb = out[a]["sigma"], out[b]["sigma"]
    return {"products": {name: o["basis"].tolist() for name, o in out.items()},
            "seconds_per_filter": seconds,
            "largest_sigma_change": float(np.max(np.abs(sb - sa) / sa[:, :1]))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1 << 16, 1 << 18, 1 << 20])
    parser.add_argument("--filters", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="where the GPU path runs")
    parser.add_argument("--no-cpu-path", action="store_true")
    args = parser.parse_args()
    script_start = time.perf_counter()
    C.pin_threads()
    mor.reduce(C.long_filters(4096, 2), 8)  # warm-up (numba kernels)
    on_cpu = args.device == "cpu"
    if on_cpu and args.no_cpu_path:
        parser.error("--no-cpu-path goes with --device cuda")
    if on_cpu and min(args.lengths) <= DEVICE_COUNT_MAX:
        import torch
        torch.set_num_threads(1)
    if not on_cpu:
        device_counts(C.long_filters(4096, 2), args.device)  # cuFFT plans, solver handles
    rows = []
    for length in args.lengths:
        for label, h in filter_sets(length, args.filters).items():
            row = {"filters": label, "length": length, "count": int(h.shape[0])}
            if not args.no_cpu_path:
                row.update(cpu_runs(h, args.repeats))
            if length <= DEVICE_COUNT_MAX or not on_cpu:
                row["device_path"] = device_counts(h, args.device)
            C.log(f"{label} L={length}: {row.get('seconds_per_filter', '')} "
                  f"changes {row.get('largest_relative_change', '')} "
                  f"{row.get('device_path', '')}")
            rows.append(row)
    meta = C.metadata(script_start, order=ORDER, rtol=BT_RTOL, kth_rtol=BT_KTH_RTOL,
                      device=args.device)
    if not on_cpu:
        import torch
        meta["device_name"] = torch.cuda.get_device_name(args.device)
        C.write_json(f"{NAME}_{args.device.split(':')[0]}", {"meta": meta, "rows": rows})
        return
    C.write_json(NAME, {"meta": meta, "rows": rows})
    table = []
    for r in rows:
        s = r["seconds_per_filter"]
        (a, _), (b, _) = VARIANTS
        counts = r.get("device_path")
        table.append([r["filters"], str(r["length"]), str(r["count"]), C.fmt_t(s[a]),
                      C.fmt_t(s[b]), f"{r['ratio']:.2f}x",
                      C.fmt_e(max(r["largest_relative_change"].values())),
                      "-" if counts is None else
                      f"{np.mean(counts['products'][a]):.0f} -> "
                      f"{np.mean(counts['products'][b]):.0f}",
                      "-" if counts is None else C.fmt_e(counts["largest_sigma_change"])])
    body = (C.header_block("Balanced truncation with kth_rtol (issue 22)", meta)
            + "\nCPU path, one thread, `mor.reduce(h, 32, method='balanced')` with its report, "
              "per filter; the GPU path's Hankel products per filter counted on CPU tensors.\n\n"
            + C.md_table(["filters", "L", "count", f"s/filter {VARIANTS[0][0]}",
                          f"s/filter {VARIANTS[1][0]}", "speed-up",
                          "largest change of hinf, aak, bt_bound",
                          "GPU path products", "GPU path values change / sigma_1"], table))
    C.write_section(NAME, body)


if __name__ == "__main__":
    main()
