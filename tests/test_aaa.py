"""AAA on the unit circle: exact recovery, real models, stability, cross-checks."""

import numpy as np
import pytest
import scipy.fft
from scipy.optimize import linear_sum_assignment
from hypothesis import given

import mor
from mor.demo import hyena_like_filters
from systems import decayed_length, stable_modal


@given(stable_modal())
def test_aaa_recovers_exact_order_systems(ssm):
    n = int(ssm.order)
    h = ssm.impulse(max(decayed_length(ssm), 2 * n + 4))
    red = mor.reduce(h, n, method="aaa")
    assert red.order == n and red.is_stable() and red.info["poles_touched"] == 0
    assert red.info["l2"] <= 1e-8
    # poles of weak modes in a cluster are ill-determined from circle samples; the fit is not
    np.testing.assert_allclose(np.sort_complex(red.poles), np.sort_complex(ssm.poles), atol=1e-3)


def test_real_models_and_stability_on_hard_filters(trained_filters):
    h = trained_filters[:, ::128]
    red = mor.reduce(h, 16, method="aaa")
    assert np.all(red.is_stable())
    p = red.poles
    for row in p.reshape(-1, p.shape[-1]):
        np.testing.assert_allclose(np.sort_complex(row), np.sort_complex(np.conj(row)),
                                   atol=1e-12)
    assert np.all(red.info["hinf"] >= red.info["aak"] * (1 - 1e-6))
    kept = mor.reduce(h, 16, method="aaa", unstable="keep", on_fail="flag")
    assert np.all(kept.info["failed"] == (kept.info["poles_touched"] > 0))


def test_a_tolerance_below_the_noise_gives_no_silent_unstable_poles():
    rng = np.random.default_rng(4)
    h = hyena_like_filters(3, 400, seed=4) + 1e-7 * rng.standard_normal((3, 400))
    red = mor.reduce(h, tol=1e-9, method="aaa", max_order=30, on_fail="flag")
    assert np.all(red.is_stable())
    assert not np.any(red.info["met_tol"])  # the noise floor is out of reach: said, not hidden
    assert all("no order" in r for r in red.info["reason"])


def _rational_samples(m=2048):
    ssm = mor.ModalSSM.from_compact([0.9 * np.exp(0.3j), 0.7, -0.5, 0.8j],
                                    [1 + 0.5j, 0.3, 0.2, 0.4 - 0.1j], 0.2)
    h = ssm.impulse(400)
    z = np.exp(2j * np.pi * np.arange(m) / m)
    return ssm, h, z, scipy.fft.fft(h, n=m)


def test_scipy_and_baryrat_recover_the_same_rational_filter():
    interpolate = pytest.importorskip("scipy.interpolate")
    baryrat = pytest.importorskip("baryrat")
    ssm, h, z, f = _rational_samples()
    ours = mor.reduce(h, 6, method="aaa").poles
    theirs = interpolate.AAA(z, f, rtol=1e-13).poles()
    bary = baryrat.aaa(z, f, tol=1e-13).poles()
    for poles in (ours, theirs, bary):
        assert poles.size == 6
        gaps = np.abs(poles[:, None] - ssm.poles[None, :])
        rows, cols = linear_sum_assignment(gaps)
        assert gaps[rows, cols].max() <= 1e-8
