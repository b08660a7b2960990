"""Long filters on the GPU: the Hankel spectrum and balanced truncation through torch (issue 22).

Issue 22's Hyena-like filters (`_common.long_filters`: twelve damped cosines and a decaying
noise floor, float32 taps) at L = 2^16, 2^18 and 2^20. Two parts, one file of results:

- ``--part gpu --out DIR`` (on the GPU machine): per length, a batch of filters; the time per
  filter of ``mor.hankel_singular_values(h, 64, device="cuda")`` (block Lanczos in float64,
  each value certified to 1e-11 sigma_1) and of ``mor.reduce(h, 32, device="cuda")`` (balanced
  truncation to order 32, certified to 1e-10), without and with the default error report
  (which runs on the CPU; on the first 8 filters); the peak GPU memory; the time per Hankel
  product (a block of 16 vectors for every filter of a batch) against torch's own batched
  float64
  ``irfft(rfft(x, 2L) * H, 2L)`` of as many vectors; the values and models, to ``DIR``.
- ``--part cpu`` (on the 2-core development machine): the same filters, a sample (16 per
  length): the CPU path's time per filter on one core (the 2-core throughput is two filters
  in that time), its values and models, to ``results/``.
- ``--part distill --out DIR`` (on the GPU machine): a whole model, `DISTILL_FILTERS` filters
  of 2^20 taps (the last of ``--lengths``; seeds 0..2047, written to ``DIR/filters.npy`` by
  the machine's cores, not timed), through ``mor distill --order 32 --device cuda
  --shards``: stopped after ``--interrupt`` seconds (killed, as a lost machine would be),
  then ``--resume``d (``--interrupt 0``: one run, not killed); the runs' wall times (and
  each run's time inside `distill`, by the CLI's clock) and the report's figures to
  ``DIR/bench_gpu_long_distill.json``. Before them, in a process of its own, the model's
  first chunk is timed in its parts (`chunk_part`), so that the figures say whether the
  device or the CPU's error report limits the model. While the CLI runs, ``nvidia-smi``
  samples the device's utilisation (the share of each sample period in which a kernel ran)
  every `SAMPLE_MS`: its integral over the runs is the device's busy time (`busy_seconds`).
- ``--part report --gpu DIR`` (here): the agreement on the sample (largest value difference
  relative to sigma_1; the ``hinf`` of either model against the filter) and the section of
  ``RESULTS.md``.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
import mor  # noqa: E402
from mor.analysis.compare import model_errors  # noqa: E402

NAME = "bench_gpu_long"
#: (length, filters on the GPU); the CPU takes the first `CPU_SAMPLE` of each.
SIZES = ((1 << 12, 16), (1 << 16, 64), (1 << 18, 32), (1 << 20, 16))
#: Filters whose reduction is timed with the default error report (which runs on the CPU).
REPORTED = 8
CPU_SAMPLE = 16
VALUES, ORDER = 64, 32
#: The whole model of ``--part distill`` (its taps: the last of ``--lengths``): filters,
#: filters per chunk (shard).
DISTILL_FILTERS, DISTILL_CHUNK = 2048, 64
#: Milliseconds between the utilisation samples of ``--part distill``.
SAMPLE_MS = 200


def gpu_part(out: Path, sizes, device: str = "cuda") -> None:
    import torch

    import mor.torch  # noqa: F401  (registers device="cuda")
    from mor.torch._spectrum import BLOCK, hankel_blocks, hankel_product, hankel_spectrum
    from mor.warmup import warmup

    device = torch.device(device)
    on_cuda = device.type == "cuda"
    sync = C.device_sync(device)

    def peak():
        return torch.cuda.max_memory_allocated(device) if on_cuda else 0

    def reset():
        if on_cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)

    def clock(fn):
        sync()
        start = time.perf_counter()
        result = fn()
        sync()
        return result, time.perf_counter() - start

    # every Numba kernel, serial and threaded (`mor warmup`: on a fresh machine the report's
    # first uses compiled for 3-7 s each, inside the timed runs), cuFFT plans, cuSOLVER handles
    warmup()
    warm = C.long_filters(1 << 14, 16)
    mor.reduce(warm, 8, device=device)
    mor.hankel_singular_values(warm, 8, device=device)
    def product_times(h):
        """One Hankel product of a block for every filter of a batch of 8, and torch's own
        batched FFT pair of as many vectors: seconds (the second of two runs each)."""
        length = h.shape[1]
        part = torch.as_tensor(h[:8], device=device)
        spectrum = hankel_spectrum(part)
        x = torch.randn((8, BLOCK, length - 1), dtype=torch.float64, device=device)
        flat = x.reshape(-1, length - 1)
        kernel = torch.fft.rfft(part[:1, 1:], n=2 * length)
        times = []
        for product in (lambda: hankel_product(spectrum, x),
                        lambda: torch.fft.irfft(torch.fft.rfft(flat, n=2 * length) * kernel,
                                                n=2 * length)):
            times.append([clock(product)[1] for _ in range(2)][-1])
        return times

    rows, arrays = [], {}
    for length, count in sizes:
        h = C.long_filters(length, count)
        t_product, t_torch = product_times(h)
        reset()
        sigma, t_values = clock(lambda: mor.hankel_singular_values(h, VALUES, device=device))
        peak_values = peak()
        reset()
        bare, t_bt = clock(lambda: mor.reduce(h, ORDER, device=device, errors=()))
        peak_bt = peak()
        full, t_report = clock(lambda: mor.reduce(h[:REPORTED], ORDER, device=device))
        basis = hankel_blocks(h[:8], VALUES, rtol=1e-11, device=device)["basis"]
        vectors = 8 * BLOCK
        rows.append({"length": length, "filters": count,
                     "values_s_per_filter": t_values / count,
                     "bt_s_per_filter": t_bt / count,
                     "bt_with_report_s_per_filter": t_report / min(count, REPORTED),
                     "peak_gib_values": peak_values / 2**30, "peak_gib_bt": peak_bt / 2**30,
                     "product_ms_per_vector": 1e3 * t_product / vectors,
                     "torch_fft_ms_per_vector": 1e3 * t_torch / vectors,
                     "hinf_max": float(full.info["hinf"].max()),
                     "basis_vectors_top64": int(basis.max())})
        C.log(json.dumps(rows[-1]))
        arrays[f"sigma_{length}"] = sigma
        pc, rc, dc = bare.compact()
        arrays[f"poles_{length}"], arrays[f"residues_{length}"] = pc, rc
        arrays[f"direct_{length}"] = dc
        # written after each length: a run cut short keeps what it measured
        meta = {"device": torch.cuda.get_device_name(device) if on_cuda else "cpu (torch)",
                "torch": torch.__version__,
                "cuda": torch.version.cuda, "date": C.now(), "command": C.command()}
        out.mkdir(parents=True, exist_ok=True)
        np.savez(out / f"{NAME}.npz", **arrays)
        (out / f"{NAME}_gpu.json").write_text(json.dumps({"meta": meta, "rows": rows},
                                                         indent=1))


def _write_rows(path: Path, first: int, count: int) -> None:
    rows = np.load(path, mmap_mode="r+")
    rows[first:first + count] = C.long_filters(rows.shape[1], count, first)
    rows.flush()


def chunk_part(filters: Path, device: str) -> dict:
    """The first chunk of a model as `mor.distill` runs it on ``device`` (balanced truncation
    to `ORDER` with the error report, after a warm-up on two filters), timed in its parts:
    the error report (`mor.drivers.reduction._errors`, on the CPU in the threads a chunk of
    `mor.drivers.distillation.DEVICE_CHUNKS_IN_FLIGHT` gets) and the rest (the device's
    decomposition and the realisation). Returns seconds per chunk."""
    import numba

    import mor.torch  # noqa: F401  (registers device=)
    from mor.drivers import reduction
    from mor.drivers.distillation import DEVICE_CHUNKS_IN_FLIGHT
    threads = max(1, (os.cpu_count() or 1) // DEVICE_CHUNKS_IN_FLIGHT)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    h = np.load(filters, mmap_mode="r")[:DISTILL_CHUNK].astype(np.float64)
    sync = C.device_sync(device)
    mor.reduce(h[:2], ORDER, method="balanced", device=device)
    reporting = [0.0]
    errors = reduction._errors

    def timed_errors(*args, **kwargs):
        start = time.perf_counter()
        try:
            return errors(*args, **kwargs)
        finally:
            reporting[0] += time.perf_counter() - start

    reduction._errors = timed_errors
    try:
        sync()
        start = time.perf_counter()
        mor.reduce(h, ORDER, method="balanced", device=device)
        sync()
        total = time.perf_counter() - start
    finally:
        reduction._errors = errors
    return {"filters": h.shape[0], "length": h.shape[1], "threads": threads, "total_s": total,
            "report_s": reporting[0], "decomposition_s": total - reporting[0]}


def distill_part(out: Path, count: int, length: int, interrupt: float,
                 device: str = "cuda") -> None:
    """A whole model through the CLI on the device, killed after ``interrupt`` seconds and
    resumed from its shards; ``mor warmup`` (the set-up step that compiles mor's Numba
    kernels into their cache) runs while the filters are written, before the clock starts."""
    out.mkdir(parents=True, exist_ok=True)
    filters = out / "filters.npy"
    warmup = subprocess.Popen([sys.executable, "-c", "from mor.cli import main; main()",
                               "warmup"], stdout=subprocess.DEVNULL)
    start = time.perf_counter()
    np.lib.format.open_memmap(filters, mode="w+", dtype=np.float32,
                              shape=(count, length)).flush()
    with ProcessPoolExecutor() as pool:
        list(pool.map(_write_rows, [filters] * (count // DISTILL_CHUNK),
                      range(0, count, DISTILL_CHUNK), [DISTILL_CHUNK] * (count // DISTILL_CHUNK)))
    C.log(f"{count} filters of {length} taps written in {time.perf_counter() - start:.0f} s")
    if warmup.wait():
        raise SystemExit("mor warmup failed")
    # its own process: the CLI's batches are sized from the device memory this one leaves
    probe = subprocess.run([sys.executable, __file__, "--part", "chunk", "--out", str(out),
                            "--device", device], capture_output=True, text=True, check=True)
    chunk = json.loads(probe.stdout)
    C.log(f"one chunk: {json.dumps(chunk)}")
    command = [sys.executable, "-c", "from mor.cli import main; main()", "distill",
               str(filters), "--order", str(ORDER), "--device", device, "--chunk-size",
               str(DISTILL_CHUNK), "--shards", str(out / "shards"), "--out",
               str(out / "bank.npz"), "--report", str(out / "report")]
    # as a user runs it: not pinned to one thread (this script's default)
    env = {key: value for key, value in os.environ.items()
           if key not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    runs = []
    plan = [([], None)] if interrupt <= 0 else [([], interrupt), (["--resume"], None)]
    samples = out / "utilisation.csv"
    sampler = _utilisation_sampler(samples, device)
    for extra, limit in plan:
        start = time.perf_counter()
        try:
            done = subprocess.run(command + extra, timeout=limit, capture_output=True,
                                  text=True, env=env)
            ended = f"exit {done.returncode}"
            tail = (done.stdout + done.stderr)[-3000:]
        except subprocess.TimeoutExpired as stopped:
            ended, tail = "killed", (stopped.stderr or b"").decode()[-600:]
        inside = re.search(r"filters in ([0-9.]+) s", tail)  # the CLI's own clock
        runs.append({"args": extra, "wall_s": time.perf_counter() - start, "ended": ended,
                     "distill_s": float(inside.group(1)) if inside else None,
                     "shards_after": len(list((out / "shards").glob("chunk_*.npz")))})
        C.log(json.dumps(runs[-1]))
        print(tail, flush=True)
    busy = None
    if sampler is not None:
        sampler.terminate()
        sampler.wait()
        busy = busy_seconds(samples.read_text())
        C.log(f"device busy {json.dumps(busy)}")
    report = json.loads((out / "report" / "report.json").read_text())
    import torch
    on_cuda = torch.device(device).type == "cuda"
    meta = {"device": torch.cuda.get_device_name(device) if on_cuda else "cpu (torch)",
            "torch": torch.__version__,
            "cuda": torch.version.cuda, "date": C.now(), "command": C.command(),
            "cli": " ".join(command[3:])}
    (out / f"{NAME}_distill.json").write_text(json.dumps(
        {"meta": meta, "filters": count, "length": length, "order": ORDER,
         "chunk": DISTILL_CHUNK, "first_chunk": chunk, "runs": runs,
         "total_wall_s": sum(r["wall_s"] for r in runs), "device_busy": busy,
         "summary": report.get("summary")}, indent=1, default=str))
    filters.unlink()


def _utilisation_sampler(path: Path, device: str):
    """``nvidia-smi`` writing the device's utilisation every `SAMPLE_MS` into ``path``
    (``timestamp, percent`` lines), or None where the device is not CUDA or there is no
    ``nvidia-smi``."""
    import torch
    tool = shutil.which("nvidia-smi")
    device = torch.device(device)
    if device.type != "cuda" or tool is None:
        return None
    with path.open("w") as sink:  # the child holds its own descriptor
        return subprocess.Popen([tool, f"--id={device.index or 0}",
                                 "--query-gpu=timestamp,utilization.gpu",
                                 "--format=csv,noheader,nounits", f"--loop-ms={SAMPLE_MS}"],
                                stdout=sink, stderr=subprocess.DEVNULL)


def busy_seconds(samples: str) -> dict:
    """The device's busy time from ``nvidia-smi``'s utilisation samples (``timestamp,
    percent`` lines): the sum of each sample's share times the time since the one before,
    and the span sampled."""
    rows = [line.split(",") for line in samples.splitlines() if line.count(",") == 1]
    times = [datetime.strptime(stamp.strip(), "%Y/%m/%d %H:%M:%S.%f").timestamp()
             for stamp, _ in rows]
    shares = [float(percent) / 100 for _, percent in rows]
    busy = sum(share * (now - before)
               for share, before, now in zip(shares[1:], times, times[1:]))
    return {"busy_s": busy, "span_s": times[-1] - times[0] if times else 0.0,
            "samples": len(rows), "every_ms": SAMPLE_MS}


def cpu_part(sizes) -> None:
    """The CPU path on `CPU_SAMPLE` filters per length, one core: times, values, models."""
    script_start = time.perf_counter()
    C.pin_threads()
    mor.reduce(C.long_filters(4096, 2), 8)  # warm-up (numba kernels)
    rows, arrays = [], {}
    for length, _ in sizes:
        h = C.long_filters(length, CPU_SAMPLE)
        start = time.perf_counter()
        arrays[f"sigma_{length}"] = mor.hankel_singular_values(h, VALUES)
        t_values = (time.perf_counter() - start) / CPU_SAMPLE
        start = time.perf_counter()
        model = mor.reduce(h, ORDER, errors=())
        t_bt = (time.perf_counter() - start) / CPU_SAMPLE
        poles, residues, direct = model.compact()
        arrays.update({f"poles_{length}": poles, f"residues_{length}": residues,
                       f"direct_{length}": direct})
        rows.append({"length": length, "cpu_values_s_per_filter": t_values,
                     "cpu_bt_s_per_filter": t_bt})
        C.log(json.dumps(rows[-1]))
    C.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(C.RESULTS_DIR / f"{NAME}_cpu.npz", **arrays)
    C.write_json(NAME + "_cpu", {"meta": C.metadata(script_start), "rows": rows})


def report_part(gpu: Path) -> None:
    """The GPU part's results beside the CPU part's: the agreement on the CPU's sample (the
    ``hinf`` of both models against the filters, here) and the section of RESULTS.md."""
    script_start = time.perf_counter()
    C.pin_threads()
    found = json.loads((gpu / f"{NAME}_gpu.json").read_text())
    on_gpu = np.load(gpu / f"{NAME}.npz")
    cpu_rows = {r["length"]: r for r in json.loads(
        (C.RESULTS_DIR / f"{NAME}_cpu.json").read_text())["rows"]}
    cpu = np.load(C.RESULTS_DIR / f"{NAME}_cpu.npz")
    rows = []
    for row in found["rows"]:
        length = row["length"]
        if length not in cpu_rows:
            continue
        h = C.long_filters(length, CPU_SAMPLE)
        values = cpu[f"sigma_{length}"]
        # the hinf error of either model, with the CPU path's values for the bounds beside it
        # (`mor.compare` would compute them again: 38 s a filter at 2^20)
        hinf = []
        for src in (on_gpu, cpu):
            compact = [src[f"{part}_{length}"][:CPU_SAMPLE]
                       for part in ("poles", "residues", "direct")]
            order = mor.ModalSSM.from_compact(*compact).order
            hinf.append(model_errors(h, *compact, order, values, norms=("hinf",))["hinf"])
        gap = np.abs(on_gpu[f"sigma_{length}"][:CPU_SAMPLE] - values).max(axis=1) / values[:, 0]
        merged = {**row, **cpu_rows[length]}
        both = merged["cpu_values_s_per_filter"] + merged["cpu_bt_s_per_filter"]
        gpu_both = row["values_s_per_filter"] + row["bt_s_per_filter"]
        rows.append({**merged, "speedup_vs_2_cores": both / (2 * gpu_both),
                     "sigma_gap_max": float(gap.max()),
                     "hinf_rel_diff_max": float(np.abs(hinf[0] / hinf[1] - 1).max())})
        C.log(json.dumps(rows[-1]))
    meta = C.metadata(script_start, gpu=found["meta"])
    report = render(meta, rows)
    model = gpu / f"{NAME}_distill.json"
    if model.exists():
        report += render_distill(json.loads(model.read_text()))
    print(report)
    C.write_json(NAME, {"meta": meta, "rows": rows})
    C.log(f"wrote {C.write_section(NAME, report)}")


def render(meta: dict, rows: list[dict]) -> str:
    gpu = meta["gpu"]
    lines = [
        f"## Long filters on the GPU: Hankel spectrum and balanced truncation (`{NAME}.py`)",
        "",
        f"- GPU part: {gpu['date']}, {gpu['device']}, torch {gpu['torch']} (CUDA "
        f"{gpu['cuda']}); command `{gpu['command']}`",
        f"- CPU part and agreement: {meta['date']}, {meta['machine']['cpu']} "
        f"({meta['machine']['nproc']} cores, Python {meta['machine']['python']}), one core; "
        f"commands "
        f"`python benchmarks/{NAME}.py --part cpu` and `{meta['command']}`",
        "",
        "Issue 22's filters (seeds 0..F-1). Top 64 Hankel values (`device=\"cuda\"`, block "
        "Lanczos in float64, certified to 1e-11 sigma_1) and balanced truncation to order 32 "
        "(`mor.reduce`'s certificate: values to `max(1e-10 sigma_1, 1e-3 sigma_33)`, vectors' "
        "residuals to 1e-7 sigma_1), time per filter; the CPU path on a sample of 16 of the same "
        "filters, one core; speed-up: the CPU's 2-core throughput (two filters at a time) "
        "against the GPU's, both operations together. Agreement on the sample: the largest "
        "value difference relative to sigma_1 and the relative difference of the two models' "
        "`hinf`. Product: one Hankel product per vector (a Lanczos block for each of 8 filters) "
        "against torch's own batched float64 `irfft(rfft(x, 2L) * H, 2L)` of as many vectors.",
        "",
        "| L | GPU filters | values s/filter (GPU / CPU) | BT s/filter (GPU / CPU) | BT with "
        "report s/filter (GPU) | speed-up vs 2 cores | peak GiB (values / BT) | product ms/vector "
        "(mor / torch FFT) | value gap / sigma_1 | hinf rel. diff |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| 2^{int(np.log2(r['length']))} | {r['filters']} | "
            f"{r['values_s_per_filter']:.3f} / {r['cpu_values_s_per_filter']:.2f} | "
            f"{r['bt_s_per_filter']:.3f} / {r['cpu_bt_s_per_filter']:.2f} | "
            f"{r['bt_with_report_s_per_filter']:.3f} | "
            f"{r['speedup_vs_2_cores']:.{0 if r['speedup_vs_2_cores'] >= 10 else 2}f}x | "
            f"{r['peak_gib_values']:.1f} / {r['peak_gib_bt']:.1f} | "
            f"{r['product_ms_per_vector']:.3f} / {r['torch_fft_ms_per_vector']:.3f} | "
            f"{r['sigma_gap_max']:.1e} | {r['hinf_rel_diff_max']:.1e} |")
    return "\n".join(lines) + "\n"


def render_distill(found: dict) -> str:
    """The whole-model run of ``--part distill``."""
    runs, meta = found["runs"], found["meta"]
    layer = found["summary"][0]
    parts = " + ".join(f"{r['wall_s']:.0f} s ({'resumed, ' if r['args'] else ''}{r['ended']}, "
                       f"{r['shards_after']} shards after"
                       + (f", {r['distill_s']:.0f} s inside `distill` by the CLI's clock"
                          if r.get("distill_s") else "") + ")" for r in runs)
    return "\n".join([
        "",
        f"A whole model ({meta['date']}, {meta['device']}, torch {meta['torch']}): "
        f"{found['filters']} filters of 2^{int(np.log2(found['length']))} taps distilled to "
        f"order {found['order']} with the error report, `mor {meta['cli']}`"
        f"{', killed once and resumed' if len(runs) > 1 else ', in one run'}: "
        f"{found['total_wall_s']:.0f} s in all, {parts}, every process start, file "
        f"read and the report's figures included; {layer['failed']} failed, {layer['missed']} "
        f"missed, median l2 {layer['l2_median']:.1e}, median hinf {layer['hinf_median']:.1e}."
        + ("" if not found.get("device_busy") else
           f" The device was busy {found['device_busy']['busy_s']:.0f} s of the "
           f"{found['device_busy']['span_s']:.0f} s sampled (nvidia-smi's utilisation, the "
           f"share of each {found['device_busy']['every_ms']} ms in which a kernel ran, "
           f"integrated)."),
        *([] if "first_chunk" not in found else [
            f"Its first chunk alone ({found['first_chunk']['filters']} filters): the "
            f"decomposition {found['first_chunk']['decomposition_s']:.1f} s, the error report "
            f"{found['first_chunk']['report_s']:.1f} s more on "
            f"{found['first_chunk']['threads']} CPU threads."]),
        ""])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("gpu", "cpu", "distill", "chunk", "report"),
                        required=True)
    parser.add_argument("--out", type=Path, help="gpu: where the results go")
    parser.add_argument("--gpu", type=Path, help="report: the GPU part's results")
    parser.add_argument("--device", default="cuda", help="gpu: the torch device")
    parser.add_argument("--lengths", type=int, nargs="+",
                        default=[size for size, _ in SIZES])
    parser.add_argument("--filters", type=int, default=DISTILL_FILTERS,
                        help="distill: filters of the model (a multiple of the chunk)")
    parser.add_argument("--interrupt", type=float, default=60.0,
                        help="distill: seconds before the first run is killed (0: one run, "
                             "not killed)")
    args = parser.parse_args()
    sizes = [(size, count) for size, count in SIZES if size in args.lengths]
    if args.part == "gpu":
        gpu_part(args.out, sizes, args.device)
    elif args.part == "cpu":
        cpu_part(sizes)
    elif args.part == "distill":
        distill_part(args.out, args.filters, args.lengths[-1], args.interrupt, args.device)
    elif args.part == "chunk":  # run by the distill part, on its filters
        print(json.dumps(chunk_part(args.out / "filters.npy", args.device)))
    else:
        report_part(args.gpu)


if __name__ == "__main__":
    main()
