"""A filter's scale is arbitrary: every result is homogeneous in it (issue 17). Each filter or
system is divided by a power of two before any arithmetic (`mor.conventions.Scale`) and scaled
back exactly, so a power-of-two factor passes through bit for bit and a decimal one to
rounding; results that cannot be represented at the input's scale are an error naming the
filter, never NaN or a zero reported as an error."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import mor
from mor.demo import hyena_like_filters

FILTERS = hyena_like_filters(3, 128, seed=3)
METHODS = ("balanced", "hankel", "pencil", "prony", "pade", "aaa", "modal", "irka")
#: Options that make an iterative method's result a function of its data to 1e-10 (IRKA stops
#: when its points move less than rtol, 1e-8 by default).
TIGHT = {"irka": {"rtol": 1e-13}}
BASE = {m: mor.reduce(FILTERS, 6, method=m, on_fail="flag", **TIGHT.get(m, {}))
        for m in METHODS}
RELATIVE = ("l2", "tail", "hinf", "aak", "bt_bound")
#: A rounding figure: homogeneous bit for bit in powers of two (rounding to float32 commutes
#: with them), not continuous in the data (a decimal factor may move a parameter across a
#: float32 rounding boundary, changing the figure by about itself).
FLOAT32 = ("f32_deviation",)


def _normal(*arrays) -> bool:
    """Every nonzero entry a normal float64 (a subnormal has lost bits)."""
    tiny = np.finfo(float).tiny
    return all(np.all((np.abs(a) >= tiny) | (a == 0)) and np.all(np.isfinite(a))
               for a in arrays for a in (np.real(a), np.imag(a)))


@settings(max_examples=25, deadline=None)
@given(method=st.sampled_from(METHODS), power=st.integers(-1000, 1000))
def test_powers_of_two_pass_through_bit_for_bit(method, power):
    c = 2.0 ** power
    base = BASE[method]
    poles, residues, direct = base.compact()
    if not _normal(FILTERS * c, residues * c, direct * c, base.info["peak"] * c):
        return  # c h or a scaled output leaves the normal range: rounding is allowed there
    got = mor.reduce(FILTERS * c, 6, method=method, on_fail="flag", **TIGHT.get(method, {}))
    p, r, d = got.compact()
    np.testing.assert_array_equal(p, poles)
    np.testing.assert_array_equal(r, residues * c)
    np.testing.assert_array_equal(d, direct * c)
    np.testing.assert_array_equal(got.info["peak"], base.info["peak"] * c)
    for key in RELATIVE + FLOAT32 + ("order", "failed"):
        np.testing.assert_array_equal(got.info[key], base.info[key])


@pytest.mark.parametrize("c", [1e-300, 1e-150, 1e-8, 1e8, 1e150, 1e300])
@pytest.mark.parametrize("method", METHODS)
def test_decimal_factors_to_rounding(method, c):
    base = BASE[method]
    got = mor.reduce(FILTERS * c, 6, method=method, on_fail="flag", **TIGHT.get(method, {}))
    np.testing.assert_array_equal(got.order, base.order)
    # an iteration stopped by its cap, not its convergence test, may take another iterate when
    # the data change by rounding: compared where both runs converged
    same = base.info.get("converged", np.ones(base.shape, bool)) & got.info.get(
        "converged", np.ones(base.shape, bool))
    assert same.any()
    base, got = base[same], got[same]
    p0, r0, d0 = base.compact()
    p, r, d = got.compact()
    scale = np.maximum(np.abs(r0).max(axis=-1), np.abs(d0))  # per filter
    assert np.abs(p - p0).max() <= 1e-10
    assert np.all(np.abs(r / c - r0).max(axis=-1) <= 1e-10 * scale)
    assert np.all(np.abs(d / c - d0) <= 1e-10 * scale)
    for key in RELATIVE:
        # bt_bound beyond the computed spectrum rests on ||H||_F^2 - sum sigma_i^2, known to a
        # few ulps of ||H||_F^2 (its margin): that difference moves with rounding far more
        rtol = 1e-6 if key == "bt_bound" else 1e-10
        np.testing.assert_allclose(got.info[key], base.info[key], rtol=rtol, atol=1e-14)


@pytest.mark.parametrize("c", [2.0**-1000, 1e-300, 1e300, 2.0**1000])
def test_spectrum_bounds_and_report_are_homogeneous(c):
    long = hyena_like_filters(2, 3000, seed=1)  # the Krylov path beside the dense one
    for h in (FILTERS, long):
        s = mor.hankel_singular_values(h, 12)
        np.testing.assert_allclose(mor.hankel_singular_values(h * c, 12), s * c, rtol=1e-13)
        bounds, scaled = mor.error_bounds(h, 10), mor.error_bounds(h * c, 10)
        np.testing.assert_allclose(scaled.aak, bounds.aak * c, rtol=1e-13)
        np.testing.assert_allclose(scaled.bt, bounds.bt * c, rtol=1e-10)
    model = BASE["balanced"]
    p, r, d = model.compact()
    cmp0 = mor.compare(FILTERS, model)
    cmp = mor.compare(FILTERS * c, mor.ModalSSM.from_compact(p, r * c, d * c))
    for key in RELATIVE:
        np.testing.assert_allclose(getattr(cmp, key), getattr(cmp0, key), rtol=1e-12, atol=1e-15)
    if np.log2(c) % 1 == 0:
        np.testing.assert_array_equal(cmp.f32_deviation, cmp0.f32_deviation)
    np.testing.assert_allclose(cmp.peak, cmp0.peak * c, rtol=1e-13)
    selection = mor.select_order(FILTERS * c, 1e-2, max_order=24)
    np.testing.assert_array_equal(selection.order, mor.select_order(FILTERS, 1e-2,
                                                                    max_order=24).order)


@pytest.mark.parametrize("c", [1e-300, 1e300])
def test_refits_are_homogeneous(c):
    model = BASE["balanced"]
    p, r, d = model.compact()
    scaled = mor.ModalSSM.from_compact(p, r * c, d * c)
    out0, out = mor.refit_residues(FILTERS, model), mor.refit_residues(FILTERS * c, scaled)
    residues = out0.compact()[1]
    assert np.abs(out.compact()[1] / c - residues).max() <= 1e-10 * np.abs(residues).max()
    np.testing.assert_allclose(out.info["metric"], out0.info["metric"], rtol=1e-10)


def test_the_reported_examples():
    h = hyena_like_filters(1, 256)[0]
    base = mor.reduce(h, 4)
    tiny = mor.reduce(h * 1e-300, 4)  # was: l2 = 0.0 for a true error of 0.947
    assert tiny.info["l2"] == pytest.approx(base.info["l2"], rel=1e-12) and tiny.info["l2"] > 0.1
    true = np.linalg.norm((h * 1e-300 - tiny.impulse(256)) * 1e300) / np.linalg.norm(h)
    assert true == pytest.approx(float(tiny.info["l2"]), rel=1e-9)
    for tol in (1e-1, 1e-3):  # 1e-3 was: order 0 certified met_tol = True
        got = mor.reduce(h * 1e-300, tol=tol, on_fail="flag")
        ref = mor.reduce(h, tol=tol, on_fail="flag")
        assert got.order == ref.order and got.info["met_tol"] == ref.info["met_tol"]
    assert mor.reduce(h * 1e-300, tol=1e-1).order > 0
    assert not mor.reduce(h * 1e-300, tol=1e-3, on_fail="flag").info["met_tol"]
    huge = mor.reduce(h * 1e300, 4)  # was: l2 = nan
    assert huge.info["l2"] == pytest.approx(base.info["l2"], rel=1e-12)
    for method in ("dense", "krylov"):  # were off by factors of 0.003 to 0.1
        s = mor.hankel_singular_values(h, 16, method=method)
        np.testing.assert_allclose(mor.hankel_singular_values(h * 1e300, 16, method=method),
                                   s * 1e300, rtol=1e-12)
    hankel = mor.reduce(h * 1e300, 4, method="hankel")  # was: LinAlgError
    assert hankel.info["hinf"] == pytest.approx(float(mor.reduce(h, 4, method="hankel")
                                                      .info["hinf"]), rel=1e-10)
    out = mor.distill(np.stack([h, h]) * 1e300, 4)  # was: LinAlgError
    assert not out.report.columns["failed"].any()


def test_statespace_scale_passes_through():
    sys = BASE["balanced"].to_dense()
    base = mor.reduce(sys, 4)
    c = 2.0**700
    scaled = mor.StateSpace(sys.a, sys.b, sys.c * c, sys.d * c)
    got = mor.reduce(scaled, 4)
    np.testing.assert_array_equal(got.compact()[1], base.compact()[1] * c)
    np.testing.assert_array_equal(got.info["hinf"], base.info["hinf"])
    np.testing.assert_array_equal(got.info["f32_deviation"], base.info["f32_deviation"])


def test_overflow_at_the_inputs_scale_is_an_error_naming_the_filter():
    h = np.ones((2, 2000))
    h[1] *= 1e306  # its Hankel singular values exceed the float64 range
    with pytest.raises(ValueError, match=r"Hankel singular values of filter \(1,\) would "
                                         r"overflow"):
        mor.hankel_singular_values(h, 3)
    with pytest.raises(ValueError, match=r"filter \(1,\) would overflow"):
        mor.error_bounds(h, 3)
