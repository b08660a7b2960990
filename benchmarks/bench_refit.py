"""Minimax residue refit (`mor.refit`, cvxpy + Clarabel) on the poles of BT and modal fits.

On 32 shared trained filters (every 32nd channel of each layer, L = 2048) at 4, 8 and 16 modes:
the H-infinity error (the model's exact peak, `ModalSSM` against the FIR response via
`mor.compare`) and the l2 error over the taps before and after refitting the residues and
direct terms for the minimax error on a grid of L frequencies, with the poles of balanced
truncation and of `method="modal"`; the solver's time per filter.

Run ``python benchmarks/bench_refit.py``.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import time  # noqa: E402

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
import mor  # noqa: E402

NAME = "bench_refit"


def main():
    start = time.perf_counter()
    C.pin_threads()
    h = C.load_filters()[:, ::32].reshape(-1, 2048)
    rows = []
    for modes in (4, 8, 16):
        for method in ("balanced", "modal"):
            bank = mor.reduce(h, modes=modes, method=method, on_fail="flag")
            t0 = time.perf_counter()
            out = mor.refit(h, bank)
            seconds = (time.perf_counter() - t0) / h.shape[0]
            before, after = mor.compare(h, bank), mor.compare(h, out)
            row = {"modes": modes, "method": method, "seconds_per_filter": seconds,
                   "failed": int(out.info["failed"].sum()),
                   **{f"{k}_{tag}": float(np.median(getattr(c, k))) for k in ("hinf", "l2")
                      for tag, c in (("before", before), ("after", after))},
                   "hinf_ratio_median": float(np.median(after.hinf / before.hinf)),
                   "hinf_ratio_max": float(np.max(after.hinf / before.hinf))}
            rows.append(row)
            C.log(f"{method} m={modes}: hinf {row['hinf_before']:.2e} -> {row['hinf_after']:.2e}"
                  f", l2 {row['l2_before']:.2e} -> {row['l2_after']:.2e}, {seconds:.2f} s")
    meta = C.metadata(start)
    table = [[r["modes"], r["method"], f"{r['hinf_before']:.2e}", f"{r['hinf_after']:.2e}",
              f"{r['hinf_ratio_median']:.2f} / {r['hinf_ratio_max']:.2f}",
              f"{r['l2_before']:.2e}", f"{r['l2_after']:.2e}", C.fmt_t(r["seconds_per_filter"]),
              r["failed"]] for r in rows]
    report = "\n".join([
        C.header_block("Minimax residue refit (`bench_refit.py`)", meta),
        f"{h.shape[0]} shared trained filters (8 per layer), L = 2048; medians over filters; "
        "relative errors; grid of 2048 frequencies on [0, pi]; Clarabel through cvxpy, one "
        "core.\n",
        C.md_table(["modes", "poles from", "hinf before", "hinf after",
                    "after/before median / max", "l2 before", "l2 after", "solve time/filter",
                    "failed"], table), ""])
    print(report)
    C.write_json(NAME, {"meta": meta, "rows": rows})
    C.write_section(NAME, report)


if __name__ == "__main__":
    main()
