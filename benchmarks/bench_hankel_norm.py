"""Hankel-norm approximation vs balanced truncation, and the cost of order selection.

Part 1, errors at equal order: on shared trained filters (one filter in 16 of each layer,
L = 2048) and on classical FIR designs (``scipy.signal.firwin`` low-pass filters and a
``remez`` band-pass), for orders 8..64, the median over filters of the relative H-infinity
and l2 errors of

* ``balanced``: square-root balanced truncation (keeps h[0]),
* ``balanced+dc``: balanced truncation with singular-perturbation DC matching,
* ``hankel``: optimal Hankel-norm approximation with the H-infinity-optimal direct term,
* ``hankel/keep``: the same approximant keeping the filter's own h[0],
* ``pencil``: matrix pencil poles, least-squares residues (unstable poles reflected),
* ``prony``: classical Prony (linear prediction) poles, least-squares residues,
* ``pade``: robust Padé poles at infinity, least-squares residues,
* ``aaa``: real AAA poles on the unit circle, least-squares residues,

beside ``aak = sigma_{d+1}/max|H|``, the least H-infinity error any order-d model can have.

Part 2, order selection: ``mor.reduce(h, tol=...)`` (smallest order whose achieved error meets
the tolerance) against one reduction at the orders it found, for balanced truncation and
Hankel-norm approximation, in both norms.

Run ``python benchmarks/bench_hankel_norm.py [--quick]``.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import scipy.signal  # noqa: E402

import _common as C  # noqa: E402  (also puts the checkout first on sys.path)
import mor  # noqa: E402

NAME = "bench_hankel_norm"
METHODS = {"balanced": {"method": "balanced"},
           "balanced+dc": {"method": "balanced", "dc_match": True},
           "hankel": {"method": "hankel"},
           "hankel/keep": {"method": "hankel", "direct": "keep"},
           "pencil": {"method": "pencil"},
           "prony": {"method": "prony"},
           "pade": {"method": "pade"},
           "aaa": {"method": "aaa"}}


def fir_designs() -> dict[str, np.ndarray]:
    """Classical FIR designs (linear phase, no decay: hard cases for low-order IIR models)."""
    return {
        "firwin lowpass 0.2, 129 taps": scipy.signal.firwin(129, 0.2),
        "firwin lowpass 0.05, 255 taps": scipy.signal.firwin(255, 0.05),
        "firwin highpass 0.6, 129 taps": scipy.signal.firwin(129, 0.6, pass_zero=False),
        "remez bandpass 0.15-0.3, 128 taps": scipy.signal.remez(
            128, [0, 0.1, 0.15, 0.3, 0.35, 0.5], [0, 1, 0], fs=1.0),
    }


def compare_methods(h: np.ndarray, orders, log) -> list[dict]:
    rows = []
    for d in orders:
        row = {"order": d}
        for name, opts in METHODS.items():
            start = time.perf_counter()
            try:
                red = mor.reduce(h, d, on_fail="flag", **opts)
            except ValueError as exc:  # e.g. Prony or the pencil need more taps for this order
                row[name] = {"seconds": None, "failed": h.shape[0], "hinf": np.nan,
                             "l2": np.nan, "hinf_over_aak": np.nan, "error": str(exc)[:120]}
                continue
            elapsed = time.perf_counter() - start
            ok = ~red.info["failed"]
            if not ok.any():
                row[name] = {"seconds": elapsed, "failed": int(ok.size), "hinf": np.nan,
                             "l2": np.nan, "hinf_over_aak": np.nan}
                continue
            row[name] = {"seconds": elapsed, "failed": int((~ok).sum()),
                         "hinf": float(np.median(red.info["hinf"][ok])),
                         "l2": float(np.median(red.info["l2"][ok])),
                         "hinf_over_aak": float(np.median(red.info["hinf"][ok]
                                                          / red.info["aak"][ok])),
                         "poles_touched": int(red.info["poles_touched"].sum())}
            row["aak"] = float(np.median(red.info["aak"]))
        log(f"  order {d}: " + ", ".join(f"{k} hinf {row[k]['hinf']:.3e}" for k in METHODS))
        row["aak"] = row.get("aak", float("nan"))
        rows.append(row)
    return rows


def selection_cost(h: np.ndarray, log) -> list[dict]:
    rows = []
    for method in ("balanced", "hankel"):
        for norm, tol in (("hinf", 2e-2), ("l2", 5e-2)):
            mor.reduce(h[:2], tol=tol, norm=norm, method=method, on_fail="flag")
            start = time.perf_counter()
            red = mor.reduce(h, tol=tol, norm=norm, method=method, on_fail="flag")
            search = time.perf_counter() - start
            met = red.info["met_tol"]
            final = np.where(met, red.order, min(h.shape[-1] - 1, 64))  # unmet: scanned to 64
            start = time.perf_counter()
            mor.reduce(h, final, method=method, on_fail="flag")
            once = time.perf_counter() - start
            rows.append({"method": method, "norm": norm, "tol": tol, "met": int(met.sum()),
                         "filters": int(met.size), "median_order": float(np.median(
                             red.order[met])), "search_seconds": search,
                         "one_reduction_seconds": once, "ratio": search / once})
            log(f"  {method} {norm}<={tol:g}: search {search:.2f} s, one reduction "
                f"{once:.2f} s ({search / once:.2f}x)")
    return rows


def render(meta, parts, selection) -> str:
    lines = [C.header_block("Hankel-norm approximation vs balanced truncation "
                            "(`bench_hankel_norm.py`)", meta)]
    lines.append("Medians over the filters of each set; `hinf` and `aak` relative to max|H|, "
                 "`l2` relative to ||h||; `/aak` is the median of hinf/aak per filter (1 is "
                 "optimal). Time: the `mor.reduce` call on the whole set.\n")
    for title, rows in parts.items():
        lines.append(f"**{title}**\n")
        head = ["order", "aak"] + [f"{m} {c}" for m in METHODS for c in ("hinf", "/aak", "l2")]
        table = [[r["order"], f"{r['aak']:.2e}"]
                 + [x for m in METHODS for x in (f"{r[m]['hinf']:.2e}",
                                                 f"{r[m]['hinf_over_aak']:.2f}",
                                                 f"{r[m]['l2']:.2e}")] for r in rows]
        lines += [C.md_table(head, table), ""]
        times = [[r["order"]] + [C.fmt_t(r[m]["seconds"]) + (f" ({r[m]['failed']} failed)"
                                                             if r[m]["failed"] else "")
                                 + (f" ({r[m]['poles_touched']} poles reflected)"
                                    if r[m].get("poles_touched") else "")
                                 for m in METHODS] for r in rows]
        lines += [C.md_table(["order"] + [f"{m} time" for m in METHODS], times), ""]
    lines.append("**Order selection** (`mor.reduce(h, tol=..., norm=...)` on the trained set): "
                 "the search's time against one reduction of the same filters at the orders "
                 "it found (at 64, the largest order tried, for filters it could not satisfy); "
                 "target for balanced and hankel: at most 3x.\n")
    table = [[s["method"], f"{s['norm']} <= {s['tol']:g}", f"{s['met']}/{s['filters']}",
              f"{s['median_order']:g}", C.fmt_t(s["search_seconds"]),
              C.fmt_t(s["one_reduction_seconds"]), f"{s['ratio']:.2f}x"] for s in selection]
    lines += [C.md_table(["method", "tolerance", "met", "median order", "search",
                          "one reduction", "ratio"], table), ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args()
    name = NAME + ("_quick" if args.quick else "")

    log = C.log
    script_start = time.perf_counter()
    C.pin_threads()
    filters = C.load_filters()
    stride = 128 if args.quick else 16
    trained = filters[:, ::stride].reshape(-1, filters.shape[-1])
    orders = (8, 16) if args.quick else (8, 16, 32, 64)
    designs = fir_designs()
    mor.reduce(trained[:2], 4, method="hankel")  # warm-up (numba kernels, FFT plans)
    parts = {}
    log(f"trained filters: {trained.shape[0]} of L = {trained.shape[1]}")
    parts[f"Shared trained filters ({trained.shape[0]}: every {stride}th channel of each "
          f"layer, L = {trained.shape[1]})"] = compare_methods(trained, orders, log)
    for label, taps in designs.items():
        log(label)
        usable = tuple(d for d in orders if d < taps.size - 1)
        parts[label] = compare_methods(taps[None], usable, log)
    log("order selection")
    selection = selection_cost(trained, log)
    meta = C.metadata(script_start)
    report = render(meta, parts, selection)
    print(report)
    C.write_json(name, {"meta": meta, "parts": parts, "selection": selection})
    log(f"wrote {C.write_section(name, report)}")


if __name__ == "__main__":
    main()
