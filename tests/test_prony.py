"""Prony-family methods and the shared least-squares residue fit."""

import mpmath
import numpy as np
import pytest
import scipy.signal
from hypothesis import given, strategies as st

import mor
from mor.demo import hyena_like_filters
from mor.fitting.least_squares import fit_residues
from mor.methods.prony import PencilFamily
from systems import decayed_length, stable_modal


@given(stable_modal())
def test_pencil_recovers_exact_order_systems(ssm):
    n = int(ssm.order)
    length = max(decayed_length(ssm), 2 * n + 4)
    h = ssm.impulse(length)
    red = mor.reduce(h, n, method="pencil")
    assert red.order == n and red.is_stable() and red.info["poles_touched"] == 0
    assert red.info["l2"] <= 1e-8
    np.testing.assert_allclose(np.sort_complex(red.poles), np.sort_complex(ssm.poles), atol=1e-6)


@given(stable_modal(max_pairs=2, max_real=2))
def test_prony_recovers_low_order_systems(ssm):
    n = int(ssm.order)
    h = ssm.impulse(max(decayed_length(ssm), 2 * n + 4))
    red = mor.reduce(h, n, method="prony")
    assert red.order == n and red.info["l2"] <= 1e-6


@given(stable_modal(max_pairs=2, max_real=2))
def test_robust_pade_recovers_and_drops_spurious_pairs(ssm):
    n = int(ssm.order)
    h = ssm.impulse(max(decayed_length(ssm), 4 * n + 10))
    exact = mor.reduce(h, n, method="pade")
    assert exact.info["l2"] <= 1e-6
    more = mor.reduce(h, n + 2, method="pade")  # rank deficient: the degree comes back down
    assert more.order <= n + 1 and more.info["l2"] <= 1e-6


@st.composite
def filter_order_method(draw):
    length = draw(st.integers(12, 80))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    h = rng.standard_normal(length) * draw(st.floats(0.6, 1.0)) ** np.arange(length)
    order = draw(st.integers(1, (length - 1) // 2 - 1))
    return h, order, draw(st.sampled_from(["pencil", "prony", "pade", "aaa"]))


@given(filter_order_method())
def test_stable_real_and_above_the_aak_bound(case):
    h, order, method = case
    red = mor.reduce(h, order, method=method, on_fail="flag")
    if red.info["failed"]:
        return
    assert red.is_stable()
    p = red.poles
    np.testing.assert_allclose(np.sort_complex(p), np.sort_complex(np.conj(p)), atol=1e-12)
    assert red.info["hinf"] >= red.info["aak"] * (1 - 1e-6) - 1e-12


def test_unstable_poles_are_reflected_dropped_or_refused():
    h = hyena_like_filters(6, 300, seed=11)
    keep = mor.reduce(h, 24, method="pencil", unstable="keep", on_fail="flag")
    outside = keep.info["poles_touched"] > 0
    assert outside.any(), "this case needs poles outside the circle"
    assert np.all(keep.info["failed"][outside]) and np.all(keep.is_stable())
    kept = mor.reduce(h, 24, method="pencil", unstable="keep", allow_unstable=True)
    assert not np.all(kept.is_stable())
    reflected = mor.reduce(h, 24, method="pencil")
    assert np.all(reflected.is_stable()) and np.all(reflected.order == 24)
    np.testing.assert_array_equal(reflected.info["poles_touched"], keep.info["poles_touched"])
    dropped = mor.reduce(h, 24, method="pencil", unstable="drop")
    assert np.all(dropped.is_stable())
    assert np.all(dropped.order[outside] < 24) and np.all(dropped.order[~outside] == 24)
    with pytest.raises(ValueError, match="unstable"):
        mor.reduce(h, 4, method="pencil", unstable="ignore")


def test_fit_residues_exact_and_weighted():
    ssm = mor.ModalSSM.from_compact([0.8 * np.exp(0.5j), 0.6, 0.3j], [1 - 2j, 0.5, 0.2], 0.7)
    h = ssm.impulse(120)[None]
    poles, residues, direct = ssm.compact()
    live = np.ones((1, poles.size), dtype=bool)
    fitted, d = fit_residues(h, poles[None], live)
    np.testing.assert_allclose(fitted[0], residues, atol=1e-12)
    assert d[0] == 0.7
    w = np.linspace(1, 2, 120)
    np.testing.assert_allclose(fit_residues(h, poles[None], live, w)[0][0], residues, atol=1e-12)
    none, _ = fit_residues(h, poles[None], np.zeros_like(live))
    assert np.all(none == 0)


def test_pencil_on_long_filters_uses_the_matrix_free_path(trained_filters):
    h = trained_filters[1, :4, :1500]
    red = mor.reduce(h, 12, method="pencil")
    dense = mor.reduce(h, 12, method="pencil", hankel_method="dense")
    np.testing.assert_allclose(red.info["l2"], dense.info["l2"], rtol=1e-5)
    assert np.all(red.is_stable())


def test_method_arguments():
    with pytest.raises(ValueError, match="pencil parameter"):
        mor.reduce(np.ones(20), 4, method="pencil", pencil=2)
    with pytest.raises(ValueError, match="taps"):
        mor.reduce(np.ones(9), 5, method="prony")
    with pytest.raises(ValueError, match="taps"):
        mor.reduce(np.ones(9), 5, method="pade")
    with pytest.raises(ValueError, match="takes FIR filters"):
        mor.reduce(mor.StateSpace.from_fir(np.ones(5)), 2, method="pencil")


@given(stable_modal(max_pairs=3, max_real=2, max_modulus=0.999), st.integers(2, 60))
def test_tail_gram_is_the_tail_energy(ssm, length):
    """``c^T A c`` is the model's energy after lag ``L - 1``, summed out by brute force."""
    from mor.fitting.least_squares import tail_gram

    poles, residues, _ = ssm.compact()
    pair = poles.imag != 0
    c = np.concatenate([residues.real, residues[pair].imag])
    steps = int(np.ceil(np.log(1e-17) / np.log(np.abs(poles).max()))) + length
    tail = ssm.impulse(steps)[length:]
    np.testing.assert_allclose(c @ tail_gram(poles, length) @ c, tail @ tail,
                               rtol=1e-8, atol=1e-14 * max(tail @ tail, 1e-300))


@given(stable_modal(max_pairs=3, max_real=2, max_modulus=0.95), st.integers(8, 60),
       st.integers(0, 2**31))
def test_fit_residues_with_the_tail_fits_the_zero_padded_filter(ssm, length, seed):
    """``tail_weight=1`` solves least squares against the taps followed by zeros over all
    time: the same residues as the taps-only fit of the zero-padded filter, long enough for
    the poles' responses to die out; and its error over all time is the least of the two."""
    poles, _, _ = ssm.compact()
    live = np.ones((1, poles.size), dtype=bool)
    h = np.random.default_rng(seed).standard_normal((1, length))
    steps = int(np.ceil(np.log(1e-18) / np.log(np.abs(poles).max()))) + length
    padded = np.concatenate([h, np.zeros((1, steps))], axis=1)
    with_tail, _ = fit_residues(h, poles[None], live, tail_weight=1.0)
    long, _ = fit_residues(padded, poles[None], live)
    np.testing.assert_allclose(with_tail, long, rtol=1e-6, atol=1e-8 * np.abs(long).max())
    taps_only, _ = fit_residues(h, poles[None], live)

    def error_over_all_time(res):
        model = mor.ModalSSM.from_compact(poles, res[0], h[0, 0]).impulse(padded.shape[1])
        return np.linalg.norm(model - padded[0])

    assert error_over_all_time(with_tail) <= error_over_all_time(taps_only) * (1 + 1e-9)


@given(stable_modal(max_pairs=4, max_real=3, max_modulus=0.999), st.integers(2, 400),
       st.sampled_from([0.0, 0.1, 1.0]), st.integers(0, 2**31))
def test_residue_kernel_matches_the_reference(ssm, length, tail_weight, seed):
    """The Numba residue fit gives the NumPy reference's models (noisy taps of the system, so
    that the least-squares problem is not exact), a pole at zero and a dead mode included."""
    from mor.fitting.least_squares import fit_residues_reference

    poles, _, _ = ssm.compact()
    poles = np.concatenate([poles, [0.0, 0.5]])
    live = np.ones((1, poles.size), dtype=bool)
    live[0, -1] = False
    rng = np.random.default_rng(seed)
    h = ssm.impulse(length)[None] + 0.1 * rng.standard_normal((1, length))
    got, d = fit_residues(h, poles[None], live, tail_weight=tail_weight)
    ref, _ = fit_residues_reference(h, poles[None], live, tail_weight=tail_weight)
    assert got[0, -1] == 0 and d[0] == h[0, 0]
    model = [mor.ModalSSM.from_compact(poles, r[0], d[0]).impulse(length) for r in (got, ref)]
    np.testing.assert_allclose(model[0], model[1], atol=1e-9 * np.linalg.norm(h))


def _exact_l2(h, poles, residues, direct):
    """``||h - h_hat|| / ||h||`` of a compact modal model in 50-digit arithmetic (mpmath)."""
    with mpmath.workdps(50):
        lam = [mpmath.mpc(p.real, p.imag) for p, r in zip(poles, residues) if r != 0]
        res = [mpmath.mpc(r.real, r.imag) for r in residues if r != 0]
        taps = [mpmath.mpf(float(x)) for x in h]
        power = [mpmath.mpc(1)] * len(lam)
        energy = (taps[0] - mpmath.mpf(float(direct))) ** 2
        for k in range(1, len(taps)):
            energy += (taps[k] - mpmath.re(mpmath.fsum(r * q for r, q in zip(res, power)))) ** 2
            power = [q * p for q, p in zip(power, lam)]
        return float(mpmath.sqrt(energy / mpmath.fsum(x * x for x in taps)))


def _pencil_model(h, order):
    """The matrix-pencil model with least-squares residues (before `mor.reduce` judges it,
    and without the float32 guard of `PoleMethod`, which would refit these on rounded
    poles)."""
    family = PencilFamily.from_fir(h[None], order)
    family._float32_safe = lambda which, *_: np.zeros(which.size, dtype=bool)
    part = family.model(np.array([order]))
    return mor.ModalSSM.from_compact(part.poles[0], part.residues[0], part.direct[0])


def test_l2_is_exact_where_residues_cancel():
    """Issue 17.6 item 3: the matrix pencil on remez(63) low-pass designs at order 30 puts
    poles within 1e-14 of the circle with residues up to 3e8 that cancel on the taps; the
    impulse response summed in floating point left l2 off by 5e-9 to 3e-8 (relative). Where
    the rounding bound says so, l2 is now recomputed in double-double arithmetic."""
    for cutoff in (0.05, 0.3):
        h = scipy.signal.remez(63, [0, cutoff, cutoff + 0.03, 0.5], [1, 0])
        model = _pencil_model(h, 30)
        assert np.abs(model.compact()[1]).max() > 1e6
        exact = _exact_l2(h, *model.compact())
        assert float(mor.compare(h, model).l2) == pytest.approx(exact, rel=1e-13)


def test_l2_is_exact_with_a_cancelling_pole_pair():
    """A balanced truncation with a pole pair one ulp apart and residues +-1e11 added (their
    sum changes the taps by about 1e-4): l2 was 1.9% off (0.003529 for 0.003599)."""
    h = scipy.signal.firwin(255, 0.05)
    poles, residues, direct = mor.reduce(h, 16).compact()
    lam = 0.97 * np.exp(0.5j)
    poles = np.r_[poles, lam, complex(np.nextafter(lam.real, 1.0), lam.imag)]
    residues = np.r_[residues, 1e11, -1e11]
    model = mor.ModalSSM.from_compact(poles, residues, direct)
    exact = _exact_l2(h, *model.compact())
    assert float(mor.compare(h, model).l2) == pytest.approx(exact, rel=1e-13)


def test_info_describes_the_model_returned():
    """Issue 17.6 item 4: robust Padé lowers its degree where the Toeplitz system is rank
    deficient (order 6 for 16 on firwin(255, 0.05)); info kept the order asked for and the AAK
    and BT figures of order 16. Every size request now reports the model's own order."""
    h = scipy.signal.firwin(255, 0.05)
    s = mor.hankel_singular_values(h)
    bounds = mor.error_bounds(h, max_order=16)
    red = mor.reduce(h, 16, method="pade")
    info = red.info
    assert red.order == 6 and info["order"] == 6 and info["rank_capped"]
    assert info["aak"] == pytest.approx(s[6] / info["peak"], rel=1e-12)
    assert info["bt_bound"] == pytest.approx(bounds.bt[6] / info["peak"], rel=1e-12)
    assert info["bt_bound"] >= 2 * s[6:].sum() / info["peak"] * (1 - 1e-12)
    errors = mor.compare(h, red)
    for key in ("order", "l2", "tail", "hinf", "aak"):
        assert getattr(errors, key) == pytest.approx(info[key], rel=1e-10), key
    for request in ({"modes": 8}, {"tol": 0.5, "on_fail": "best"}):
        red = mor.reduce(h, method="pade", **request)
        assert np.all(red.info["order"] == red.order), request
        assert red.info["aak"] == pytest.approx(s[int(red.order)] / red.info["peak"], rel=1e-12)
    # a method that keeps every pole asked for is not flagged
    assert not mor.reduce(h, 16, method="pencil", on_fail="flag").info["rank_capped"]


def test_a_model_with_a_resonance_the_filter_lacks_fails():
    """Issue 17.6 item 3: the matrix pencil on remez(63, 0.05) at order 30 reflects a pole
    from the circle to 7e-15 inside it, with residues of 3e8: hinf 8.5e10 (relative to the
    filter's peak) for balanced truncation's bound 0.42, and it was not flagged. A model
    worse by 1e3 than both the order-0 model's bound and balanced truncation's fails; the
    poor but sound (the pencil on firwin(255, 0.05) at 16: hinf 456) does not."""
    h = scipy.signal.remez(63, [0, 0.05, 0.08, 0.5], [1, 0])
    broken = r"hinf error [\d.]+e\+10 \(relative to max \|H\|\) is more than 1000 times"
    with pytest.raises(ValueError, match=broken):
        mor.reduce(h, 30, method="pencil")
    red = mor.reduce(h, 30, method="pencil", on_fail="flag")
    assert red.info["failed"] and red.order == 0 and red.info["order"] == 0
    assert "a resonance the filter does not have" in str(red.info["reason"])
    assert red.info["hinf"] <= 1 + abs(h[0]) / red.info["peak"]  # the order-0 model's
    sound = mor.reduce(scipy.signal.firwin(255, 0.05), 16, method="pencil")
    assert not sound.info["failed"] and 100 < sound.info["hinf"] < 1000


def test_order_zero_and_two_taps():
    # found by tests/test_robustness.py: the matrix pencil refused order 0 (the direct term
    # alone) for filters of 1 or 2 taps, and order 1 of 2 taps, whose pencil of size 1 is valid
    for length, order in ((1, 0), (2, 0), (2, 1)):
        h = 0.7 ** np.arange(length)
        red = mor.reduce(h, order, method="pencil")
        assert red.order == order and red.info["l2"] < 1e-12 + (order == 0) * 0.6
    assert mor.reduce(np.ones(1), 0, method="pencil", pencil=1).order == 0  # in its range
