r"""Activation-aware distillation of the e2e models: `mor.torch.distill_module(calibration=...)`.

``python benchmarks/e2e/calibrated.py --models DIR --kind KIND [--windows W] [--modes 2 4 8]``
loads ``DIR/{kind}.pt`` (`train.load_model`), draws ``W`` random windows of ``L`` bytes from
the *training* split only (`corpus.load()[0]`, seed ``--seed``; the held-out split is never
read), and for each size distils the model three times (the fits on this machine's CPU, the
model and its recorded statistics on ``--device``): by plain modal fits
(``distill_module(model, modes=m, method="modal")``), by the default method
(``distill_module(model, modes=m)``) and with ``calibration=`` those windows (batches of
``--batch``; ``--pole-steps`` Gauss-Newton steps of the poles, `distill_module`'s default). It writes ``DIR/{kind}_calibrated.npz`` in `distill.py`'s
layout (``shape``, ``m{m}_poles``, ``m{m}_residues``, ``m{m}_direct``, ``m{m}_l2``,
``m{m}_tail``, ``m{m}_failed``, ``m{m}_order``, ``m{m}_seconds``), the banks of the layers put
in place (poles float32-exact, as the GPU layers hold them), for `evaluate.py`, and
``DIR/{kind}_calibrated.json``: per size the seconds and peak resident memory (``ru_maxrss``
growth) of the three runs, and per layer the output error relative to the layer's output on
the calibration windows before and after, the taps' ``l2``, the pole steps taken, the passes
over the calibration windows and their seconds (the whole model's). With
``--out-proj`` (MultiHyena), the head-wise layers' error is measured after ``out_proj``
(``output_weight=``), and the files are ``{kind}_calibrated-outproj.*``. With ``--device
cuda`` the file names end in ``-cuda`` and the JSON holds the peak device memory too.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]
import mor.torch as mt  # noqa: E402
from mor.torch.distill_module import POLE_STEPS  # noqa: E402
from corpus import load  # noqa: E402
from train import load_model  # noqa: E402


def training_windows(length: int, count: int, seed: int) -> torch.Tensor:
    """``count`` random windows of ``length`` bytes of the training split, ``(W, L)`` int64."""
    train = load()[0]
    starts = np.random.default_rng(seed).integers(0, len(train) - length, count)
    return torch.from_numpy(np.stack([train[s:s + length] for s in starts]).astype(np.int64))


def layer_bank(layer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(poles, residues, direct)`` that a `ModalRecurrence` (or the head-wise one) runs."""
    heads = getattr(layer, "heads", layer)
    poles = torch.exp(heads.log_poles).numpy()
    poles[heads.log_poles.real.numpy() <= -1e4 + 1] = 0  # padding
    return poles, heads.residues64.numpy(), heads.direct.double().numpy()


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--kind", required=True, choices=["hyena", "multihyena"])
    parser.add_argument("--modes", nargs="+", type=int, default=[2, 4, 8])
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", default="cpu",
                        help="where the model runs while the statistics are recorded (the "
                             "fits run on the CPU); on CUDA the peak device memory is recorded")
    parser.add_argument("--pole-steps", type=int, default=POLE_STEPS,
                        help="Gauss-Newton steps of the poles in the recorded metric (default "
                             "%(default)s, distill_module's); other values add -p{N} to the "
                             "file names")
    parser.add_argument("--out-proj", action="store_true",
                        help="head-wise layers: measure the error after out_proj "
                             "(output_weight); writes {kind}_calibrated-outproj.*")
    args = parser.parse_args()
    name = ("calibrated-outproj" if args.out_proj else "calibrated") + (
        "" if args.device == "cpu" else f"-{torch.device(args.device).type}") + (
        "" if args.pole_steps == POLE_STEPS else f"-p{args.pole_steps}")
    torch.set_num_threads(1)
    device = torch.device(args.device)
    model = load_model(args.models / f"{args.kind}.pt", args.device)
    windows = training_windows(model.cfg.length, args.windows, args.seed).to(device)
    batches = [windows[i:i + args.batch] for i in range(0, len(windows), args.batch)]
    h = model.filters().double().cpu().numpy()
    arrays, summary = {"shape": np.array(h.shape)}, {"windows": args.windows,
                                                     "pole_steps": args.pole_steps,
                                                     "seed": args.seed, "sizes": {}}
    for m in args.modes:
        row = {}
        for label, calibration, method in (("modal", None, "modal"), ("plain", None, "auto"),
                                           ("calibrated", batches, "auto")):
            before = peak_mb()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                resident = torch.cuda.memory_allocated(device)
            start = time.perf_counter()
            out = copy.deepcopy(model)
            weight = None if not (args.out_proj and calibration) else (
                lambda layer, module, out=out: out.get_submodule(
                    layer.rsplit(".", 1)[0]).out_proj.weight)
            out, reports = mt.distill_module(out, modes=m, calibration=calibration,
                                             output_weight=weight, pole_steps=args.pole_steps,
                                             method=method)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            row[label] = {"seconds": time.perf_counter() - start,
                          "peak_rss_growth_mb": peak_mb() - before}
            if device.type == "cuda":
                row[label]["peak_device_growth_mb"] = (
                    torch.cuda.max_memory_allocated(device) - resident) / 2**20
        parts = [layer_bank(b.mixer.long.cpu()) for b in out.blocks]
        width = max(p.shape[1] for p, _, _ in parts)
        pad = [np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in (p for p, _, _ in parts)]
        arrays[f"m{m}_poles"] = np.concatenate(pad)
        arrays[f"m{m}_residues"] = np.concatenate(
            [np.pad(r, ((0, 0), (0, width - r.shape[1]))) for _, r, _ in parts])
        arrays[f"m{m}_direct"] = np.concatenate([d for _, _, d in parts])
        cols = [reports[f"blocks.{i}.mixer.long"].columns for i in range(len(model.blocks))]
        for key in ("l2", "tail", "failed", "order"):
            arrays[f"m{m}_{key}"] = np.concatenate([np.asarray(c[key]) for c in cols])
        arrays[f"m{m}_seconds"] = np.array(row["calibrated"]["seconds"])
        row["layers"] = [{
            **reports[f"blocks.{i}.mixer.long"].request["calibration"],
            "calibrated_filters": int(c["calibrated"].sum()),
            "pole_steps_median": float(np.median(c["pole_steps"])),
            "l2_plain_median": float(np.median(c["l2_plain"])),
            "l2_median": float(np.median(c["l2"])),
            "output_error_plain_median": float(np.median(c["output_error_plain"])),
            "output_error_median": float(np.median(c["output_error"]))}
            for i, c in enumerate(cols)]
        summary["sizes"][m] = row
        cal = row["calibrated"]
        print(f"{args.kind} m{m}: modal {row['modal']['seconds']:.1f} s, default "
              f"{row['plain']['seconds']:.1f} s, calibrated {cal['seconds']:.1f} s (recording "
              f"{row['layers'][0]['recording_seconds']:.1f} s in {row['layers'][0]['passes']} "
              f"passes; +{cal['peak_rss_growth_mb']:.0f} MB peak); "
              f"output error per layer "
              + ", ".join(f"{r['output_error_plain']:.2e}->{r['output_error']:.2e}"
                          for r in row["layers"]), flush=True)
        np.savez(args.models / f"{args.kind}_{name}.npz", **arrays)
        (args.models / f"{args.kind}_{name}.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
