"""Thread-level parallelism over independent filters.

NumPy's BLAS, LAPACK and FFT calls release the GIL, so chunks of a batch run on separate cores
in threads. One knob sets all of mor's parallelism: Numba's thread count (``NUMBA_NUM_THREADS``
or ``numba.set_num_threads``), which also drives the Numba kernels. Work mapped here must not
call parallel Numba kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba


def worker_threads() -> int:
    """The number of threads mor uses for batched work."""
    return numba.get_num_threads()


def map_chunks(fn: Callable[[slice], None], count: int, chunk: int) -> None:
    """Call ``fn(slice)`` over ``range(count)`` in chunks of ``chunk``, on worker threads."""
    slices = [slice(start, min(start + chunk, count)) for start in range(0, count, chunk)]
    workers = min(worker_threads(), len(slices))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(fn, slices))
    else:
        for sl in slices:
            fn(sl)
