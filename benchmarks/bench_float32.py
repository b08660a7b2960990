"""Float32 deviation of every method's banks on the shared trained filters (issue 18, item 3).

Inference engines run a bank in single precision: poles and residues in complex64, the
recurrence in float32. ``info["f32_deviation"]`` (`mor.ModalSSM.float32_deviation`) is what that
costs, ``max_k |h32[k] - h[k]| / max_k |h[k]|`` over the L = 2048 taps against the same bank in
float64. Per method (``balanced``, ``hankel``, ``aaa``, ``modal``, ``irka``, default options) and
size (4, 8, 16, 32 compact modes, ``mor.reduce(h, modes=m, method=..., on_fail="flag")``): the
median and worst deviation, the filters above the issue's target of ``1e-4``, beside the median
float64 ``l2`` and the wall time on one core. Failed (flagged) filters are counted and left out
of the figures, as the distillation report leaves them out of its summary.

The target (issue 18): deviation at most ``1e-4`` on every filter at no more than 5% worse median
``l2`` than today's ``modal``: the per-filter ``l2`` recorded in ``results/bench_modal.json``
(all 1024 filters), taken on the same filters as this run.

Filters: ``--filters N`` (a multiple of 4): N/4 channels of each of the 4 layers, every
``256 // (N/4)``-th channel from channel 0 (layer-stratified, fixed); default 256 (every 4th
channel). All 1024 do not fit in 20 minutes on one core: ``irka`` takes 0.6-1.8 s per filter
and size, 60-75 minutes of the 80 that ``--estimate`` projects for them (2026-12-06, two shared
cores under load); the other four methods take about 7 minutes on all 1024 filters
(``--filters 1024 --methods balanced hankel aaa modal``), ``modal`` alone about 2.5.
``--estimate`` times each method and size on 4 filters (one per layer, after a warm-up) and
prints the projected time of a run on N filters, without running it (batches of N are usually
faster per filter than batches of 4: the projection errs long). ``--quick`` is a smoke run
(16 filters unless ``--filters`` says otherwise; writes ``results/bench_float32_quick.json``
only, not ``RESULTS.md``).

Run ``python benchmarks/bench_float32.py [--filters N] [--estimate] [--quick]``: about 20
minutes with the default 256 filters (16 took 66 s, ``irka`` 58 s of them), 80 with all 1024.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
import mor  # noqa: E402

NAME = "bench_float32"
MODES = (4, 8, 16, 32)
METHODS = ("balanced", "hankel", "aaa", "modal", "irka")
TARGET = 1e-4  # the float32 deviation, on every filter
L2_SLACK = 1.05  # median l2 at most 5% above today's modal medians
MODAL_RESULTS = C.RESULTS_DIR / "bench_modal.json"
DEFAULT_FILTERS = 256  # layer-stratified: every 4th channel (module notes)


def subset(count: int, layers: int = 4, channels: int = 256) -> np.ndarray:
    """Flat indices (layer * channels + channel) of ``count`` layer-stratified filters."""
    per = count // layers
    if count % layers or not 1 <= per <= channels:
        raise SystemExit(f"--filters must be a multiple of {layers} up to {layers * channels}, "
                         f"got {count}")
    picked = np.arange(0, channels, channels // per)[:per]
    return (np.arange(layers)[:, None] * channels + picked[None, :]).reshape(-1)


def today_modal(index: np.ndarray) -> dict[int, float] | None:
    """Per size, the median ``l2`` of today's ``modal`` on the filters ``index``
    (``results/bench_modal.json``), or None where it is not recorded for all filters."""
    if not MODAL_RESULTS.exists():
        return None
    saved = json.loads(MODAL_RESULTS.read_text())
    out = {}
    for row in saved["sizes"]:
        l2 = np.asarray(row["full"]["modal"]["l2"], dtype=float)
        if l2.size > index.max():
            out[int(row["modes"])] = float(np.median(l2[index]))
    return out | {"date": saved["meta"]["date"]}


def run(h: np.ndarray, modes: int, method: str) -> dict:
    """One method at one size on the filters ``h`` (F, L), one core."""
    t0, cpu = time.perf_counter(), time.process_time()
    red = mor.reduce(h, modes=modes, method=method, on_fail="flag")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu
    failed = np.asarray(red.info["failed"], dtype=bool)
    return {"l2": np.asarray(red.info["l2"], float),
            "f32_deviation": np.asarray(red.info["f32_deviation"], float),
            "failed": failed, "modes_used": np.asarray(red.modes),
            "max_residue": np.abs(red.compact()[1]).max(axis=-1, initial=0.0)
            / np.abs(h).max(axis=-1),
            "seconds": seconds, "cpu_seconds": cpu}


def warm_up(h: np.ndarray, methods) -> None:
    """Compile every method's kernels (Numba caches, FFT plans) before anything is timed."""
    for method in methods:
        mor.reduce(h[:1], modes=4, method=method, on_fail="flag")


def estimate(filters: np.ndarray, count: int, methods, sizes) -> None:
    """Time each method and size on 4 filters (one per layer); project to ``count`` filters."""
    h = filters[subset(4)]
    warm_up(h, methods)
    total = 0.0
    rows = []
    for modes in sizes:
        for method in methods:
            seconds = run(h, modes, method)["seconds"]
            projected = seconds / h.shape[0] * count
            total += projected
            rows.append([modes, method, C.fmt_t(seconds / h.shape[0]), C.fmt_t(projected)])
    print(C.md_table(["modes", "method", "per filter (4 filters)", f"projected, {count} filters"],
                     rows))
    print(f"\nprojected total for {count} filters: {total / 60:.1f} min on one core")


def measure(filters: np.ndarray, index: np.ndarray, methods, sizes) -> list:
    h = filters[index]
    warm_up(h, methods)
    results = []
    for modes in sizes:
        row = {"modes": modes}
        for method in methods:
            row[method] = run(h, modes, method)
            r = row[method]
            ok = ~r["failed"]
            C.log(f"modes {modes} {method}: l2 median {np.median(r['l2'][ok]):.3e}, f32 median "
                  f"{np.median(r['f32_deviation'][ok]):.1e} worst "
                  f"{r['f32_deviation'][ok].max(initial=0.0):.1e}, {r['seconds']:.1f} s")
        results.append(row)
    return results


def report(meta: dict, results: list, methods, modal: dict | None) -> str:
    count = meta["filters"]
    rows, targets = [], []
    for row in results:
        modes = row["modes"]
        ref = None if modal is None else modal.get(modes)
        for method in methods:
            r = row[method]
            ok = ~np.asarray(r["failed"], dtype=bool)
            dev, l2 = np.asarray(r["f32_deviation"])[ok], np.asarray(r["l2"])[ok]
            med = float(np.median(l2)) if ok.any() else float("nan")
            worst = float(dev.max(initial=0.0))
            rows.append([modes, method, f"{med:.3e}",
                         "—" if ref is None else f"{med / ref:.3f}",
                         f"{np.median(dev):.1e}" if ok.any() else "—", f"{worst:.1e}",
                         int((dev > TARGET).sum()), int((~ok).sum()),
                         f"{np.median(np.asarray(r['max_residue'])[ok]):.1e}",
                         f"{C.fmt_t(r['seconds'])} ({C.fmt_t(r['seconds'] / max(count, 1))})"])
            if ref is not None:
                meets = worst <= TARGET and med <= L2_SLACK * ref
                targets.append((modes, method, meets))
    modal_note = ("today's `modal` medians: not recorded" if modal is None else
                  f"today's `modal` medians: `results/bench_modal.json` ({modal['date']}), on "
                  "the same filters")
    met = {}
    for modes, method, meets in targets:
        met.setdefault(method, []).append(f"{modes}: {'yes' if meets else 'no'}")
    lines = [
        C.header_block("Float32 deviation of every method's banks (`bench_float32.py`)", meta),
        f"{count} of the shared trained filters ({meta['selection']}), L = {meta['length']}; "
        "`mor.reduce(h, modes=m, method=..., on_fail=\"flag\")` with default options, one core. "
        "`f32` is `info[\"f32_deviation\"]`: the bank with complex64 poles and residues and the "
        "recurrence in float32 against itself in float64, max-relative over the taps. Median "
        f"`l2` (float64, over the taps) and its ratio to {modal_note}; median and worst `f32`, "
        f"filters above the target {TARGET:.0e}, failed (flagged, left out of the figures), median "
        "largest `|R|` over `max |h|` (cancelling residues make it large) and time (per filter):\n",
        C.md_table(["modes", "method", "l2 median", "/ modal today", "f32 median", "f32 worst",
                    f"above {TARGET:.0e}", "failed", "max R / max h", "time"], rows),
    ]
    if met:
        lines.append(f"\nTarget (every filter's `f32` <= {TARGET:.0e}, median `l2` <= "
                     f"{L2_SLACK:g} x today's modal), per size: "
                     + "; ".join(f"{m} {', '.join(v)}" for m, v in met.items()) + ".")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filters", type=int, default=None,
                        help=f"layer-stratified filters (a multiple of 4; default "
                        f"{DEFAULT_FILTERS}, 16 with --quick)")
    parser.add_argument("--modes", type=int, nargs="+", default=list(MODES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--estimate", action="store_true",
                        help="time 4 filters per method and size, print the projected time")
    parser.add_argument("--quick", action="store_true", help="smoke run (16 filters unless "
                        "--filters): nothing written but results/bench_float32_quick.json")
    args = parser.parse_args()
    start = time.perf_counter()
    C.pin_threads()
    filters = C.load_filters()
    flat = filters.reshape(-1, filters.shape[-1])
    count = args.filters or (16 if args.quick else DEFAULT_FILTERS)
    if args.estimate:
        estimate(flat, count, args.methods, args.modes)
        return
    index = subset(count, *filters.shape[:2])
    load_before = os.getloadavg()[0]
    results = measure(flat, index, args.methods, args.modes)
    selection = ("all filters" if count == flat.shape[0] else
                 f"layer-stratified: channels 0, {256 // (count // 4)}, ... of each layer")
    meta = C.metadata(start, filters=int(count), length=int(flat.shape[-1]), selection=selection,
                      load_average=[load_before, os.getloadavg()[0]])
    modal = today_modal(index)
    text = report(meta, results, args.methods, modal)
    print(text)
    name = NAME + ("_quick" if args.quick else "")
    C.write_json(name, {"meta": meta, "index": index, "today_modal_l2_median": modal,
                        "sizes": results})
    if not args.quick:
        C.log(f"wrote {C.write_section(name, text)}")


if __name__ == "__main__":
    main()
