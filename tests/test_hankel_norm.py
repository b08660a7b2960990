"""Optimal Hankel-norm approximation against the theory and against SLICOT's AB09CD."""

import re

import numpy as np
import pytest
import scipy.linalg
import scipy.signal
from hypothesis import given, strategies as st

import mor
from mor.demo import hyena_like_filters
from mor.methods._fir_aak import _eigenvector
from mor.methods.hankel_norm import (CLUSTER_RTOL, HankelNormFamily, glover, to_continuous,
                                     to_discrete)
from systems import decayed_length, stable_modal


def _error_system(full: mor.StateSpace, model: mor.ModalSSM) -> mor.StateSpace:
    red = model.to_dense()
    return mor.StateSpace(scipy.linalg.block_diag(full.a, red.a), np.r_[full.b, red.b],
                          np.r_[full.c, -red.c], full.d - red.d)


def test_bilinear_map_round_trip_and_transfer_function():
    ssm = mor.ModalSSM.from_compact([0.9 * np.exp(0.4j), 0.5, -0.3], [1.0 + 0.2j, 0.4, 0.05], 0.2)
    sys = ssm.to_dense()
    parts = (sys.a[None], sys.b[None], sys.c[None], sys.d[None])
    cont = to_continuous(*parts)
    eye = np.eye(sys.n_states)
    for s in (0.3 + 0.7j, -2.0 + 0.1j, 5j):
        z = (1 + s) / (1 - s)
        hd = parts[3][0] + parts[2][0] @ np.linalg.solve(z * eye - parts[0][0], parts[1][0])
        hc = cont[3][0] + cont[2][0] @ np.linalg.solve(s * eye - cont[0][0], cont[1][0])
        assert hd == pytest.approx(hc, rel=1e-12)
    for x, y in zip(to_discrete(*cont), parts):
        np.testing.assert_allclose(x, y, atol=1e-13)


@given(stable_modal(max_pairs=4, max_real=3), st.data())
def test_hankel_norm_error_is_sigma_next_on_dense_systems(ssm, data):
    sys = ssm.to_dense()
    n = sys.n_states
    if n < 2:
        return
    hsv = sys.hankel_singular_values()
    d = data.draw(st.integers(0, n - 2))
    if hsv[d] < 1e-9 * hsv[0] or hsv[d] > (1 - 1e-6) * hsv[max(d - 1, 0)] and d > 0:
        return  # AAK needs a simple sigma_{d+1} above the rounding floor
    red = mor.reduce(sys, d, method="hankel")
    assert red.order == d and red.is_stable()
    err = _error_system(sys, red).hankel_singular_values()[0]
    assert err == pytest.approx(hsv[d], rel=1e-6, abs=1e-12 * hsv[0])
    abs_hinf = red.info["hinf"] * red.info["peak"]
    assert hsv[d] * (1 - 1e-6) <= abs_hinf <= hsv[d:].sum() * (1 + 1e-6) + 1e-12


@given(stable_modal(max_pairs=3, max_real=2), st.data())
def test_hankel_norm_on_fir_filters_of_stable_systems(ssm, data):
    n = int(ssm.order)
    if n < 2:
        return
    length = max(decayed_length(ssm), n + 2)
    h = ssm.impulse(length)
    s = mor.hankel_singular_values(h, n + 1)
    d = data.draw(st.integers(0, n - 2))
    if s[d] < 1e-8 * s[0] or (d > 0 and s[d] > (1 - 1e-6) * s[d - 1]):
        return
    red = mor.reduce(h, d, method="hankel")
    assert red.order == d and red.is_stable()
    # the error's Hankel norm, from its impulse response (model decayed as well)
    rho = np.abs(red.poles).max(initial=0.0)
    horizon = length + (int(np.log(1e-17) / np.log(rho)) + 1 if rho > 0 else 1)
    e = np.zeros(horizon)
    e[:length] = h
    e -= red.impulse(horizon)
    err = mor.hankel_singular_values(e, 1)[0]
    tail = red.info["truncation_tail"] * red.info["peak"]
    assert abs(err - s[d]) <= 1e-6 * s[d] + tail + 1e-12 * s[0]
    assert red.info["hinf"] <= red.info["glover_bound"] * (1 + 1e-6)


def test_trained_filters_beat_balanced_truncation_in_hinf(trained_filters):
    h = trained_filters[:, ::128]
    hn = mor.reduce(h, 16, method="hankel")
    bt = mor.reduce(h, 16)
    assert np.all(hn.is_stable()) and np.all(hn.order == 16)
    assert np.all(hn.info["hinf"] >= hn.info["aak"] * (1 - 1e-6))
    assert np.all(hn.info["hinf"] <= hn.info["glover_bound"] * (1 + 1e-6))
    assert np.median(hn.info["hinf"] / bt.info["hinf"]) < 0.9


def test_direct_keep_keeps_the_first_tap():
    h = hyena_like_filters(2, 200)
    keep = mor.reduce(h, 6, method="hankel", direct="keep")
    np.testing.assert_allclose(keep.direct, h[:, 0])
    best = mor.reduce(h, 6, method="hankel")
    assert np.all(keep.info["aak_exact"]) and np.all(best.info["aak_exact"])
    assert np.all(best.info["hinf"] <= keep.info["hinf"] * (1 + 1e-9))
    with pytest.raises(ValueError, match="direct"):
        mor.reduce(h, 6, method="hankel", direct="zero")


def test_tol_search_with_hankel_method():
    h = hyena_like_filters(3, 300, seed=4)
    red = mor.reduce(h, tol=3e-2, norm="hinf", method="hankel")
    assert np.all(red.info["met_tol"]) and np.all(red.info["hinf"] <= 3e-2)
    for i in range(3):
        for k in range(int(red.info["search_start"][i]), int(red.order[i])):
            assert mor.reduce(h[i], k, method="hankel").info["hinf"] > 3e-2


ctrlsys = pytest.importorskip("ctrlsys")


def _ab09cd(sys: mor.StateSpace, order: int) -> tuple[mor.ModalSSM, np.ndarray]:
    """SLICOT AB09CD's discrete-time Hankel-norm approximant of ``sys`` (one system) at
    ``order``, as a modal model, and the Hankel singular values it computed."""
    # SLICOT overwrites its array arguments: hand it copies
    out = ctrlsys.ab09cd("D", "N", "F", sys.n_states, 1, 1, order, sys.a.copy(order="F"),
                         sys.b[:, None].copy(order="F"), sys.c[None, :].copy(order="F"),
                         np.array([[sys.d]], order="F"), 0.0, 0.0)
    ar, br, cr, dr, nr, hsv, *_ = out
    assert nr == order
    return mor.ModalSSM.from_dense(ar[:nr, :nr], br[:nr, 0], cr[0, :nr], dr[0, 0]), hsv


@pytest.mark.parametrize(("size", "order"), [(160, 4), (160, 12), (300, 24)])
def test_matches_slicot_ab09cd(trained_filters, size, order):
    """Against AB09CD on dense systems of order 160 and 300 (models of a trained filter)."""
    base = mor.reduce(trained_filters[1, 5], size)
    sys = base.to_dense()
    theirs, hsv = _ab09cd(sys, order)
    ours = mor.reduce(sys, order, method="hankel")
    np.testing.assert_allclose(sys.hankel_singular_values()[: order + 2], hsv[: order + 2],
                               rtol=1e-7)
    err_ours = _error_system(sys, ours).hankel_singular_values()[0]
    err_theirs = _error_system(sys, theirs).hankel_singular_values()[0]
    assert err_ours == pytest.approx(hsv[order], rel=1e-6)
    assert err_theirs == pytest.approx(hsv[order], rel=1e-6)
    # the same strictly proper part (the direct terms are chosen differently)
    np.testing.assert_allclose(ours.impulse(400)[1:], theirs.impulse(400)[1:],
                               atol=1e-7 * np.abs(theirs.impulse(400)).max())


@pytest.mark.parametrize("order", [6, 12])
def test_exact_fir_construction_matches_slicot_ab09cd_on_the_whole_filter(order):
    """The default (exact) construction on the taps against AB09CD on the filter's whole
    shift realisation (206 states, no truncation on either side): the same strictly proper
    part, Hankel error sigma_{d+1}."""
    k = np.arange(207)
    h = 0.97**k * np.cos(0.2 * k) + 0.5 * 0.9**k * np.cos(2.1 * k) + 0.3 * 0.95**k
    theirs, hsv = _ab09cd(mor.StateSpace.from_fir(h), order)
    ours = mor.reduce(h, order, method="hankel")
    assert ours.info["aak_exact"] and ours.info["truncation_tail"] == 0
    assert _hankel_error(h, ours)[0] == pytest.approx(hsv[order], rel=1e-7)
    length = 2000
    np.testing.assert_allclose(ours.impulse(length)[1:], theirs.impulse(length)[1:],
                               atol=1e-8 * np.abs(theirs.impulse(length)).max())


def _penzl_like(n: int) -> mor.StateSpace:
    """Penzl's example (pyMOR's ``penzl_example`` at ``n = 1006``: the pairs ``-1 +- 100i,
    200i, 400i`` and real poles ``-1, -2, ...``, ``B = C^T`` of ones with 10 on the pairs) with
    ``n`` states, made discrete by the bilinear map: poles up to ``1 - 1.25e-5``."""
    blocks = [np.array([[-1.0, w], [-w, -1.0]]) for w in (100.0, 200.0, 400.0)]
    a = scipy.linalg.block_diag(*blocks, np.diag(-np.arange(1.0, n - 5)))
    b = np.r_[10 * np.ones(6), np.ones(n - 6)]
    parts = to_discrete(a[None], b[None], b[None], np.zeros(1))
    return mor.StateSpace(*(x[0] for x in parts))


@pytest.mark.parametrize(("system", "order"), [("penzl", 6), ("penzl", 10), ("shift", 8),
                                               ("shift", 16)])
def test_matches_slicot_ab09cd_at_moderate_size(system, order):
    """Against AB09CD on dense systems of 206 states, with no shared data: Penzl's example
    (normal, lightly damped, Gramians of low numerical rank: the modal frequency response and
    the low-rank Gramian factors) and the shift realisation of a decaying filter (nilpotent:
    the Schur-form frequency response, full-rank factors). The approximant's Hankel-norm error
    is sigma_{d+1}, its strictly proper part AB09CD's, and its reported H-infinity error lies
    between sigma_{d+1} and Glover's bound. (Penzl's sigma_{d+1} is 1e-2 at order 10; at order
    16, 6e-7 = 1.3e-8 sigma_1, the Hankel errors are at the rounding floor of the error
    system's own Hankel values: AB09CD's approximant measures 490 sigma_17 there.)"""
    if system == "penzl":
        sys = _penzl_like(206)
    else:
        k = np.arange(207)
        sys = mor.StateSpace.from_fir(0.97**k * np.cos(0.2 * k) + 0.5 * 0.9**k * np.cos(2.1 * k))
    theirs, hsv = _ab09cd(sys, order)
    ours = mor.reduce(sys, order, method="hankel")
    sigma = sys.hankel_singular_values()
    np.testing.assert_allclose(sigma[: order + 2], hsv[: order + 2], rtol=1e-7)
    err_ours = _error_system(sys, ours).hankel_singular_values()[0]
    err_theirs = _error_system(sys, theirs).hankel_singular_values()[0]
    assert err_ours == pytest.approx(sigma[order], rel=1e-6)
    assert err_theirs == pytest.approx(sigma[order], rel=1e-5)
    length = 2000
    np.testing.assert_allclose(ours.impulse(length)[1:], theirs.impulse(length)[1:],
                               atol=1e-6 * np.abs(theirs.impulse(length)).max())
    hinf = ours.info["hinf"] * ours.info["peak"]
    assert sigma[order] * (1 - 1e-6) <= hinf <= sigma[order:].sum() * (1 + 1e-6)


def test_hankel_norm_error_on_trained_filters(trained_filters):
    """On order-48 models of trained filters the approximant's Hankel-norm error is the
    model's sigma_17 to 1e-6 (discrete-time truncation does not keep the filter's own values
    exactly: they differ by about 4e-4 here)."""
    for h in trained_filters[:, 40]:
        base = mor.reduce(h, 48).to_dense()
        sigma = base.hankel_singular_values()
        red = mor.reduce(base, 16, method="hankel")
        err = _error_system(base, red).hankel_singular_values()[0]
        assert err == pytest.approx(sigma[16], rel=1e-6)


# Issue 17.6 item 1: Glover's step on clustered singular values. Equiripple designs have
# dozens of Hankel singular values equal to 1e-8 (relative) or closer; Glover's formula
# divides by sigma_i^2 - sigma_{d+1}^2. Before: a broadcasting ValueError where the step
# returned more stable poles than the order (remez(127) high-pass at orders 1-4 and 6-8,
# firwin(101) at order 1), and failures "near-defective poles ... off by inf" where the cause
# was sigma_{d+1} ~ sigma_{d+2}.
_CLUSTERED = {
    "remez101": scipy.signal.remez(101, [0, 0.2, 0.25, 0.5], [1, 0]),
    "remez127_highpass": scipy.signal.remez(127, [0, 0.2, 0.25, 0.5], [0, 1]),
    "remez101_bandpass": scipy.signal.remez(101, [0, 0.1, 0.15, 0.3, 0.35, 0.5], [0, 1, 0]),
    "firwin101": scipy.signal.firwin(101, 0.2),
    "firwin63": scipy.signal.firwin(63, 0.3),
}


@pytest.mark.parametrize("name", sorted(_CLUSTERED))
def test_clustered_singular_values_give_optimal_approximants(name):
    h = _CLUSTERED[name]
    s = mor.hankel_singular_values(h)
    for d in (1, 2, 3, 4, 5, 6, 8, 10, 12, 16):
        red = mor.reduce(h, d, method="hankel", on_fail="flag")  # raised before
        info = red.info
        assert not info["failed"], (d, info["reason"])
        m = int(red.order)
        assert red.is_stable() and m <= d and info["order"] == m
        assert info["rank_capped"] == (m < d)
        # a lower order only where sigma_m.. sigma_{d+1} form one cluster (AB09CX's rule):
        # its approximant reaches the optimal Hankel-norm error sigma_{d+1} up to the spread
        assert abs(s[m] - s[d]) <= CLUSTER_RTOL * s[d]
        assert info["aak"] * (1 - 1e-6) <= info["hinf"] <= info["glover_bound"] * (1 + 1e-6)
        # where the model has decayed within 16 L, the error's Hankel norm is sigma_{d+1}
        if m and red.tail_norm(16 * h.size) < 1e-13 * np.linalg.norm(h):
            e = np.zeros(16 * h.size)
            e[: h.size] = h
            e -= red.impulse(e.size)
            err = mor.hankel_singular_values(e, 1)[0]
            tail = info["truncation_tail"] * info["peak"]
            assert abs(err - s[d]) <= 2e-6 * s[d] + tail


def test_glover_reason_names_the_clustered_values():
    """Without merging the cluster (``rtol=0``) the step on the remez(127) high-pass at order 4
    finds 18 stable poles, not 4; the reason says which singular values agree, how closely."""
    h = _CLUSTERED["remez127_highpass"]
    fam = HankelNormFamily.from_fir(h[None], 4)
    bal, size = fam.balanced, int(fam.rank[0])
    a, b, c, _ = to_continuous(bal.a[:, :size, :size], bal.b[:, :size], bal.c[:, :size], bal.d)
    out = glover(a[0], b[0], c[0], bal.hsv[0, :size], 4, rtol=0.0)
    assert isinstance(out, str)
    assert re.search(r"sigma_\d+ and sigma_\d+ agree to \d\.\de-1\d relative", out), out
    assert "order 4 is ill-conditioned" in out
    merged = glover(a[0], b[0], c[0], bal.hsv[0, :size], 4)  # the cluster sigma_1..24 merged
    assert not isinstance(merged, str) and merged[3] == 0


def test_intermediate_order_leaves_clusters_whole():
    """Two taps, 1 and 0.51, 170 lags apart: Hankel values 1.21 (15 times), then 0.51 (over
    200 times). The default intermediate order 47 cut the second cluster, which voids
    balanced truncation's bound (a truncation tail of 106 relative to the peak, and an hinf
    of 406 against Glover's bound of 170, unflagged); doubled until it leaves the cluster
    whole, the tail is rounding and the order-15 failure names its true cause (poles near
    the 15-fold one at 0 of ``z^-15``)."""
    h = np.zeros(244)
    h[15], h[185] = 1.0, 0.51
    fam = HankelNormFamily.from_fir(h[None], 15, construction="truncated")
    assert fam.balanced.a.shape[-1] == 188  # 47, 94, 188: sigma_188 > sigma_189 = 0
    # the default construction's fallback for the cluster at sigma_16 is that model
    for construction in ("truncated", "auto"):
        red = mor.reduce(h, 15, method="hankel", on_fail="flag", construction=construction)
        assert red.info["truncation_tail"] < 1e-5 and not red.info["aak_exact"]
        assert red.info["failed"] and "near-defective poles" in str(red.info["reason"])
    kept = mor.reduce(h, 15, method="hankel", intermediate_order=47, on_fail="flag",
                      construction="truncated")
    assert kept.info["truncation_tail"] > 1  # as asked for: the caller's order is kept


# Issue 21: the exact construction for FIR filters (the zeros of the Schmidt polynomial).
def _hankel_error(h: np.ndarray, red: mor.ModalSSM) -> np.ndarray:
    """The error system's Hankel norm, independently: the largest singular value of the
    Hankel matrix of ``h - h_hat`` over at least 8 L lags and until the model has decayed to
    1e-17 (its largest pole)."""
    h = np.atleast_2d(h)
    rho = np.abs(red.poles).max(initial=0.0)
    decay = int(np.log(1e-17) / np.log(rho)) + 1 if 0 < rho < 1 else 1
    lags = max(8 * h.shape[-1], h.shape[-1] + decay)
    e = -np.atleast_2d(red.impulse(lags))
    e[:, : h.shape[-1]] += h
    return mor.hankel_singular_values(e, 1, method="krylov", rtol=1e-13)[:, 0]


@given(st.integers(0, 2**32 - 1), st.integers(12, 200), st.data())
def test_exact_construction_reaches_sigma_next_on_random_filters(seed, length, data):
    """The default construction is exact wherever ``sigma_{d+1}`` is simple (apart from its
    neighbours by 1e-3): the Hankel-norm error is ``sigma_{d+1}`` to rounding, with no
    truncation tail; elsewhere the truncated one is within its tail."""
    rng = np.random.default_rng(seed)
    decay = np.exp(-rng.uniform(0.0, 10.0) * np.arange(length) / length)
    h = rng.standard_normal(length) * decay
    s = mor.hankel_singular_values(h)
    d = data.draw(st.integers(1, min(12, length - 3)))
    red = mor.reduce(h, d, method="hankel", on_fail="flag")
    info = red.info
    if info["failed"] or info["order"] < d:
        return  # a cluster at sigma_{d+1}: the truncated construction's rule (tested above)
    err = _hankel_error(h, red)[0]
    if min(s[d - 1] - s[d], s[d] - s[d + 1]) > 1e-3 * s[d]:
        assert info["aak_exact"], (d, s[d - 1: d + 2])
    if info["aak_exact"]:
        assert info["truncation_tail"] == 0
        assert abs(err - s[d]) <= 1e-7 * s[d] + 1e-12 * s[0], (err, s[d])
    else:
        assert abs(err - s[d]) <= 1e-6 * s[d] + info["truncation_tail"] * info["peak"]
    assert info["aak"] * (1 - 1e-6) <= info["hinf"] <= info["glover_bound"] * (1 + 1e-6)


def test_exact_construction_agrees_with_glover_on_the_whole_realisation():
    """Glover's construction on the filter's whole balanced realisation (intermediate order
    L - 1, no truncation) is the same approximant: the strictly proper parts agree."""
    h = hyena_like_filters(3, 120, seed=11)
    for d in (3, 6, 10):
        exact = mor.reduce(h, d, method="hankel", construction="exact")
        whole = mor.reduce(h, d, method="hankel", construction="truncated",
                           intermediate_order=h.shape[-1] - 1)
        assert np.all(exact.info["aak_exact"]) and np.all(exact.order == d)
        a, b = exact.impulse(400)[:, 1:], whole.impulse(400)[:, 1:]
        np.testing.assert_allclose(a, b, atol=1e-8 * np.abs(b).max())


def test_exact_construction_on_trained_filters(trained_filters):
    """On trained filters (L = 1024, a float32 noise floor that makes the truncated path's
    tail 8-24x sigma_{d+1}): the default construction builds every approximant exactly, its
    Hankel-norm error within 1e-3 of sigma_{d+1} (the truncated construction misses it by up
    to 64%; before the trust region, 10 of 64 filters at order 32 needed the retries from
    wider truncations of ``construction="exact"``, which the default does not make)."""
    h = trained_filters.reshape(-1, trained_filters.shape[-1])[::64, :1024]
    for d in (8, 32):
        red = mor.reduce(h, d, method="hankel")
        s = mor.hankel_singular_values(h, d + 1)[:, d]
        assert np.all(red.info["aak_exact"]) and np.all(red.order == d)
        gap = np.abs(_hankel_error(h, red) / s - 1)
        assert gap.max() <= 1e-3, (d, gap.max())
        assert np.all(red.info["hinf"] <= red.info["glover_bound"] * (1 + 1e-6))


def test_construction_option_and_exact_failures_are_reported():
    h = hyena_like_filters(2, 100, seed=2)
    with pytest.raises(ValueError, match="construction"):
        mor.reduce(h, 4, method="hankel", construction="bogus")
    default = mor.reduce(h, 4, method="hankel")  # "auto": exact where sigma_5 is simple
    assert default.info["aak_exact"].all() and np.all(default.info["truncation_tail"] == 0)
    trunc = mor.reduce(h, 4, method="hankel", construction="truncated")
    assert not trunc.info["aak_exact"].any() and np.all(trunc.info["truncation_tail"] >= 0)
    # a clustered sigma_{d+1} (equiripple: values equal to 1e-8 and closer): the exact
    # construction from an eigenvector of the cluster's value, at the order below the cluster
    clustered = _CLUSTERED["remez127_highpass"]
    s = mor.hankel_singular_values(clustered)
    d = next(k for k in range(1, 20) if abs(s[k] - s[k + 1]) <= CLUSTER_RTOL * s[k])
    for construction in ("exact", "auto"):
        red = mor.reduce(clustered, d, method="hankel", construction=construction)
        m = int(red.order)
        assert red.info["aak_exact"] and m <= d and abs(s[m] - s[d]) <= CLUSTER_RTOL * s[d]
        assert abs(_hankel_error(clustered, red)[0] - s[d]) <= 2e-6 * s[d]
    # a 15-fold zero at 0 of the Schmidt polynomial, split by rounding into a ring of zeros
    # whose residues cancel: "exact" fails and says why, "auto" keeps the truncated model,
    # which fails for the same cause (test_intermediate_order_leaves_clusters_whole)
    h = np.zeros(244)
    h[15], h[185] = 1.0, 0.51
    exact = mor.reduce(h, 15, method="hankel", construction="exact", on_fail="flag")
    assert exact.info["failed"] and "near-multiple" in str(exact.info["reason"])


def test_exact_construction_on_a_near_double_sigma_next(trained_filters):
    """A trained filter (L = 2048) whose sigma_9 and sigma_10 agree to 6.8e-7 with opposite
    signs of their eigenvalues: order 8 is exact (the truncated construction missed
    sigma_9 by 2.5%), and order 9, ill-posed, gives the exact approximant of order 8, whose
    Hankel-norm error sigma_9 is sigma_10 up to the spread."""
    h = trained_filters.reshape(-1, trained_filters.shape[-1])[269, :2048]
    s = mor.hankel_singular_values(h, 11)
    assert s[8] - s[9] < CLUSTER_RTOL * s[8]
    for d in (8, 9):
        red = mor.reduce(h, d, method="hankel")
        assert red.info["aak_exact"] and red.order == 8 and red.info["rank_capped"] == (d > 8)
        assert abs(_hankel_error(h, red)[0] / s[d] - 1) <= 1e-4


def test_eigenvector_from_a_singular_vector_of_a_double_value():
    """A pure delay's Hankel matrix has the nonzero eigenvalues +1 and -1 only (on the first
    26 coordinates: symmetric and antisymmetric vectors), so a singular vector mixes their
    eigenvectors; `_eigenvector` returns one of them."""
    g = np.zeros(40)
    g[25] = 1.0
    gamma = scipy.linalg.hankel(g, np.zeros(40))
    q = np.zeros(40)
    q[:26] = np.random.default_rng(0).standard_normal(26)
    q /= np.linalg.norm(q)
    assert np.linalg.norm(gamma @ gamma @ q - q) < 1e-12  # a singular vector of 1
    assert min(np.linalg.norm(gamma @ q - q), np.linalg.norm(gamma @ q + q)) > 0.1
    v = _eigenvector(g, q)
    theta = v @ gamma @ v
    assert abs(abs(theta) - 1) < 1e-12 and np.linalg.norm(gamma @ v - theta * v) < 1e-12
