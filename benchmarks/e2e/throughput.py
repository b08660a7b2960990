"""Generation throughput on the GPU: distilled Hyena and MultiHyena against their cached
convolutions and a Transformer with a KV cache, at the study's size and at the 1.3B scale.

For a context of ``P + G`` tokens (prompt ``P``, ``G`` generated; the long filters are
``P + G`` taps long, as long as the context) each model decodes at batch sizes from 1 up to the
largest that fits (up to ``MAX_BATCH``), in bfloat16 (weights and activations; the recurrences' poles, residues and states
stay float32), eager PyTorch. Decoding cost does not depend on the cached values, so the caches
are allocated at their steady-state size and ``STEPS`` steps are timed after a warm-up:

- distilled: `mor.torch.ModalRecurrence` (``--modes`` complex modes per channel, fused step);
- cached: `mor.torch.LongConv` with a bfloat16 ring cache of the last ``P + G - 1`` inputs
  (read once per step);
- multihyena-distilled: `mor.torch.HeadwiseModalRecurrence` (one filter per head, state
  ``modes x N x N`` per head, float32);
- multihyena-cached: `mor.torch.HeadwiseLongConv` with a bfloat16 ring cache of the last
  ``P + G - 1`` keys and values;
- Transformer: bfloat16 keys and values, the steps timed around position ``P + G / 2`` (the
  generation's mean cache length).

Weights are random (quality plays no part). Also timed: the prompt's prefill at batch 1. Peak
memory is ``torch.cuda.max_memory_allocated`` over the timed steps. ``--out DIR`` writes
``{--name}.json`` (after each context).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]
import mor  # noqa: E402
import mor.torch as mt  # noqa: E402
from models import Config, LanguageModel  # noqa: E402

SCALES = {"small": dict(width=256, layers=4, heads=8),  # the trained models' size
          "1.3B": dict(width=2048, layers=24, heads=16)}
CONTEXTS = ((2048, 2048), (16384, 2048))
MODES = 16
STEPS, WARMUP = 128, 8
BATCHES = (1, 8, 64, 512, 4096, 16384)
MAX_BATCH = 16384
VARIANTS = ("distilled", "cached", "transformer", "multihyena-distilled", "multihyena-cached")
DEVICE = "cuda"


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def random_bank(channels: int, modes: int, seed: int = 0) -> mor.ModalSSM:
    rng = np.random.default_rng(seed)
    mod = rng.uniform(0.9, 0.9999, (channels, modes))
    poles = mod * np.exp(1j * rng.uniform(0, np.pi, (channels, modes)))
    residues = (rng.standard_normal((channels, modes)) * (1 - mod)).astype(complex)
    return mor.ModalSSM.from_compact(poles, residues, rng.standard_normal(channels))


def build(variant: str, scale: str, context: int, modes: int) -> LanguageModel:
    kind, _, form = variant.rpartition("-")
    cfg = Config(kind or ("transformer" if form == "transformer" else "hyena"), length=context,
                 **SCALES[scale])
    headwise = cfg.kind == "multihyena"
    rows = cfg.heads if headwise else cfg.width
    with torch.device(DEVICE):
        model = LanguageModel(cfg)
        for block in model.blocks:
            if form == "cached":
                decay = torch.exp(-torch.arange(context) / (0.3 * context))
                taps = torch.randn(rows, context) * decay / 30
                block.mixer.long = (mt.HeadwiseLongConv if headwise else mt.LongConv)(taps)
            elif form == "distilled":
                layer = mt.HeadwiseModalRecurrence if headwise else mt.ModalRecurrence
                block.mixer.long = layer.from_ssm(random_bank(rows, modes))
    return model.to(DEVICE, torch.bfloat16).eval()


def empty_caches(model: LanguageModel, batch: int, prompt: int, generated: int) -> list:
    """Decoding caches at their steady-state size (values do not change the cost)."""
    caches = []
    for block in model.blocks:
        mixer = block.mixer
        if model.cfg.kind == "transformer":
            shape = (batch, mixer.heads, prompt + generated, model.cfg.width // mixer.heads)
            caches.append({"k": torch.zeros(shape, device=DEVICE, dtype=torch.bfloat16),
                           "v": torch.zeros(shape, device=DEVICE, dtype=torch.bfloat16),
                           "t": prompt + generated // 2 - (STEPS + WARMUP) // 2})
            continue
        short = torch.zeros(batch, 3 * model.cfg.width, 2, device=DEVICE, dtype=torch.bfloat16)
        dim = (model.cfg.width // model.cfg.heads,) if model.cfg.kind == "multihyena" else ()
        if isinstance(mixer.long, (mt.LongConv, mt.HeadwiseLongConv)):
            long = mixer.long.init_state(batch, *dim, torch.bfloat16)
            long.position = prompt % max(1, long.buffer.shape[-1])
        else:
            long = mixer.long.init_state(batch, *dim)
        caches.append((short, long))
    return caches


def graphed(fn):
    """``fn`` captured in a CUDA graph (after a warm-up on a side stream): its replay. Only for
    steps whose state lives in tensors updated in place (the distilled models')."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def decode(model: LanguageModel, batch: int, prompt: int, generated: int,
           graph: bool = False) -> dict:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    caches = empty_caches(model, batch, prompt, generated)
    token = torch.zeros(batch, dtype=torch.long, device=DEVICE)

    def step():
        model.step(token, caches)

    run = graphed(step) if graph else step
    for _ in range(WARMUP):
        run()
    sync()
    start = time.perf_counter()
    for _ in range(STEPS):
        run()
    sync()
    seconds = (time.perf_counter() - start) / STEPS
    return {"batch": batch, "step_ms": 1e3 * seconds, "tokens_per_s": batch / seconds,
            "peak_gb": torch.cuda.max_memory_allocated() / 1e9}


def largest_batch(model: LanguageModel, prompt: int, generated: int) -> int:
    """The largest batch whose caches and a decode step fit, by doubling then bisection."""
    def fits(b: int) -> bool:
        try:
            caches = empty_caches(model, b, prompt, generated)
            model.step(torch.zeros(b, dtype=torch.long, device=DEVICE), caches)
            del caches
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            torch.cuda.empty_cache()

    low, high = 1, 2
    while high <= MAX_BATCH and fits(high):
        low, high = high, 2 * high
    if high > MAX_BATCH:
        return MAX_BATCH
    while high - low > max(1, low // 16):  # within 1/16
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def prefill_seconds(model: LanguageModel, prompt: int) -> float | None:
    """Seconds of one prefill at batch 1 (None where it runs out of memory)."""
    try:
        return _prefill_seconds(model, prompt)
    except torch.OutOfMemoryError:
        return None
    finally:
        torch.cuda.empty_cache()


def _prefill_seconds(model: LanguageModel, prompt: int) -> float:
    tokens = torch.zeros(1, prompt, dtype=torch.long, device=DEVICE)
    model.prefill(tokens, prompt + 1)  # warm-up (the capacity matters to the Transformer only)
    sync()
    start = time.perf_counter()
    model.prefill(tokens, prompt + 1)
    sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scales", nargs="+", default=list(SCALES))
    parser.add_argument("--models", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--contexts", nargs="+", default=[f"{p}+{g}" for p, g in CONTEXTS],
                        help="PROMPT+GENERATED")
    parser.add_argument("--modes", type=int, default=MODES, help="distilled modes per filter")
    parser.add_argument("--name", default="throughput", help="the output file's name")
    parser.add_argument("--batches", nargs="+", type=int,
                        help="only these batches (no search for the largest)")
    parser.add_argument("--graph", action="store_true",
                        help="replay each step as a CUDA graph (distilled models only)")
    args = parser.parse_args()
    if args.graph and any("distilled" not in m for m in args.models):
        parser.error("--graph needs the distilled models' in-place state")
    contexts = [tuple(int(x) for x in c.split("+")) for c in args.contexts]
    rows = []
    for scale in args.scales:
        for prompt, generated in contexts:
            for variant in args.models:
                model = build(variant, scale, prompt + generated, args.modes)
                params = sum(p.numel() for p in model.parameters())
                top = None if args.batches else largest_batch(model, prompt, generated)
                batches = args.batches or sorted({b for b in BATCHES if b < top} | {top})
                for batch in batches:
                    row = {"scale": scale, "prompt": prompt, "generated": generated,
                           "model": variant, "params": params, "largest_batch": top,
                           "modes": args.modes if "distilled" in variant else None,
                           "graph": args.graph,
                           **decode(model, batch, prompt, generated, args.graph)}
                    rows.append(row)
                    print(f"{scale} {prompt}+{generated} {variant:20s} batch {batch:5d}: "
                          f"{row['step_ms']:8.2f} ms/step, {row['tokens_per_s']:10.0f} tok/s, "
                          f"peak {row['peak_gb']:6.1f} GB", flush=True)
                if not args.graph:  # (prefill is never graphed)
                    rows.append({"scale": scale, "prompt": prompt, "model": variant,
                                 "prefill_batch1_s": prefill_seconds(model, prompt)})
                del model
                torch.cuda.empty_cache()
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{args.name}.json").write_text(json.dumps(
                {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                 "modes": args.modes, "steps": STEPS, "max_batch": MAX_BATCH, "rows": rows},
                indent=1))


if __name__ == "__main__":
    main()
