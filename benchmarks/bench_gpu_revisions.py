"""The device Lanczos of two checkouts of mor, in one process on one GPU (issue 22).

Loads ``mor/torch/_spectrum.py`` from checkout ``A`` (e.g. a ``git worktree`` of the revision
before a change) beside this checkout's, and times both on the same filters (issue 22's
generator, seeds ``0..F-1``, ``L = 2^P``): the top 64 Hankel values (certified to
``1e-11 sigma_1``) and balanced truncation's 33 pairs with vectors (``1e-10``), each in the
batches the device's memory allows; per filter the time, the vectors used, the peak memory,
and the largest value difference between the two relative to ``sigma_1``.

Run on the GPU machine: ``python benchmarks/bench_gpu_revisions.py A_DIR [--power 20]
[--filters 16] [--out FILE]`` (``--device cpu`` runs it on CPU tensors; ``--deflate`` allows
deflation below `_spectrum.DEFLATE_MIN` columns, in both). With
``--breakdown``, this checkout's run is repeated with each step of the iteration timed
(`PHASES`, the device synchronised around each call: the sum exceeds the plain run's time by
the pipelining lost) and under torch's profiler (the 25 kernels with the most device time).
"""

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import _common as C
from mor.torch import _spectrum

WORKLOADS = (("values", 64, 1e-11, False), ("bt", 33, 1e-10, True))
#: The steps of `_spectrum._block_lanczos` that ``--breakdown`` times (the products of rows
#: are told apart by their width: a block's own, or its projection on the basis).
PHASES = ("hankel_product", "_projected_recurrence", "_next_block", "_cholesky_qr2", "_ritz",
          "_finish", "_inner")


def load_spectrum(checkout: Path):
    """``mor/torch/_spectrum.py`` of another checkout, as a module of its own."""
    spec = importlib.util.spec_from_file_location("spectrum_a",
                                                  checkout / "mor/torch/_spectrum.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def breakdown(h: np.ndarray, device: str) -> dict:
    """This checkout's run of each workload with its steps timed (nested steps count in
    both: `_next_block` holds a projection and a `_cholesky_qr2`, that two block products),
    and its top kernels (operators on a CPU)."""
    from torch.profiler import ProfilerActivity, profile
    cuda = torch.device(device).type == "cuda"
    sync = C.device_sync(device)
    activity, spent = ((ProfilerActivity.CUDA, "self_device_time_total") if cuda
                       else (ProfilerActivity.CPU, "self_cpu_time_total"))
    found = {}
    saved = {name: getattr(_spectrum, name) for name in PHASES}
    for name, k, rtol, vectors in WORKLOADS:
        seconds = dict.fromkeys([p for p in PHASES if p != "_inner"]
                                + ["_inner projection", "_inner block"], 0.0)

        def timed(fn, phase):
            def call(*args, **kwargs):
                label = phase if phase != "_inner" else (
                    "_inner projection" if args[1].shape[1] > args[0].shape[1]
                    else "_inner block")
                sync()
                start = time.perf_counter()
                result = fn(*args, **kwargs)
                sync()
                seconds[label] += time.perf_counter() - start
                return result
            return call
        for phase, fn in saved.items():
            setattr(_spectrum, phase, timed(fn, phase))
        try:
            start = time.perf_counter()
            _spectrum.hankel_blocks(h, k, rtol=rtol, device=device, vectors=vectors)
            seconds["total"] = time.perf_counter() - start
        finally:
            for phase, fn in saved.items():
                setattr(_spectrum, phase, fn)
        with profile(activities=[activity]) as run:
            _spectrum.hankel_blocks(h, k, rtol=rtol, device=device, vectors=vectors)
            sync()
        kernels = sorted(run.key_averages(), key=lambda e: getattr(e, spent),
                         reverse=True)[:25]
        found[name] = {"seconds": seconds, "kernels": [
            {"name": e.key[:120], "calls": e.count, "self_s": getattr(e, spent) / 1e6}
            for e in kernels]}
        C.log(f"breakdown {name}: {json.dumps(found[name], indent=1)}")
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("a", type=Path, help="the other checkout (before)")
    parser.add_argument("--power", type=int, default=20, help="L = 2^power")
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--breakdown", action="store_true",
                        help="time this checkout's steps and kernels")
    parser.add_argument("--deflate", action="store_true",
                        help="allow deflation at any length (DEFLATE_MIN = 0 in both)")
    args = parser.parse_args()
    cuda = torch.device(args.device).type == "cuda"
    sync = C.device_sync(args.device)
    modules = {"a": load_spectrum(args.a), "b": _spectrum}
    if args.deflate:
        for module in modules.values():
            module.DEFLATE_MIN = 0
    h = C.long_filters(1 << args.power, args.filters)
    for module in modules.values():  # cuFFT plans, cuSOLVER handles
        module.hankel_blocks(C.long_filters(1 << 12, 2), 8, rtol=1e-10, device=args.device)
    found = {"meta": {"device": torch.cuda.get_device_name() if cuda else args.device,
                      "torch": torch.__version__,
                      "date": C.now(), "command": C.command(), "a": str(args.a)},
             "length": 1 << args.power, "filters": args.filters, "deflate": args.deflate}
    for name, k, rtol, vectors in WORKLOADS:
        sigma = {}
        for tag, module in modules.items():
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            sync()
            start = time.perf_counter()
            out = module.hankel_blocks(h, k, rtol=rtol, device=args.device, vectors=vectors)
            sync()
            found[f"{name}_{tag}"] = {
                "s_per_filter": (time.perf_counter() - start) / args.filters,
                "basis": out["basis"].tolist(),
                "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}
            sigma[tag] = out["sigma"]
            C.log(f"{name} {tag}: {json.dumps(found[f'{name}_{tag}'])}")
        found[f"{name}_value_gap"] = float(np.abs(sigma["a"] - sigma["b"]).max()
                                           / sigma["a"][:, 0].max())
    if args.breakdown:
        found["breakdown"] = breakdown(h, args.device)
    print(json.dumps(found, indent=1))
    if args.out:
        args.out.write_text(json.dumps(found, indent=1))


if __name__ == "__main__":
    sys.exit(main())
