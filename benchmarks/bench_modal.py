"""Modal fitting (variable projection) against balanced truncation, Hankel-norm approximation,
TF-IRKA and the paper's AdamW recipe at equal GPU state size (issue 5's table).

Part 1, all 1024 shared trained filters (L = 2048), per layer, at 4, 8, 16 and 32 compact modes
(``modes=m``: the state size of a GPU recurrence): median and worst relative ``l2`` error over
the taps for balanced truncation, ``method="hankel"``, ``method="modal"`` (started from BT, the
library's defaults) and the recipe run on the H200 (30,000 AdamW steps, all filters at once:
``benchmarks/results/recipe_gpu.npz`` from `recipe_gpu.py`, shown where present); median
``tail`` and ``hinf`` beside the AAK bound; wall time for all 1024 filters, mor on the machine's
two cores (two worker threads), the recipe on the GPU.

Part 2, 32 filters (8 per layer), one core: TF-IRKA, the recipe on the CPU at 3,000 steps (a
tenth of its 30,000), and modal fitting with a large budget (``max_iter=100``, 20 continuation
stages from ``tail_weight=1e-3``): how far the constrained optimum (tail at most the start's)
lies below balanced truncation.

Run ``python benchmarks/bench_modal.py`` (about 20 minutes); ``--report`` rewrites the section
from the saved results (``results/bench_modal.json``) and the recipe's GPU file, for when the GPU
run lands after the CPU run.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import _common as C  # noqa: E402
import mor  # noqa: E402
from modal_recipe import fit_recipe  # noqa: E402

NAME = "bench_modal"
MODES = (4, 8, 16, 32)
FULL = ("balanced", "hankel", "modal")
RECIPE_GPU = C.RESULTS_DIR / "recipe_gpu.npz"
RECIPE_STEPS = 3000
SUBSET = 32  # every 32nd channel: 8 per layer
#: The large-budget fit's continuation: 20 stages from a tail weight of 1e-3, growing 10^0.25.
LONG_CONTINUATION = {"tail_stages": 20, "tail_floor": 1e-3, "tail_growth": 10 ** 0.25}


def errors(red) -> dict:
    """Per-filter errors of a reduction, as lists."""
    return {k: np.asarray(red.info[k], dtype=float) for k in ("l2", "tail", "hinf", "aak")}


def full_batch(h: np.ndarray, modes: int) -> dict:
    """Part 1: the library's methods on all filters, on the machine's cores."""
    out = {}
    with C.mor_threads(C.cores()):
        for name in FULL:
            t0, cpu = time.perf_counter(), time.process_time()
            red = mor.reduce(h, modes=modes, method=name, on_fail="flag")
            out[name] = errors(red) | {"seconds": time.perf_counter() - t0,
                                       "cpu_seconds": time.process_time() - cpu,
                                       "unstable": int((~red.is_stable()).sum()),
                                       "failed": int(red.info["failed"].sum())}
    return out


def recipe_gpu(modes: int) -> dict | None:
    """The recipe's H200 run at ``modes`` (from `recipe_gpu.py`), if recorded."""
    if not RECIPE_GPU.exists():
        return None
    z = np.load(RECIPE_GPU)
    if f"m{modes}_l2" not in z or f"m{modes}_tail" not in z:
        return None
    return {k: z[f"m{modes}_{k}"].astype(float) for k in ("l2", "tail", "hinf", "aak")} | {
        "seconds": float(z[f"m{modes}_seconds"]), "unstable": int(z[f"m{modes}_unstable"].sum()),
        "device": str(z["device"])}


def subset(h: np.ndarray, modes: int) -> dict:
    """Part 2: IRKA, the CPU recipe and a large-budget modal fit on a few filters, one core."""
    out = {}
    bt = mor.reduce(h, modes=modes)
    out["balanced"] = errors(bt)
    t0 = time.perf_counter()
    out["irka"] = errors(mor.reduce(h, modes=modes, method="irka", on_fail="flag")) | {
        "seconds": (time.perf_counter() - t0) / h.shape[0]}
    t0 = time.perf_counter()
    out["modal_long"] = errors(mor.reduce(h, modes=modes, method="modal", max_iter=100,
                                          tail_weight=1e-3, **LONG_CONTINUATION)) | {
        "seconds": (time.perf_counter() - t0) / h.shape[0]}
    t0 = time.perf_counter()
    fit = fit_recipe(h, modes, steps=RECIPE_STEPS)
    out["recipe_cpu"] = {"l2": fit["l2"], "unstable": int(fit["unstable"].sum()),
                         "seconds": (time.perf_counter() - t0) / h.shape[0]}
    return out


def med_max(x: np.ndarray) -> str:
    return f"{np.median(x):.2e} / {np.max(x):.2e}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="only rewrite the section from "
                        "the saved results and the recipe's GPU file")
    args = parser.parse_args()
    if args.report:
        saved = json.loads((C.RESULTS_DIR / f"{NAME}.json").read_text())
        meta, sizes, layer = saved["meta"], _arrays(saved["sizes"]), np.array(saved["layer"])
    else:
        meta, sizes, layer = measure()
    for row in sizes:
        row["gpu"] = recipe_gpu(row["modes"])
    report(meta, sizes, layer)


def _arrays(obj):
    """Saved results with their lists back as arrays."""
    if isinstance(obj, dict):
        return {k: _arrays(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_arrays(v) for v in obj] if obj and isinstance(obj[0], dict) else np.array(obj)
    return obj


def measure() -> tuple[dict, list, np.ndarray]:
    """Both parts at every size; saved to ``results/bench_modal.json``."""
    start = time.perf_counter()
    C.pin_threads()
    torch.set_num_threads(1)
    filters = C.load_filters()
    h = filters.reshape(-1, filters.shape[-1])
    layer = np.repeat(np.arange(filters.shape[0]), filters.shape[1])
    load_before = os.getloadavg()[0]
    sizes = []
    for modes in MODES:
        row = {"modes": modes, "full": full_batch(h, modes),
               "subset": subset(filters[:, ::SUBSET].reshape(-1, h.shape[-1]), modes)}
        full = row["full"]
        C.log(f"modes {modes}: BT {np.median(full['balanced']['l2']):.3e}, modal "
              f"{np.median(full['modal']['l2']):.3e} ({full['modal']['seconds']:.1f} s)")
        sizes.append(row)
    meta = C.metadata(start, load_average=[load_before, os.getloadavg()[0]],
                      filters=int(h.shape[0]), length=int(h.shape[-1]))
    C.write_json(NAME, {"meta": meta, "sizes": sizes, "layer": layer})
    return meta, sizes, layer


def report(meta: dict, sizes: list, layer: np.ndarray) -> None:
    """The section of `RESULTS.md` (module notes)."""
    count, length = meta["filters"], meta["length"]
    load_before = meta["load_average"][0]
    layers = int(layer.max()) + 1
    per_layer = []
    for row in sizes:
        full, gpu = row["full"], row["gpu"]
        for lay in [*range(layers), None]:
            sel = np.ones(count, bool) if lay is None else layer == lay
            ratio = full["modal"]["l2"][sel] / full["balanced"]["l2"][sel]
            per_layer.append([row["modes"], "all" if lay is None else lay]
                             + [med_max(full[m]["l2"][sel]) for m in FULL]
                             + [med_max(gpu["l2"][sel]) if gpu else "not run",
                                f"{np.median(ratio):.2f} / {ratio.max():.2f}"])
    summary = []
    for row in sizes:
        full, gpu = row["full"], row["gpu"]
        everything = {**full, **({"recipe": gpu} if gpu else {})}
        summary.append([row["modes"]]
                       + [" / ".join(f"{np.median(everything[m]['tail']):.1e}"
                                     for m in everything)]
                       + [" / ".join(f"{np.median(everything[m]['hinf']):.1e}"
                                     for m in everything),
                          f"{np.median(full['balanced']['aak']):.1e}",
                          str(full["modal"]["unstable"]), str(gpu["unstable"]) if gpu else "-"]
                       + [f"{full[m]['seconds']:.1f} s ({full[m]['cpu_seconds']:.1f})"
                          for m in FULL]
                       + [f"{gpu['seconds']:.1f} s" if gpu else "-"])
    part2 = []
    for row in sizes:
        sub = row["subset"]
        bt = sub["balanced"]["l2"]
        part2.append([row["modes"], med_max(bt)]
                     + [f"{med_max(sub[m]['l2'])} ({np.median(sub[m]['l2'] / bt):.2f}x)"
                        for m in ("irka", "modal_long", "recipe_cpu")]
                     + [f"{np.median(sub['modal_long']['tail'] / sub['balanced']['tail']):.2f}",
                        str(sub["recipe_cpu"]["unstable"])]
                     + [C.fmt_t(sub[m]["seconds"]) for m in ("irka", "modal_long",
                                                              "recipe_cpu")])
    gpu_note = next((f"the recipe: {r['gpu']['device']}, 30,000 steps, all 1024 filters at "
                     "once" for r in sizes if r["gpu"]), "the recipe's GPU run: not recorded")
    text = "\n".join([
        C.header_block("Modal fitting against BT, Hankel-norm, IRKA and the paper's recipe "
                       "(`bench_modal.py`)", meta),
        f"All {count} shared trained filters, L = {length}, relative errors. mor on "
        f"this machine's {C.cores()} cores (worker threads; load average "
        f"{load_before:.1f} when it started: other work shares the cores); {gpu_note}. "
        "`modal`: the library's defaults (BT start, tail held to at most the start's). "
        "Median / worst `l2` over the taps, per layer:\n",
        C.md_table(["modes", "layer", "BT", "hankel", "modal", "recipe (GPU)",
                    "modal/BT median / max"], per_layer),
        "\nPer size, all filters: median `tail` (energy after the 2048 taps, relative), median "
        "`hinf` beside the median AAK bound, unstable models, and wall time for all filters "
        f"(in brackets the process's CPU seconds: over {C.cores()} cores, the wall time on idle "
        "cores):\n",
        C.md_table(["modes", "tail BT / hankel / modal / recipe",
                    "hinf BT / hankel / modal / recipe", "AAK", "modal unstable",
                    "recipe unstable poles", "BT time", "hankel time", "modal time",
                    "recipe time (GPU)"], summary),
        f"\nSubset ({count // SUBSET} filters, every {SUBSET}th channel), one core: "
        "TF-IRKA, modal with a large budget (`max_iter=100`, 20 stages from `tail_weight=1e-3`: "
        "the constrained optimum with the tail at most the start's) and the recipe on the CPU "
        f"at {RECIPE_STEPS} steps; median / worst `l2` (median ratio to BT):\n",
        C.md_table(["modes", "BT", "irka", "modal, large budget", f"recipe CPU {RECIPE_STEPS}",
                    "tail modal-long/BT", "recipe unstable poles", "irka time/filter",
                    "modal-long", "recipe"], part2), ""])
    print(text)
    C.write_section(NAME, text)


if __name__ == "__main__":
    main()
