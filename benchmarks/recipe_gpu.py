"""The paper's recipe on all 1024 shared trained filters, on the GPU, for issue 5's per-layer table.

``python benchmarks/recipe_gpu.py --fit --filters F --out benchmarks/results/recipe_gpu.npz``
(on the GPU) runs `modal_recipe.fit_recipe` (30,000 AdamW steps, all filters at once) at each
``--modes`` size, one size after the other, and writes per size ``m``:

- ``m{m}_poles``, ``m{m}_residues`` (complex ``(1024, m)``), ``m{m}_direct`` (``(1024,)``): the
  compact modal models (`mor.ModalSSM.from_compact`);
- ``m{m}_l2`` (relative error over the 2048 taps), ``m{m}_unstable`` (poles with
  ``|lambda| >= 1`` per filter), ``m{m}_seconds`` (wall time of the 30,000 steps),
  ``m{m}_started`` / ``m{m}_ended`` (Unix times, to tell which sizes shared the GPU);

and ``layer`` (``(1024,)``, each filter's layer), ``modes``, ``steps``, ``device``.
``python benchmarks/recipe_gpu.py --errors --out FILE`` (on any machine, with mor) adds
``m{m}_tail`` (relative energy after the 2048 taps, ``inf`` where a pole is unstable),
``m{m}_hinf`` and ``m{m}_aak`` (`mor.compare`: peak frequency-response error and the AAK
bound at the model's order, both relative to ``max |H|``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
DATA = HERE.parents[1] / "shared" / "data" / "hyena_filters.npz"


def load_filters(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The shared filters flattened to ``(F, L)`` float64, and each one's layer."""
    with np.load(path) as z:
        h = z["filters"]
    layer = np.repeat(np.arange(h.shape[0]), h.shape[1])
    return h.reshape(-1, h.shape[-1]).astype(np.float64), layer


def fit_one(h: np.ndarray, m: int, steps: int, device: str) -> dict[str, np.ndarray]:
    """The recipe at ``m`` modes, as the file's ``m{m}_*`` arrays."""
    from modal_recipe import fit_recipe

    started = time.time()
    r = fit_recipe(h, m, steps=steps, device=device)
    print(f"recipe m={m}: median l2 {np.median(r['l2']):.4f}, worst {r['l2'].max():.4f}, "
          f"{int(r['unstable'].sum())} unstable poles, {r['seconds']:.1f} s", flush=True)
    out = {f"m{m}_{key}": np.asarray(r[key]) for key in
           ("poles", "residues", "direct", "l2", "unstable", "seconds")}
    return out | {f"m{m}_started": np.asarray(started), f"m{m}_ended": np.asarray(time.time())}


def add_errors(path: Path, h: np.ndarray) -> None:
    """Adds ``tail``, ``hinf`` and ``aak`` per size (`mor.compare`) to the file at ``path``."""
    import mor

    arrays = dict(np.load(path))
    for m in arrays["modes"]:
        ssm = mor.ModalSSM.from_compact(arrays[f"m{m}_poles"], arrays[f"m{m}_residues"],
                                        arrays[f"m{m}_direct"])
        c = mor.compare(h, ssm)
        arrays |= {f"m{m}_tail": c.tail, f"m{m}_hinf": c.hinf, f"m{m}_aak": c.aak}
        print(f"recipe m={m}: median tail {np.median(c.tail):.3g}, median hinf "
              f"{np.median(c.hinf):.3g}", flush=True)
    np.savez_compressed(path, **arrays)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="run the recipe (on --device)")
    parser.add_argument("--errors", action="store_true", help="add tail, hinf, aak (mor)")
    parser.add_argument("--filters", type=Path, default=DATA)
    parser.add_argument("--modes", nargs="+", type=int, default=[4, 8, 16, 32])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    h, layer = load_filters(args.filters)
    if args.fit:  # one size after the other, the file rewritten after each
        import torch

        device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
        arrays = {"layer": layer, "steps": np.asarray(args.steps), "device": np.asarray(device)}
        for i, m in enumerate(args.modes):
            arrays |= fit_one(h, m, args.steps, args.device)
            arrays["modes"] = np.array(args.modes[:i + 1])
            np.savez_compressed(args.out, **arrays)
    if args.errors:
        add_errors(args.out, h)


if __name__ == "__main__":
    main()
