"""Deflation of the device Lanczos against full re-orthogonalisation, side by side (issue 22).

`mor.torch._spectrum.hankel_blocks` on issue 22's filters (`_common.long_filters`), both
ways in one process on the same filters: ``deflate=False`` (every block step re-orthogonalised
against the whole basis) and ``deflate=True`` (the dominant pairs locked, then partial
re-orthogonalisation by the loss estimate). For the top 64 values (to 1e-11 sigma_1) and
balanced truncation's 33 pairs (to 1e-10 sigma_1 and 1e-3 sigma_33, with vectors): seconds a
filter (the second of two rounds), the ratio, the Hankel products per filter, the block steps
re-orthogonalised (per filter, after the lock) and the values' largest difference relative to
sigma_1. Results in ``results/bench_gpu_deflation.json`` (replaced per length).

Run on the GPU machine: ``python benchmarks/bench_gpu_deflation.py --power 20 --filters 8``.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import _common as C  # noqa: E402

NAME = "bench_gpu_deflation"
PARTS = {"values": (64, {"rtol": 1e-11, "vectors": False}),
         "bt": (33, {"rtol": 1e-10, "kth_rtol": 1e-3})}


def compare(h: np.ndarray, device: str) -> list[dict]:
    from mor.torch import _spectrum
    estimates = []
    made = _spectrum.LossEstimate
    _spectrum.LossEstimate = lambda *args: estimates.append(made(*args)) or estimates[-1]
    sync = C.device_sync(device)
    rows = []
    try:
        for part, (k, options) in PARTS.items():
            seconds, out = {}, {}
            for deflate in (False, True, False, True):  # the second round of each counts
                estimates.clear()
                sync()
                start = time.perf_counter()
                out[deflate] = _spectrum.hankel_blocks(h, k, device=device, deflate=deflate,
                                                       **options)
                sync()
                seconds[deflate] = (time.perf_counter() - start) / len(h)
            full, deflated = out[False], out[True]
            rows.append({"length": h.shape[1], "filters": len(h), "part": part,
                         "full_s_per_filter": seconds[False],
                         "deflated_s_per_filter": seconds[True],
                         "speedup": seconds[False] / seconds[True],
                         "full_products": full["basis"].tolist(),
                         "deflated_products": deflated["basis"].tolist(),
                         "steps_reorthogonalised": [e.passes.tolist() for e in estimates],
                         "steps": [e.steps for e in estimates],
                         "value_gap": float((np.abs(full["sigma"] - deflated["sigma"]).max(1)
                                             / full["sigma"][:, 0]).max()),
                         "bound_max": float(deflated["bound"].max())})
            C.log(json.dumps(rows[-1]))
    finally:
        _spectrum.LossEstimate = made
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--power", type=int, default=20, help="L = 2^power taps")
    parser.add_argument("--filters", type=int, default=8)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    script_start = time.perf_counter()
    from mor.torch._spectrum import hankel_blocks
    warm = C.long_filters(1 << 14, 4)
    for k, options in PARTS.values():  # kernels compiled, cuFFT plans and handles made
        hankel_blocks(warm, k, device=args.device, deflate=True, **options)
    rows = compare(C.long_filters(1 << args.power, args.filters), args.device)
    path = C.RESULTS_DIR / f"{NAME}.json"
    kept = [r for r in json.loads(path.read_text())["rows"]
            if r["length"] != 1 << args.power] if path.exists() else []
    C.write_json(NAME, {"meta": C.metadata(script_start), "rows": kept + rows})


if __name__ == "__main__":
    main()
