"""The block Lanczos re-orthogonalisation products on a GPU: one product against split-K.

``python benchmarks/bench_gpu_projection.py --out DIR`` (CUDA only) times, for ``F`` filters
at length ``n`` with a basis ``B`` of ``m`` rows each (``(F, m, n)``, float64) and a block
``W`` of 4 rows, the projection ``W B^T`` (a reduction over ``n``) as one batched product
(what `mor.torch._spectrum` did through the twelfth session, and still does for batches of
more than `SPLIT_MAX_FILTERS` filters) and split into chunks of ``n`` (one batched product
per filter over strided views, summed: `mor.torch._spectrum._inner`, run with each chunk
size), beside the update ``C B``. Per case: time, the basis read rate (``8 F m n`` bytes over
the time), whether the split form allocates more than its partial sums (a copy of the basis
would show as ``8 F m n`` bytes), and the largest difference between the two forms relative
to the product's scale. Prints one line per case and writes ``DIR/bench_gpu_projection.json``
(device, torch, command); the H100 figures are in
``results/bench_gpu_projection_h100.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mor.torch import _spectrum  # noqa: E402


def timed(fn, repeats=5):
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        result = fn()
    torch.cuda.synchronize()
    return result, (time.perf_counter() - start) / repeats


def measure(n: int, filters: int, m: int, chunks: list[int], device) -> dict:
    """One case: the one product, the update and each chunk size of the split, timed."""
    capacity = m + 64  # the basis has room to grow: the products see its first `m` rows
    basis = torch.randn((filters, capacity, n), dtype=torch.float64, device=device)[:, :m]
    w = torch.randn((filters, 4, n), dtype=torch.float64, device=device)
    c = torch.randn((filters, 4, m), dtype=torch.float64, device=device)
    reference, t_one = timed(lambda: w @ basis.transpose(1, 2))
    _, t_update = timed(lambda: c @ basis)
    volume = 8 * filters * m * n
    row = {"n": n, "filters": filters, "basis": m, "one_product_s": t_one,
           "one_product_tbs": volume / t_one / 1e12, "update_s": t_update,
           "update_tbs": volume / t_update / 1e12, "split": []}
    scale = float(reference.abs().max())
    saved = _spectrum.PROJECTION_CHUNK, _spectrum.SPLIT_MAX_FILTERS
    _spectrum.SPLIT_MAX_FILTERS = filters
    try:
        for chunk in chunks:
            _spectrum.PROJECTION_CHUNK = chunk
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            result, t_split = timed(lambda: _spectrum._inner(w, basis))
            extra = torch.cuda.max_memory_allocated(device) - before
            row["split"].append({"chunk": chunk, "s": t_split, "tbs": volume / t_split / 1e12,
                                 "extra_bytes": extra, "basis_bytes": volume,
                                 "rel_diff": float((result - reference).abs().max()) / scale})
    finally:
        _spectrum.PROJECTION_CHUNK, _spectrum.SPLIT_MAX_FILTERS = saved
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--chunks", type=int, nargs="+", default=[1 << 12, 1 << 14, 1 << 16])
    args = parser.parse_args()
    device = torch.device("cuda")
    rows = []
    for n, filters, m in [((1 << 18) - 1, 8, 512), ((1 << 20) - 1, 2, 512),
                          ((1 << 20) - 1, 4, 512), ((1 << 20) - 1, 8, 448)]:
        rows.append(measure(n, filters, m, args.chunks, device))
        print(json.dumps(rows[-1]), flush=True)
        torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info(device)
    meta = {"device": torch.cuda.get_device_name(device), "torch": torch.__version__,
            "free_bytes": free, "total_bytes": total, "command": " ".join(sys.argv),
            "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_gpu_projection.json").write_text(json.dumps(meta, indent=1))

if __name__ == "__main__":
    main()
