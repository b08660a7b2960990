"""Hankel spectrum: dense and matrix-free paths, exact-order filters, bounds."""

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, strategies as st

import mor
from mor.demo import hyena_like_filters
from mor.analysis.spectrum import hankel_matrix, hankel_svd
from systems import decayed_length, stable_modal


def test_hankel_matrix_convention():
    h = np.arange(1.0, 6.0)  # h[0..4]
    expected = scipy.linalg.hankel(h[1:])  # H[i, j] = h[i + j + 1], zero below the anti-diagonal
    np.testing.assert_array_equal(hankel_matrix(h), expected)


def test_dense_matches_scipy_svdvals():
    rng = np.random.default_rng(3)
    h = rng.standard_normal((3, 90))
    ref = np.stack([scipy.linalg.svdvals(scipy.linalg.hankel(x[1:])) for x in h])
    assert np.all(np.abs(mor.hankel_singular_values(h) - ref) <= 1e-12 * ref[:, :1])


@pytest.mark.parametrize("length", [400, 1025])
def test_krylov_agrees_with_dense(length):
    h = hyena_like_filters(3, length, seed=length)
    dense, _, _ = hankel_svd(h, 40, method="dense", vectors=False)
    krylov, u, v = hankel_svd(h, 40, method="krylov")
    assert np.all(np.abs(krylov - dense) <= 1e-10 * dense[:, :1])
    # the vectors are singular vectors: H v = sigma u
    big = hankel_matrix(h[0])
    resid = np.linalg.norm(big @ v[0] - u[0] * krylov[0], axis=0)
    assert resid.max() <= 1e-7 * krylov[0, 0]


def test_krylov_agrees_with_dense_on_trained_filters(trained_filters):
    h = trained_filters[:, 7, :1024]  # one channel per layer, first 1024 taps
    dense, _, _ = hankel_svd(h, 64, method="dense", vectors=False)
    krylov, _, _ = hankel_svd(h, 64, method="krylov", vectors=False)
    assert np.all(np.abs(krylov - dense) <= 1e-10 * dense[:, :1])


def test_krylov_exactly_low_rank_and_zero():
    lam = np.array([0.9, -0.5, 0.3])
    h = np.concatenate([[0.0], (np.array([1.0, 2.0, -1.0]) * lam ** np.arange(600)[:, None]).sum(1)])
    s = mor.hankel_singular_values(np.stack([h, 0 * h]), 20, method="krylov")
    assert np.all(s[0, 3:] <= 1e-12 * s[0, 0]) and np.all(s[1] == 0)


@given(stable_modal(), st.integers(200, 420), st.integers(1, 12))
def test_krylov_certificate_holds_on_low_rank_filters(ssm, length, k):
    """Low-order filters cut at any length (rank-deficient Hankel matrices, tiny trailing
    values next to the unexplored spectrum): both Krylov variants (full re-orthogonalisation
    for vectors, partial for values) agree with the dense SVD to 1e-10 sigma_1 at the default
    ``rtol = 1e-11`` (a value next to a cluster the basis has not resolved can miss by a little
    more than ``rtol``: 2.8e-11 at worst over 2,500 draws)."""
    h = ssm.impulse(length)
    dense = hankel_svd(h, k, method="dense", vectors=False)[0]
    for vectors in (False, True):
        krylov = hankel_svd(h, k, method="krylov", vectors=vectors)[0]
        assert np.all(np.abs(krylov - dense) <= 1e-10 * dense[0])


def _plateau_filter(seed: int, length: int) -> np.ndarray:
    """Damped cosines over a decaying noise floor (issue 22's kind of filter, shortened): a
    plateau of clustered Hankel values near ``1e-5 sigma_1``."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    h = sum(np.cos(0.05 * (j + 1) * t * (1 + 0.3 * rng.random())) * np.exp(-t * (0.01 + 0.004 * j))
            for j in range(6))
    return h + 1e-4 * rng.standard_normal(length) * np.exp(-t / (length / 8))


@given(st.integers(0, 2**31), st.integers(300, 640), st.integers(4, 24),
       st.sampled_from([1e-4, 1e-3, 1e-2]), st.booleans())
def test_krylov_kth_rtol_certificate(seed, length, k, kth_rtol, plateau):
    """With ``kth_rtol``, each value is certified to ``max(rtol sigma_1, kth_rtol sigma_k)``
    (``|theta_k| <= sigma_k``: the allowance never exceeds that) and each vector, whatever
    ``kth_rtol``, to a residual norm of ``1e3 rtol sigma_1``: against the dense SVD (a value
    beside a cluster the basis has not resolved may miss by a little more: a factor 2 of
    margin, as the 2.8e-11 at ``rtol = 1e-11`` of the test above)."""
    h = _plateau_filter(seed, length) if plateau else hyena_like_filters(1, length, seed=seed)[0]
    rtol = 1e-10
    dense = hankel_svd(h, k, method="dense", vectors=False)[0]
    s, u, v = hankel_svd(h, k, method="krylov", rtol=rtol, kth_rtol=kth_rtol)
    allowed = max(rtol * dense[0], kth_rtol * dense[-1])
    assert np.all(np.abs(s - dense) <= 2 * allowed)
    resid = np.linalg.norm(hankel_matrix(h) @ v - u * s, axis=0)
    assert resid.max() <= 2e3 * rtol * dense[0]


def test_kth_rtol_is_checked():
    h = np.r_[1.0, 0.5 ** np.arange(400)]
    for kth_rtol in (-1e-3, 1.0, np.nan, "x", None, True):
        with pytest.raises(ValueError, match="kth_rtol must be a number in"):
            hankel_svd(h, 4, method="krylov", kth_rtol=kth_rtol)
        with pytest.raises(ValueError, match="kth_rtol must be a number in"):
            mor.reduce(h, 4, method="balanced", kth_rtol=kth_rtol)


@given(stable_modal())
def test_exact_order_filters_have_a_gap(ssm):
    """A stable order-n filter, truncated where its l1 tail is < 1e-13: sigma_{n+1} <= 1e-10 sigma_1."""
    n = int(ssm.order)
    length = max(decayed_length(ssm), n + 2)
    h = ssm.impulse(length)
    s = mor.hankel_singular_values(h, n + 1)
    assert s[n] <= 1e-10 * s[0]
    # and the filter's leading values are the system's own (square-root Gramians)
    np.testing.assert_allclose(s[:n], ssm.hankel_singular_values(), rtol=1e-6,
                               atol=1e-11 * s[0])


def test_hsv_of_system_objects():
    ssm = mor.ModalSSM.from_compact([0.5, 0.8j], [1.0, 0.5 + 0.1j], 0.0)
    np.testing.assert_allclose(mor.hankel_singular_values(ssm), ssm.hankel_singular_values())
    dense = ssm.to_dense()
    np.testing.assert_allclose(mor.hankel_singular_values(dense, 2),
                               ssm.hankel_singular_values()[:2], rtol=1e-10)


class TestBounds:
    def test_full_spectrum_bounds(self):
        rng = np.random.default_rng(5)
        h = rng.standard_normal((2, 50)) * 0.9 ** np.arange(50)
        b = mor.error_bounds(h)
        s = mor.hankel_singular_values(h)
        assert b.exact_tail
        np.testing.assert_allclose(b.aak, s)
        np.testing.assert_allclose(b.bt[:, 3], 2 * s[:, 3:].sum(1))
        np.testing.assert_allclose(b.bt[:, -1], 2 * s[:, -1])

    def test_partial_spectrum_bound_is_certified(self):
        rng = np.random.default_rng(6)
        h = rng.standard_normal((3, 120)) * 0.95 ** np.arange(120)
        full, part = mor.error_bounds(h), mor.error_bounds(h, max_order=10)
        assert not part.exact_tail and part.bt.shape == (3, 11)
        assert np.all(part.bt >= full.bt[:, :11] * (1 - 1e-12))

    def test_frobenius_identity(self):
        rng = np.random.default_rng(7)
        h = rng.standard_normal(33)
        from mor.analysis.bounds import hankel_frobenius_sq
        np.testing.assert_allclose(hankel_frobenius_sq(h), np.sum(hankel_matrix(h) ** 2))

    def test_order_range(self):
        with pytest.raises(ValueError, match="max_order"):
            mor.error_bounds(np.ones(10), max_order=9)
        with pytest.raises(ValueError, match="length 1"):
            mor.error_bounds(np.ones(1))

    @pytest.mark.parametrize("max_order", [9, 10, 40])
    def test_order_range_names_the_filters_length(self, max_order):
        """Issue 17.6: filters of length 10 have orders up to L - 2 = 8 with a bound (order
        d needs sigma_{d+1}); the message named length 9 and L - 1 = 8."""
        with pytest.raises(ValueError) as err:
            mor.error_bounds(np.ones(10), max_order=max_order)
        assert str(err.value).startswith("max_order must be <= L - 2 = 8 for filters of length 10")
        assert str(err.value).endswith(f"got {max_order}")
        assert mor.error_bounds(np.ones(10), max_order=8).aak.shape == (9,)


@given(st.integers(2, 60), st.integers(0, 2**31))
def test_hsv_invariant_under_scaling_and_sign(length, seed):
    h = np.random.default_rng(seed).standard_normal(length)
    s = mor.hankel_singular_values(h)
    np.testing.assert_allclose(mor.hankel_singular_values(-3 * h), 3 * s, rtol=1e-10,
                               atol=1e-12 * max(s.max(initial=0), 1))
    # h[0] (the direct term) does not enter the Hankel matrix
    g = h.copy()
    g[0] += 5
    np.testing.assert_array_equal(mor.hankel_singular_values(g), s)


@pytest.mark.parametrize("k", [None, 3, 4, 8, 20, 60])
def test_krylov_values_of_multiple_singular_values(k):
    # found by tests/test_robustness.py: a pure delay's Hankel values are all 1 (a multiple
    # value); Lanczos met one copy per invariant subspace and certified 1e-16 as the 19th and
    # 20th largest (so reduce reported an AAK bound of 1e-16 for an error of 1). With every
    # value asked for, rounding left spurious copies above sigma_1 (sparse taps).
    delay = np.zeros(400)
    delay[200] = 1.0
    sparse = np.zeros(400)
    sparse[[64, 95]] = [0.25, -1.0]
    three = np.zeros(162)  # a third copy of the largest value, 0.2% above the next
    three[[27, 33, 91]] = [-0.12644728, 0.27524685, -0.98810098]
    for h in (delay, sparse, three):
        if k is not None and k >= three.size - 1 and h is three:
            continue
        got = mor.hankel_singular_values(h, k, method="krylov")
        want = mor.hankel_singular_values(h, k, method="dense")
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10 * want[0])
    assert mor.reduce(delay, 10, on_fail="flag").info["aak"] == pytest.approx(1.0)


def test_krylov_to_a_full_basis_on_a_wide_dynamic_range():
    # found by tests/test_robustness.py: every value asked for of a filter whose taps span
    # 1e-25 .. 1e154 took the whole space with partial re-orthogonalisation, whose values were
    # 4e-9 sigma_1 off (a full basis has no residual to certify by)
    h = np.array([-5.11166587e+110, 4.89297304e+005, 4.12983741e-011, 1.12449847e+090,
                  1.91701024e+024, -1.22414120e+126, 3.26435361e+026, -3.95848963e+084,
                  3.04581928e+003, -2.54246936e+048, 1.78095656e+051, -5.89636422e+028,
                  8.53352391e+048, 5.24433387e+154, -1.21506210e+149, -2.86777853e+057,
                  2.37290696e+036, 1.99862657e+128, 3.36840816e-004, 1.96866221e-008,
                  -1.71516723e-006, -5.61677931e-014, -1.62168617e-005, -2.00513340e-025,
                  3.46826506e+151, -3.33663164e+107])
    krylov = mor.hankel_singular_values(h, method="krylov")
    dense = mor.hankel_singular_values(h, method="dense")
    assert np.all(np.abs(krylov - dense) <= 1e-11 * dense[0])
