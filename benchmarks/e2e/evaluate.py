"""Held-out quality of distilled models: bits per byte, logit error, greedy agreement.

``python benchmarks/e2e/evaluate.py --models DIR --kind hyena --out DIR`` loads
``DIR/{kind}.pt`` and every ``DIR/{kind}_{method}.npz`` that `distill.py` wrote, and for each
method and state size puts the distilled filters (their responses over the model's ``L`` taps,
float32) in place of the long filters. On every non-overlapping window of the held-out split it
measures bits per byte against the undistilled model: the mean change, its 95% interval by a
bootstrap over windows (2,000 resamples), and the relative RMS and largest absolute error of the
logits. Over ``L`` taps a recurrence's output equals this convolution, so the numbers hold for
the recurrent model; the greedy check below runs the recurrences themselves.

Greedy check (``--greedy``): for the best mor model at 2 and 8 modes, prompts from the held-out
split are continued greedily by the undistilled model (cached convolution) and, in lockstep on
the same tokens, by the distilled model (`mor.torch` recurrences, ``step``). Per prompt: the
first position where the greedy tokens differ, and the first where the logit error reaches half
the undistilled model's decision margin (top-1 minus top-2 logit), before which the tokens must
agree. Writes ``{kind}_quality.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]
import mor  # noqa: E402
import mor.torch as mt  # noqa: E402
from corpus import load  # noqa: E402
from models import LanguageModel, scored_batches  # noqa: E402
from train import held_out_windows, load_model  # noqa: E402

RESAMPLES = 2000


def banks(path: Path) -> dict[int, mor.ModalSSM]:
    """The compact models of one method's file, per state size ``m`` (0: the tolerance run)."""
    with np.load(path) as z:
        shape = tuple(z["shape"][:-1])
        sizes = sorted({int(k.split("_")[0][1:]) for k in z.files if k.endswith("_poles")})
        return {m: mor.ModalSSM.from_compact(
            z[f"m{m}_poles"].reshape(shape + (-1,)), z[f"m{m}_residues"].reshape(shape + (-1,)),
            z[f"m{m}_direct"].reshape(shape)) for m in sizes}


def with_filters(model: LanguageModel, taps: np.ndarray) -> LanguageModel:
    """The model with each layer's long filter replaced by ``taps[layer]`` (exact FFT layer)."""
    for block, h in zip(model.blocks, taps):
        kind = mt.HeadwiseLongConv if getattr(block.mixer.long, "headwise", False) \
            else mt.LongConv
        block.mixer.long = kind(torch.from_numpy(h).float()).to(next(model.parameters()).device)
    return model


def score(model: LanguageModel, windows: torch.Tensor, reference: torch.Tensor | None = None,
          batch: int = 16) -> tuple[np.ndarray, torch.Tensor | None, float, float]:
    """Bits per byte per window; with ``reference`` logits, the logits' squared error sum and
    largest absolute error; without, the logits (kept on the device)."""
    bpb, kept, sq, worst = [], [], 0.0, 0.0
    for start, logits, bits in scored_batches(model, windows, batch):
        bpb.append(bits)
        if reference is None:
            kept.append(logits)
        else:
            diff = logits - reference[start:start + len(logits)]
            sq += float(diff.pow(2).sum())
            worst = max(worst, float(diff.abs().max()))
    bpb = torch.cat(bpb).cpu().numpy()
    return bpb, (torch.cat(kept) if reference is None else None), sq, worst


def bootstrap(delta: np.ndarray, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = delta[rng.integers(0, len(delta), (RESAMPLES, len(delta)))].mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def greedy_check(exact: LanguageModel, distilled: LanguageModel, prompts: torch.Tensor,
                 steps: int) -> list[dict]:
    """Lockstep greedy decoding on the exact model's tokens; see the module notes."""
    logits_e, cache_e = exact.prefill(prompts)
    logits_d, cache_d = distilled.prefill(prompts)
    le, ld = logits_e[:, -1].float(), logits_d[:, -1].float()
    rows = [{"first_token_difference": None, "first_margin_violation": None}
            for _ in range(len(prompts))]
    for t in range(steps):
        top = le.topk(2, -1).values
        margin = top[:, 0] - top[:, 1]
        err = (ld - le).abs().max(-1).values
        token_e, token_d = le.argmax(-1), ld.argmax(-1)
        for i, row in enumerate(rows):
            if row["first_token_difference"] is None and token_e[i] != token_d[i]:
                row["first_token_difference"] = t
            if row["first_margin_violation"] is None and 2 * err[i] >= margin[i]:
                row["first_margin_violation"] = t
        le, ld = exact.step(token_e, cache_e).float(), distilled.step(token_e, cache_d).float()
    for row in rows:
        diff, viol = row["first_token_difference"], row["first_margin_violation"]
        row["agrees_before_violation"] = diff is None or (viol is not None and diff >= viol)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--kind", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--greedy", type=int, default=256, help="greedy steps (0: no check)")
    parser.add_argument("--windows", type=int, help="only the first windows (quick runs)")
    parser.add_argument("--only", nargs="+", default=[],
                        help="evaluate only these METHOD:MODES pairs (e.g. balanced:2)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    path = args.models / f"{args.kind}.pt"
    exact = load_model(path, args.device)
    length = exact.cfg.length
    windows = held_out_windows(load()[1], length, args.device)[:args.windows or None]
    ref_bpb, ref_logits, _, _ = score(exact, windows)
    scale = float(ref_logits.pow(2).mean().sqrt())
    result = {"kind": args.kind, "held_out_bpb": float(ref_bpb.mean()), "windows": len(windows),
              "rows": [], "greedy": {}}
    best: dict[int, tuple[float, mor.ModalSSM, str]] = {}
    for file in sorted(args.models.glob(f"{args.kind}_*.npz")):
        method = file.stem.split("_", 1)[1]
        for m, bank in banks(file).items():
            if args.only and f"{method}:{m}" not in args.only:
                continue
            taps = bank.impulse(length)
            model = with_filters(load_model(path, args.device), taps)
            bpb, _, sq, worst = score(model, windows, ref_logits)
            delta = bpb - ref_bpb
            low, high = bootstrap(delta)
            row = {"method": method, "modes": m, "bpb": float(bpb.mean()),
                   "delta_bpb": float(delta.mean()), "delta_ci95": [low, high],
                   "delta_percent": float(100 * delta.mean() / ref_bpb.mean()),
                   "logit_rel_rms": float(np.sqrt(sq / ref_logits.numel()) / scale),
                   "logit_max_abs": worst,
                   "unstable_poles": int((np.abs(bank.compact()[0]) >= 1).sum())}
            result["rows"].append(row)
            print(f"{args.kind} {method:9s} m={m:2d}: {row['bpb']:.4f} bits/byte "
                  f"({row['delta_percent']:+.3f}%, 95% [{100 * low / ref_bpb.mean():+.3f}, "
                  f"{100 * high / ref_bpb.mean():+.3f}]), logit rel rms "
                  f"{row['logit_rel_rms']:.2e}", flush=True)
            if method != "recipe" and m in (2, 8) and (m not in best or row["bpb"] < best[m][0]):
                best[m] = (row["bpb"], bank, method)
            (args.out / f"{args.kind}_quality.json").write_text(json.dumps(result, indent=1))
    if args.greedy:
        exact.freeze_filters()
        prompts = windows[:8, :512]
        for m, (_, bank, method) in sorted(best.items()):
            distilled = load_model(path, args.device)
            for i, block in enumerate(distilled.blocks):
                kind = mt.HeadwiseModalRecurrence if getattr(block.mixer.long, "headwise",
                                                             False) else mt.ModalRecurrence
                block.mixer.long = kind.from_ssm(bank[i]).to(args.device)
            rows = greedy_check(exact, distilled, prompts, args.greedy)
            result["greedy"][f"{method}_m{m}"] = rows
            print(f"greedy {method} m={m}: first differences "
                  f"{[r['first_token_difference'] for r in rows]}, first margin violations "
                  f"{[r['first_margin_violation'] for r in rows]}, all agree before "
                  f"violation: {all(r['agrees_before_violation'] for r in rows)}", flush=True)
    (args.out / f"{args.kind}_quality.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
