"""Test configuration: one BLAS/Numba thread, deterministic hypothesis, shared data."""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

settings.register_profile("mor", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("mor")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hyena_filters.npz"


@pytest.fixture(scope="session", autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="session")
def trained_filters() -> np.ndarray:
    """The shared trained Hyena filters, (4, 256, 2048) float64; skipped when absent."""
    if not SHARED.exists():
        pytest.skip(f"shared trained filters not found at {SHARED}")
    return np.load(SHARED)["filters"].astype(np.float64)
