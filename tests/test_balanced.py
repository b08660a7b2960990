"""Balanced truncation and order selection, against the theory."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

import mor
from mor.demo import hyena_like_filters
from systems import decayed_length, stable_modal


@given(stable_modal())
def test_recovers_exact_order_systems(ssm):
    n = int(ssm.order)
    length = max(decayed_length(ssm), n + 2)
    h = ssm.impulse(length)
    red = mor.reduce(h, n)
    assert red.order == n and red.is_stable()
    assert red.info["l2"] <= 1e-8
    np.testing.assert_allclose(np.sort_complex(red.poles), np.sort_complex(ssm.poles), atol=1e-6)


@st.composite
def filter_and_order(draw):
    length = draw(st.integers(3, 80))
    seed = draw(st.integers(0, 2**31))
    decay = draw(st.floats(0.5, 1.0))
    rng = np.random.default_rng(seed)
    h = rng.standard_normal(length) * decay ** np.arange(length)
    return h, draw(st.integers(0, length - 2))


@given(filter_and_order())
def test_hinf_between_aak_and_bt_bounds(case):
    h, order = case
    red = mor.reduce(h, order, hankel_method="dense", on_fail="flag")
    if red.info["failed"]:  # the modal form could not be made accurate: said, not hidden
        assert "near-defective" in str(red.info["reason"])
        return
    full = mor.error_bounds(h)
    d = int(red.order)
    assert red.is_stable()
    abs_err = red.info["hinf"] * red.info["peak"]
    sigma = full.aak[d] if d < h.size - 1 else 0.0
    assert abs_err >= sigma * (1 - 1e-6) - 1e-12
    assert abs_err <= full.bt[d] * (1 + 1e-6) + 1e-12 if d < h.size - 1 else abs_err <= 1e-9


def test_dense_and_krylov_paths_give_the_same_models():
    h = hyena_like_filters(4, 800, seed=2)
    a = mor.reduce(h, 16, hankel_method="dense")
    b = mor.reduce(h, 16, hankel_method="krylov")
    np.testing.assert_allclose(a.info["hinf"], b.info["hinf"], rtol=1e-6)
    np.testing.assert_allclose(a.impulse(800), b.impulse(800), atol=1e-6 * np.abs(h).max())


def test_trained_filters_bounds_and_stability(trained_filters):
    h = trained_filters[:, ::64]  # 4 layers x 4 channels, L = 2048
    red = mor.reduce(h, 24)
    assert np.all(red.is_stable()) and np.all(red.order == 24)
    assert np.all(red.info["hinf"] >= red.info["aak"] * (1 - 1e-6))
    assert np.all(red.info["hinf"] <= red.info["bt_bound"])
    cmp = mor.compare(h, red)
    np.testing.assert_allclose(cmp.hinf, red.info["hinf"])
    np.testing.assert_allclose(cmp.l2, red.info["l2"])


def test_modes_cap_the_state_size():
    h = hyena_like_filters(6, 300, seed=4)
    red = mor.reduce(h, modes=5)
    assert np.all(red.modes <= 5)
    assert np.all(red.order >= 5) and np.all(red.order <= 10)
    # the next order up would need more than 5 modes
    for i in range(6):
        d = int(red.order[i])
        if d < 10:
            assert mor.reduce(h[i], d + 1).modes > 5


class TestTolerance:
    def test_smallest_order_meeting_l2(self):
        h = hyena_like_filters(4, 300, seed=1)
        red = mor.reduce(h, tol=5e-2)
        assert np.all(red.info["met_tol"]) and np.all(red.info["l2"] <= 5e-2)
        for i in range(4):
            d = int(red.order[i])
            below = [mor.reduce(h[i], k).info["l2"] for k in range(d)]
            assert all(e > 5e-2 for e in below)

    def test_smallest_order_meeting_hinf(self):
        h = hyena_like_filters(3, 300, seed=2)
        red = mor.reduce(h, tol=2e-2, norm="hinf")
        assert np.all(red.info["hinf"] <= 2e-2)
        assert np.all(red.info["aak"] <= 2e-2)  # AAK: nothing below search_start can work
        for i in range(3):
            d = int(red.order[i])
            start = int(red.info["search_start"][i])
            assert mor.reduce(h[i], start).info["aak"] <= 2e-2 or start == d
            for k in range(start, d):
                assert mor.reduce(h[i], k).info["hinf"] > 2e-2

    def test_unreachable_tolerance_is_reported(self):
        h = hyena_like_filters(3, 300, seed=3)
        with pytest.raises(ValueError, match="no order <= 4 meets l2"):
            mor.reduce(h, tol=1e-6, max_order=4)
        red = mor.reduce(h, tol=1e-6, max_order=4, on_fail="flag")
        assert np.all(red.info["failed"]) and not np.any(red.info["met_tol"])
        assert np.all(red.order == 0)
        assert all("no order <= 4" in r for r in red.info["reason"])
        # on_fail="best": each keeps its most accurate stable model up to max_order, reported
        best = mor.reduce(h, tol=1e-6, max_order=4, on_fail="best")
        assert not np.any(best.info["failed"]) and not np.any(best.info["met_tol"])
        assert np.all(best.is_stable()) and np.all((best.order >= 1) & (best.order <= 4))
        for i in range(h.shape[0]):
            scan = [mor.reduce(h[i], k).info["l2"] for k in range(1, 5)]
            np.testing.assert_allclose(best.info["l2"][i], min(scan), rtol=1e-6)
        assert all("no order <= 4" in r for r in best.info["reason"])

    def test_mixed_batch(self):
        h = hyena_like_filters(2, 300, seed=3)
        h[1] = 0.0
        h[1, 0] = 1.0
        red = mor.reduce(h, tol=1e-3, max_order=20, on_fail="flag")
        assert red.order[1] == 0 and red.info["met_tol"][1]


def test_dc_match_matches_the_dc_gain():
    h = hyena_like_filters(3, 200, seed=5)
    full_dc = h.sum(axis=1)
    red = mor.reduce(h, 10, dc_match=True, hankel_method="dense")
    assert red.info["method"] == "balanced" and red.info["method_options"]["dc_match"]
    np.testing.assert_allclose(red.freqresp([0.0])[:, 0].real, full_dc, rtol=1e-8)
    assert np.all(red.is_stable())
    bounds = mor.error_bounds(h)
    assert np.all(red.info["hinf"] * red.info["peak"] <= bounds.bt[:, 10] * (1 + 1e-6))


class TestStateSpace:
    def test_reduce_dense_system(self):
        ssm = mor.ModalSSM.from_compact([0.9 * np.exp(0.4j), 0.5, -0.3, 0.7j],
                                        [1.0 + 0.2j, 0.4, 0.05, 0.01], 0.2)
        dense = ssm.to_dense()
        red = mor.reduce(dense, 3)
        s = dense.hankel_singular_values()
        assert red.order == 3 and red.is_stable()
        abs_err = red.info["hinf"] * red.info["peak"]
        assert s[3] * (1 - 1e-6) <= abs_err <= 2 * s[3:].sum() * (1 + 1e-6)
        exact = mor.reduce(dense, 6)
        np.testing.assert_allclose(exact.impulse(100), ssm.impulse(100), atol=1e-10)

    def test_tol_needs_fir(self):
        with pytest.raises(ValueError, match="tol needs FIR"):
            mor.reduce(mor.StateSpace.from_fir(np.ones(5)), tol=1e-3)

    def test_fir_realisation_matches_fir_path(self):
        h = hyena_like_filters(1, 120, seed=6)[0]
        a = mor.reduce(mor.StateSpace.from_fir(h), 8)
        b = mor.reduce(h, 8)
        np.testing.assert_allclose(a.impulse(300), b.impulse(300), atol=1e-9)


class TestSelectOrder:
    def test_orders_match_reduce_and_report_failures(self):
        h = hyena_like_filters(4, 300, seed=8)
        sel = mor.select_order(h, 5e-2, max_order=12)
        red = mor.reduce(h, tol=5e-2, max_order=12, on_fail="flag")
        np.testing.assert_array_equal(sel.met, red.info["met_tol"])
        np.testing.assert_array_equal(sel.order[sel.met], red.order[sel.met])
        assert np.all(sel.order[~sel.met] == -1) and np.all(np.isnan(sel.error[~sel.met]))
        assert np.all(sel.error[sel.met] <= 5e-2)
        assert sum(sel.histogram().values()) == 4
        assert "histogram" in str(sel)

    def test_unreachable_everywhere(self):
        h = hyena_like_filters(2, 200, seed=9)
        sel = mor.select_order(h, 1e-9, norm="hinf", max_order=3)
        assert not sel.met.any() and np.all(sel.order == -1)

    def test_per_layer_histogram(self, trained_filters):
        h = trained_filters[:, :8]
        sel = mor.select_order(h, 2e-2, norm="hinf", method="hankel")
        per_layer = sel.histogram(axis=0)
        assert sorted(per_layer) == [0, 1, 2, 3]
        assert all(sum(c.values()) == 8 for c in per_layer.values())
        assert np.all(sel.error[sel.met] <= 2e-2)
        assert np.all(sel.aak[sel.met] <= 2e-2)


def test_chunked_realisations_are_the_same(monkeypatch):
    """Filters taken a few at a time (bounded memory for the singular vectors) give the same
    models as one batch."""
    from mor.methods import balanced
    h = hyena_like_filters(7, 600, seed=3)
    whole = mor.reduce(h, 12, errors=())
    monkeypatch.setattr(balanced, "BT_CHUNK_BYTES", 16 * 599 * 13 * 3)  # three filters a time
    parts = mor.reduce(h, 12, errors=())
    np.testing.assert_array_equal(parts.poles, whole.poles)
    np.testing.assert_array_equal(parts.residues, whole.residues)
