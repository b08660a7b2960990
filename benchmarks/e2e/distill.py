"""Distill the long filters of a trained model at several state sizes, by several methods.

``python benchmarks/e2e/distill.py --models DIR --kind hyena --methods balanced hankel modal
--modes 1 2 4 8 16 --out DIR`` takes every long filter of ``DIR/{kind}.pt`` (all layers at once),
fits each method at ``modes=m`` complex modes (``mor.reduce``; ``recipe`` is the paper's AdamW
recipe, `benchmarks/modal_recipe.py`, run where ``--device`` says), and writes
``{kind}_{label}.npz`` (sizes already there and not asked for stay) with, per state size, the
compact poles, residues and direct terms, the per-filter ``l2`` error over the taps (and
``tail``, ``hinf`` and the AAK bound for mor's methods; the count of unstable poles for the
recipe) and the wall time. ``--tol`` adds, for
balanced truncation and Hankel-norm approximation, per-filter orders at that ``l2`` tolerance
(``m = 0`` in the file's keys; orders up to ``--max-order``).

A method is named as ``LABEL`` (a method of ``mor.distill``, ``auto`` its default, or
``recipe``) or ``LABEL=METHOD:KEY=VALUE,...`` with options, e.g.
``modal-homotopy=modal:init=homotopy``; the file is named by the label.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parents[1])]
import mor  # noqa: E402
from modal_recipe import fit_recipe  # noqa: E402
from train import load_model  # noqa: E402

MOR_METHODS = ("balanced", "hankel", "modal")
#: Methods also run at ``--tol`` (modal fits would scan every order: too slow).
TOL_METHODS = ("balanced", "hankel")


def model_filters(path: Path) -> np.ndarray:
    """The long filters of a saved model, ``(layers, filters, L)`` float64."""
    return load_model(path).filters().double().numpy()


def variant(spec: str) -> tuple[str, str, dict]:
    """``LABEL`` or ``LABEL=METHOD:KEY=VALUE,...`` as (label, method, options)."""
    label, _, rest = spec.partition("=")
    method, _, pairs = rest.partition(":")
    options = {}
    for pair in filter(None, pairs.split(",")):
        key, _, value = pair.partition("=")
        try:
            options[key] = ast.literal_eval(value)  # numbers, booleans
        except (ValueError, SyntaxError):
            options[key] = value  # a name

    return label, method or label, options


def fit(h: np.ndarray, method: str, modes: int | None, tol: float | None, device: str,
        steps: int, workers: int, max_order: int, options: dict | None = None) -> dict:
    """One method at one state size on filters ``h`` (``(F, L)``)."""
    start = time.perf_counter()
    if method == "recipe":
        out = fit_recipe(h, modes, steps=steps, device=device)
        out.pop("taps")
        return out
    result = mor.distill(h, modes=modes, tol=tol, method=method, workers=workers,
                         chunk_size=16, max_order=max_order if tol else None,
                         **(options or {}))
    bank, columns = result.bank, result.report.columns
    info = {k: columns[k] for k in ("l2", "tail", "hinf", "aak", "failed")}
    poles, residues, direct = bank.compact()
    return {"poles": poles, "residues": residues, "direct": direct, **info,
            "order": bank.order, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--kind", required=True)
    parser.add_argument("--methods", nargs="+", default=list(MOR_METHODS))
    parser.add_argument("--modes", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    parser.add_argument("--tol", type=float)
    parser.add_argument("--max-order", type=int, default=256, help="cap of the --tol orders")
    parser.add_argument("--steps", type=int, default=30_000, help="recipe steps")
    parser.add_argument("--workers", type=int, default=1, help="processes for mor's methods")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    h = model_filters(args.models / f"{args.kind}.pt")
    flat = h.reshape(-1, h.shape[-1])
    for spec in args.methods:
        label, method, options = variant(spec)
        path = args.out / f"{args.kind}_{label}.npz"
        arrays = dict(np.load(path)) if path.exists() else {}  # other sizes stay
        arrays["shape"] = np.array(h.shape)
        sizes = [(m, None) for m in args.modes]
        if args.tol is not None and method in TOL_METHODS:
            sizes.append((None, args.tol))
        for modes, tol in sizes:
            r = fit(flat, method, modes, tol, args.device, args.steps, args.workers,
                    args.max_order, options)
            key = f"m{modes or 0}"
            arrays |= {f"{key}_{name}": np.asarray(value) for name, value in r.items()}
            print(f"{args.kind} {label} {key}: median l2 {np.median(r['l2']):.4f}, worst "
                  f"{np.max(r['l2']):.4f}, {r['seconds']:.1f} s"
                  + (f", {int(r['unstable'].sum())} unstable poles" if "unstable" in r else ""),
                  flush=True)
            np.savez(path, **arrays)


if __name__ == "__main__":
    main()
