"""Modal fitting (variable projection) against balanced truncation, Hankel-norm approximation,
TF-IRKA and the paper's AdamW recipe at equal GPU state size.

On 32 shared trained filters (every 32nd channel of each layer, L = 2048), at 2, 4, 8 and 16
compact modes (``modes=m``: the state size of a GPU recurrence): median and worst relative
``l2`` error over the taps, median ``tail`` and ``hinf`` (beside the AAK bound), and the time
per filter on one core, for balanced truncation, ``method="hankel"``, ``method="modal"``
(started from BT), ``method="irka"`` and the recipe (`modal_recipe.py`) run on the CPU at
3,000 steps (a tenth of its 30,000; its GPU runs on all 1024 filters are in
`e2e/RESULTS.md`).

Run ``python benchmarks/bench_modal.py``.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import _common as C  # noqa: E402
import mor  # noqa: E402
from modal_recipe import fit_recipe  # noqa: E402

NAME = "bench_modal"
METHODS = ("balanced", "hankel", "modal", "irka", "recipe")
RECIPE_STEPS = 3000


def main():
    start = time.perf_counter()
    C.pin_threads()
    torch.set_num_threads(1)
    h = C.load_filters()[:, ::32].reshape(-1, 2048)
    rows = []
    for modes in (2, 4, 8, 16):
        row = {"modes": modes}
        for name in ("balanced", "hankel", "modal", "irka"):
            t0 = time.perf_counter()
            red = mor.reduce(h, modes=modes, method=name, on_fail="flag")
            row[name] = {"seconds_per_filter": (time.perf_counter() - t0) / h.shape[0],
                         **{k: float(np.median(red.info[k])) for k in ("l2", "tail", "hinf",
                                                                       "aak")},
                         "l2_max": float(red.info["l2"].max()),
                         "order": float(np.median(red.order)), "l2_all": red.info["l2"].tolist()}
        t0 = time.perf_counter()
        fit = fit_recipe(h, modes, steps=RECIPE_STEPS)
        row["recipe"] = {"seconds_per_filter": (time.perf_counter() - t0) / h.shape[0],
                         "l2": float(np.median(fit["l2"])), "l2_max": float(fit["l2"].max()),
                         "unstable_poles": int(fit["unstable"].sum()),
                         "l2_all": fit["l2"].tolist()}
        ratio = np.array(row["modal"]["l2_all"]) / np.array(row["balanced"]["l2_all"])
        row["l2_ratio_median"], row["l2_ratio_max"] = float(np.median(ratio)), float(ratio.max())
        rows.append(row)
        C.log(f"modes {modes}: BT l2 {row['balanced']['l2']:.3e}, modal {row['modal']['l2']:.3e}"
              f" (ratio {row['l2_ratio_median']:.2f}), recipe {row['recipe']['l2']:.3e}")
    meta = C.metadata(start)
    table = [[r["modes"], f"{r['balanced']['order']:g}"]
             + [f"{r[m]['l2']:.2e} / {r[m]['l2_max']:.2e}" for m in METHODS]
             + [f"{r['l2_ratio_median']:.2f} / {r['l2_ratio_max']:.2f}",
                f"{r['balanced']['tail']:.1e} / {r['modal']['tail']:.1e}",
                f"{r['balanced']['aak']:.1e}",
                " / ".join(f"{r[m]['hinf']:.1e}" for m in METHODS[:4]),
                str(r["recipe"]["unstable_poles"])]
             + [C.fmt_t(r[m]["seconds_per_filter"]) for m in METHODS] for r in rows]
    report = "\n".join([
        C.header_block("Modal fitting against BT, Hankel-norm, IRKA and the paper's recipe "
                       "(`bench_modal.py`)", meta),
        f"{h.shape[0]} shared trained filters (8 per layer), L = 2048; one core. `modes`: "
        "compact modes (GPU state size); modal fitting starts from the BT model, with the tail "
        f"penalty (`tail_weight=1`); the recipe ran {RECIPE_STEPS} AdamW steps on the CPU.\n",
        C.md_table(["modes", "BT order", "BT l2 median / max", "hankel l2", "modal l2",
                    "irka l2", "recipe l2", "modal/BT l2 median / max", "tail BT / modal",
                    "AAK (median)", "hinf BT / hankel / modal / irka", "recipe unstable poles",
                    "BT time/filter", "hankel", "modal", "irka", "recipe"], table), ""])
    print(report)
    C.write_json(NAME, {"meta": meta, "rows": rows})
    C.write_section(NAME, report)


if __name__ == "__main__":
    main()
