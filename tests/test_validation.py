"""Bad input gets a ValueError that says what is wrong; valid edge cases work."""

import numpy as np
import pytest

import mor


@pytest.mark.parametrize("fn", [
    lambda h: mor.hankel_singular_values(h),
    lambda h: mor.reduce(h, 1),
    lambda h: mor.error_bounds(h),
])
class TestBadFilters:
    def test_nan_names_the_filter(self, fn):
        h = np.ones((3, 4, 16))
        h[2, 1, 5] = np.nan
        with pytest.raises(ValueError, match=r"NaN or Inf.*\(2, 1\)"):
            fn(h)

    def test_inf(self, fn):
        h = np.ones(16)
        h[3] = np.inf
        with pytest.raises(ValueError, match="NaN or Inf"):
            fn(h)

    def test_complex(self, fn):
        with pytest.raises(ValueError, match="real"):
            fn(np.ones(8) * 1j)

    def test_empty(self, fn):
        with pytest.raises(ValueError, match="empty"):
            fn(np.ones((3, 0)))

    def test_zero_dim(self, fn):
        with pytest.raises(ValueError, match="0-d"):
            fn(np.float64(1.0))

    def test_strings(self, fn):
        with pytest.raises(ValueError, match="numeric"):
            fn(np.array(["a", "b"]))


@pytest.mark.parametrize("order", [-1, 16, 100])
def test_order_out_of_range(order):
    with pytest.raises(ValueError, match="order"):
        mor.reduce(np.ones(16), order)


def test_order_not_integer():
    with pytest.raises(ValueError, match="integer"):
        mor.reduce(np.ones(16), 2.5)


@pytest.mark.parametrize("tol", [0.0, -1e-3, np.nan, np.inf])
def test_bad_tol(tol):
    with pytest.raises(ValueError, match="tol"):
        mor.reduce(np.ones(16), tol=tol)


def test_exactly_one_size_argument():
    with pytest.raises(ValueError, match="exactly one"):
        mor.reduce(np.ones(16))
    with pytest.raises(ValueError, match="exactly one"):
        mor.reduce(np.ones(16), 2, tol=1e-3)


def test_bad_norm_method_on_fail():
    with pytest.raises(ValueError, match="norm"):
        mor.reduce(np.ones(16), tol=1e-3, norm="l1")
    with pytest.raises(ValueError, match="unknown method"):
        mor.reduce(np.ones(16), 2, method="magic")
    with pytest.raises(ValueError, match="on_fail"):
        mor.reduce(np.ones(16), 2, on_fail="ignore")
    with pytest.raises(ValueError, match="errors must name.*'f32_deviation'"):
        mor.reduce(np.ones(16), 2, errors=("l2", "f32"))


def test_hsv_k_out_of_range():
    with pytest.raises(ValueError, match="k must"):
        mor.hankel_singular_values(np.ones(16), 16)
    with pytest.raises(ValueError, match="method"):
        mor.hankel_singular_values(np.ones(16), 2, method="qr")


@pytest.mark.parametrize("method", ["dense", "krylov"])
def test_hsv_k_and_rtol_checked(method):
    # found by tests/test_robustness.py: k=2.5 was truncated and k="3" parsed; rtol 0, < 0 or
    # NaN ran Lanczos to its full basis as if certified, rtol="x" raised a Numba TypingError
    h = np.r_[1.0, 0.5 ** np.arange(400)]
    for k in (2.5, "3", True, [3]):
        with pytest.raises(ValueError, match="k must be an integer"):
            mor.hankel_singular_values(h, k, method=method)
    for rtol in (0.0, -1.0, np.nan, np.inf, "x", None):
        with pytest.raises(ValueError, match="rtol must be a positive finite number"):
            mor.hankel_singular_values(h, 4, method=method, rtol=rtol)
    with pytest.raises(ValueError, match="rtol"):
        mor.reduce(h, 4, hankel_method=method, rtol=-1.0)
    assert mor.hankel_singular_values(h, 2.0, method=method).shape == (2,)


def test_compare_shape_mismatch():
    ssm = mor.reduce(np.ones((2, 16)), 2)
    with pytest.raises(ValueError, match="batch shape"):
        mor.compare(np.ones((3, 16)), ssm)


class TestEdgeCases:
    def test_zero_filter(self):
        h = np.zeros((2, 64))
        assert np.all(mor.hankel_singular_values(h, 5) == 0)
        ssm = mor.reduce(h, 4)
        assert np.all(ssm.order == 0) and np.all(ssm.info["rank_capped"])
        np.testing.assert_array_equal(ssm.impulse(64), 0)
        assert np.all(ssm.info["l2"] == 0) and np.all(ssm.info["hinf"] == 0)
        assert np.all(ssm.info["f32_deviation"] == 0)
        assert np.all(mor.compare(h, ssm).f32_deviation == 0)
        tol = mor.reduce(h, tol=1e-3)
        assert np.all(tol.order == 0) and np.all(tol.info["met_tol"])

    def test_length_one(self):
        h = np.array([[2.5], [-1.0]])
        assert mor.hankel_singular_values(h).shape == (2, 0)
        ssm = mor.reduce(h, 0)
        np.testing.assert_array_equal(ssm.impulse(3), [[2.5, 0, 0], [-1, 0, 0]])
        assert np.all(ssm.info["l2"] == 0)
        assert np.all(mor.reduce(h, tol=1e-6).order == 0)

    def test_integer_dtype(self):
        h = np.array([3, 1, -2, 4, 0, 1, 2])
        np.testing.assert_allclose(mor.reduce(h, 3).impulse(7),
                                   mor.reduce(h.astype(float), 3).impulse(7))
        np.testing.assert_allclose(mor.hankel_singular_values(h),
                                   mor.hankel_singular_values(h.astype(float)))

    def test_single_filter_and_batch_of_one(self):
        rng = np.random.default_rng(0)
        h = rng.standard_normal(40) * 0.9 ** np.arange(40)
        one = mor.reduce(h, 6)
        batch = mor.reduce(h[None], 6)
        assert one.shape == () and batch.shape == (1,)
        np.testing.assert_allclose(one.impulse(40), batch.impulse(40)[0])
        assert mor.hankel_singular_values(h, 3).shape == (3,)
        assert mor.hankel_singular_values(h[None], 3).shape == (1, 3)

    def test_order_zero_is_direct_term(self):
        h = np.array([0.7, 0.3, 0.1])
        ssm = mor.reduce(h, 0)
        np.testing.assert_array_equal(ssm.impulse(3), [0.7, 0, 0])

    def test_full_order_fir_is_reported_not_garbage(self):
        # An FIR filter's exact realisation is nilpotent (a defective pole at 0): its modal
        # form cannot be accurate, and reduce says so instead of returning garbage.
        h = np.array([3.0, 1, -2, 4, 0.5, 1, 2])
        with pytest.raises(ValueError, match="near-defective"):
            mor.reduce(h, 6)
        flagged = mor.reduce(h, 6, on_fail="flag")
        assert flagged.info["failed"] and flagged.order == 0

    def test_per_filter_orders(self):
        rng = np.random.default_rng(1)
        h = rng.standard_normal((3, 30)) * 0.8 ** np.arange(30)
        ssm = mor.reduce(h, np.array([1, 4, 9]))
        np.testing.assert_array_equal(ssm.order, [1, 4, 9])


def test_l2_rounding_check_does_not_overflow_on_huge_residues():
    # a near-defective model of a filter spanning 1e28..1e214: its rounding bound's norm
    # overflowed (RuntimeWarning) before the l2 check
    h = np.array([6.8e148, -2.7e173, 8.7e136, 2.8e214, -2.0e191, 3.3e28])
    fit = mor.reduce(h, 2, on_fail="flag")
    assert np.isfinite(fit.info["l2"])


def test_statespace_batch_with_a_failed_system_reports_each_own_errors():
    # the errors of a batch's remaining systems were computed against the whole batch
    sys = mor.StateSpace.from_fir(np.stack([0.5 ** np.arange(8), np.eye(8)[3]]))
    fit = mor.reduce(sys, 3, on_fail="flag")
    assert fit.info["hinf"].shape == (2,) and np.all(np.isfinite(fit.info["hinf"]))
    assert fit.info["hinf"][0] >= fit.info["aak"][0] * (1 - 1e-9)


def test_l2_of_a_model_with_huge_residues_does_not_overflow():
    h = np.zeros(7)
    h[[2, 6]] = [-1.7e-18, 1.0]
    fit = mor.reduce(h, 5, on_fail="flag")  # near-defective: flagged, no RuntimeWarning
    assert fit.info["failed"] or np.isfinite(fit.info["l2"])


# ----------------------------------------------------------------------------- float32 (18.3)


def _float32_deviation(bank, length):
    """``max |h32 - h| / max |h|`` recomputed with NumPy: the compact parameters at a power of
    two that puts the float64 peak in [1/2, 1), rounded by ``astype(complex64)`` /
    ``astype(float32)``, the recurrence in float32 (the complex product in real float32
    operations, as IEEE spells it: NumPy's complex64 array product may fuse them)."""
    count = int(np.prod(bank.shape, dtype=np.int64))
    p, r, d = (np.asarray(a).reshape((count,) + np.shape(a)[len(bank.shape):])
               for a in bank.compact())
    k = np.arange(length - 1)
    exact = np.zeros((p.shape[0], length))
    exact[:, 0] = d
    exact[:, 1:] = np.real(np.einsum("fm,fmk->fk", r, p[..., None] ** k))
    peak = np.abs(exact).max(axis=-1)
    down = np.ldexp(1.0, -np.frexp(peak)[1])
    z = (r * down[:, None]).astype(np.complex64)
    p32 = p.astype(np.complex64)
    zr, zi, pr, pi = z.real.copy(), z.imag.copy(), p32.real.copy(), p32.imag.copy()
    out = np.zeros(exact.shape, np.float32)
    out[:, 0] = (d * down).astype(np.float32)
    for t in range(1, length):
        acc = np.zeros(p.shape[0], np.float32)
        for n in range(p.shape[1]):
            acc = acc + zr[:, n]
        out[:, t] = acc
        zr, zi = zr * pr - zi * pi, zr * pi + zi * pr
    gap = np.abs(out - exact * down[:, None]).max(axis=-1)
    dev = np.where(peak > 0, gap / np.where(peak > 0, peak * down, 1.0), 0.0)
    return dev.reshape(bank.shape)


@pytest.mark.parametrize("method", ["balanced", "hankel", "aaa", "pencil", "modal", "irka"])
def test_every_bank_reports_its_float32_deviation(method):
    from mor.demo import hyena_like_filters

    h = hyena_like_filters(6, 256, seed=4).reshape(2, 3, 256)
    bank = mor.reduce(h, modes=4, method=method, on_fail="flag")
    assert "f32_deviation" in mor.conventions.INFO
    got = bank.info["f32_deviation"]
    assert got.shape == (2, 3) and np.all(np.isfinite(got)) and np.all(got >= 0)
    np.testing.assert_allclose(got, _float32_deviation(bank, 256), rtol=1e-6, atol=1e-12)
    cmp = mor.compare(h, bank)
    np.testing.assert_array_equal(cmp.f32_deviation, got)
    assert "f32_deviation" in cmp.columns and "f32_deviation" in str(cmp).splitlines()[0]
    assert len(cmp.to_dict()["f32_deviation"]) == 2
    # left out where not asked for, as the other errors
    assert "f32_deviation" not in mor.reduce(h, 4, method=method, errors=("l2",)).info


def test_float32_deviation_of_failed_filters_is_their_order_0_models():
    # as their l2: the model returned (the direct term h[0] alone) against the filter
    h = np.array([[3.0, 1, -2, 4, 0.5, 1, 2], [0.1, 1, -2, 4, 0.5, 1, 2]])  # near-defective
    flagged = mor.reduce(h, 6, on_fail="flag")
    assert flagged.info["failed"].all()
    np.testing.assert_array_equal(flagged.info["f32_deviation"], _float32_deviation(flagged, 7))
    assert flagged.info["f32_deviation"][0] == 0.0  # 3.0 is a float32 number
    assert 0 < flagged.info["f32_deviation"][1] <= 2.0**-24  # 0.1 is not


def test_float32_deviation_of_dense_systems():
    # no taps: measured over the states plus one, or until the slowest pole decays below
    # float32's epsilon (at most F32_MAX_LENGTH)
    from mor.drivers.reduction import F32_MAX_LENGTH, statespace_length

    fir = 0.9 ** np.arange(40) * np.cos(0.3 * np.arange(40))
    shift = mor.StateSpace.from_fir(np.stack([fir, fir[::-1]]))
    np.testing.assert_array_equal(statespace_length(shift), [40, 40])
    slow = mor.ModalSSM.from_compact(np.array([[0.9 * np.exp(0.3j), 0.5], [0.999, 0.2]]),
                                     np.array([[1.0, 0.3], [1.0, -0.5]]),
                                     np.array([0.1, 0.1])).to_dense()
    lengths = statespace_length(slow)
    rho = np.abs(np.linalg.eigvals(slow.a)).max(axis=-1)
    np.testing.assert_array_equal(lengths, np.ceil(np.log(np.finfo(np.float32).eps) /
                                                   np.log(rho)).astype(int))
    assert lengths[0] == 152 and lengths[1] == 15935  # |lambda| = 0.9, 0.999
    marginal = mor.StateSpace(np.array([[[1.0]]]), np.ones((1, 1)), np.ones((1, 1)), 0.0)
    assert statespace_length(marginal)[0] == F32_MAX_LENGTH
    for sys in (shift, slow):
        red = mor.reduce(sys, 2)
        got = red.info["f32_deviation"]
        lengths = statespace_length(sys)
        for i in range(2):
            assert got[i] == pytest.approx(_float32_deviation(red[i], int(lengths[i])), rel=1e-6)
    # an FIR filter's shift realisation is measured over the filter's own taps
    taps = mor.reduce(fir, 2)
    dense = mor.reduce(mor.StateSpace.from_fir(fir[None]), 2)
    assert dense.info["f32_deviation"][0] == pytest.approx(
        float(_float32_deviation(dense[0], 40)), rel=1e-6)
    assert dense.info["f32_deviation"][0] < 1e-6 and taps.info["f32_deviation"] < 1e-6


def test_cancelling_residues_show_in_f32_deviation_not_in_l2():
    # two poles 2e-8 apart near 0.999 with residues +-1e3 max|h| added to an exact model: l2
    # moves by a few percent, float32 rounding moves the response by more than 1e-3; balanced
    # truncation of the same filter stays at float32's epsilon
    length = 1024
    exact = mor.ModalSSM.from_compact(np.array([0.95 * np.exp(0.3j), 0.9]),
                                      np.array([1 - 0.5j, 0.4]), 0.2)
    h = exact.impulse(length)
    peak = np.abs(h).max()
    cancelling = mor.ModalSSM.from_compact(
        np.array([0.95 * np.exp(0.3j), 0.9, 0.999, 0.999 - 2e-8]),
        np.array([1 - 0.5j, 0.4, 1e3 * peak, -1e3 * peak]), 0.2)
    bad, bt = mor.compare(h, cancelling), mor.compare(h, mor.reduce(h, modes=2))
    assert bad.l2 < 0.1 and bad.f32_deviation > 1e-3
    assert bt.l2 < 1e-10 and bt.f32_deviation < 1e-6
    assert bad.f32_deviation == pytest.approx(float(_float32_deviation(cancelling, length)),
                                              rel=1e-6)


def test_refit_residues_reports_f32_deviation_as_compare():
    from mor.demo import hyena_like_filters

    h = hyena_like_filters(3, 128, seed=1)
    out = mor.refit_residues(h, mor.reduce(h, 6))
    np.testing.assert_array_equal(out.info["f32_deviation"], mor.compare(h, out).f32_deviation)
    np.testing.assert_allclose(out.info["f32_deviation"], _float32_deviation(out, 128),
                               rtol=1e-6)
