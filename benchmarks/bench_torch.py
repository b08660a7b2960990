"""GPU decode and prefill of `mor.torch.ModalRecurrence` against its memory-bandwidth floor.

Decode: time per token of one layer of 2048 channels at batch 1/16/64/256 and 8/16/32 modes,
for the fused Triton step (eager launch and replayed in a CUDA graph) and the eager PyTorch
step, against `LongConv`'s cached step (L = 2048, 8192, 32768) and one attention decode step
with a KV cache of the same length (16 heads of 128, bf16, scaled_dot_product_attention).
Bytes moved per step (state read and written once, plus parameters and activations) are set
against the measured device-to-device copy bandwidth; state buffers are rotated so that the
state does not sit in L2. Prefill: time and peak memory against prompt length (batch 1, 2048
channels, 16 modes): ``chunked`` up to 1M tokens, ``fft`` up to where it fits, ``recurrent``
on a short prompt.

Run on a CUDA machine: ``python benchmarks/bench_torch.py --out DIR``.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import mor  # noqa: E402
import mor.torch as mt  # noqa: E402

CHANNELS = 2048
L2_BYTES = 60 * 2**20


def bank(filters: int, modes: int, seed: int = 0) -> mor.ModalSSM:
    rng = np.random.default_rng(seed)
    mod = rng.uniform(0.99, 0.9999, (filters, modes))
    poles = mod * np.exp(1j * rng.uniform(0, 0.05, (filters, modes)))
    residues = (rng.standard_normal((filters, modes)) + 1j * rng.standard_normal(
        (filters, modes))) * (1 - mod)
    return mor.ModalSSM.from_compact(poles, residues, rng.standard_normal(filters))


def cuda_time(fn, iters: int, warmup: int = 10) -> float:
    """Mean seconds per call, by CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / iters


def copy_bandwidth() -> float:
    x = torch.empty(2**28, dtype=torch.float32, device="cuda")  # 1 GiB
    y = torch.empty_like(x)
    t = cuda_time(lambda: y.copy_(x), 20)
    return 2 * x.numel() * 4 / t


def decode(bandwidth: float, log) -> list[dict]:
    rows = []
    for modes in (8, 16, 32):
        layer = mt.ModalRecurrence.from_ssm(bank(CHANNELS, modes)).cuda()
        for batch in (1, 16, 64, 256):
            state_bytes = batch * CHANNELS * modes * 2 * 4
            count = max(2, int(np.ceil(3 * L2_BYTES / state_bytes)))
            states = [layer.init_state(batch) for _ in range(min(count, 64))]
            u = torch.randn(batch, CHANNELS, device="cuda", dtype=torch.bfloat16)
            moved = 2 * state_bytes + CHANNELS * modes * 4 * 4 + batch * CHANNELS * 2 * 2
            it = iter(range(10**9))

            def fused():
                layer.step(u, states[next(it) % len(states)])

            def eager():
                layer._step_eager(u, states[next(it) % len(states)])

            t_fused, t_eager = cuda_time(fused, 200), cuda_time(eager, 100)
            # a CUDA graph of 16 steps over rotating states: launch latency removed
            graph = torch.cuda.CUDAGraph()
            layer.step(u, states[0])
            torch.cuda.synchronize()
            with torch.cuda.graph(graph):
                for k in range(16):
                    layer.step(u, states[k % len(states)])
            t_graph = cuda_time(graph.replay, 20) / 16
            floor = moved / bandwidth
            rows.append({"modes": modes, "batch": batch, "state_MB": state_bytes / 2**20,
                         "fused_us": t_fused * 1e6, "graph_us": t_graph * 1e6,
                         "eager_us": t_eager * 1e6, "floor_us": floor * 1e6,
                         "graph_over_floor": t_graph / floor,
                         "achieved_TBps": moved / t_graph / 1e12})
            log(f"  modes {modes} batch {batch}: fused {t_fused * 1e6:.1f} us, graph "
                f"{t_graph * 1e6:.1f} us, eager {t_eager * 1e6:.1f} us, floor {floor * 1e6:.1f}")
    return rows


def baseline(length: int, batch: int) -> dict:
    """Per-token cost of `LongConv`'s cached step and of one attention decode step."""
    conv = mt.LongConv(torch.randn(CHANNELS, length, device="cuda") / length).cuda()
    cache = conv.init_state(batch)
    u = torch.randn(batch, CHANNELS, device="cuda")
    t_conv = cuda_time(lambda: conv.step(u, cache), 20, 3)
    q = torch.randn(batch, 16, 1, 128, device="cuda", dtype=torch.bfloat16)
    kv = torch.randn(batch, 16, length, 128, device="cuda", dtype=torch.bfloat16)
    t_attn = cuda_time(lambda: torch.nn.functional.scaled_dot_product_attention(q, kv, kv),
                       50, 5)
    return {"L": length, "batch": batch, "longconv_step_us": t_conv * 1e6,
            "attention_step_us": t_attn * 1e6}


def baselines(log) -> list[dict]:
    rows = []
    for length in (2048, 8192, 32768):
        for batch in (1, 16, 64):
            rows.append(baseline(length, batch))
            torch.cuda.empty_cache()
            log(f"  L {length} batch {batch}: LongConv step {rows[-1]['longconv_step_us']:.0f} "
                f"us, attention {rows[-1]['attention_step_us']:.0f} us")
    return rows


def prefill(log) -> list[dict]:
    rows = []
    layer = mt.ModalRecurrence.from_ssm(bank(CHANNELS, 16)).cuda()
    for mode, lengths in (("recurrent", (2048,)), ("fft", (2**14, 2**16, 2**18)),
                          ("chunked", (2**14, 2**16, 2**18, 2**20))):
        for length in lengths:
            u = torch.randn(1, CHANNELS, length, device="cuda", dtype=torch.bfloat16)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            try:
                start = time.perf_counter()
                y, state = layer.prefill(u, mode=mode)
                torch.cuda.synchronize()
                seconds = time.perf_counter() - start
                extra = torch.cuda.max_memory_allocated() - base - y.numel() * y.element_size()
                rows.append({"mode": mode, "tokens": length, "seconds": seconds,
                             "tokens_per_s": length / seconds, "peak_extra_GB": extra / 2**30})
                log(f"  {mode} {length}: {seconds:.3f} s, extra memory {extra / 2**30:.2f} GB")
                del y, state
            except torch.OutOfMemoryError:
                rows.append({"mode": mode, "tokens": length, "seconds": None,
                             "error": "out of memory"})
                log(f"  {mode} {length}: out of memory")
            del u
            torch.cuda.empty_cache()
    return rows


def render(meta, bandwidth, dec, base, pre) -> str:
    lines = ["## GPU decode and prefill (`bench_torch.py`)", "",
             f"- date: {meta['date']}", f"- command: `{meta['command']}`",
             f"- GPU: {meta['gpu']}, torch {meta['torch']}, triton {meta['triton']}, "
             f"Python {meta['python']}",
             f"- measured device-to-device copy bandwidth: {bandwidth / 1e12:.2f} TB/s "
             "(bytes read + written)", "",
             "Decode, one layer of 2048 channels, bf16 activations, float32 state; time per "
             "token. `graph`: the fused Triton step replayed in a CUDA graph (16 steps per "
             "graph); `floor`: bytes moved (state read and written once, parameters, "
             "activations) over the copy bandwidth. States rotate through buffers larger than "
             "L2.", "",
             "| modes | batch | state | fused launch | CUDA graph | eager torch | floor | "
             "graph / floor | achieved |", "|---|---|---|---|---|---|---|---|---|"]
    for r in dec:
        lines.append(f"| {r['modes']} | {r['batch']} | {r['state_MB']:.1f} MB | "
                     f"{r['fused_us']:.1f} us | {r['graph_us']:.1f} us | {r['eager_us']:.1f} us "
                     f"| {r['floor_us']:.1f} us | {r['graph_over_floor']:.2f}x | "
                     f"{r['achieved_TBps']:.2f} TB/s |")
    lines += ["", "Baselines per token (same 2048 channels): `LongConv` cached step (O(L)) and "
              "one attention decode step with a KV cache of length L (16 heads of 128, bf16).",
              "", "| L | batch | LongConv step | attention step |", "|---|---|---|---|"]
    for r in base:
        lines.append(f"| {r['L']} | {r['batch']} | {r['longconv_step_us']:.0f} us | "
                     f"{r['attention_step_us']:.0f} us |")
    lines += ["", "Prefill, batch 1, 2048 channels, 16 modes, bf16 prompt: time and peak memory "
              "beyond the input and the output.", "",
              "| mode | tokens | time | tokens/s | extra memory |", "|---|---|---|---|---|"]
    for r in pre:
        if r.get("seconds") is None:
            lines.append(f"| {r['mode']} | {r['tokens']} | {r.get('error')} | | |")
        else:
            lines.append(f"| {r['mode']} | {r['tokens']} | {r['seconds']:.3f} s | "
                         f"{r['tokens_per_s']:.3g} | {r['peak_extra_GB']:.2f} GB |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parts", default="decode,baselines,prefill",
                        help="comma-separated parts to run")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    args.out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    import triton
    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": "python " + " ".join(sys.argv), "gpu": torch.cuda.get_device_name(),
            "torch": torch.__version__, "triton": triton.__version__,
            "python": platform.python_version()}
    bandwidth = copy_bandwidth()
    log(f"copy bandwidth {bandwidth / 1e12:.2f} TB/s")
    dec = decode(bandwidth, log) if "decode" in parts else []
    base = baselines(log) if "baselines" in parts else []
    pre = prefill(log) if "prefill" in parts else []
    (args.out / "bench_torch.json").write_text(json.dumps(
        {"meta": meta, "copy_bandwidth": bandwidth, "decode": dec, "baselines": base,
         "prefill": pre}, indent=1))
    report = render(meta, bandwidth, dec, base, pre)
    (args.out / "bench_torch.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
