"""Cross-checks against reference libraries: pyMOR, SciPy, SLICOT (slycot)."""

import mpmath
import numpy as np
import pytest
import scipy.linalg
import scipy.signal

import mor
from mor.demo import hyena_like_filters

pymor_iosys = pytest.importorskip("pymor.models.iosys")
pymor_bt = pytest.importorskip("pymor.reductors.bt")


def _pymor_fir_model(h):
    sys = mor.StateSpace.from_fir(h)
    return pymor_iosys.LTIModel.from_matrices(sys.a, sys.b[:, None], sys.c[None, :],
                                              np.array([[sys.d]]), sampling_time=1)


def _impulse_descriptor(a, b, c, d, e, length):
    ea, eb = np.linalg.solve(e, a), np.linalg.solve(e, b)
    out = np.empty(length)
    out[0] = d[0, 0]
    x = eb[:, 0]
    for k in range(1, length):
        out[k] = c[0] @ x
        x = ea @ x
    return out


def test_hsv_matches_pymor():
    h = hyena_like_filters(1, 160, seed=9)[0]
    ref = _pymor_fir_model(h).hsv()
    ours = mor.hankel_singular_values(h)
    np.testing.assert_allclose(ours[:40], ref[:40], rtol=1e-8, atol=1e-12 * ref[0])


def test_statespace_hsv_matches_pymor_and_lyapunov():
    ssm = mor.ModalSSM.from_compact([0.95 * np.exp(0.3j), 0.6, -0.8, 0.5j],
                                    [1.0 + 0.5j, -0.3, 0.2, 0.05 - 0.1j], 0.1)
    dense = ssm.to_dense()
    fom = pymor_iosys.LTIModel.from_matrices(dense.a, dense.b[:, None], dense.c[None, :],
                                             np.array([[dense.d]]), sampling_time=1)
    np.testing.assert_allclose(dense.hankel_singular_values(), fom.hsv(), rtol=1e-9)
    np.testing.assert_allclose(ssm.hankel_singular_values(), fom.hsv(), rtol=1e-9)
    lc, lo = dense.gramian_factors()
    p = scipy.linalg.solve_discrete_lyapunov(dense.a, np.outer(dense.b, dense.b))
    q = scipy.linalg.solve_discrete_lyapunov(dense.a.T, np.outer(dense.c, dense.c))
    np.testing.assert_allclose(lc @ lc.T, p, atol=1e-12 * np.abs(p).max())
    np.testing.assert_allclose(lo @ lo.T, q, atol=1e-12 * np.abs(q).max())


@pytest.mark.parametrize("order", [2, 5, 12])
def test_balanced_truncation_matches_pymor(order):
    h = hyena_like_filters(1, 120, seed=order)[0]
    rom = pymor_bt.BTReductor(_pymor_fir_model(h)).reduce(order)
    a, b, c, d, e = rom.to_matrices()
    e = np.eye(order) if e is None else e
    ref = _impulse_descriptor(a, b, c, d, e, 400)
    ours = mor.reduce(h, order).impulse(400)
    np.testing.assert_allclose(ours, ref, atol=1e-8 * np.abs(ref).max())


def test_square_root_hsv_beat_sqrt_eig_pq():
    """Values far below sqrt(eps) sigma_1 keep their accuracy; sqrt(eig(PQ)) loses them."""
    ssm = mor.ModalSSM.from_compact(np.array([0.9, 0.5, 0.1]), np.array([1.0, 1e-5, 1e-10]), 0.0)
    # reference: sqrt(eig(P Q)) in 50-digit arithmetic, P_ij = 1 / (1 - p_i p_j) and
    # Q_ij = r_i r_j / (1 - p_i p_j) for h[k] = sum r_i p_i^(k-1) (B = 1, C = r)
    mpmath.mp.dps = 50
    p_, r_ = [mpmath.mpf(x) for x in (0.9, 0.5, 0.1)], [mpmath.mpf(x) for x in (1.0, 1e-5, 1e-10)]
    gram_p = mpmath.matrix(3, 3)
    gram_q = mpmath.matrix(3, 3)
    for i in range(3):
        for j in range(3):
            gram_p[i, j] = 1 / (1 - p_[i] * p_[j])
            gram_q[i, j] = r_[i] * r_[j] / (1 - p_[i] * p_[j])
    ref = np.sort([float(mpmath.sqrt(mpmath.re(e))) for e in mpmath.eig(gram_p * gram_q)[0]])[::-1]
    ours = ssm.hankel_singular_values()
    np.testing.assert_allclose(ours, ref, rtol=1e-4)
    dense = ssm.to_dense()
    p = scipy.linalg.solve_discrete_lyapunov(dense.a, np.outer(dense.b, dense.b))
    q = scipy.linalg.solve_discrete_lyapunov(dense.a.T, np.outer(dense.c, dense.c))
    naive = np.sqrt(np.abs(np.sort(np.linalg.eigvals(p @ q).real)[::-1]))
    assert abs(naive[2] - ref[2]) > 10 * abs(ours[2] - ref[2])


def test_hinf_matches_slicot_ab13dd():
    """``hinf`` against SLICOT's AB13DD (L-infinity norm by the Bruinsma-Steinbuch method) on
    the error system of the FIR shift realisation and the model (270 states): optimal
    Hankel-norm approximation of firwin(255, 0.05) at order 16, whose error is equiripple
    within 5e-5 (4 grid maxima refined of 100 within 5% left it 5.5e-5 low; issue 17.6)."""
    slycot = pytest.importorskip("slycot")
    h = scipy.signal.firwin(255, 0.05)
    red = mor.reduce(h, 16, method="hankel")
    fir, model = mor.StateSpace.from_fir(h), red.to_dense()
    a = scipy.linalg.block_diag(fir.a, model.a)
    n = a.shape[0]
    peak, _ = slycot.ab13dd("D", "I", "N", "D", n, 1, 1, a, np.eye(n),
                            np.r_[fir.b, model.b][:, None], np.r_[fir.c, -model.c][None, :],
                            np.array([[fir.d - model.d]]))
    assert red.info["hinf"] == pytest.approx(peak / red.info["peak"], rel=1e-9)
