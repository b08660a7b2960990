"""Thread-level parallelism over independent filters.

NumPy's BLAS, LAPACK and FFT calls release the GIL, so chunks of a batch run on separate cores
in threads. One knob sets all of mor's parallelism: Numba's thread count (``NUMBA_NUM_THREADS``
or ``numba.set_num_threads``), which also drives the Numba kernels. Work mapped here must not
call parallel Numba kernels: `map_filters` gives each call one Numba thread, with which the
kernels run serially.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

#: OpenMP threads (Numba's ``omp`` threading layer) sleep between parallel regions instead of
#: spinning, unless the user's environment says otherwise. mor launches thousands of short
#: parallel regions in a tolerance search; spinning threads then take the cores from the work
#: between them wherever another process shares the machine: ``mor distill --tol 1e-2`` on the
#: 1024 shared filters took 51.8 s with spinning and 21.9 s without, 13.3 s of CPU against
#: 32.2 s, on two cores one of which another job held (numbers in `benchmarks/RESULTS.md`).
#: Read when the OpenMP runtime loads (Numba's first parallel region), so set on import.
OMP_WAIT_POLICY = os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402


def worker_threads() -> int:
    """The number of threads mor uses for batched work."""
    return numba.get_num_threads()


def map_chunks(fn: Callable[[slice], None], count: int, chunk: int) -> None:
    """Call ``fn(slice)`` over ``range(count)`` in chunks of ``chunk``, on worker threads."""
    slices = _slices(count, chunk)
    workers = min(worker_threads(), len(slices))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(fn, slices))
    else:
        for sl in slices:
            fn(sl)


def map_filters(fn: Callable[[slice], dict], count: int, chunk: int) -> list[dict]:
    """``[fn(slice), ...]`` over ``range(count)`` in chunks of at most ``chunk`` filters, spread
    over the worker threads, each call with one Numba thread (serial kernels, single-threaded
    FFTs): for work whose parts do not all run in parallel (NumPy's element-wise passes), so
    that all of it does. The results come in the order of the chunks."""
    threads = worker_threads()
    slices = _slices(count, max(1, min(chunk, -(-count // threads))))
    if threads == 1 or len(slices) == 1:
        return [fn(sl) for sl in slices]

    def one(sl: slice) -> dict:
        numba.set_num_threads(1)  # this thread's own setting
        return fn(sl)

    with ThreadPoolExecutor(min(threads, len(slices))) as pool:
        return list(pool.map(one, slices))


def _slices(count: int, chunk: int) -> list[slice]:
    return [slice(start, min(start + chunk, count)) for start in range(0, count, chunk)]
