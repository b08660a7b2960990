"""The tridiagonal pieces of the Lanczos kernel against LAPACK's dense eigensolver."""

import numpy as np
from hypothesis import given, strategies as st

from mor._numerics.lanczos import _tridiagonal_eigenvectors, tridiagonal_eig_last


def _tridiagonal(seed: int, m: int, grading: float):
    rng = np.random.default_rng(seed)
    scale = np.logspace(0, -grading, m)
    alpha = rng.standard_normal(m) * scale
    beta = np.abs(rng.standard_normal(m)) * scale
    t = np.diag(alpha) + np.diag(beta[: m - 1], 1) + np.diag(beta[: m - 1], -1)
    return alpha, beta, t


@given(st.integers(0, 2**31), st.integers(1, 120), st.sampled_from([0.0, 4.0, 10.0]))
def test_ql_values_and_last_components(seed, m, grading):
    """Implicit QL on the last row only: eigenvalues to rounding, and ``|s_m|`` of each
    eigenvector (what the Ritz residual norms are made of)."""
    alpha, beta, t = _tridiagonal(seed, m, grading)
    values, last, ok = tridiagonal_eig_last(alpha, beta)
    assert ok
    ref, vectors = np.linalg.eigh(t)
    order = np.argsort(values)
    scale = np.abs(ref).max()
    np.testing.assert_allclose(values[order], ref, rtol=0, atol=1e-13 * scale)
    separated = np.ones(m, dtype=bool)  # components are defined only for simple eigenvalues
    if m > 1:
        gaps = np.diff(ref) > 1e-6 * scale
        separated &= np.r_[gaps, True] & np.r_[True, gaps]
    np.testing.assert_allclose(np.abs(last[order])[separated],
                               np.abs(vectors[-1])[separated], rtol=0, atol=1e-8)


@given(st.integers(0, 2**31), st.integers(2, 120), st.sampled_from([0.0, 4.0]))
def test_inverse_iteration_vectors(seed, m, grading):
    """Eigenvectors by inverse iteration: residuals at rounding level and unit norm; a cluster
    (values within ``1e-6 ||T||``) is declined, for the dense solver to take."""
    alpha, beta, t = _tridiagonal(seed, m, grading)
    values = np.linalg.eigvalsh(t)
    wanted = values[np.argsort(-np.abs(values))[: max(1, m // 3)]].copy()
    x = _tridiagonal_eigenvectors(alpha, beta, m, wanted, values)
    scale = np.abs(values).max()
    if x.shape[1] == 0:
        gaps = np.diff(np.sort(values))
        assert gaps.min() <= 1e-6 * scale
        return
    np.testing.assert_allclose(np.linalg.norm(x, axis=0), 1.0, rtol=1e-12)
    assert np.abs(t @ x - x * wanted).max() <= 1e-12 * scale


def test_inverse_iteration_declines_a_cluster():
    alpha = np.array([1.0, 1.0, 0.5])
    beta = np.array([0.0, 1e-9, 0.0])  # 1 is a double eigenvalue to 1e-9
    values = np.linalg.eigvalsh(np.diag(alpha) + np.diag(beta[:2], 1) + np.diag(beta[:2], -1))
    assert _tridiagonal_eigenvectors(alpha, beta, 3, np.array([values.max()]), values).shape \
        == (3, 0)
