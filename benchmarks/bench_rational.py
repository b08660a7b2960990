"""mor's AAA against ``scipy.interpolate.AAA`` and ``baryrat.aaa`` on the same samples.

Per filter (16 shared trained filters, L = 2048, and two ``firwin`` designs), at k = 8, 16 and
32 poles: the wall time, and the relative H-infinity and l2 errors of each model against the
filter. mor returns a real model of order k (conjugate-symmetric support, poles inside the
circle, residues fitted to the zero-padded taps over all time); SciPy and baryrat return
complex rational functions with k poles, whose real part ``(r(z) + conj r(conj z)) / 2`` is
what a real filter can use: a real model of order up to 2k (each complex pole brings its
conjugate). Their real part is converted to pole-residue form (their poles and residues, the
constant ``r(inf)``; agreement with their barycentric values checked) and scored by the same
code as mor's models (`mor.analysis.compare.model_errors`: l2 over the L taps, hinf on the whole circle
with refinement near peaks and sharp poles); poles on or outside the unit circle are counted
(and such a model scored through its two-sided response). So accuracy is compared twice: at
the same number of poles k (mor order k) and at equal real order (mor order 2k against their
k poles), and per filter at the smallest order (k, k + 2, ..., 4k) where mor's hinf and l2
are both at most theirs, with the time ratio there. mor's other pole-based methods (matrix
pencil, Prony, robust Padé) and balanced truncation are timed and scored beside it at order
k, with the AAK bound.

Times are the best of ``REPEATS`` runs (the machine is shared): ``mor.reduce`` as a user calls
it (the Hankel spectrum for the AAK bound and the error report included), the AAA fit
(``AAAFamily.from_fir(h, k).model(k)``: samples by FFT, greedy loop, poles, residues: what
SciPy's and baryrat's calls deliver from given samples), and the greedy loop alone in the
Numba kernel and in its NumPy reference (one SVD per step). The batch row times all 1024
shared filters at order 32 on the machine's cores, with balanced truncation on the same
filters in the same run as an anchor.

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
    """Seconds of mor's AAA fit (samples, greedy loop, poles, residues) at ``order`` and at
    ``2 order``, and of the greedy loop at ``order``, kernel and NumPy reference."""
    from mor.methods._aaa_kernels import aaa_greedy
    from mor.methods.aaa import AAAFamily, aaa_greedy_reference

    def fit(k):
        orders = np.array([k])
        return lambda: AAAFamily.from_fir(h[None], k).model(orders)

    m = scipy.fft.next_fast_len(max(4 * h.size, 256, 8 * order))
    z = np.exp(2j * np.pi * np.arange(m // 2 + 1) / m)
    f = scipy.fft.fft(h, n=m)[: m // 2 + 1]
    return {"mor aaa fit": {"seconds": best(fit(order))},
            "mor aaa fit 2k": {"seconds": best(fit(2 * order))},
            "greedy kernel": {"seconds": best(lambda: aaa_greedy(z, f[None], order))},
            "greedy numpy": {"seconds": best(lambda: aaa_greedy_reference(z, f, order), 3)}}


def score_complex(h: np.ndarray, poles: np.ndarray, residues: np.ndarray, constant: complex,
                  values: np.ndarray, z: np.ndarray) -> dict:
    """Errors of the real part of a complex rational function ``constant + sum R / (z - p)``
    (its values on the sample grid given to check the conversion), scored like mor's models.

    The real part in mor's compact form: a mode ``(p, R)`` per complex pole (the pair ``p``,
    ``conj p`` with residues ``R / 2``, ``conj R / 2``; flipped to ``Im p > 0``), a real pole
    with ``Re R``, the direct term ``Re r(inf)``. Inside the circle the model is causal;
    a pole outside contributes its anticausal expansion (only ``-R / p`` at lag 0 among the
    taps) and the peak is taken on a 64 L grid."""
    from mor._numerics import freq
    from mor.analysis.compare import model_errors

    rational = constant + (residues[None, :] / (z[:, None] - poles[None, :])).sum(axis=1)
    conversion = float(np.abs(rational - values).max() / np.abs(values).max())
    flip = poles.imag < 0
    p = np.where(flip, np.conj(poles), poles)
    r = np.where(flip, np.conj(residues), residues)
    r = np.where(p.imag == 0, r.real + 0j, r)
    real_order = int(np.count_nonzero(p.imag) * 2 + np.count_nonzero(p.imag == 0))
    outside = np.abs(p) >= 1
    direct = np.array([constant.real])
    if not outside.any():
        e = model_errors(h[None], p[None], r[None], direct, np.array([real_order]),
                         np.zeros((1, 0)), norms=("l2", "hinf"))
        hinf, l2 = float(e["hinf"][0]), float(e["l2"][0])
    else:
        inside = ~outside
        taps = np.zeros(h.size)
        taps[0] = direct[0] - np.real(np.sum(r[outside] / p[outside]))
        k = np.arange(h.size - 1)
        taps[1:] = np.real((r[inside][None, :] * p[inside][None, :] ** k[:, None]).sum(axis=1))
        l2 = float(np.linalg.norm(taps - h) / np.linalg.norm(h))
        fine = scipy.fft.next_fast_len(64 * h.size)
        w = np.exp(2j * np.pi * np.arange(fine // 2 + 1) / fine)
        model = freq.modal_response_at(p[None], r[None], direct, np.angle(w)[None])[0]
        exact = scipy.fft.fft(h, n=fine)[: fine // 2 + 1]
        hinf = float(np.abs(exact - model).max() / np.abs(exact).max())
    return {"hinf": hinf, "l2": l2, "outside": int(outside.sum()), "poles": int(poles.size),
            "real order": real_order, "conversion": conversion}


def bench_filter(h: np.ndarray, order: int) -> dict:
    from scipy.interpolate import AAA
    import baryrat

    m = scipy.fft.next_fast_len(4 * h.size)
    z = np.exp(2j * np.pi * np.arange(m) / m)
    f = scipy.fft.fft(h, n=m)
    out = {}
    runs = [(name, name, order) for name in ("aaa", "pencil", "prony", "pade", "balanced")]
    for label, name, k in runs + [("aaa 2k", "aaa", 2 * order)]:
        try:
            seconds = best(lambda: mor.reduce(h, k, method=name))
            red = mor.reduce(h, k, method=name)
            out[f"mor {label}"] = {"seconds": seconds, "hinf": float(red.info["hinf"]),
                                   "l2": float(red.info["l2"]), "aak": float(red.info["aak"]),
                                   "outside": 0, "poles": int(red.order),
                                   "reflected": int(red.info.get("poles_touched", 0))}
        except ValueError as exc:
            out[f"mor {label}"] = {"error": str(exc)[:100]}
    out.update(aaa_speed(h, order))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = AAA(z, f, rtol=0, max_terms=order + 1)
        seconds = best(lambda: AAA(z, f, rtol=0, max_terms=order + 1))
        constant = np.sum(r.weights * r.support_values) / np.sum(r.weights)
        out["scipy AAA"] = {"seconds": seconds,
                            **score_complex(h, r.poles(), r.residues(), constant, r(z), z)}
        b = baryrat.aaa(z, f, tol=0, mmax=order + 1)
        seconds = best(lambda: baryrat.aaa(z, f, tol=0, mmax=order + 1))
        constant = np.sum(b.weights * b.values) / np.sum(b.weights)
        out["baryrat aaa"] = {"seconds": seconds, **score_complex(h, *b.polres(), constant,
                                                                  b(z), z)}
    out.update(matched_orders(h, order, out))
    return out


def matched_orders(h: np.ndarray, order: int, out: dict) -> dict:
    """Per competitor, the smallest mor AAA order ``k, k + 2, ..., 4k`` whose hinf and l2 are
    both at most the competitor's (equal or better accuracy), its fit time and the ratio."""
    from mor.methods.aaa import AAAFamily

    errors, seconds = {}, {}

    def errors_at(k):
        if k not in errors:
            red = mor.reduce(h, k, method="aaa", errors=("l2", "hinf"))
            errors[k] = (float(red.info["hinf"]), float(red.info["l2"]))
        return errors[k]

    def seconds_at(k):
        if k not in seconds:
            seconds[k] = best(lambda: AAAFamily.from_fir(h[None], k).model(np.array([k])))
        return seconds[k]

    result = {}
    for name in ("scipy AAA", "baryrat aaa"):
        theirs = out[name]
        found = next((k for k in range(order, min(4 * order, h.size - 1) + 1, 2)
                      if errors_at(k)[0] <= theirs["hinf"] and errors_at(k)[1] <= theirs["l2"]),
                     None)
        result[f"matched {name}"] = ({"order": found, "seconds": seconds_at(found),
                                      "ratio": theirs["seconds"] / seconds_at(found)}
                                     if found is not None else {"order": None})
    return result


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
            for n in [n for n in names if n.startswith("matched ")]:
                got = [p[n] for p in per if p[n]["order"] is not None]
                row[n] = {"unmatched": len(per) - len(got), "order": float(np.median(
                    [g["order"] for g in got])) if got else None,
                    "ratio": float(np.median([g["ratio"] for g in got])) if got else None,
                    "min ratio": float(min(g["ratio"] for g in got)) if got else None}
            for n in [n for n in names if not n.startswith("matched ")]:
                ok = [p[n] for p in per if "error" not in p[n]]
                if not ok:
                    row[n] = None
                    continue
                row[n] = {k: float(np.median([o[k] for o in ok]))
                          for k in ("seconds", "hinf", "l2", "aak", "real order") if k in ok[0]}
                if "hinf" in ok[0]:
                    row[n]["worst hinf"] = float(max(o["hinf"] for o in ok))
                for k in ("outside", "reflected"):
                    if k in ok[0]:
                        row[n][k] = int(sum(o[k] for o in ok))
                if "conversion" in ok[0]:
                    row[n]["conversion"] = float(max(o["conversion"] for o in ok))
            rows.append(row)
            log(f"{label} order {order}: " + ", ".join(
                f"{n} {row[n]['seconds'] * 1e3:.1f} ms" for n in names
                if row[n] and "seconds" in row[n]))
    batch = filters.reshape(-1, 2048)[: 64 if args.quick else None]
    batch_s = batch_seconds(batch, 32)
    log(f"batch of {batch.shape[0]} at order 32: {batch_s}")
    meta = C.metadata(start)

    def e(r, n, key="hinf"):
        return f"{r[n][key]:.2e}" if r.get(n) else "-"

    def x(r, a, b):
        return f"{r[a]['seconds'] / r[b]['seconds']:.1f}x"

    sets_text = ", ".join(f"{k}: {v.shape[0]} filters of L = {v.shape[1]}"
                          for k, v in sets.items())
    methods = ["mor balanced", "mor aaa", "mor pencil", "mor prony", "mor pade"]
    lines = [C.header_block("AAA and Prony family against SciPy and baryrat "
                            "(`bench_rational.py`)", meta),
             f"Sets: {sets_text} (`firwin(255, 0.1)`, `firwin(255, 0.3)`). Medians over the "
             "filters of a set; `worst`: the largest. Errors relative (hinf to max |H|, l2 to "
             "the taps' norm); hinf on the whole circle with refinement, for every model "
             "alike. AAA's residues fit the zero-padded taps over all time (the model's tail "
             "included; `tail_weight=1`, the default since this run: before it, `firwin` at "
             "k = 8 had a median hinf of 77.9 and the trained filters at 32 a worst of 12.9).\n",
             "**mor's methods at order k** (real models of McMillan degree k), beside the AAK "
             "bound sigma_{k+1} / max|H| (no model of order k has a smaller hinf) and balanced "
             "truncation:\n",
             C.md_table(["set", "k", "AAK"] + [f"{n[4:]} {c}" for n in methods
                                               for c in ("hinf", "l2")]
                        + ["aaa worst hinf", "aaa reflected"],
                        [[r["set"], r["order"], e(r, "mor balanced", "aak")]
                         + [e(r, n, c) for n in methods for c in ("hinf", "l2")]
                         + [e(r, "mor aaa", "worst hinf"), r["mor aaa"]["reflected"]]
                         for r in rows]), "",
             "**AAA against SciPy and baryrat.** Their k-pole complex models' real parts have "
             "real order `their order` (up to 2k; median), so accuracy is set beside mor at "
             "the same number of poles (order k) and at equal real order (order 2k). `out`: "
             "their poles on or outside the unit circle, all filters (mor reflects its own); "
             "`conv`: the largest relative difference between their barycentric values and "
             "the pole-residue form scored.\n",
             C.md_table(["set", "k", "their order", "scipy hinf", "scipy l2", "scipy worst",
                         "baryrat hinf", "baryrat l2", "mor k hinf", "mor k l2", "mor k worst",
                         "mor 2k hinf", "mor 2k l2", "mor 2k worst", "AAK at 2k", "scipy out",
                         "baryrat out", "conv"],
                        [[r["set"], r["order"], f"{r['scipy AAA']['real order']:.0f}",
                          e(r, "scipy AAA"), e(r, "scipy AAA", "l2"),
                          e(r, "scipy AAA", "worst hinf"), e(r, "baryrat aaa"),
                          e(r, "baryrat aaa", "l2"), e(r, "mor aaa"), e(r, "mor aaa", "l2"),
                          e(r, "mor aaa", "worst hinf"), e(r, "mor aaa 2k"),
                          e(r, "mor aaa 2k", "l2"), e(r, "mor aaa 2k", "worst hinf"),
                          e(r, "mor aaa 2k", "aak"), r["scipy AAA"]["outside"],
                          r["baryrat aaa"]["outside"],
                          f"{max(r[n]['conversion'] for n in ('scipy AAA', 'baryrat aaa')):.0e}"]
                         for r in rows]), "",
             "**Time per filter**, best of 5 (the greedy loop's NumPy reference: best of 3). "
             "`reduce`: `mor.reduce(h, k, method=\"aaa\")` with the Hankel spectrum and the "
             "error report; `fit k`: `AAAFamily.from_fir(h, k).model(k)` (samples by FFT, "
             "greedy loop, poles, residues: what SciPy's and baryrat's calls deliver from "
             "given samples; SciPy's constructor computes its poles and residues too, "
             "baryrat's `polres`, 0.4-1 ms here, is not timed); `x`: their time over mor's, at "
             "the same number of poles (`fit k`) and at equal real order (`fit 2k`).\n",
             C.md_table(["set", "k", "mor reduce", "mor fit k", "mor fit 2k", "greedy kernel",
                         "greedy numpy", "numpy / kernel", "scipy AAA", "baryrat aaa",
                         "scipy x fit k", "baryrat x fit k", "scipy x fit 2k",
                         "baryrat x fit 2k", "scipy x reduce", "baryrat x reduce"],
                        [[r["set"], r["order"]]
                         + [C.fmt_t(r[n]["seconds"]) for n in
                            ("mor aaa", "mor aaa fit", "mor aaa fit 2k", "greedy kernel",
                             "greedy numpy")]
                         + [x(r, "greedy numpy", "greedy kernel"),
                            C.fmt_t(r["scipy AAA"]["seconds"]),
                            C.fmt_t(r["baryrat aaa"]["seconds"])]
                         + [x(r, o, n) for n in ("mor aaa fit", "mor aaa fit 2k", "mor aaa")
                            for o in ("scipy AAA", "baryrat aaa")]
                         for r in rows]), "",
             "**At equal or better accuracy**: per filter, the smallest mor AAA order among k, "
             "k + 2, ..., 4k whose hinf and l2 are both at most the competitor's, and the "
             "competitor's time over mor's fit at that order (`fit` as above); medians over the "
             "filters, the smallest ratio beside; `unmatched`: filters with no such order.\n",
             C.md_table(["set", "k", "order vs scipy", "scipy x fit", "smallest", "unmatched",
                         "order vs baryrat", "baryrat x fit", "smallest", "unmatched"],
                        [[r["set"], r["order"]] + [
                            x for n in ("matched scipy AAA", "matched baryrat aaa") for x in (
                                f"{r[n]['order']:.0f}" if r[n]["order"] is not None else "-",
                                f"{r[n]['ratio']:.1f}x" if r[n]["ratio"] is not None else "-",
                                f"{r[n]['min ratio']:.1f}x" if r[n]["ratio"] is not None
                                else "-", r[n]["unmatched"])]
                         for r in rows]), "",
             "mor's other methods, `mor.reduce` at order k with the error report, per filter: "
             + "; ".join(f"{r['set']} k = {r['order']}: " + ", ".join(
                 f"{n[4:]} {C.fmt_t(r[n]['seconds'])}" for n in methods if r.get(n))
                 for r in rows) + ".\n",
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
