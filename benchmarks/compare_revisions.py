"""The workloads of ``bench_balanced.py`` and ``bench_modal.py`` on two checkouts of mor, in
one run: are the errors and orders bit-identical, and how do the times compare?

For a change that must not move any number (a refactoring), run the reduction workloads of the
two benchmarks (the same functions, imported from each checkout's own ``benchmarks/``) on
checkout A and checkout B, alternating A, B, A, B in fresh processes so that a load on the
machine hits both alike, and compare:

* ``balanced``: ``mor.reduce(h, d, errors=())`` (`bench_balanced.mor_core`) on one shared filter
  cut to ``L = 1024`` at orders 4, 8, 16, 32, 64 (median of repeated calls), and
  ``mor.reduce`` with the full error report on all 1024 shared filters at order 32;
* ``modal``: `bench_modal.full_batch` (balanced truncation, Hankel-norm and modal fitting at
  ``modes=m`` for all 1024 shared filters, on the machine's cores) at 4, 8, 16 and 32 modes.

Every reported per-filter array (orders, ``l2``, ``tail``, ``hinf``, ``aak``, poles, residues)
must be equal bit for bit; times are reported as B / A ratios of the best of the repeats.

Run ``python benchmarks/compare_revisions.py A_DIR B_DIR [--repeats 2]`` with the thread
variables set to 1 (as in the other benchmarks). ``A_DIR`` is e.g. a ``git worktree`` of the
revision before the change.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

BT_ORDERS = (4, 8, 16, 32, 64)
MODES = (4, 8, 16, 32)


def _arrays(prefix: str, red) -> dict:
    poles, residues, direct = red.compact()
    out = {f"{prefix}/order": np.asarray(red.order), f"{prefix}/poles": poles,
           f"{prefix}/residues": residues, f"{prefix}/direct": direct}
    for key in ("l2", "tail", "hinf", "aak", "bt_bound"):
        if key in red.info:
            out[f"{prefix}/{key}"] = np.asarray(red.info[key], dtype=float)
    return out


def workload(out: Path, modes: tuple[int, ...] = MODES) -> None:
    """Run in a child whose ``sys.path`` starts with one checkout: arrays and times to ``out``
    (the modal part at ``modes``)."""
    import _common as C
    import bench_balanced
    import bench_modal
    import mor

    C.pin_threads()
    filters = C.load_filters()
    flat = filters.reshape(-1, filters.shape[-1])
    h = filters[0, 0, :1024].copy()
    mor.compare(h, mor.reduce(h, 4))  # warm-up (Numba kernels, FFT plans)
    arrays, times = {}, {}
    for d in BT_ORDERS:
        reps = []
        for _ in range(7):
            t0 = time.perf_counter()
            red = bench_balanced.mor_core(h, d)
            reps.append(time.perf_counter() - t0)
        times[f"balanced/order {d}"] = float(np.median(reps))
        arrays |= _arrays(f"balanced/order {d}", red)
    with C.mor_threads(C.cores()):
        mor.reduce(flat[:64], 32, on_fail="flag")  # warm-up on the threads the runs use
        t0 = time.perf_counter()
        red = mor.reduce(flat, 32, on_fail="flag")
        times["balanced/1024 filters, order 32, report"] = time.perf_counter() - t0
    arrays |= _arrays("balanced/batch", red)
    for m in modes:
        for name, res in bench_modal.full_batch(filters, m).items():
            times[f"modal/{m} modes/{name}"] = res["seconds"]
            for key in ("l2", "tail", "hinf", "aak"):
                arrays[f"modal/{m} modes/{name}/{key}"] = np.asarray(res[key], dtype=float)
    np.savez(out.with_suffix(".npz"), **arrays)
    out.with_suffix(".json").write_text(json.dumps(times))


def compare(a_dir: Path, b_dir: Path, repeats: int, modes: tuple[int, ...] = MODES) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="mor_compare_"))
    runs = {"A": [], "B": []}
    for rep in range(repeats):
        for tag, root in (("A", a_dir), ("B", b_dir)):
            out = tmp / f"{tag}{rep}"
            code = (f"import sys, importlib.util; sys.path[:0] = [{str(root)!r}, "
                    f"{str(root / 'benchmarks')!r}]; "
                    f"spec = importlib.util.spec_from_file_location('compare_revisions', "
                    f"{__file__!r}); mod = importlib.util.module_from_spec(spec); "
                    f"spec.loader.exec_module(mod); "
                    f"mod.workload(__import__('pathlib').Path({str(out)!r}), {tuple(modes)!r})")
            subprocess.run([sys.executable, "-c", code], check=True)
            runs[tag].append(out)
    a = np.load(runs["A"][0].with_suffix(".npz"))
    b = np.load(runs["B"][0].with_suffix(".npz"))
    lines = [f"A = {a_dir}", f"B = {b_dir}", ""]
    same = sorted(set(a.files) & set(b.files))
    differ = [k for k in same if not np.array_equal(a[k], b[k], equal_nan=True)]
    missing = sorted(set(a.files) ^ set(b.files))
    lines.append(f"arrays compared: {len(same)}; bit-identical: {len(same) - len(differ)}; "
                 f"differ: {differ or 'none'}; in one only: {missing or 'none'}")
    ta = [json.loads(p.with_suffix('.json').read_text()) for p in runs["A"]]
    tb = [json.loads(p.with_suffix('.json').read_text()) for p in runs["B"]]
    lines += ["", "| workload | A (s, best) | B (s, best) | B / A |", "|---|---|---|---|"]
    for key in ta[0]:
        x, y = min(t[key] for t in ta), min(t[key] for t in tb)
        lines.append(f"| {key} | {x:.4g} | {y:.4g} | {y / x:.3f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a_dir", type=Path)
    parser.add_argument("b_dir", type=Path)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--modes", type=int, nargs="+", default=list(MODES),
                        help="the modal part's sizes (default 4 8 16 32)")
    args = parser.parse_args()
    print(compare(args.a_dir.resolve(), args.b_dir.resolve(), args.repeats, tuple(args.modes)))


if __name__ == "__main__":
    main()
