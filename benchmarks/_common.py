"""Shared helpers of the benchmark scripts: timing, machine facts, tables, result files.

Import this only after the thread-pinning environment variables are set (the scripts set them
at their very top, before anything imports NumPy).
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
RESULTS_MD = ROOT / "benchmarks" / "RESULTS.md"
#: The shared trained filters; ``MOR_BENCH_DATA`` names another copy (the device machine
#: receives the checkout without ``../shared``).
DATA = Path(os.environ.get("MOR_BENCH_DATA",
                           ROOT.parent / "shared" / "data" / "hyena_filters.npz"))
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# Make `import mor` find this checkout's package whatever the working directory (an editable
# install made before mor/__init__.py existed resolves `mor` as an empty namespace package).
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def log(msg: str) -> None:
    """Progress to stderr (stdout carries the report)."""
    print(msg, file=sys.stderr, flush=True)


def pin_threads():
    """One BLAS/OpenMP thread (the env vars are set by the script; this also limits loaded
    pools) and one mor/Numba thread (the batch rows raise it with :class:`mor_threads`)."""
    import numba
    from threadpoolctl import threadpool_limits
    numba.set_num_threads(1)
    return threadpool_limits(1)


def device_sync(device):
    """A function that waits for the work queued on the torch ``device`` (CUDA), or does
    nothing (a CPU), for timing device code."""
    import torch
    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def load_filters():
    """The shared trained filters ``(4, 256, 2048)`` as float64."""
    import numpy as np
    if not DATA.exists():
        raise SystemExit(f"shared filters not found at {DATA}")
    return np.load(DATA)["filters"].astype(np.float64)


class mor_threads:
    """Context manager: let mor use ``n`` threads (Numba's thread count is mor's one knob for
    its parallelism; the scripts keep it at 1 except in the batch rows), then restore it."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        import numba
        self.saved = numba.get_num_threads()
        numba.set_num_threads(min(self.n, numba.config.NUMBA_NUM_THREADS))
        return self

    def __exit__(self, *exc):
        import numba
        numba.set_num_threads(self.saved)
        return False


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def mor_settings() -> dict:
    """mor's tolerances and thread use as found in the checkout (they may change)."""
    out = {"cores_visible": cores()}
    try:
        import mor.analysis.spectrum as mh
        out["hankel_krylov_rtol_default"] = getattr(mh, "KRYLOV_RTOL", None)
        out["hankel_dense_max_size"] = getattr(mh, "DENSE_MAX_SIZE", None)
        out["batch_threads"] = "numba.get_num_threads()"
    except ImportError:
        pass
    try:
        import mor.methods.balanced as mb
        out["bt_rtol_default"] = getattr(mb, "BT_RTOL", out.get("hankel_krylov_rtol_default"))
        out["bt_kth_rtol_default"] = getattr(mb, "BT_KTH_RTOL", 0.0)
    except ImportError:
        pass
    return out


def metadata(script_start: float, **extra) -> dict:
    """What a results section records: date, command, machine, versions, mor's settings and
    the script's wall time so far (plus ``extra``)."""
    return {"date": now(), "command": command(), "machine": machine(), "versions": versions(),
            "mor_settings": mor_settings(), "script_seconds": time.perf_counter() - script_start,
            **extra}


def timed(fn, repeats: int | None = None, warmup: bool = False):
    """Run ``fn``; return ``(result_of_first_timed_run, median_seconds, all_seconds)``.

    Without ``repeats``: 5 runs when one takes < 0.2 s, 3 when < 2 s, else 1. ``warmup`` runs
    ``fn`` once untimed first (FFT plans, numba, caches).
    """
    if warmup:
        fn()
    start = time.perf_counter()
    out = fn()
    times = [time.perf_counter() - start]
    if repeats is None:
        repeats = 5 if times[0] < 0.2 else 3 if times[0] < 2.0 else 1
    for _ in range(repeats - 1):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times), times


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return match.group(1).strip() if match else "unknown"


def _nproc() -> str:
    try:
        # nproc honours OMP_NUM_THREADS, which the scripts pin to 1: ask without it.
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",
                                                                "OMP_THREAD_LIMIT")}
        return subprocess.run(["nproc"], capture_output=True, text=True, check=True,
                              env=env).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(os.cpu_count())


def machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(),
            "nproc": _nproc(), "cpu": _cpu_model(),
            "threads": {v: os.environ.get(v) for v in THREAD_VARS},
            "threadpools": _threadpools()}


def _threadpools() -> list:
    try:
        from threadpoolctl import threadpool_info
        return [f"{i.get('internal_api')} {i.get('version')}: {i.get('num_threads')} thread(s)"
                for i in threadpool_info()]
    except Exception:  # noqa: BLE001
        return []


def versions(names=("numpy", "scipy", "mor", "pymor", "slycot", "control", "numba")) -> dict:
    out = {}
    for name in names:
        try:
            mod = importlib.import_module(name)
            out[name] = str(getattr(mod, "__version__", "?"))
        except Exception as exc:  # noqa: BLE001 - a missing optional package is a fact to record
            out[name] = f"not available ({type(exc).__name__})"
    return out


def command() -> str:
    pins = " ".join(f"{v}=1" for v in THREAD_VARS)
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
    return f"{pins} python {shlex.join([script] + sys.argv[1:])}"


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def fmt_t(seconds) -> str:
    if seconds is None:
        return "skipped"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_e(x, digits: int = 1) -> str:
    return "—" if x is None else f"{x:.{digits}e}"


def fmt_r(x) -> str:
    if x is None:
        return "—"
    return f"{x:.0f}x" if x >= 100 else f"{x:.1f}x" if x >= 10 else f"{x:.2f}x"


def md_table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _jsonable(obj):
    import numpy as np
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


def write_json(name: str, payload: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(_jsonable(payload), indent=1) + "\n")
    return path


def write_section(name: str, body: str, after: str | None = None) -> Path | None:
    """Replace the section between this name's markers in RESULTS.md; a new one goes right
    after the section ``after`` where that exists, else at the end.

    Smoke runs (names ending in ``_quick``) leave RESULTS.md alone.
    """
    if name.endswith("_quick"):
        return None
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else (
        "# Benchmark results\n\nEach section is written by its script "
        "(`benchmarks/<name>.py`); rerunning a script replaces its section.\n\n")
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    anchor = f"<!-- END {after} -->\n" if after else None
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    elif anchor and anchor in text:
        text = text.replace(anchor, anchor + "\n" + block, 1)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    RESULTS_MD.write_text(text)
    return RESULTS_MD


def header_block(title: str, meta: dict) -> str:
    m, v = meta["machine"], meta["versions"]
    return "\n".join([
        f"## {title}",
        "",
        f"- date: {meta['date']}",
        f"- command: `{meta['command']}`",
        f"- machine: {m['platform']}, Python {m['python']}, nproc {m['nproc']}, CPU {m['cpu']}; "
        f"one BLAS/OpenMP thread (env vars + threadpoolctl)",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        "- mor settings found: " + ", ".join(f"{k} {val}" for k, val in
                                              meta.get("mor_settings", {}).items()),
        f"- wall time of the whole script: {meta['script_seconds']:.0f} s",
        "",
    ])


def long_filters(length: int, count: int, first: int = 0):
    """Hyena-like filters of ``length`` taps (issue 22's generator, seeds ``first`` to
    ``first + count - 1``): twelve damped cosines plus a decaying noise floor, rounded to
    float32."""
    import numpy as np
    t = np.arange(length)
    out = np.empty((count, length))
    for row, seed in enumerate(range(first, first + count)):
        rng = np.random.default_rng(seed)
        h = sum(np.cos(0.001 * (k + 1) * t * (1 + 0.3 * rng.random()))
                * np.exp(-t * (2e-5 + 1e-5 * k) * 2**20 / length) for k in range(12))
        h = h + 1e-4 * rng.standard_normal(length) * np.exp(-t / (length / 8))
        out[row] = h.astype(np.float32)
    return out
