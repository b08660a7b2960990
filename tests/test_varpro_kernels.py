"""Closed-form Vandermonde sums of the variable projection against their dense reference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mor.fitting import _varpro_kernels as kernels
from mor.fitting import varpro as _varpro
from systems import stable_modal


def _direct_sums(x: complex, n: int):
    """``S``, ``U_1``, ``U_2``, summed in extended precision, with the scale of each: the sum
    of absolute values plus the change an input rounding of ``4 eps`` relative may cause (a
    relative change ``d`` of ``x`` moves the ``k``-th term by ``k d``)."""
    k = np.arange(n, dtype=np.longdouble)
    modulus, angle = np.longdouble(abs(x)), np.longdouble(np.angle(x))
    before = np.maximum(k - 1, 0)
    with np.errstate(under="ignore"):
        plain = modulus**k * np.exp(1j * (k * angle).astype(np.float64))
        shifted = np.where(k > 0, modulus**before, 0) * np.exp(1j * (before * angle).astype(
            np.float64))
    values = [plain.sum(), (k * shifted).sum(), (k * k * shifted).sum()]
    terms = [np.abs(plain), k * np.abs(shifted), k * k * np.abs(shifted)]
    eps = np.finfo(np.float64).eps
    scales = [float(t.sum() + 4 * eps * (k * t).sum()) for t in terms]
    return [complex(v) for v in values], scales


@settings(max_examples=300, deadline=None)
@given(st.floats(-9.5, 0.0), st.one_of(st.just(0.0), st.floats(-7, 0.5)),
       st.sampled_from([1.0, -1.0]), st.integers(2, 5000))
def test_geometric_sums_match_direct_summation(log_distance, log_angle, sign, n):
    """Every branch (closed form in x, in log x, Taylor series) to 1e-12 of the sum of absolute
    values (and of the input's rounding), from x = 0 to within 3e-10 of the circle and of
    x = 1 (the closed form in log x cancels up to a few thousand ulps where ``|N log x|`` is
    a few units)."""
    modulus = 1 - 10.0**log_distance if log_distance < 0 else 0.0
    angle = sign * (10.0**log_angle if log_angle else 0.0)
    x = modulus * np.exp(1j * angle)
    log_x = complex(np.log(modulus), angle) if modulus else complex(-np.inf, 0.0)
    got = kernels._sums(x, log_x, kernels._power(x, n - 2), n, kernels.moment_table(n))
    want, scale = _direct_sums(x, n)
    for g, w, s in zip(got, want, scale):
        assert abs(g - w) <= 1e-12 * s


def _problem(system, rng, tail_weight, length=400):
    poles, _, _ = system.compact()
    poles = np.concatenate([poles[poles.imag != 0], poles[poles.imag == 0]])  # pairs first
    pairs = int(np.sum(poles.imag != 0))
    h = system.impulse(length) + 0.01 * rng.standard_normal(length)
    # a second row: the same poles moved toward the circle, where the sums change branch
    near = poles / np.abs(poles) * (1 - 1e-4 * rng.random(poles.size))
    problem = _varpro.ModalProjection(np.stack([h, h[::-1].copy()]), pairs, poles.size - pairs,
                                      tail_weight)
    return problem, problem.parameters(np.stack([poles, near]))


@settings(max_examples=40, deadline=None)
@given(stable_modal(max_pairs=4, max_real=3, max_modulus=0.99, min_gap=0.02),
       st.floats(0.0, 2.0), st.integers(0, 2**16))
def test_closed_form_projection_equals_the_explicit_design(system, tail_weight, seed):
    """Cost, residual, residues and the Gauss-Newton matrices of the closed-form path agree
    with the path that builds the design explicitly (the kernels' NumPy reference)."""
    problem, x = _problem(system, np.random.default_rng(seed), tail_weight)
    rows = np.arange(2)
    fast, dense = problem.evaluate(x, rows), problem.evaluate(x, rows, dense=True)
    assert np.array_equal(fast.ok, dense.ok)
    assert "sums" in vars(fast) and "design" in vars(dense)
    # the window residual is stationary in the residues: exact to rounding; the residues carry
    # the Gram matrix's conditioning (up to GRAM_MAX_COND^2 eps = 1e-6), the tail energy and
    # the products below, quadratic in them, twice that
    window = [np.einsum("bk,bk->b", p.res, p.res) for p in (fast, dense)]
    np.testing.assert_allclose(*window, rtol=1e-11)
    np.testing.assert_allclose(fast.res, dense.res, atol=1e-6 * np.abs(dense.res).max())
    np.testing.assert_allclose(fast.residues, dense.residues,
                               atol=1e-6 * np.abs(dense.residues).max())
    np.testing.assert_allclose(fast.tail.value, dense.tail.value, rtol=1e-5)
    np.testing.assert_allclose(fast.cost, dense.cost, rtol=1e-5)
    # what the paths compute differently: the products behind the Gauss-Newton matrices (their
    # assembly is shared; it subtracts nearly equal terms where the design is ill-conditioned),
    # row by row; the last two are inner products with the residual, whose difference (above)
    # they carry with the columns' norms (at most N^1.5)
    length = problem.y.shape[1]
    products = [problem.products(p, problem.pole_derivatives(p.lam)) for p in (fast, dense)]
    for i, (a, b) in enumerate(zip(*products)):
        for row in range(2):
            atol = 1e-5 * np.abs(b[row]).max()
            if i > 1:
                atol += 1e-6 * np.abs(dense.res[row]).max() * length**1.5
            np.testing.assert_allclose(a[row], b[row], atol=atol)


def test_ill_conditioned_rows_take_the_explicit_design(monkeypatch):
    """Rows whose scaled Gram factor is conditioned beyond ``GRAM_MAX_COND`` are solved
    densely: with the threshold below 1 every row is, and the results equal the dense
    path's."""
    poles = np.array([[0.9 * np.exp(0.3j), 0.95 * np.exp(1.1j), 0.5, 0.0]])
    rng = np.random.default_rng(3)
    h = rng.standard_normal((1, 200))
    problem = _varpro.ModalProjection(h, 2, 2, 0.5)
    x = problem.parameters(poles)
    monkeypatch.setattr(_varpro, "GRAM_MAX_COND", 0.5)
    fallback = problem.evaluate(x, np.arange(1))
    dense = problem.evaluate(x, np.arange(1), dense=True)
    np.testing.assert_allclose(fallback.cost, dense.cost, rtol=1e-13)
    np.testing.assert_allclose(fallback.residues, dense.residues, rtol=1e-12)
    for a, b in zip(problem.normal_equations(fallback), problem.normal_equations(dense)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12 * np.abs(b).max())


@pytest.mark.parametrize("count", [2, 3, 64, 65, 200])
def test_moment_passes_equal_numpy(count):
    """`tap_moments` and `residual_moments` (powers resynchronised every ``RESYNC`` taps; a
    pole at zero) against NumPy's powers."""
    rng = np.random.default_rng(count)
    lam = np.array([[0.99 * np.exp(0.2j), -0.7 + 0j, 0j, 0.999 * np.exp(3.0j)]])
    logs = np.log(np.where(lam == 0, 1, lam)) + np.where(lam == 0, -np.inf, 0)
    y = rng.standard_normal((1, count))
    residues = rng.standard_normal((1, 4)) + 1j * rng.standard_normal((1, 4))
    k = np.arange(count)
    powers = np.where(k[:, None] == 0, 1, lam[0] ** k[:, None])  # (count, m)
    moments = np.empty((1, 4), complex)
    kernels.tap_moments(lam, logs, y, moments)
    np.testing.assert_allclose(moments[0], y[0] @ powers, rtol=1e-12, atol=1e-12)
    res, w = np.empty_like(y), np.empty((1, 4), complex)
    kernels.residual_moments(lam, logs, residues, y, np.ones(1, bool), res, w)
    want = y[0] - np.real(powers @ residues[0])
    np.testing.assert_allclose(res[0], want, rtol=1e-12, atol=1e-12)
    shifted = np.where(k[:, None] == 0, 0, k[:, None] * lam[0] ** np.maximum(k - 1, 0)[:, None])
    np.testing.assert_allclose(w[0], want @ shifted, rtol=1e-11, atol=1e-11)
