"""Accuracy of a companion-form prefill against the exact modal state (CPU, NumPy).

A companion-form prefill runs each channel's prompt through the all-pole filter
``1 / a(z)``, ``a(z) = prod_n (1 - lambda_n z^{-1})`` (one recursion or one FFT per channel,
whatever the number of modes), and turns the last ``n`` outputs ``w`` into the modal state.
With ``1 / a(z) = sum_n rho_n / (1 - lambda_n z^{-1})`` and the modal state
``x_n = sum_{s<T} lambda_n^{T-1-s} u[s]``, the impulse response of ``1/a`` vanishing at
lags ``-(n-1)..-1`` gives exactly

    w[T-1-j] = sum_n rho_n lambda_n^{-j} x_n,   j = 0..n-1,

a Vandermonde system on the nodes ``1/lambda_n``. For poles clustered near ``z = 1`` (trained
long filters) that system is ill-conditioned. This script measures the error of the state
recovered that way, in float32 and float64, for balanced-truncation models of shared trained
filters at 4..32 modes, against the exact state; mor ships the mode only where it holds 1e-4.

Run ``python benchmarks/companion_prefill.py``.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402
import scipy.signal  # noqa: E402

import _common as C  # noqa: E402
import mor  # noqa: E402

NAME = "companion_prefill"
PROMPT = 4096


def companion_state(poles: np.ndarray, u: np.ndarray, dtype) -> np.ndarray:
    """The modal state recovered through the companion form, computed in ``dtype``."""
    n = poles.size
    a = np.real(np.poly(poles)).astype(dtype)
    w = scipy.signal.lfilter(np.ones(1, dtype), a, u.astype(dtype))
    window = w[::-1][:n]  # w[T-1-j], j = 0..n-1
    cdt = np.complex64 if dtype == np.float32 else np.complex128
    lam = poles.astype(cdt)
    vander = (1 / lam)[None, :] ** np.arange(n)[:, None]
    rho = lam ** (n - 1) / np.array([np.prod(lam[i] - np.delete(lam, i)) for i in range(n)])
    try:  # float32 all-pole filters on such poles can overflow: a failure, recorded as inf
        c = scipy.linalg.solve(vander, window.astype(cdt))
    except (ValueError, np.linalg.LinAlgError):
        return np.full(n, np.inf)
    return c / rho


def exact_state(poles: np.ndarray, u: np.ndarray) -> np.ndarray:
    powers = poles[:, None] ** np.arange(u.size - 1, -1, -1)[None, :]
    return powers @ u


def main():
    start = time.perf_counter()
    filters = C.load_filters()[:, ::64].reshape(-1, 2048)  # 16 filters, 4 per layer
    rng = np.random.default_rng(0)
    u = rng.standard_normal(PROMPT)
    rows = []
    for modes in (4, 8, 16, 32):
        bank = mor.reduce(filters, modes=modes, on_fail="flag")
        errors = {np.float32: [], np.float64: []}
        conds = []
        for i in range(filters.shape[0]):
            p = bank.poles[i][bank.residues[i] != 0]
            ref = exact_state(p, u)
            conds.append(np.linalg.cond((1 / p)[None, :] ** np.arange(p.size)[:, None]))
            for dtype in errors:
                with np.errstate(all="ignore"):
                    x = companion_state(p, u, dtype)
                err = np.abs(x - ref).max() / np.abs(ref).max()
                errors[dtype].append(err if np.isfinite(err) else np.inf)
        row = {"modes": modes, "order_median": float(np.median(bank.order)),
               "vandermonde_cond_median": float(np.median(conds))}
        for dtype, name in ((np.float32, "float32"), (np.float64, "float64")):
            e = np.array(errors[dtype])
            row[name] = {"median": float(np.median(e)), "max": float(np.max(e)),
                         "holds_1e-4": int((e <= 1e-4).sum())}
        rows.append(row)
        print(row, file=sys.stderr)
    meta = C.metadata(start)
    lines = [C.header_block("Companion-form prefill: accuracy (`companion_prefill.py`)", meta),
             f"Balanced-truncation models of 16 shared trained filters at m modes (order up to "
             f"2m), a random prompt of {PROMPT} tokens; relative error of the modal state "
             "recovered through the companion form (all-pole filter, then the Vandermonde solve "
             "on 1/lambda) against the exact state.\n",
             C.md_table(["modes", "median order", "median cond(V)", "float32 median / max",
                         "float32 <= 1e-4", "float64 median / max", "float64 <= 1e-4"],
                        [[r["modes"], f"{r['order_median']:g}",
                          f"{r['vandermonde_cond_median']:.1e}",
                          f"{r['float32']['median']:.1e} / {r['float32']['max']:.1e}",
                          f"{r['float32']['holds_1e-4']}/16",
                          f"{r['float64']['median']:.1e} / {r['float64']['max']:.1e}",
                          f"{r['float64']['holds_1e-4']}/16"] for r in rows]), ""]
    report = "\n".join(lines)
    print(report)
    C.write_json(NAME, {"meta": meta, "rows": rows})
    C.write_section(NAME, report)


if __name__ == "__main__":
    main()
