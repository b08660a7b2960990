"""The block Lanczos re-orthogonalisation products on a GPU: Triton kernels against torch.

``python benchmarks/bench_gpu_projection.py --out DIR`` (CUDA only) times, for ``F`` filters
at length ``n`` with a basis ``B`` of ``m`` rows each (``(F, m, n)`` float64, and its float32
copy ``R``) and a block ``W`` of 4 rows, the two products of a Gram-Schmidt pass as
`mor.torch._spectrum` runs them (`mor.torch._row_products`) beside what torch offers:

- the projection ``W B^T`` (a reduction over ``n``): `_row_products.inner` against one
  batched product and against the split into chunks of ``n`` (one batched product per filter
  over strided views, summed: what `_spectrum` ran from the thirteenth to the fifteenth
  session);
- the update ``W - C R``: `_row_products.subtract_combination` (in place, the combination in
  float64) against ``W - C.float() @ R``.

With ``--sweep``, each kernel is also timed with other tile shapes (`SWEEP`: the module's
constants set in turn) on the last case.

Per case: time, the basis read rate (``8 F m n`` bytes for the projection, ``4 F m n`` for
the update, over the time), the ratio to the best torch form, and the largest difference
relative to the product's scale. Prints one line per case and writes
``DIR/bench_gpu_projection.json`` (device, torch, command).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mor.torch import _row_products  # noqa: E402

#: Columns per chunk of the per-filter split (its best on an H100, thirteenth session).
SPLIT_CHUNK = 1 << 14
#: ``--sweep``: (block of basis rows, block of columns, warps) for `_row_products.inner` and
#: for `_row_products.subtract_combination` (all compile for sm_90 without spilling).
SWEEP = {"INNER": [(16, 64, 4), (16, 64, 8), (32, 32, 4), (8, 128, 4), (16, 128, 8)],
         "UPDATE": [(8, 128, 4), (16, 128, 4), (32, 128, 4), (16, 256, 4), (16, 512, 8),
                    (4, 256, 4), (8, 256, 8), (4, 512, 8), (8, 512, 8), (16, 256, 8),
                    (32, 64, 4), (16, 64, 2)]}


def timed(fn, repeats=5):
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        result = fn()
    torch.cuda.synchronize()
    return result, (time.perf_counter() - start) / repeats


def split_product(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x @ y^T`` with the reduction over ``n`` split into chunks, one product per filter."""
    n = x.shape[2]
    head = n - n % SPLIT_CHUNK
    parts = []
    for xi, yi in zip(x, y):
        split = (head // SPLIT_CHUNK, SPLIT_CHUNK)
        part = torch.bmm(xi[:, :head].unflatten(1, split).transpose(0, 1),
                         yi[:, :head].unflatten(1, split).permute(1, 2, 0)).sum(dim=0)
        parts.append(part + xi[:, head:] @ yi[:, head:].T)
    return torch.stack(parts)


def measure(n: int, filters: int, m: int, device) -> dict:
    capacity = m + 64  # the basis has room to grow: the products see its first `m` rows
    basis = torch.randn((filters, capacity, n), dtype=torch.float64, device=device)[:, :m]
    rounded = basis.float()
    w = torch.randn((filters, 4, n), dtype=torch.float64, device=device)
    c = torch.randn((filters, 4, m), dtype=torch.float64, device=device) * 1e-12
    row = {"n": n, "filters": filters, "basis": m}
    volume = 8 * filters * m * n
    reference, row["projection_one_product_s"] = timed(lambda: w @ basis.transpose(1, 2))
    split, row["projection_split_s"] = timed(lambda: split_product(w, basis))
    ours, row["projection_triton_s"] = timed(lambda: _row_products.inner(w, basis))
    scale = float(reference.abs().max())
    row["projection_triton_rel_diff"] = float((ours - reference).abs().max()) / scale
    row["projection_split_rel_diff"] = float((split - reference).abs().max()) / scale
    for form in ("one_product", "split", "triton"):
        row[f"projection_{form}_tbs"] = volume / row[f"projection_{form}_s"] / 1e12
    row["projection_speedup"] = min(row["projection_one_product_s"],
                                    row["projection_split_s"]) / row["projection_triton_s"]
    want, row["update_torch_s"] = timed(lambda: w - c.to(torch.float32) @ rounded)
    target = w.clone()
    _, row["update_triton_s"] = timed(
        lambda: _row_products.subtract_combination(target, c, rounded))
    target = w.clone()
    _row_products.subtract_combination(target, c, rounded)
    row["update_triton_rel_diff"] = float((target - want).abs().max()) / float(
        (w - want).abs().max())
    for form in ("torch", "triton"):
        row[f"update_{form}_tbs"] = volume / 2 / row[f"update_{form}_s"] / 1e12
    row["update_speedup"] = row["update_torch_s"] / row["update_triton_s"]
    return row


def sweep(n: int, filters: int, m: int, device) -> list[dict]:
    """Each kernel with each tile shape of `SWEEP`: time and basis read rate."""
    basis = torch.randn((filters, m, n), dtype=torch.float64, device=device)
    rounded = basis.float()
    w = torch.randn((filters, 4, n), dtype=torch.float64, device=device)
    c = torch.randn((filters, 4, m), dtype=torch.float64, device=device) * 1e-12
    volume = 8 * filters * m * n
    rows = []
    for kernel, shapes in SWEEP.items():
        saved = [getattr(_row_products, f"{kernel}_{name}")
                 for name in ("BLOCK_J", "BLOCK_T", "WARPS")]
        try:
            for shape in shapes:
                for name, value in zip(("BLOCK_J", "BLOCK_T", "WARPS"), shape):
                    setattr(_row_products, f"{kernel}_{name}", value)
                if kernel == "INNER":
                    _, seconds = timed(lambda: _row_products.inner(w, basis))
                    rate = volume / seconds / 1e12
                else:
                    _, seconds = timed(
                        lambda: _row_products.subtract_combination(w, c, rounded))
                    rate = volume / 2 / seconds / 1e12
                rows.append({"kernel": kernel, "shape": shape, "s": seconds, "tbs": rate})
                print(json.dumps(rows[-1]), flush=True)
        finally:
            for name, value in zip(("BLOCK_J", "BLOCK_T", "WARPS"), saved):
                setattr(_row_products, f"{kernel}_{name}", value)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sweep", action="store_true", help="other tile shapes (`SWEEP`)")
    args = parser.parse_args()
    device = torch.device("cuda")
    _, total = torch.cuda.mem_get_info(device)
    cases = [((1 << 16) - 1, 64, 512), ((1 << 18) - 1, 32, 512), ((1 << 20) - 1, 4, 512),
             ((1 << 20) - 1, 8, 256)] + ([((1 << 20) - 1, 16, 512)] if total > 100e9 else [])
    rows = []
    for n, filters, m in cases:
        rows.append(measure(n, filters, m, device))
        print(json.dumps(rows[-1]), flush=True)
        torch.cuda.empty_cache()
    meta = {"device": torch.cuda.get_device_name(device), "torch": torch.__version__,
            "total_bytes": total, "command": " ".join(sys.argv), "rows": rows}
    if args.sweep:
        meta["sweep"] = sweep(*cases[-1], device)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_gpu_projection.json").write_text(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
