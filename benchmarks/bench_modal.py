"""Modal fitting (variable projection) against balanced truncation at equal GPU state size.

On 8 shared trained filters (2 per layer, L = 2048), at 2, 4 and 8 compact modes
(``modes=m``: the state size of a GPU recurrence): the median relative ``l2`` error over the
taps, ``tail`` and ``hinf`` of balanced truncation and of ``method="modal"`` started from it,
and the time per filter (16 modes cost 10-40 s per filter with the finite-difference
Jacobian and are left out).

Run ``python benchmarks/bench_modal.py``.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import time  # noqa: E402

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
import mor  # noqa: E402

NAME = "bench_modal"


def main():
    start = time.perf_counter()
    C.pin_threads()
    h = C.load_filters()[:, ::128].reshape(-1, 2048)
    rows = []
    for modes in (2, 4, 8):
        row = {"modes": modes}
        for name in ("balanced", "modal"):
            t0 = time.perf_counter()
            red = mor.reduce(h, modes=modes, method=name, on_fail="flag")
            row[name] = {"seconds_per_filter": (time.perf_counter() - t0) / h.shape[0],
                         **{k: float(np.median(red.info[k])) for k in ("l2", "tail", "hinf")},
                         "order": float(np.median(red.order))}
            row[name]["l2_all"] = red.info["l2"].tolist()
        ratio = np.array(row["modal"]["l2_all"]) / np.array(row["balanced"]["l2_all"])
        row["l2_ratio_median"], row["l2_ratio_max"] = float(np.median(ratio)), float(ratio.max())
        rows.append(row)
        C.log(f"modes {modes}: BT l2 {row['balanced']['l2']:.3e}, modal {row['modal']['l2']:.3e}"
              f" (ratio {row['l2_ratio_median']:.2f})")
    meta = C.metadata(start)
    table = [[r["modes"], f"{r['balanced']['order']:g}", f"{r['balanced']['l2']:.2e}",
              f"{r['modal']['l2']:.2e}", f"{r['l2_ratio_median']:.2f} / {r['l2_ratio_max']:.2f}",
              f"{r['balanced']['tail']:.1e} / {r['modal']['tail']:.1e}",
              f"{r['balanced']['hinf']:.1e} / {r['modal']['hinf']:.1e}",
              C.fmt_t(r["balanced"]["seconds_per_filter"]),
              C.fmt_t(r["modal"]["seconds_per_filter"])] for r in rows]
    report = "\n".join([
        C.header_block("Modal fitting against balanced truncation (`bench_modal.py`)", meta),
        f"{h.shape[0]} shared trained filters (2 per layer), L = 2048; medians over filters. "
        "`modes`: compact modes (GPU state size); modal fitting starts from the BT model, "
        "with the tail penalty (`tail_weight=1`).\n",
        C.md_table(["modes", "order", "BT l2", "modal l2", "modal/BT l2 median / max",
                    "tail BT / modal", "hinf BT / modal", "BT time/filter",
                    "modal time/filter"], table), ""])
    print(report)
    C.write_json(NAME, {"meta": meta, "rows": rows})
    C.write_section(NAME, report)


if __name__ == "__main__":
    main()
