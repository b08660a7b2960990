#!/usr/bin/env python
"""Top-64 Hankel singular values of one long filter: mor against dense SVD and SciPy's svds.

For each length L the same source filter (the shared trained filter ``filters[0, 0]``, cut to
``L`` taps for ``L <= 2048``, or ``np.interp``-olated onto ``L`` points beyond) is given to

* mor: ``mor.hankel_singular_values(h, 64)`` (``method="auto"``: the dense path for
  ``L - 1 <= 384``, the matrix-free Krylov path beyond);
* dense: ``scipy.linalg.svd(scipy.linalg.hankel(h[1:]), compute_uv=False,
  lapack_driver="gesvd")`` (only for ``L <= --dense-max``, default 4096: it is O(L^3));
* ``scipy.sparse.linalg.svds`` on a ``LinearOperator`` that applies the (symmetric) Hankel matrix
  by FFT, k = 64, ``solver="arpack"`` and ``"propack"`` at ``tol=0`` (machine precision; SciPy's
  default tol) and ``"lobpcg"`` at its defaults;
* ``scipy.sparse.linalg.eigsh(op, 64, which="LM", tol=0)`` on the same operator (H is symmetric,
  so ``sigma = |lambda|``): what a user who knows that would pick.

Agreement is ``max_i |s_i - s_ref_i| / s_ref_1`` against the dense values, or, beyond
``--dense-max``, against ``mor.hankel_singular_values(h, 64, method="krylov", rtol=1e-13)``.
A batch row times one mor call on all 1024 shared filters (L = 2048, k = 33) against a loop of
``svds`` calls. Run ``python benchmarks/bench_hankel.py [--quick]``.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import scipy.fft  # noqa: E402
import scipy.linalg  # noqa: E402
import scipy.sparse.linalg as ssl  # noqa: E402

import _common as C  # noqa: E402  (also puts the checkout first on sys.path)
import mor  # noqa: E402

NAME = "bench_hankel"
K = 64
BATCH_K = 33
REF_RTOL = 1e-13


# ---------------------------------------------------------------------------- inputs
def filter_of_length(filters: np.ndarray, length: int, layer: int = 0, channel: int = 0):
    base = filters[layer, channel]
    if length <= base.size:
        return base[:length].copy(), f"filters[{layer},{channel},:{length}]"
    grid = np.linspace(0.0, base.size - 1.0, length)
    return (np.interp(grid, np.arange(base.size), base),
            f"np.interp(filters[{layer},{channel}]) onto {length} points")


def auto_path(length: int, k: int) -> str:
    n = length - 1
    limit = getattr(getattr(mor, "hankel", None), "DENSE_MAX_SIZE", 384)
    return "dense" if (n <= limit or 4 * k > n) else "krylov"


# ---------------------------------------------------------------------------- competitors
def hankel_operator(h: np.ndarray) -> ssl.LinearOperator:
    """``H x`` with ``H[i, j] = h[i + j + 1]`` by zero-padded real FFTs (a correlation)."""
    g = np.ascontiguousarray(h[1:], dtype=np.float64)
    n = g.size
    m = scipy.fft.next_fast_len(2 * n - 1, real=True)
    spec = scipy.fft.rfft(g, m)

    def matmat(x):
        x = np.asarray(x).reshape(n, -1)
        y = scipy.fft.irfft(spec[:, None] * np.conj(scipy.fft.rfft(x, m, axis=0)), m, axis=0)
        return y[:n]

    def matvec(x):
        return matmat(x)[:, 0]

    # H is symmetric: rmatvec = matvec.
    return ssl.LinearOperator((n, n), matvec=matvec, rmatvec=matvec, matmat=matmat,
                              rmatmat=matmat, dtype=np.float64)


def dense_values(h: np.ndarray, k: int) -> np.ndarray:
    return scipy.linalg.svd(scipy.linalg.hankel(h[1:]), compute_uv=False,
                            lapack_driver="gesvd")[:k]


def svds_values(h: np.ndarray, k: int, solver: str, tol: float = 0.0, seed: int = 0):
    op = hankel_operator(h)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = ssl.svds(op, k=k, tol=tol, solver=solver, return_singular_vectors=False,
                     rng=np.random.default_rng(seed))
    return np.sort(s)[::-1]


def eigsh_values(h: np.ndarray, k: int, seed: int = 0):
    op = hankel_operator(h)
    v0 = np.random.default_rng(seed).standard_normal(op.shape[0])
    w = ssl.eigsh(op, k=k, which="LM", tol=0, v0=v0, return_eigenvectors=False)
    return np.sort(np.abs(w))[::-1]


def agreement(s, ref):
    if s is None or ref is None:
        return None
    return float(np.max(np.abs(np.asarray(s)[: ref.size] - ref)) / ref[0])


COMPETITORS = {  # name -> (label, function of (h, k))
    "svds_arpack": ("svds arpack tol=0", lambda h, k: svds_values(h, k, "arpack")),
    "svds_propack": ("svds propack tol=0", lambda h, k: svds_values(h, k, "propack")),
    "eigsh": ("eigsh LM tol=0", eigsh_values),
    "svds_lobpcg": ("svds lobpcg (defaults)", lambda h, k: svds_values(h, k, "lobpcg")),
}


def run_method(fn, *, warmup=True, repeats=None):
    """``{"values", "seconds", "times"}`` or ``{"error"}``."""
    try:
        values, median, times = C.timed(fn, repeats=repeats, warmup=warmup)
    except Exception as exc:  # noqa: BLE001 - a failing competitor is a result
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"values": np.asarray(values), "seconds": median, "times": times}


# ---------------------------------------------------------------------------- benchmark parts
def bench_length(filters, length, dense_max, log):
    h, source = filter_of_length(filters, length)
    row = {"L": length, "source": source, "mor_path": auto_path(length, K)}
    log(f"L = {length}: {source}, mor auto path = {row['mor_path']}")
    res = {"mor": run_method(lambda: mor.hankel_singular_values(h, K))}
    if length <= dense_max:
        res["dense"] = run_method(lambda: dense_values(h, K), warmup=False,
                                  repeats=None if length <= 1024 else 1)
        ref, ref_name = res["dense"].get("values"), "dense gesvd"
    else:
        res["dense"] = {"skipped": f"L > {dense_max} (O(L^3) time, O(L^2) memory)"}
        res["mor_ref"] = run_method(
            lambda: mor.hankel_singular_values(h, K, method="krylov", rtol=REF_RTOL),
            warmup=False, repeats=1)
        ref, ref_name = res["mor_ref"].get("values"), f"mor krylov rtol={REF_RTOL:g}"
    log(f"  mor {C.fmt_t(res['mor'].get('seconds'))}, dense {C.fmt_t(res['dense'].get('seconds'))}")
    for name, (_, fn) in COMPETITORS.items():
        res[name] = run_method(lambda fn=fn: fn(h, K))
        log(f"  {name} {C.fmt_t(res[name].get('seconds'))} {res[name].get('error', '')}")
    if ref is None:  # reference failed: fall back on the tightest competitor
        ref, ref_name = res["svds_propack"].get("values"), "svds propack tol=0"
    row["reference"] = ref_name
    row["sigma_k_over_sigma_1"] = None if ref is None else float(ref[K - 1] / ref[0])
    t_mor = res["mor"].get("seconds")
    for name, r in res.items():
        r["agreement"] = agreement(r.get("values"), ref)
        r["ratio_to_mor"] = (r["seconds"] / t_mor if t_mor and r.get("seconds") else None)
        r.pop("values", None)
    row["methods"] = res
    return row


def bench_filters_check(filters, length, log):
    """Agreement of each method on the first filter of each layer at one length (dense ref)."""
    rows = []
    for layer in range(filters.shape[0]):
        h, source = filter_of_length(filters, length, layer=layer)
        ref = dense_values(h, K)
        row = {"source": source, "sigma_k_over_sigma_1": float(ref[K - 1] / ref[0])}
        fns = {"mor": lambda: mor.hankel_singular_values(h, K)}
        fns.update({name: (lambda fn=fn: fn(h, K)) for name, (_, fn) in COMPETITORS.items()})
        for name, fn in fns.items():
            try:
                row[name] = agreement(fn(), ref)
            except Exception as exc:  # noqa: BLE001
                row[name] = f"{type(exc).__name__}: {exc}"[:200]
        rows.append(row)
        log(f"  check {source}: " + ", ".join(
            f"{k}={v:.1e}" for k, v in row.items() if isinstance(v, float)))
    return rows


def bench_batch(filters, n_filters, log):
    hs = filters.reshape(-1, filters.shape[-1])[:n_filters]
    length = hs.shape[1]
    log(f"batch: {hs.shape[0]} filters of L = {length}, k = {BATCH_K}")
    mor.hankel_singular_values(hs[:2], BATCH_K)  # warm-up
    out = {"n_filters": hs.shape[0], "L": length, "k": BATCH_K, "cores": C.cores()}
    with C.mor_threads(out["cores"]):
        start = time.perf_counter()
        s_mor = mor.hankel_singular_values(hs, BATCH_K)
        out["mor_seconds"] = time.perf_counter() - start
    log(f"  mor one call {C.fmt_t(out['mor_seconds'])} ({out['cores']} cores visible)")
    if out["cores"] > 1:
        start = time.perf_counter()
        mor.hankel_singular_values(hs, BATCH_K)
        out["mor_one_core_seconds"] = time.perf_counter() - start
        log(f"  mor one call, one core {C.fmt_t(out['mor_one_core_seconds'])}")
    for name in ("svds_propack", "svds_arpack"):
        fn = COMPETITORS[name][1]
        fn(hs[0], BATCH_K)  # warm-up
        start = time.perf_counter()
        worst = 0.0
        for i in range(hs.shape[0]):
            s = fn(hs[i], BATCH_K)
            worst = max(worst, float(np.max(np.abs(s - s_mor[i])) / s_mor[i, 0]))
        out[f"{name}_loop_seconds"] = time.perf_counter() - start
        out[f"{name}_max_disagreement_with_mor"] = worst
        log(f"  {name} loop {C.fmt_t(out[f'{name}_loop_seconds'])}, max |diff|/s1 {worst:.1e}")
    sample = min(2, hs.shape[0])
    start = time.perf_counter()
    for i in range(sample):
        dense_values(hs[i], BATCH_K)
    out["dense_seconds_estimated"] = (time.perf_counter() - start) / sample * hs.shape[0]
    out["dense_estimate_from"] = sample
    return out


# ---------------------------------------------------------------------------- report
def growth(rows):
    pts = [(r["L"], r["methods"]["mor"]["seconds"]) for r in rows
           if r["mor_path"] == "krylov" and r["methods"]["mor"].get("seconds")]
    out = {"points": pts}
    if len(pts) >= 2:
        x = np.log([p[0] for p in pts])
        y = np.log([p[1] for p in pts])
        out["loglog_slope"] = float(np.polyfit(x, y, 1)[0])
        l0, t0 = pts[0]
        out["time_over_LlogL_normalised"] = [
            (L, (t / (L * math.log2(L))) / (t0 / (l0 * math.log2(l0)))) for L, t in pts]
    return out


def render(meta, rows, checks, batch, grow):
    lines = [C.header_block("Hankel singular values: top 64 of one filter (`bench_hankel.py`)",
                            meta)]
    lines.append("Wall time (median of repeats; 5 when a run takes < 0.2 s, 3 when < 2 s) and "
                 "time ratio to mor (> 1: mor is faster).\n")
    head = ["L", "mor path", "mor", "dense gesvd", "dense/mor"]
    for name in COMPETITORS:
        head += [COMPETITORS[name][0], "÷mor"]
    table = []
    for r in rows:
        m = r["methods"]
        cells = [r["L"], r["mor_path"], C.fmt_t(m["mor"].get("seconds")),
                 C.fmt_t(m["dense"].get("seconds")), C.fmt_r(m["dense"].get("ratio_to_mor"))]
        for name in COMPETITORS:
            cells += [m[name].get("error", C.fmt_t(m[name].get("seconds")))[:40],
                      C.fmt_r(m[name].get("ratio_to_mor"))]
        table.append(cells)
    lines += [C.md_table(head, table), ""]
    lines.append("Agreement `max_i |s_i - s_ref_i| / s_ref_1` over the top 64 (reference: dense "
                 f"gesvd where it ran, else mor Krylov at rtol {REF_RTOL:g}).\n")
    rtol = meta["mor_settings"].get("hankel_krylov_rtol_default")
    head = ["L", "σ64/σ1", "reference", f"mor (default rtol {rtol:g})" if rtol else "mor"] + [COMPETITORS[n][0]
                                                                for n in COMPETITORS]
    table = []
    for r in rows:
        m = r["methods"]
        table.append([r["L"], C.fmt_e(r["sigma_k_over_sigma_1"]), r["reference"],
                      C.fmt_e(m["mor"].get("agreement"))]
                     + [C.fmt_e(m[n].get("agreement")) for n in COMPETITORS])
    lines += [C.md_table(head, table), ""]
    if checks:
        lines.append(f"Agreement with dense gesvd on the first filter of each layer "
                     f"(L = {checks['L']}):\n")
        head = ["filter", "σ64/σ1", "mor"] + [COMPETITORS[n][0] for n in COMPETITORS]
        table = [[c["source"], C.fmt_e(c["sigma_k_over_sigma_1"])]
                 + [C.fmt_e(c[n]) if isinstance(c[n], float) else c[n]
                    for n in ["mor"] + list(COMPETITORS)] for c in checks["rows"]]
        lines += [C.md_table(head, table), ""]
    if grow.get("points"):
        lines.append("Growth of mor's time on the Krylov path (L log L would keep the last "
                     "column at 1):\n")
        norm = dict(grow.get("time_over_LlogL_normalised", []))
        lines += [C.md_table(["L", "mor", "t / (L log2 L), normalised"],
                             [[L, C.fmt_t(t), f"{norm.get(L, 1.0):.2f}"]
                              for L, t in grow["points"]]), ""]
        if "loglog_slope" in grow:
            lines.append(f"log-log slope of mor's time over these L: "
                         f"{grow['loglog_slope']:.2f} (L log L over this range: "
                         f"~{_llogl_slope(grow['points']):.2f}).\n")
    if batch:
        n = batch["n_filters"]
        lines.append(f"Batch: {n} shared filters, L = {batch['L']}, top {batch['k']} values. "
                     "mor runs a batch on `numba.get_num_threads()` threads "
                     f"({batch['cores']} here; everything else in the script runs with one); the "
                     "loops below run on one core, and ÷mor is against mor's two-thread call.\n")
        mor_rows = [["mor, one call on the (F, L) array", C.fmt_t(batch["mor_seconds"]),
                     "1.00x", "—"]]
        if "mor_one_core_seconds" in batch:
            mor_rows.append(["mor, same call on one thread (`numba.set_num_threads(1)`)",
                             C.fmt_t(batch["mor_one_core_seconds"]),
                             C.fmt_r(batch["mor_one_core_seconds"] / batch["mor_seconds"]), "—"])
        lines += [C.md_table(
            ["method", "total time", "÷mor", "max disagreement with mor (/σ1)"],
            mor_rows + [
             ["loop of svds propack tol=0", C.fmt_t(batch["svds_propack_loop_seconds"]),
              C.fmt_r(batch["svds_propack_loop_seconds"] / batch["mor_seconds"]),
              C.fmt_e(batch["svds_propack_max_disagreement_with_mor"])],
             ["loop of svds arpack tol=0", C.fmt_t(batch["svds_arpack_loop_seconds"]),
              C.fmt_r(batch["svds_arpack_loop_seconds"] / batch["mor_seconds"]),
              C.fmt_e(batch["svds_arpack_max_disagreement_with_mor"])],
             [f"dense gesvd loop (estimated from {batch['dense_estimate_from']} filters)",
              C.fmt_t(batch["dense_seconds_estimated"]),
              C.fmt_r(batch["dense_seconds_estimated"] / batch["mor_seconds"]), "—"]]), ""]
    return "\n".join(lines)


def _llogl_slope(points):
    x = np.log([p[0] for p in points])
    y = np.log([p[0] * math.log(p[0]) for p in points])
    return float(np.polyfit(x, y, 1)[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: L in {256, 1024}, batch of 16 filters")
    parser.add_argument("--lengths", type=int, nargs="+", default=None,
                        help="lengths to run (default 256 1024 4096 16384 65536)")
    parser.add_argument("--dense-max", type=int, default=4096,
                        help="largest L for the dense SVD (default 4096, ~20 s there)")
    parser.add_argument("--batch", type=int, default=None,
                        help="filters in the batch row (default all 1024; 0 skips it)")
    args = parser.parse_args(argv)
    lengths = args.lengths or ([256, 1024] if args.quick else [256, 1024, 4096, 16384, 65536])
    n_batch = args.batch if args.batch is not None else (16 if args.quick else 1024)
    name = NAME + ("_quick" if args.quick else "")

    log = C.log
    script_start = time.perf_counter()
    C.pin_threads()
    filters = C.load_filters()
    mor.hankel_singular_values(filter_of_length(filters, 1024)[0], K)  # warm-up (numba, FFT)
    rows = [bench_length(filters, length, args.dense_max, log) for length in lengths]
    check_len = 256 if args.quick else 1024
    checks = {"L": check_len, "rows": bench_filters_check(filters, check_len, log)}
    batch = bench_batch(filters, n_batch, log) if n_batch > 0 else None
    grow = growth(rows)
    meta = C.metadata(script_start, quick=args.quick, k=K)
    report = render(meta, rows, checks, batch, grow)
    print(report)
    json_path = C.write_json(name, {"meta": meta, "lengths": rows, "filters_check": checks,
                                    "batch": batch, "growth": grow})
    md_path = C.write_section(name, report)
    log(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
