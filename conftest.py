"""Root pytest configuration, shared by the test suite (``tests/``) and the doctests (``mor/``).

BLAS, OpenMP and Numba are pinned to one thread before anything imports them (oversubscribing
the cores makes SciPy many times slower, and the doctests' printed values must not depend on
the thread count). Modules that need what a machine may lack are left out of doctest
collection: ``mor/torch/_triton.py`` (Triton: CUDA builds only) always, and ``mor/torch``
where torch is not installed.
"""

import importlib.util
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

collect_ignore = ["mor/torch/_triton.py"]
if importlib.util.find_spec("torch") is None:  # mor.torch needs the torch extra
    collect_ignore_glob = ["mor/torch/*"]


@pytest.fixture(scope="session", autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):
        yield

