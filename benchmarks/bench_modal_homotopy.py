"""The order-homotopy start of modal fitting against the balanced-truncation start (issue 19.4).

``mor.reduce(h, modes=m, method="modal", init="homotopy")`` fits from balanced truncation (BT)
with 2 and 4 more modes, prunes to the start's modes by the modes' energy
``|R|^2 / (1 - |lambda|^2)``, refits with the tail and float32 deviation held to the BT start's,
and keeps per filter the best of those and the plain fit from BT (``init="balanced"``, today's
default; `mor.methods.modal.ModalFamily.from_fir`). On all 1024 shared trained filters
(L = 2048), at 2, 4 and 8 compact modes, both starts with the library's defaults otherwise:
per filter the ratio of the relative ``l2`` errors over the taps homotopy / balanced start
(median, worst, best, and how many filters gain at least 1% and 10%), the median ``l2`` of
each, which candidate won (``info["homotopy_extra"]``), the tail against the BT start's and the
float32 deviation, and the wall time of each on the machine's cores (worker threads; the load
average before and after: other jobs share the cores).

Run ``python benchmarks/bench_modal_homotopy.py`` (about 3 minutes on two cores); ``--quick`` is
a smoke run on 64 filters that writes ``results/bench_modal_homotopy_quick.json`` only;
``--report`` rewrites the section from the saved results.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
import mor  # noqa: E402
from mor.fitting.least_squares import fit_residues  # noqa: E402
from mor.methods.base import F32_RTOL  # noqa: E402

NAME = "bench_modal_homotopy"
MODES = (2, 4, 8)
INITS = ("balanced", "homotopy")


def uptime() -> str:
    """``uptime``'s line (the load averages over 1, 5 and 15 minutes)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def start_figures(h: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relative tail and float32 deviation of the BT start at each filter's ``order``: BT's
    poles with least-squares residues (what both starts hold their fits to)."""
    tail, f32 = np.empty(h.shape[0]), np.empty(h.shape[0])
    for o in np.unique(order):
        rows = np.flatnonzero(order == o)
        poles, _, _ = mor.reduce(h[rows], int(o), errors=()).compact()
        residues, direct = fit_residues(h[rows], poles, poles != 0)
        start = mor.ModalSSM.from_compact(poles, residues, direct)
        tail[rows] = mor.compare(h[rows], start).tail
        f32[rows] = start.float32_deviation(h.shape[1])
    return tail, f32


def measure(h: np.ndarray, modes: int) -> dict:
    """Both starts at ``modes`` on all filters, timed on the machine's cores."""
    out = {}
    with C.mor_threads(C.cores()):
        for init in INITS:
            t0, cpu = time.perf_counter(), time.process_time()
            red = mor.reduce(h, modes=modes, method="modal", init=init, on_fail="flag")
            out[init] = {"seconds": time.perf_counter() - t0,
                         "cpu_seconds": time.process_time() - cpu,
                         "unstable": int((~red.is_stable()).sum()),
                         "failed": int(red.info["failed"].sum()),
                         "order": np.asarray(red.order).reshape(-1),
                         "modes": np.asarray(red.modes).reshape(-1)}
            out[init] |= {k: np.asarray(red.info[k], dtype=float).reshape(-1)
                          for k in ("l2", "tail", "f32_deviation")}
            if init == "homotopy":
                out[init]["extra"] = np.asarray(red.info["homotopy_extra"]).reshape(-1)
    tail, f32 = start_figures(h, out["balanced"]["order"])
    out["start"] = {"tail": tail, "f32_deviation": f32}
    return out


def rows_of(sizes: list) -> tuple[list, list]:
    """The two tables: l2 ratios and medians; time, winners and the held figures."""
    quality, other = [], []
    for row in sizes:
        b, hom, start = row["balanced"], row["homotopy"], row["start"]
        ratio = hom["l2"] / b["l2"]
        quality.append([row["modes"], f"{np.median(b['l2']):.4e}", f"{np.median(hom['l2']):.4e}",
                        f"**{np.median(ratio):.4f}**", f"{np.mean(ratio):.4f}",
                        f"{ratio.max():.6f}", f"{ratio.min():.3f}",
                        f"{(ratio <= 0.99).sum()} / {(ratio <= 0.9).sum()}",
                        f"{(ratio > 1).sum()}"])
        wins = np.bincount(hom["extra"].astype(int), minlength=5)
        held = [fit["tail"] <= start["tail"] * (1 + 1e-6) + 1e-9 for fit in (b, hom)]
        f32_ok = [fit["f32_deviation"] <= np.maximum(start["f32_deviation"], F32_RTOL)
                  * (1 + 1e-6) for fit in (b, hom)]
        other.append([row["modes"], f"{b['seconds']:.1f} s ({b['cpu_seconds']:.1f})",
                      f"{hom['seconds']:.1f} s ({hom['cpu_seconds']:.1f})",
                      f"{hom['seconds'] / b['seconds']:.1f}x",
                      f"{wins[0]} / {wins[2]} / {wins[4]}",
                      " / ".join(str(x.sum()) for x in held),
                      " / ".join(str(x.sum()) for x in f32_ok),
                      f"{b['f32_deviation'].max():.1e} / {hom['f32_deviation'].max():.1e}",
                      f"{b['unstable']} / {hom['unstable']}",
                      f"{b['failed']} / {hom['failed']}"])
    return quality, other


def report(meta: dict, sizes: list) -> str:
    count = meta["filters"]
    quality, other = rows_of(sizes)
    parts = []
    for row in sizes:
        ratio = row["homotopy"]["l2"] / row["balanced"]["l2"]
        parts.append(f"{row['modes']} modes: median ratio {np.median(ratio):.4f}, "
                     f"{(ratio <= 0.99).sum()} filters gain >= 1%, time "
                     f"{row['homotopy']['seconds'] / row['balanced']['seconds']:.1f}x")
    return "\n".join([
        C.header_block("Modal fitting: the order-homotopy start against the BT start "
                       "(`bench_modal_homotopy.py`)", meta),
        f"- load: before `{meta['uptime'][0]}`; after `{meta['uptime'][1]}`",
        "",
        f"All {count} shared trained filters, L = {meta['length']}, "
        "`mor.reduce(h, modes=m, method=\"modal\", init=...)` with the library's defaults "
        "otherwise: `init=\"balanced\"` (today's default) and `init=\"homotopy\"` (fits with "
        "2 and 4 more modes from BT, pruned by `|R|^2 / (1 - |lambda|^2)`, refitted, the best "
        "per filter of those and the fit from BT). Relative `l2` over the taps; ratio "
        "homotopy / balanced start per filter (median in bold, mean, worst, best; filters "
        "with a ratio at most 0.99 and 0.9; filters where it is above 1, which the "
        "construction excludes):\n",
        C.md_table(["modes", "l2 median, BT start", "l2 median, homotopy", "ratio median",
                    "ratio mean", "ratio worst", "ratio best", "<= 0.99 / <= 0.9", "> 1"],
                   quality),
        f"\nWall time for all {count} filters on this machine's {C.cores()} cores (worker "
        "threads; in brackets the process's CPU seconds; other jobs shared the cores, see the "
        "load above), the homotopy's time over the BT start's; the candidate kept per filter "
        "(`info[\"homotopy_extra\"]`: 0 = the fit from BT, 2 or 4 = the pruned fit with that "
        "many extra modes); then, BT start / homotopy: filters whose tail is at most the BT "
        "start's (BT's poles with least-squares residues, relative slack `1e-6`), filters "
        "whose float32 deviation is at most the larger of the BT start's and `F32_RTOL`, the "
        "largest float32 deviation, unstable and failed models:\n",
        C.md_table(["modes", "time BT start", "time homotopy", "ratio", "kept 0 / 2 / 4",
                    "tail <= BT start", "f32 held", "f32 max", "unstable", "failed"], other),
        "\n**Summary.** " + "; ".join(parts) + ".", ""])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 filters, "
                        "RESULTS.md left alone")
    parser.add_argument("--report", action="store_true", help="only rewrite the section "
                        "from the saved results (results/bench_modal_homotopy.json)")
    args = parser.parse_args()
    if args.report:
        saved = json.loads((C.RESULTS_DIR / f"{NAME}.json").read_text())
        sizes = [{k: ({f: np.array(v) for f, v in val.items()} if isinstance(val, dict)
                      else val) for k, val in row.items()} for row in saved["sizes"]]
        text = report(saved["meta"], sizes)
        print(text)
        C.write_section(NAME, text, after="bench_modal_starts")
        return
    start = time.perf_counter()
    C.pin_threads()
    h = C.load_filters().reshape(-1, 2048)
    if args.quick:
        h = h[::16]
    name = NAME + ("_quick" if args.quick else "")
    np.seterr(all="ignore")  # inadmissible trial points (rejected by the optimiser) overflow
    for init in INITS:  # compile the kernels outside the timings
        mor.reduce(h[:2], modes=2, method="modal", init=init)
    load_before = uptime()
    sizes = []
    for modes in MODES:
        row = {"modes": modes} | measure(h, modes)
        ratio = row["homotopy"]["l2"] / row["balanced"]["l2"]
        C.log(f"modes {modes}: ratio median {np.median(ratio):.4f}, worst {ratio.max():.6f}; "
              f"BT start {row['balanced']['seconds']:.1f} s, homotopy "
              f"{row['homotopy']['seconds']:.1f} s")
        sizes.append(row)
    meta = C.metadata(start, filters=int(h.shape[0]), length=int(h.shape[1]),
                      uptime=[load_before, uptime()])
    C.write_json(name, {"meta": meta, "sizes": sizes})
    text = report(meta, sizes)
    print(text)
    if not args.quick:
        C.write_section(NAME, text, after="bench_modal_starts")


if __name__ == "__main__":
    main()
