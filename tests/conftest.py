"""Test configuration: deterministic hypothesis, shared data.

One BLAS/Numba thread for the tests and the doctests alike: the root ``conftest.py``.
"""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("mor", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("mor")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hyena_filters.npz"


@pytest.fixture(scope="session")
def trained_filters() -> np.ndarray:
    """The shared trained Hyena filters, (4, 256, 2048) float64; skipped when absent."""
    if not SHARED.exists():
        pytest.skip(f"shared trained filters not found at {SHARED}")
    return np.load(SHARED)["filters"].astype(np.float64)
