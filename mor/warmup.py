"""Compile mor's Numba kernels once, ahead of use: ``mor warmup`` (run by the Makefile's set-up).

Every kernel is compiled with ``cache=True``: the first process that runs a kernel compiles it
(about a minute for all of them on two cores) and Numba's cache keeps the machine code, beside
mor's sources (``__pycache__``) or in ``NUMBA_CACHE_DIR``; later processes load it in
milliseconds. `warmup` runs a small workload through the public API that reaches every kernel
with the argument types real runs give it: the Hankel spectrum (dense and Krylov), every
registered method, order selection at a tolerance in ``l2`` and ``hinf``, a distillation,
the error report (``hinf``, AAK bound, tail, float32 deviation) both on a batch (mapped over
the threads, serial kernels side by side) and on one long filter (fewer filters than threads:
the threaded kernels). Run again, it compiles nothing (idempotent): it only
loads the cache, in a few seconds.

Without it, the first compilation of a mor kernel in a process prints a one-line notice to
stderr (`mor._numerics.compilation`), so that a first reduction's time is not silently the
compiler's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numba
import numpy as np

from mor._numerics.compilation import compilations, quiet_compilation
from mor.analysis.bounds import error_bounds
from mor.analysis.compare import compare
from mor.analysis.spectrum import hankel_singular_values
from mor.drivers.distillation import distill
from mor.drivers.reduction import reduce
from mor.methods import available_methods


@dataclass
class Warmup:
    """What `warmup` did: kernel signatures ``compiled`` (0 where the cache had them all),
    the ``seconds`` it took, and where Numba keeps the cache (``cache``)."""

    compiled: int
    seconds: float
    cache: str

    def __str__(self) -> str:
        what = (f"compiled {self.compiled} kernel signature(s)" if self.compiled
                else "every kernel already compiled (loaded from the cache)")
        return f"mor warmup: {what} in {self.seconds:.1f} s; cache: {self.cache}"


def cache_location() -> str:
    """Where Numba writes mor's compiled kernels: ``NUMBA_CACHE_DIR`` where set, else the
    ``__pycache__`` folders beside mor's sources (Numba falls back to a per-user folder where
    those are not writable)."""
    if numba.config.CACHE_DIR:
        return str(numba.config.CACHE_DIR)
    return "__pycache__ beside mor's sources"


def _filters(count: int, length: int, seed: int) -> np.ndarray:
    """Deterministic decaying multi-mode filters with a little noise (trained-filter-like:
    a few dominant resonances over a flat floor)."""
    rng = np.random.default_rng(seed)
    k = np.arange(length)
    radius = rng.uniform(0.97, 0.995, (count, 3, 1))
    angle = rng.uniform(0.05, 2.5, (count, 3, 1))
    weight = rng.standard_normal((count, 3, 1))
    h = (weight * radius**k * np.cos(angle * k)).sum(axis=1)
    return h + 1e-4 * rng.standard_normal((count, length)) * np.exp(-k / (length / 4))


def _workload() -> None:
    long = _filters(8, 512, 0)          # Krylov Hankel path (L - 1 > DENSE_MAX_SIZE)
    short = _filters(4, 96, 1)          # dense Hankel path
    batch = _filters(48, 1024, 2)       # the report mapped over threads: serial kernels
    # fewer filters than threads: the report's threaded kernels (their work from 2^18:
    # `PARALLEL_MIN_WORK`; the H-infinity grid is 2 L per filter)
    one = _filters(1, 1 << 17, 3)
    for h in (long, short):
        hankel_singular_values(h, k=16)
        error_bounds(h, max_order=16)
        for name in available_methods():
            ssm = reduce(h, 4, method=name, on_fail="flag")
            compare(h, ssm)
        reduce(h, tol=1e-2, on_fail="flag")
        reduce(h, tol=1e-2, norm="hinf", on_fail="flag")
        reduce(h, modes=2, method="modal", real_poles=True, on_fail="flag")
        ssm = reduce(h, 6, dc_match=True, on_fail="flag")
        ssm.hinf_norm()
        ssm.h2_norm()
        ssm.hankel_singular_values()
        ssm.float32_deviation(h.shape[-1])
    for method in ("balanced", "hankel"):
        distill(long.reshape(2, 4, -1), tol=1e-2, method=method, workers=1)
    distill(long.reshape(2, 4, -1), modes=2, method="modal", workers=1)
    distill(batch, tol=1e-2, method="balanced", workers=1)
    distill(batch, order=16, method="balanced", workers=1)
    reduce(one, 16)
    reduce(one, tol=1e-2, norm="hinf", on_fail="flag")


def warmup() -> Warmup:
    """Compile (or load from Numba's cache) every mor kernel this process would otherwise
    compile on first use; returns what it did (`Warmup`).

    Idempotent: a second run, in this process or another, compiles nothing.
    """
    start, before = time.perf_counter(), compilations()
    with quiet_compilation(), np.errstate(all="ignore"):
        _workload()
    return Warmup(compilations() - before, time.perf_counter() - start, cache_location())
