"""Tile sweep of the fused Triton decode step (`mor/torch/_triton.py`) on a CUDA GPU.

For 8, 16 and 32 modes at batch 64 and 256 (2048 channels), each candidate tile (batch rows,
(channel, mode) pairs, warps per program) of the flat kernel and the padded kernel's former
tile (2 rows x 64 pairs, one warp) is checked against the eager step and timed as in
`bench_torch.py` (a CUDA graph of 16 steps over states rotating through more than L2; median
of 3 rounds). The best tile per mode count (least mean time over the floor at the two batch
sizes) is then put into the library's table for this process and `bench_torch.py`'s decode
measurement runs with it.

Run on a CUDA machine: ``python benchmarks/sweep_torch_tiles.py --out DIR``.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_torch as bt  # noqa: E402
import mor.torch as mt  # noqa: E402
from mor.torch import _triton as T  # noqa: E402

CANDIDATES = [(2, 64, 1), (2, 128, 1), (4, 128, 1), (2, 256, 1), (1, 256, 2), (4, 128, 2),
              (8, 128, 2), (4, 256, 2), (2, 512, 4), (4, 256, 4), (8, 256, 4), (16, 128, 4)]


def old_step(u_t, state, lam, res, direct, channel_map):
    """The former launch: the padded kernel, 2 rows x 64 pairs, one warp."""
    batch, channels = u_t.shape
    modes = lam.shape[1]
    y = torch.empty_like(u_t)
    block = max(1, 64 // modes)
    grid = (triton.cdiv(batch, 2), triton.cdiv(channels, block))
    T._step_kernel[grid](u_t, state, lam, res, direct, channel_map, y, batch, channels, modes,
                         MODES=modes, BLOCK_B=2, BLOCK_C=block, num_warps=1)
    return y


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    bandwidth = bt.copy_bandwidth()
    log(f"copy bandwidth {bandwidth / 1e12:.2f} TB/s")
    rows, start = [], time.time()
    for modes in (8, 16, 32):
        layer = mt.ModalRecurrence.from_ssm(bt.bank(bt.CHANNELS, modes)).cuda()
        args_p = (layer.lam, layer.res, layer.direct, layer.channel_map)
        for batch in (64, 256):
            state_bytes = batch * bt.CHANNELS * modes * 2 * 4
            count = min(64, max(2, int(np.ceil(3 * bt.L2_BYTES / state_bytes))))
            states = [torch.randn(batch, bt.CHANNELS, modes, 2, device="cuda") * 0.1
                      for _ in range(count)]
            u = torch.randn(batch, bt.CHANNELS, device="cuda", dtype=torch.bfloat16)
            moved = 2 * state_bytes + bt.CHANNELS * modes * 4 * 4 + batch * bt.CHANNELS * 2 * 2
            floor = moved / bandwidth
            fns = {"old": lambda s: old_step(u, s, *args_p)}
            for tile in CANDIDATES:
                fns[str(tile)] = (lambda t: lambda s: T.triton_step(u, s, *args_p, tile=t))(tile)
            graphs, errors = {}, {}
            for name, fn in fns.items():
                a, b = states[0].clone(), states[0].clone()
                ya, yb = fn(a), layer._step_eager(u, b)
                errors[name] = max(((ya.double() - yb.double()).abs().max()
                                    / yb.double().abs().max()).item(),
                                   ((a - b).abs().max() / b.abs().max()).item())
                torch.cuda.synchronize()
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    for k in range(16):
                        fn(states[k % count])
                graphs[name] = g
            times = {name: [] for name in fns}
            for _ in range(3):
                for name, g in graphs.items():
                    times[name].append(bt.cuda_time(g.replay, 20, 3) / 16)
            for name in fns:
                t = float(np.median(times[name]))
                rows.append({"modes": modes, "batch": batch, "tile": name, "us": t * 1e6,
                             "floor_us": floor * 1e6, "over_floor": t / floor,
                             "rel_err": errors[name]})
                log(f"  modes {modes} batch {batch} {name}: {t * 1e6:.1f} us, "
                    f"{t / floor:.3f}x floor, err {errors[name]:.1e}")
            del graphs, states
            torch.cuda.empty_cache()
    log(f"sweep {time.time() - start:.0f} s")
    best = {}
    for modes in (8, 16, 32):
        score = {}
        for tile in CANDIDATES:
            r = [x for x in rows if x["modes"] == modes and x["tile"] == str(tile)]
            if all(x["rel_err"] < 1e-2 for x in r):  # bf16 outputs
                score[tile] = float(np.mean([x["over_floor"] for x in r]))
        best[modes] = min(score, key=score.get)
        log(f"best at {modes} modes: {best[modes]} ({score[best[modes]]:.3f}x mean)")
    T.TILES.update(best)
    dec = bt.decode(bandwidth, log)
    (args.out / "sweep.json").write_text(json.dumps(
        {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
         "triton": triton.__version__, "copy_bandwidth": bandwidth, "sweep": rows,
         "best": {str(k): v for k, v in best.items()}, "decode": dec}, indent=1))


if __name__ == "__main__":
    main()
