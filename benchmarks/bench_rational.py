"""mor's AAA against ``scipy.interpolate.AAA`` and ``baryrat.aaa`` on the same samples.

Per filter (16 shared trained filters, L = 2048, and two ``firwin`` designs), at 8, 16 and 32
poles: the wall time, and the relative H-infinity and l2 errors of each model against the
filter. mor returns a real model of that order (conjugate-symmetric support, poles inside the
circle, residues refitted on the taps); SciPy and baryrat return complex rational functions,
whose real part (up to twice as many poles) is what is scored, from their values on the
``M = 4 L`` sample grid (the l2 error through the inverse FFT of those values). Their poles
outside the unit circle are counted. mor's other pole-based methods (matrix pencil, Prony,
robust Padé) are timed beside it. Times are the best of ``REPEATS`` runs (the machine is
shared): ``mor.reduce`` as a user calls it (the Hankel spectrum for the AAK bound and the error
report included), the AAA fit alone (greedy loop, poles, least-squares residues: what SciPy's
and baryrat's calls deliver), and the greedy loop alone in the Numba kernel and in its NumPy
reference (one SVD per step). The batch row times all 1024 shared filters at order 32 on the
machine's cores, with balanced truncation on the same filters in the same run as an anchor.

Run ``python benchmarks/bench_rational.py [--quick]``.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import scipy.fft  # noqa: E402
import scipy.signal  # noqa: E402

import _common as C  # noqa: E402
import mor  # noqa: E402

NAME = "bench_rational"
REPEATS = 5


def best(fn, repeats: int = REPEATS) -> float:
    """The shortest of ``repeats`` timed runs of ``fn`` (after one untimed run)."""
    return min(C.timed(fn, repeats=repeats, warmup=True)[2])


def aaa_speed(h: np.ndarray, order: int) -> dict:
    """Seconds of mor's AAA fit alone and of its greedy loop, kernel and NumPy reference."""
    from mor._aaa_kernels import aaa_greedy
    from mor.methods.aaa import AAAFamily, aaa_greedy_reference

    family = AAAFamily.from_fir(h[None], order)
    orders = np.array([order])
    m = scipy.fft.next_fast_len(max(4 * h.size, 256, 8 * order))
    z = np.exp(2j * np.pi * np.arange(m // 2 + 1) / m)
    f = scipy.fft.fft(h, n=m)[: m // 2 + 1]
    return {"mor aaa fit": {"seconds": best(lambda: family.model(orders))},
            "greedy kernel": {"seconds": best(lambda: aaa_greedy(z, f[None], order))},
            "greedy numpy": {"seconds": best(lambda: aaa_greedy_reference(z, f, order), 3)}}


def score_complex(h: np.ndarray, values: np.ndarray, poles: np.ndarray) -> dict:
    """Errors of the real part of a complex model given by its values on the full grid."""
    m = values.size
    mirrored = np.conj(np.roll(values[::-1], 1))  # r(conj z) on the same grid
    real_part = 0.5 * (values + mirrored)
    exact = scipy.fft.fft(h, n=m)
    taps = np.real(scipy.fft.ifft(real_part))[: h.size]
    peak = np.abs(exact).max()
    return {"hinf": float(np.abs(exact - real_part).max() / peak),
            "l2": float(np.linalg.norm(taps - h) / np.linalg.norm(h)),
            "outside": int((np.abs(poles) >= 1).sum()), "poles": int(poles.size)}


def bench_filter(h: np.ndarray, order: int) -> dict:
    from scipy.interpolate import AAA
    import baryrat

    m = scipy.fft.next_fast_len(4 * h.size)
    z = np.exp(2j * np.pi * np.arange(m) / m)
    f = scipy.fft.fft(h, n=m)
    out = {}
    for name in ("aaa", "pencil", "prony", "pade"):
        try:
            seconds = best(lambda: mor.reduce(h, order, method=name))
            red = mor.reduce(h, order, method=name)
            out[f"mor {name}"] = {"seconds": seconds, "hinf": float(red.info["hinf"]),
                                  "l2": float(red.info["l2"]), "outside": 0,
                                  "poles": int(red.order),
                                  "reflected": int(red.info["poles_touched"])}
        except ValueError as exc:
            out[f"mor {name}"] = {"error": str(exc)[:100]}
    out.update(aaa_speed(h, order))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = AAA(z, f, rtol=0, max_terms=order + 1)
        seconds = best(lambda: AAA(z, f, rtol=0, max_terms=order + 1))
        out["scipy AAA"] = {"seconds": seconds, **score_complex(h, r(z), r.poles())}
        b = baryrat.aaa(z, f, tol=0, mmax=order + 1)
        seconds = best(lambda: baryrat.aaa(z, f, tol=0, mmax=order + 1))
        out["baryrat aaa"] = {"seconds": seconds, **score_complex(h, b(z), b.poles())}
    return out


def batch_seconds(filters: np.ndarray, order: int, rounds: int = 2) -> dict:
    """Best of ``rounds`` wall times, and the process CPU seconds of that run, of AAA (with and
    without the error report) and balanced truncation on the same batch, run alternately on all
    cores (CPU seconds over the
    core count is the wall time the run would take on otherwise idle cores)."""
    calls = {"aaa": ("aaa", ("l2", "tail", "hinf")), "aaa, errors=()": ("aaa", ()),
             "balanced": ("balanced", ("l2", "tail", "hinf"))}
    runs = {name: [] for name in calls}
    mor.reduce(filters[:2], order, method="aaa")
    with C.mor_threads(C.cores()):
        for _ in range(rounds):
            for name, got in runs.items():
                method, errors = calls[name]
                wall, cpu = time.perf_counter(), time.process_time()
                mor.reduce(filters, order, method=method, on_fail="flag", errors=errors)
                got.append((time.perf_counter() - wall, time.process_time() - cpu))
    return {method: dict(zip(("wall", "cpu"), min(got))) for method, got in runs.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args()
    log = C.log
    start = time.perf_counter()
    C.pin_threads()
    filters = C.load_filters()
    sets = {"trained": filters[:, :: (128 if args.quick else 64)].reshape(-1, 2048),
            "firwin": np.stack([scipy.signal.firwin(255, 0.1), scipy.signal.firwin(255, 0.3)])}
    orders = (8,) if args.quick else (8, 16, 32)
    rows = []
    for label, hs in sets.items():
        for order in orders:
            per = [bench_filter(h, order) for h in hs]
            names = per[0].keys()
            row = {"set": label, "order": order, "filters": len(per)}
            for n in names:
                ok = [p[n] for p in per if "error" not in p[n]]
                if not ok:
                    row[n] = None
                    continue
                row[n] = {k: float(np.median([o[k] for o in ok]))
                          for k in ("seconds", "hinf", "l2") if k in ok[0]}
                if "outside" in ok[0]:
                    row[n]["outside"] = int(sum(o["outside"] for o in ok))
            rows.append(row)
            log(f"{label} order {order}: " + ", ".join(
                f"{n} {row[n]['seconds'] * 1e3:.1f} ms" for n in names if row[n]))
    batch = filters.reshape(-1, 2048)[: 64 if args.quick else None]
    batch_s = batch_seconds(batch, 32)
    log(f"batch of {batch.shape[0]} at order 32: {batch_s}")
    meta = C.metadata(start)
    head = ["set", "order"]
    names = ["mor aaa", "scipy AAA", "baryrat aaa", "mor pencil", "mor prony", "mor pade"]
    lines = [C.header_block("AAA and Prony family against SciPy and baryrat "
                            "(`bench_rational.py`)", meta),
             "Medians per filter: time, relative hinf and l2. SciPy's and baryrat's models are "
             "complex: their real part is scored (up to twice the poles); `out` counts their "
             "poles on or outside the unit circle (mor reflects its own). `x mor` is the "
             "competitor's time over mor AAA's.\n",
             C.md_table(head + [f"{n} {c}" for n in names for c in ("time", "hinf", "l2")]
                        + ["scipy out", "baryrat out", "scipy x mor", "baryrat x mor"],
                        [[r["set"], r["order"]]
                         + [x for n in names for x in (
                             (C.fmt_t(r[n]["seconds"]), f"{r[n]['hinf']:.2e}",
                              f"{r[n]['l2']:.2e}") if r.get(n) else ("-", "-", "-"))]
                         + [r["scipy AAA"]["outside"], r["baryrat aaa"]["outside"],
                            f"{r['scipy AAA']['seconds'] / r['mor aaa']['seconds']:.1f}x",
                            f"{r['baryrat aaa']['seconds'] / r['mor aaa']['seconds']:.1f}x"]
                         for r in rows]), "",
             "AAA's time per filter, best of 5 (the greedy loop's NumPy reference: best of 3). "
             "`reduce`: `mor.reduce(h, order, method=\"aaa\")`, with the Hankel spectrum and "
             "the error report; `fit`: the family's poles and least-squares residues alone; "
             "`x`: SciPy's or baryrat's time over mor's.\n",
             C.md_table(["set", "order", "mor reduce", "mor fit", "greedy kernel",
                         "greedy numpy", "numpy / kernel", "scipy AAA", "baryrat aaa",
                         "scipy x reduce", "scipy x fit", "baryrat x reduce", "baryrat x fit"],
                        [[r["set"], r["order"]]
                         + [C.fmt_t(r[n]["seconds"]) for n in
                            ("mor aaa", "mor aaa fit", "greedy kernel", "greedy numpy")]
                         + [f"{r['greedy numpy']['seconds'] / r['greedy kernel']['seconds']:.1f}x",
                            C.fmt_t(r["scipy AAA"]["seconds"]),
                            C.fmt_t(r["baryrat aaa"]["seconds"])]
                         + [f"{r[o]['seconds'] / r[n]['seconds']:.1f}x"
                            for o in ("scipy AAA", "baryrat aaa")
                            for n in ("mor aaa", "mor aaa fit")]
                         for r in rows]), "",
             f"Batch: `mor.reduce(h, 32, method=...)` on all {batch.shape[0]} shared filters "
             f"(L = 2048) on {C.cores()} threads, best of 2 wall times, alternating: AAA "
             f"{batch_s['aaa']['wall']:.1f} s ({batch_s['aaa']['cpu']:.1f} CPU s; without the "
             f"error report, `errors=()`: {batch_s['aaa, errors=()']['wall']:.1f} s), balanced "
             f"truncation {batch_s['balanced']['wall']:.1f} s ({batch_s['balanced']['cpu']:.1f} "
             f"CPU s) in the same run; AAA / BT = "
             f"{batch_s['aaa']['wall'] / batch_s['balanced']['wall']:.2f} (target for AAA: "
             "under 10 s).\n"]
    report = "\n".join(lines)
    print(report)
    name = NAME + ("_quick" if args.quick else "")
    C.write_json(name, {"meta": meta, "rows": rows, "batch_seconds": batch_s,
                        "batch_filters": int(batch.shape[0])})
    C.write_section(name, report)


if __name__ == "__main__":
    main()
