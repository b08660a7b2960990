"""Train the study's byte-level models on the GPU and record their held-out bits per byte.

``python benchmarks/e2e/train.py --kind hyena --seconds 240 --out DIR`` trains one model on
random windows of the training split (AdamW, linear warm-up then cosine decay, bfloat16
autocast; no weight decay on biases, norms and the implicit filters), then writes
``DIR/{kind}.pt`` (config, weights, steps) and ``DIR/{kind}.json`` (held-out bits per byte over
every non-overlapping window of the held-out split, loss curve, steps, seconds). The number of
steps is fixed after timing the first steps against ``--seconds`` (and recorded: ``--steps N``
replays a run exactly, same seed).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]
from corpus import load  # noqa: E402
from models import Config, LanguageModel, bits_per_byte  # noqa: E402

BATCH = {"hyena": 32, "multihyena": 32, "transformer": 32}
WARMUP = 100


def held_out_windows(data: np.ndarray, length: int, device) -> torch.Tensor:
    """Every non-overlapping window of ``length + 1`` bytes (``length`` predictions each)."""
    count = (len(data) - 1) // length
    idx = np.arange(count)[:, None] * length + np.arange(length + 1)
    return torch.from_numpy(data[idx].astype(np.int64)).to(device)


def optimizer(model: LanguageModel, lr: float) -> torch.optim.Optimizer:
    decay, plain = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim == 2 and ".long." not in name and "embed" not in name
         else plain).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                              {"params": plain, "weight_decay": 0.0}], lr=lr,
                             betas=(0.9, 0.95), fused=torch.cuda.is_available())


def train(kind: str, seconds: float, steps: int | None, lr: float, seed: int, out: Path,
          device: str) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_bytes, held_out = load()
    cfg = Config(kind)
    model = LanguageModel(cfg).to(device)
    opt = optimizer(model, lr)
    batch, length = BATCH[kind], cfg.length
    data = torch.from_numpy(train_bytes.astype(np.int64)).to(device)
    offsets = torch.arange(length + 1, device=device)

    def one_step(i: int, total: int) -> float:
        scale = min(1.0, (i + 1) / WARMUP) * 0.5 * (1 + math.cos(math.pi * min(i / total, 1)))
        for group in opt.param_groups:
            group["lr"] = lr * scale
        starts = torch.from_numpy(rng.integers(0, len(train_bytes) - length - 1, batch)).to(device)
        w = data[starts[:, None] + offsets]
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
            logits = model(w[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), w[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.detach()

    start = time.perf_counter()
    curve = []
    total = steps or 10**9
    i = 0
    while i < total:
        loss = one_step(i, total)
        if i % 50 == 0:
            curve.append((i, float(loss) / math.log(2)))
        if steps is None and i == 19:  # fix the budget from the first 20 steps
            torch.cuda.synchronize() if device.startswith("cuda") else None
            total = max(20, int(seconds / ((time.perf_counter() - start) / 20)))
        i += 1
    elapsed = time.perf_counter() - start
    model.eval()
    bpb = bits_per_byte(model, held_out_windows(held_out, length, device))
    result = {"kind": kind, "config": cfg.to_dict(), "steps": total, "batch": batch, "lr": lr,
              "seed": seed, "train_seconds": elapsed, "held_out_bpb": float(bpb.mean()),
              "held_out_windows": len(bpb), "params": sum(p.numel() for p in model.parameters()),
              "curve_bpb": curve, "device": torch.cuda.get_device_name() if
              device.startswith("cuda") else "cpu", "torch": torch.__version__}
    torch.save({"config": cfg.to_dict(), "state_dict": model.state_dict(), "steps": total},
               out / f"{kind}.pt")
    (out / f"{kind}.json").write_text(json.dumps(result, indent=1))
    print(f"{kind}: {total} steps in {elapsed:.0f} s, held-out {result['held_out_bpb']:.4f} "
          f"bits/byte, {result['params'] / 1e6:.2f}M parameters", flush=True)
    return result


def load_model(path: Path, device: str = "cpu") -> LanguageModel:
    saved = torch.load(path, map_location=device)
    model = LanguageModel(Config(**saved["config"])).to(device)
    model.load_state_dict(saved["state_dict"])
    return model.eval()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", required=True, choices=sorted(BATCH))
    parser.add_argument("--seconds", type=float, default=240)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    train(args.kind, args.seconds, args.steps, args.lr, args.seed, args.out, args.device)
