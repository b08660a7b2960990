"""Dense systems of large order at SLICOT's speed (issue 21.4): Penzl's example.

Penzl's example (pyMOR's ``penzl_example``: 1006 states, three lightly damped pairs
``-1 +- 100i, 200i, 400i`` and the real poles ``-1 .. -1000``, ``B = C^T`` of ones with 10 on
the pairs' states), made discrete by the bilinear map ``z = (1 + s) / (1 - s)``
(`mor.methods.hankel_norm.to_discrete`; its poles reach ``1 - 1.25e-5``), reduced at orders 8
and 16, all in one run and interleaved (each round runs every case once; the median over the
rounds is reported):

* ``AB09CD``: SLICOT's optimal Hankel-norm approximation (``ctrlsys``), against
  ``mor.reduce(sys, d, method="hankel")`` with no error report (``errors=()``) and with the
  default one (the H-infinity error, its peak, the AAK and Glover figures, the float32
  deviation);
* ``AB09AD``: SLICOT's square-root balanced truncation, against ``mor.reduce(sys, d)``
  (balanced truncation), likewise.

Targets: ``method="hankel"`` within 2x of AB09CD's time, and the default error report within 2x
of the reduction's time (the report: the time with it less the time without). Beside the
times, untimed accuracy checks: mor's Hankel singular values against AB09CD's, the Hankel-norm
error of both approximants against ``sigma_{d+1}`` (the largest Hankel singular value of the
error system), and the strictly proper parts of mor's and SLICOT's models compared.

Run ``python benchmarks/bench_penzl.py [--quick] [--rounds R]``.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402

import _common as C  # noqa: E402  (also puts the checkout first on sys.path)
import mor  # noqa: E402
from mor.methods.hankel_norm import to_discrete  # noqa: E402

NAME = "bench_penzl"
ISSUE_BEFORE = ("Before (issue 21.4, same example): `method=\"hankel\"` 108-147 s against 2-3 s "
                "for AB09CD; the default error report of a balanced truncation 500 s (9 s with "
                "`errors=(\"l2\",)`). Profiled on this machine before the change (cProfile, "
                "order 16, load about 2): `hankel` 238 s (the dense grid, M = 129,600 "
                "matrix-vector products per evaluation, 147 s in 3 calls; a dense solve per "
                "frequency in the peak refinement 78 s; the Gramians, computed twice, 11 s), "
                "`balanced` 135 s (122 s of it the report)")


def penzl(n: int = 1006):
    """Penzl's continuous-time example with ``n`` states (pyMOR's ``penzl_example`` at
    ``n = 1006``), checked against pyMOR's matrices where pyMOR is installed."""
    blocks = [np.array([[-1.0, w], [-w, -1.0]]) for w in (100.0, 200.0, 400.0)]
    a = scipy.linalg.block_diag(*blocks, np.diag(-np.arange(1.0, n - 5)))
    b = np.ones(n)
    b[:6] = 10.0
    try:
        from pymor.models.examples import penzl_example
    except ImportError:
        return a, b, b.copy()
    if n == 1006:
        fom = penzl_example()
        assert np.array_equal(fom.A.matrix.toarray(), a)
        assert np.array_equal(fom.B.matrix[:, 0], b) and np.array_equal(fom.C.matrix[0], b)
    return a, b, b.copy()


def discrete(n: int = 1006) -> mor.StateSpace:
    a, b, c = penzl(n)
    ad, bd, cd, dd = to_discrete(a[None], b[None], c[None], np.zeros(1))
    return mor.StateSpace(ad[0], bd[0], cd[0], dd[0])


def slicot(routine: str, sys: mor.StateSpace, order: int):
    """AB09CD or AB09AD on ``sys`` at ``order`` (fixed order, no scaling): a `mor.ModalSSM`
    of the reduced model and SLICOT's Hankel singular values."""
    import ctrlsys
    n = sys.n_states
    args = (sys.a.copy(order="F"), sys.b[:, None].copy(order="F"),
            sys.c[None, :].copy(order="F"))  # SLICOT overwrites its arrays: copies
    if routine == "AB09CD":
        ar, br, cr, dr, nr, hsv, *_ = ctrlsys.ab09cd("D", "N", "F", n, 1, 1, order, *args,
                                                     np.array([[sys.d]], order="F"), 0.0, 0.0)
        d = dr[0, 0]
    else:
        ar, br, cr, hsv, nr, *_ = ctrlsys.ab09ad("D", "B", "N", "F", n, 1, 1, order, *args, 0.0)
        d = sys.d
    return mor.ModalSSM.from_dense(ar[:nr, :nr], br[:nr, 0], cr[0, :nr], d), hsv


def error_system(full: mor.StateSpace, model: mor.ModalSSM) -> mor.StateSpace:
    red = model.to_dense()
    return mor.StateSpace(scipy.linalg.block_diag(full.a, red.a), np.r_[full.b, red.b],
                          np.r_[full.c, -red.c], full.d - red.d)


def cases(sys: mor.StateSpace, order: int) -> dict:
    return {
        "AB09CD": lambda: slicot("AB09CD", sys, order),
        "hankel, errors=()": lambda: mor.reduce(sys, order, method="hankel", errors=()),
        "hankel": lambda: mor.reduce(sys, order, method="hankel"),
        "AB09AD": lambda: slicot("AB09AD", sys, order),
        "balanced, errors=()": lambda: mor.reduce(sys, order, errors=()),
        "balanced": lambda: mor.reduce(sys, order),
    }


def run_order(sys: mor.StateSpace, order: int, rounds: int, log) -> dict:
    runs = cases(sys, order)
    seconds = {name: [] for name in runs}
    results = {}
    for r in range(rounds):  # interleaved: each round runs every case once
        for name, fn in runs.items():
            start = time.perf_counter()
            results[name] = fn()
            seconds[name].append(time.perf_counter() - start)
        log(f"  order {order}, round {r + 1}: " + ", ".join(
            f"{k} {v[-1]:.2f} s" for k, v in seconds.items()))
    t = {name: statistics.median(v) for name, v in seconds.items()}
    row = {"order": order, "seconds": t, "all_seconds": seconds,
           "hankel_over_ab09cd": t["hankel"] / t["AB09CD"],
           "hankel_noreport_over_ab09cd": t["hankel, errors=()"] / t["AB09CD"],
           "balanced_over_ab09ad": t["balanced"] / t["AB09AD"],
           "balanced_noreport_over_ab09ad": t["balanced, errors=()"] / t["AB09AD"]}
    for method in ("hankel", "balanced"):
        report = t[method] - t[f"{method}, errors=()"]
        row[f"{method}_report_seconds"] = report
        row[f"{method}_report_over_reduction"] = report / t[f"{method}, errors=()"]
    row["accuracy"] = accuracy(sys, order, results, log)
    return row


def accuracy(sys: mor.StateSpace, order: int, results: dict, log) -> dict:
    """Untimed checks of the models of the last round."""
    hsv = sys.hankel_singular_values()
    ab09cd, slicot_hsv = results["AB09CD"]
    ab09ad, _ = results["AB09AD"]
    hankel, balanced = results["hankel"], results["balanced"]
    length = 4000
    out = {"sigma_next": hsv[order],
           "hsv_vs_slicot": float(np.max(np.abs(hsv[: order + 2] / slicot_hsv[: order + 2] - 1)))}
    for name, model in (("hankel", hankel), ("AB09CD", ab09cd)):
        err = error_system(sys, model).hankel_singular_values()[0]
        out[f"{name}_hankel_error_over_sigma_next"] = err / hsv[order]
    for ours, theirs, key in ((hankel, ab09cd, "hankel_vs_AB09CD"),
                              (balanced, ab09ad, "balanced_vs_AB09AD")):
        a, b = ours.impulse(length)[1:], theirs.impulse(length)[1:]  # strictly proper parts
        out[f"{key}_impulse"] = float(np.abs(a - b).max() / np.abs(b).max())
    for method, red in (("hankel", hankel), ("balanced", balanced)):
        for key in ("hinf", "aak", "peak", "f32_deviation"):
            out[f"{method}_{key}"] = float(red.info[key])
    out["hankel_glover_bound"] = float(hankel.info["glover_bound"])
    out["balanced_bt_bound"] = float(balanced.info["bt_bound"])
    log(f"  order {order}: " + ", ".join(f"{k} {v:.3g}" for k, v in out.items()))
    return out


def render(meta, rows, n) -> str:
    header = C.header_block(f"Dense systems: Penzl's example, {n} states (`bench_penzl.py`)",
                            meta)
    lines = [header.rstrip("\n") + "\n"
             f"- load average (1 min) at the start and at the end: {meta['load'][0]:.2f}, "
             f"{meta['load'][1]:.2f} on {meta['machine']['nproc']} cores (other jobs share "
             "them: the ratios, measured in the same rounds, are the figures to read)\n"]
    lines.append(
        f"Penzl's example (pyMOR's `penzl_example`) made discrete by the bilinear map, {n} "
        f"states, poles up to 1 - 1.25e-5. Time: median over {meta['rounds']} interleaved "
        "rounds (each runs every case once) of one call; `hankel` and `balanced` are "
        "`mor.reduce` with its default error report, `errors=()` without. Targets: `hankel` "
        "within 2x of AB09CD, the report (time with it less time without) within 2x of the "
        "reduction (`hankel`'s report reuses the frequency response its direct term was "
        f"chosen on). {ISSUE_BEFORE}.\n")
    head = ["order", "AB09CD", "hankel, errors=()", "hankel", "hankel / AB09CD",
            "report / reduction", "AB09AD", "balanced, errors=()", "balanced",
            "balanced / AB09AD", "report / reduction"]
    table = [[r["order"], C.fmt_t(r["seconds"]["AB09CD"]),
              C.fmt_t(r["seconds"]["hankel, errors=()"]), C.fmt_t(r["seconds"]["hankel"]),
              f"{C.fmt_r(r['hankel_over_ab09cd'])} ({C.fmt_r(r['hankel_noreport_over_ab09cd'])}"
              " without the report)",
              C.fmt_r(r["hankel_report_over_reduction"]),
              C.fmt_t(r["seconds"]["AB09AD"]), C.fmt_t(r["seconds"]["balanced, errors=()"]),
              C.fmt_t(r["seconds"]["balanced"]),
              f"{C.fmt_r(r['balanced_over_ab09ad'])} "
              f"({C.fmt_r(r['balanced_noreport_over_ab09ad'])} without the report)",
              C.fmt_r(r["balanced_report_over_reduction"])] for r in rows]
    lines += [C.md_table(head, table), ""]
    lines.append("Accuracy (untimed, the models of the last round): `hsv vs SLICOT` is the "
                 "largest relative difference of mor's first d + 2 Hankel singular values from "
                 "AB09CD's; the Hankel-norm errors are the largest Hankel singular value of "
                 "each error system over sigma_{d+1} (1 is optimal); `impulse` compares the "
                 "strictly proper parts of mor's and SLICOT's models over 4000 taps (relative "
                 "to SLICOT's largest tap); `hinf`, `aak` and the bounds are mor's report, "
                 "relative to the peak |H|.\n")
    head = ["order", "sigma_{d+1}", "hsv vs SLICOT", "Hankel error / sigma_{d+1}: mor",
            "AB09CD", "impulse vs AB09CD", "hankel hinf", "aak", "Glover bound",
            "balanced hinf", "BT bound", "impulse vs AB09AD", "f32 deviation (hankel)"]
    table = [[r["order"], f"{a['sigma_next']:.3e}", f"{a['hsv_vs_slicot']:.1e}",
              f"1 {a['hankel_hankel_error_over_sigma_next'] - 1:+.1e}",
              f"1 {a['AB09CD_hankel_error_over_sigma_next'] - 1:+.1e}",
              f"{a['hankel_vs_AB09CD_impulse']:.1e}", f"{a['hankel_hinf']:.3e}",
              f"{a['hankel_aak']:.3e}", f"{a['hankel_glover_bound']:.3e}",
              f"{a['balanced_hinf']:.3e}", f"{a['balanced_bt_bound']:.3e}",
              f"{a['balanced_vs_AB09AD_impulse']:.1e}", f"{a['hankel_f32_deviation']:.1e}"]
             for r in rows for a in [r["accuracy"]]]
    lines += [C.md_table(head, table), ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 206 states, order 8, one round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    name = NAME + ("_quick" if args.quick else "")
    log = C.log
    script_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    C.pin_threads()
    n = 206 if args.quick else 1006
    orders = (8,) if args.quick else (8, 16)
    rounds = 1 if args.quick else args.rounds
    sys = discrete(n)
    log(f"Penzl's example, {n} states; warm-up (Numba kernels, first calls)")
    warm = discrete(56)
    for fn in cases(warm, 8).values():
        fn()
    rows = [run_order(sys, d, rounds, log) for d in orders]
    meta = C.metadata(script_start, rounds=rounds, load=(load_start, os.getloadavg()[0]))
    report = render(meta, rows, n)
    print(report)
    C.write_json(name, {"meta": meta, "rows": rows})
    log(f"wrote {C.write_section(name, report)}")


if __name__ == "__main__":
    main()
