"""The exact Hankel-norm approximant of FIR filters against the truncated construction.

For the shared trained filters (all 1024, or ``--filters N`` layer-stratified) cut to
L = 1024 and L = 2048, and for classical FIR designs (``firwin``, ``firls``, ``remez``), at orders 4, 8, 16
and 32: ``mor.reduce(h, d, method="hankel")`` with ``construction="auto"`` (the exact
construction on the filter itself where it converges) and
``construction="truncated"`` (Glover's construction on an intermediate balanced model of order
``max(2d, d + 32)``), beside balanced truncation (``mor.reduce(h, d)``).

Per set and order: the filters the exact construction covers (``info["aak_exact"]``); the
largest and median ``|Hankel error - sigma_{d+1}| / sigma_{d+1}``, the Hankel error computed
independently of the library's construction (the largest singular value of the Hankel matrix
of ``h - h_hat`` over at least 8 L lags and until the model's impulse response has decayed
to 1e-17 (at most 64 L), Krylov at rtol 1e-13; ``sigma_{d+1}`` from ``mor.hankel_singular_values``); the
time per filter of each construction and of balanced truncation, and their ratio (target:
the exact path within 5x balanced truncation).

Run ``python benchmarks/bench_hankel_exact.py [--filters N] [--quick]``.
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

NAME = "bench_hankel_exact"
ORDERS = (4, 8, 16, 32)
LENGTHS = (1024, 2048)
TARGET_GAP, TARGET_RATIO = 1e-3, 5.0
#: The independent check's lags at most this many times L (a model pole within 1e-5 of the
#: circle would need more to decay to 1e-17; the check then omits what comes after).
MAX_LAGS = 64


def fir_designs(length: int) -> np.ndarray:
    """Classical designs as filters of ``length`` taps: ``firwin`` low-pass and high-pass and a
    ``firls`` band-pass of that length (the even-length ones one tap shorter, a zero
    appended), and a 255-tap ``remez`` low-pass zero-padded (Parks-McClellan does not
    converge at these lengths with these bands)."""
    def padded(taps):
        return np.concatenate([taps, np.zeros(length - taps.size)])

    odd = length - 1 if length % 2 == 0 else length
    return np.stack([
        scipy.signal.firwin(length, 0.1),
        padded(scipy.signal.firwin(odd, 0.6, pass_zero=False)),
        padded(scipy.signal.firls(odd, [0, 0.1, 0.15, 0.3, 0.35, 0.5], [0, 0, 1, 1, 0, 0],
                                  fs=1.0)),
        padded(scipy.signal.remez(255, [0, 0.1, 0.15, 0.5], [1, 0])),
    ])


def hankel_error(h: np.ndarray, red: mor.ModalSSM) -> np.ndarray:
    """The error system's Hankel norm per filter, independently (module notes)."""
    out = np.empty(h.shape[0])
    for i in range(h.shape[0]):
        model = red[i]
        rho = np.abs(model.poles).max(initial=0.0)
        decay = int(np.log(1e-17) / np.log(rho)) + 1 if 0 < rho < 1 else 1
        lags = min(max(8 * h.shape[-1], h.shape[-1] + decay), MAX_LAGS * h.shape[-1])
        e = -model.impulse(lags)
        e[: h.shape[-1]] += h[i]
        out[i] = mor.hankel_singular_values(e, 1, method="krylov", rtol=1e-13)[0]
    return out


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def one_set(h: np.ndarray, log) -> list[dict]:
    rows = []
    sigma = mor.hankel_singular_values(h, max(ORDERS) + 1)
    for d in ORDERS:
        exact, t_exact = timed(lambda: mor.reduce(h, d, method="hankel", on_fail="flag",
                                                  construction="auto"))
        trunc, t_trunc = timed(lambda: mor.reduce(h, d, method="hankel", on_fail="flag",
                                                  construction="truncated"))
        _, t_bt = timed(lambda: mor.reduce(h, d))
        row = {"order": d, "filters": int(h.shape[0]),
               "exact": int(exact.info["aak_exact"].sum()),
               "failed": int(exact.info["failed"].sum()),
               "seconds": {"exact": t_exact, "truncated": t_trunc, "balanced": t_bt}}
        for name, red in (("exact", exact), ("truncated", trunc)):
            ok = ~red.info["failed"]
            gap = np.abs(hankel_error(h[ok], red[ok]) / sigma[ok, d] - 1)
            row[name + "_gap"] = {"max": float(gap.max(initial=0.0)),
                                  "median": float(np.median(gap)) if gap.size else 0.0}
        log(f"  order {d}: exact {row['exact']}/{row['filters']}, gap max "
            f"{row['exact_gap']['max']:.1e} (truncated {row['truncated_gap']['max']:.1e}); "
            f"{t_exact / t_bt:.2f}x balanced truncation's time")
        rows.append(row)
    return rows


def render(meta, parts) -> str:
    lines = [C.header_block("Exact Hankel-norm approximants of FIR filters "
                            "(`bench_hankel_exact.py`)", meta)]
    lines.append("`gap`: `|Hankel error - sigma_{d+1}| / sigma_{d+1}`, the Hankel error "
                 "computed independently (module notes); `exact`: filters the exact "
                 "construction covers (the others keep the truncated model); time per "
                 f"filter. Targets: gap at most {TARGET_GAP:g} on every filter, the default "
                 f"(exact) path within {TARGET_RATIO:g}x balanced truncation's time.\n")
    head = ["set", "order", "exact", "gap max (median)", "truncated: gap max (median)",
            "time exact / truncated / BT per filter", "exact / BT", "targets"]
    table = []
    for title, rows in parts.items():
        for r in rows:
            s, f = r["seconds"], r["filters"]
            ratio = s["exact"] / s["balanced"]
            met = r["exact_gap"]["max"] <= TARGET_GAP and ratio <= TARGET_RATIO \
                and not r["failed"]
            table.append([title, r["order"], f"{r['exact']}/{f}",
                          f"{r['exact_gap']['max']:.1e} ({r['exact_gap']['median']:.1e})",
                          f"{r['truncated_gap']['max']:.1e} "
                          f"({r['truncated_gap']['median']:.1e})",
                          " / ".join(C.fmt_t(s[k] / f) for k in ("exact", "truncated",
                                                                  "balanced")),
                          f"{ratio:.2f}x", "yes" if met else "**no**"])
    lines += [C.md_table(head, table), ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--filters", type=int, default=1024,
                        help="shared filters used (every k-th channel of each layer)")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args()
    name = NAME + ("_quick" if args.quick else "")
    log = C.log
    script_start = time.perf_counter()
    C.pin_threads()
    filters = C.load_filters()
    count = 16 if args.quick else args.filters
    stride = max(1, filters.shape[0] * filters.shape[1] // count)
    trained = filters.reshape(-1, filters.shape[-1])[::stride]
    mor.reduce(trained[:2, :256], 4, method="hankel")  # warm-up (numba kernels)
    parts = {}
    for length in LENGTHS[:1] if args.quick else LENGTHS:
        log(f"trained filters: {trained.shape[0]}, L = {length}")
        parts[f"trained ({trained.shape[0]}), L = {length}"] = one_set(
            np.ascontiguousarray(trained[:, :length]), log)
        log(f"FIR designs, L = {length}")
        parts[f"firwin/firls/remez (4), L = {length}"] = one_set(fir_designs(length), log)
    meta = C.metadata(script_start)
    report = render(meta, parts)
    print(report)
    C.write_json(name, {"meta": meta, "parts": parts})
    log(f"wrote {C.write_section(name, report)}")


if __name__ == "__main__":
    main()
