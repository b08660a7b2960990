"""ModalSSM: forms, kernels, norms, indexing and files."""

import warnings

import numpy as np
import pytest
import scipy.linalg
import scipy.signal
from hypothesis import given, strategies as st

import mor
from mor._numerics import freq, gramians, kernels
from systems import stable_modal


def _example():
    return mor.ModalSSM.from_compact(
        np.array([[0.9 * np.exp(0.3j), -0.5, 0.7j], [0.99 * np.exp(2j), 0.2, 0]]),
        np.array([[1.0 - 0.5j, 0.3, 0.2 + 0.1j], [0.05 + 0.02j, -1.0, 0]]),
        np.array([0.1, -0.4]))


def test_orders_modes_and_full_form():
    ssm = _example()
    np.testing.assert_array_equal(ssm.order, [5, 3])
    np.testing.assert_array_equal(ssm.modes, [3, 2])
    p, r = ssm.poles, ssm.residues
    assert p.shape == (2, 5)
    # conjugate-closed; padding at the end with zero residue
    for pi, ri, n in zip(p, r, ssm.order):
        live = ri != 0
        assert live.sum() == n
        np.testing.assert_allclose(np.sort_complex(pi[live]), np.sort_complex(np.conj(pi[live])))
    rebuilt = mor.ModalSSM(p, r, ssm.direct)
    np.testing.assert_allclose(rebuilt.impulse(50), ssm.impulse(50), atol=1e-14)


def test_rejects_non_conjugate_closed():
    with pytest.raises(ValueError, match="conjugation"):
        mor.ModalSSM([0.5j, -0.4j], [1.0, 1.0], 0.0)
    with pytest.raises(ValueError, match="conjugation"):
        mor.ModalSSM([0.5j, -0.5j], [1.0 + 1j, 1.0 + 1j], 0.0)
    with pytest.raises(ValueError, match="complex residue"):
        mor.ModalSSM([0.5], [1.0 + 1j], 0.0)
    with pytest.raises(ValueError, match="same shape"):
        mor.ModalSSM([0.5], [1.0, 2.0], 0.0)
    with pytest.raises(ValueError, match="NaN"):
        mor.ModalSSM([np.nan], [1.0], 0.0)
    with pytest.raises(ValueError, match="batch shape"):
        mor.ModalSSM([[0.5]], [[1.0]], [0.0, 1.0])


def test_impulse_convention():
    ssm = mor.ModalSSM.from_compact([0.5], [2.0], 3.0)
    np.testing.assert_allclose(ssm.impulse(4), [3.0, 2.0, 1.0, 0.5])


@given(stable_modal())
def test_numba_and_numpy_kernels_agree(ssm):
    np.testing.assert_allclose(ssm.impulse(300, kernel="numba"), ssm.impulse(300, kernel="numpy"),
                               rtol=1e-11, atol=1e-13)


def test_fir_dtft_kernel_agrees_with_reference():
    rng = np.random.default_rng(0)
    h = rng.standard_normal((3, 200))
    for count in range(1, 10):  # the kernel takes pairs four at a time: every remainder
        w, rows = rng.uniform(0, np.pi, count), rng.integers(0, 3, count)
        np.testing.assert_allclose(kernels.fir_dtft(h, rows, w),
                                   kernels.fir_dtft_reference(h, rows, w), rtol=1e-11,
                                   atol=1e-11)


def test_threaded_kernels_agree_with_references():
    """Calls above `PARALLEL_MIN_WORK` take the threaded builds; they agree as well."""
    rng = np.random.default_rng(2)
    poles = 0.95 * np.exp(1j * rng.uniform(0, np.pi, (64, 8)))
    residues = rng.standard_normal((64, 8)) + 1j * rng.standard_normal((64, 8))
    direct = rng.standard_normal(64)
    assert poles.size * 1024 >= kernels.PARALLEL_MIN_WORK
    for length in (1024, 3 * kernels.POWER_BLOCK + 5):  # one block, and block powers
        np.testing.assert_allclose(kernels.impulse_compact(poles, residues, direct, length),
                                   kernels.impulse_compact_reference(poles, residues, direct,
                                                                     length),
                                   rtol=1e-10, atol=1e-12)
    h = rng.standard_normal((5, 2000))
    w, rows = rng.uniform(0, np.pi, 201), rng.integers(0, 5, 201)
    assert w.size * h.shape[1] >= kernels.PARALLEL_MIN_WORK
    np.testing.assert_allclose(kernels.fir_dtft(h, rows, w), kernels.fir_dtft_reference(h, rows, w),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rows, size", [(3, 50), (64, 4100)])  # serial and threaded builds
def test_grid_maxima_kernel_agrees_with_reference(rows, size):
    """The one-pass candidate search of `peak_magnitude` keeps the reference's samples: the
    peak, and per row the best maxima (more where many lie within the close tolerance), on
    smooth rows, nearly equiripple rows (many close maxima), unstable rows and rows holding
    NaN or Inf."""
    rng = np.random.default_rng(3)
    w = np.linspace(0, np.pi, size)
    grid = np.stack([sum(rng.uniform(0.1, 1) / (np.exp(1j * w) - rng.uniform(0.5, 0.99)
                                                  * np.exp(1j * rng.uniform(0, np.pi)))
                         for _ in range(4)) for _ in range(rows)])
    grid[1] = np.exp(1j * w) * (1 + 1e-5 * np.cos(37 * w) + 1e-4 * rng.random(size))
    unstable = np.zeros(rows, dtype=bool)
    unstable[2] = True
    if rows > 4:
        grid[3, 5], grid[4, 7] = np.nan, np.inf
    for least, most, rtol in ((4, 64, 1e-3), (1, 8, 1e-4), (6, 6, 0.5)):
        got = kernels.grid_maxima(grid, unstable, least, most, rtol)
        ref = kernels.grid_maxima_reference(grid, unstable, least, most, rtol)
        np.testing.assert_allclose(got[0], ref[0], rtol=1e-15)  # |z|: the last bit may differ
        np.testing.assert_array_equal(got[1], ref[1])
        np.testing.assert_array_equal(got[3], ref[3])
        for row in range(rows):
            assert set(got[2][row, :got[3][row]]) == set(ref[2][row, :ref[3][row]])
        assert got[3][1] > least or most <= least  # the nearly equiripple row keeps more


def test_impulse_kernel_floor_stops_modes_below_it():
    """``floor``: a stable mode stops once ``|R lambda^(k-1)|`` is below it, changing an entry
    by less than ``m floor``; poles at zero, real (negative) and on or outside the circle."""
    poles = np.array([[0.0, -0.3, 0.9 * np.exp(0.4j), 0.999, 1.0, -1.01]])
    residues = np.array([[2.0, 1.5, 1.0 - 1.0j, 1e-290, 0.5, 1e-3]])
    full = kernels.impulse_compact(poles, residues, np.array([0.2]), 3000)
    tiny = np.finfo(float).tiny
    for floor in (tiny, 1e-12):
        cut = kernels.impulse_compact(poles, residues, np.array([0.2]), 3000, floor=floor)
        assert np.abs(cut - full).max() < poles.size * floor  # the modes on and outside
        # the circle are kept (the last one reaches 1e10)


def test_impulse_kernel_floor_stays_in_the_row(monkeypatch):
    """The mode's stop was ``int(steps) + 2``, past the row where ``steps`` (the lags to fall
    below the floor) lies just below the length, or for a length of 1: Numba does not check
    bounds, and the write past the row corrupted the heap (the long property run aborted in
    an FFT after it). Run as Python, the row's kernel raises on any such index."""
    tiny = np.finfo(float).tiny
    block = kernels.POWER_BLOCK
    for name in ("_add_modes_blocked", "_add_mode_recurrence", "_mode_stop"):  # as Python too
        monkeypatch.setattr(kernels, name, getattr(kernels, name).py_func)
    for pole, length, residue in ((0.5, 10, tiny / 0.5 ** 8.5), (0.5, 10, tiny / 0.5 ** 9.5),
                                  (0.5, 1, 1.0), (0.5, 2, 1e-300), (0.5, 1, 1e-300),
                                  # past one block: the last block cut by the row or the floor
                                  (0.99, block + 2, 1.0), (0.99, 2 * block + 7, 1.0),
                                  (0.99, 2 * block, tiny / 0.99 ** (block + 5.5))):
        out = np.zeros((1, length))
        kernels._impulse_row.py_func(np.array([[pole + 0j]]), np.array([[residue + 0j]]),
                                     np.array([0.0]), length, tiny, block, out, 0)


def test_impulse_rounding_stays_within_its_bound():
    """`impulse_compact` against 40-digit mpmath over four blocks of `POWER_BLOCK` taps, at
    the lags around each block's edge: poles near the circle (complex, real, negative), one
    outside it and one exactly on it. Each error lies below `rounding_bound`, which for the
    modes on or inside the circle grows with the lag within a block, not along the row."""
    mpmath = pytest.importorskip("mpmath")
    from mor.analysis.compare import rounding_bound

    block = kernels.POWER_BLOCK
    poles = np.array([[0.99999 * np.exp(0.001j), 0.9995 * np.exp(2.1j), -0.9993, 0.9998,
                       np.exp(0.7j), 1.00002 * np.exp(0.3j)]])
    residues = np.array([[1.0 - 0.3j, -0.4 + 0.2j, 0.5, 0.25, 1e-3j, 1e-4 + 0j]])
    length = 4 * block + 3
    got = kernels.impulse_compact(poles, residues, np.array([0.1]), length)
    bound = rounding_bound(np.zeros((1, length)), poles, residues)
    lags = sorted({k for b in range(1, 5) for k in (b * block - 1, b * block, b * block + 1,
                                                    b * block + 2)} | {1, 2, length - 1})
    with mpmath.workdps(40):
        lam = [mpmath.mpc(p.real, p.imag) for p in poles[0]]
        res = [mpmath.mpc(r.real, r.imag) for r in residues[0]]
        for k in lags:
            want = mpmath.re(mpmath.fsum(r * p ** (k - 1) for p, r in zip(lam, res)))
            assert abs(got[0, k] - float(want)) <= bound[0, k], k
    # the bound of powers by repeated multiplication alone (4 (k - 1) eps per mode) would be
    # more than twice this one at the end of the row
    assert bound[0, -1] < 0.5 * np.finfo(float).eps * 4 * (length - 2) * np.abs(residues).sum()


def test_markov_kernel_agrees_with_reference():
    rng = np.random.default_rng(1)
    for n in (1, 2, 7, 40):
        a = rng.standard_normal((3, n, n)) / (2 * np.sqrt(n))
        b, c = rng.standard_normal((3, n)), rng.standard_normal((3, n))
        np.testing.assert_allclose(kernels.markov_parameters(a, b, c, 2 * n),
                                   kernels.markov_parameters_reference(a, b, c, 2 * n),
                                   rtol=1e-12, atol=1e-14)


@given(stable_modal())
def test_dense_modal_compact_forms_agree(ssm):
    length = 200
    h = ssm.impulse(length)
    dense = ssm.to_dense()
    np.testing.assert_allclose(dense.impulse(length), h, atol=1e-12)
    back = mor.ModalSSM.from_dense(dense.a, dense.b, dense.c, dense.d)
    np.testing.assert_allclose(back.impulse(length), h, atol=1e-9)
    p, r, d = ssm.compact()
    k = np.arange(1, length)
    np.testing.assert_allclose(d + 0 * k[:1], h[0])
    np.testing.assert_allclose(np.real((r[:, None] * p[:, None] ** (k - 1)).sum(0)), h[1:],
                               atol=1e-12)
    full = (ssm.residues[:, None] * ssm.poles[:, None] ** (k - 1)).sum(0)
    np.testing.assert_allclose(full.real, h[1:], atol=1e-12)
    assert np.abs(full.imag).max() <= 1e-12


@given(stable_modal())
def test_freqresp_is_the_dtft_of_the_impulse(ssm):
    w = np.linspace(0, np.pi, 17)
    length = 4000
    h = ssm.impulse(length)
    dtft = (h * np.exp(-1j * w[:, None] * np.arange(length))).sum(1)
    np.testing.assert_allclose(ssm.freqresp(w), dtft, atol=1e-9 * np.abs(dtft).max())


@given(stable_modal(max_modulus=0.97))
def test_norms(ssm):
    h = ssm.impulse(20000)
    np.testing.assert_allclose(ssm.h2_norm(), np.linalg.norm(h), rtol=1e-10)
    np.testing.assert_allclose(ssm.tail_norm(30), np.linalg.norm(h[30:]), rtol=1e-8,
                               atol=1e-14 * np.linalg.norm(h))
    w = np.linspace(0, np.pi, 400001)
    dense_peak = np.abs(ssm.freqresp(w)).max()
    peak = ssm.hinf_norm()
    assert peak >= dense_peak * (1 - 1e-12)
    assert peak <= dense_peak * (1 + 1e-6)


def test_compare_peak_is_the_filters_own_beside_a_large_direct_term():
    """`compare` takes the filter's grid from its taps' less the model's direct term (one FFT
    for both grids) only where that term is not large against the filter: beside a direct
    term of 1e6, ``(H - D) + D`` would round the filter's peak up by 2e-10."""
    h = np.array([[0.3, 0.0, 0.03], [0.987654321, 0.0, 0.0987654321]])
    model = mor.ModalSSM.from_compact(np.zeros((2, 0)), np.zeros((2, 0)), [1e6, 1e6])
    exact = np.abs(np.fft.rfft(h, 1 << 16)).max(axis=1)
    np.testing.assert_allclose(mor.compare(h, model).peak, exact, rtol=1e-14)


def test_hinf_resolves_a_sharp_resonance():
    # |lambda| = 1 - 1e-6: the peak is 1e-6 wide, far below any default grid spacing
    lam = (1 - 1e-6) * np.exp(1.2345j)
    ssm = mor.ModalSSM.from_compact([lam], [1e-3], 0.0)
    exact = np.abs(ssm.freqresp([1.2345]))[0]
    assert ssm.hinf_norm() == pytest.approx(exact, rel=1e-6)
    assert ssm.hinf_norm() > 500


def test_hinf_finds_a_peak_at_nyquist_off_the_grid():
    # an odd grid has no point at pi, where this system peaks; the clipped bracket there
    # stopped 5e-6 short of it, 2e-9 low (a balanced model with 43 modes)
    ssm = mor.ModalSSM.from_compact([-0.6], [0.3], 0.1)
    exact = np.abs(ssm.freqresp([np.pi]))[0]
    response = freq.ModalResponse(np.array([[-0.6]]), np.array([[0.3]]), np.array([0.1]))
    for m in (4095, 4097, 5625):
        peak, w = freq.peak_magnitude(response, m=m)
        assert peak[0] == pytest.approx(exact, rel=1e-14) and w[0] == pytest.approx(np.pi)
    assert ssm.hinf_norm() == pytest.approx(exact, rel=1e-14)


def test_hinf_of_an_error_far_below_the_first_tap():
    """An order-0 model of a filter whose later taps are 1e-42 of ``h[0]``: on the grid
    ``H - H_hat`` rounded them away (hinf 4.14e-42, below the AAK bound 4.16e-42: the long
    property run); with the direct terms subtracted in the taps it is the peak of
    ``sum_{k>0} h[k] z^-k``, at pi."""
    h = np.array([1.25865894e-212, -1.22320378e-254, 5.83735665e-263, -4.58817919e-254,
                  8.65080325e-278, 0.0, 7.13421866e-272, 0.0])
    red = mor.reduce(h, modes=0)
    exact = abs(np.sum(h[1:] * (-1.0) ** np.arange(1, h.size))) / h[0]
    assert red.info["hinf"] == pytest.approx(exact, rel=1e-12)
    assert red.info["hinf"] >= red.info["aak"]


def test_unstable_is_reported():
    ssm = mor.ModalSSM.from_compact([1.01, 0.5], [1.0, 1.0], 0.0)
    assert not ssm.is_stable()
    assert ssm.is_stable(margin=0.0) == ssm.is_stable()
    assert mor.ModalSSM.from_compact([0.99], [1.0], 0.0).is_stable()
    assert not mor.ModalSSM.from_compact([0.99], [1.0], 0.0).is_stable(margin=0.02)
    assert ssm.hinf_norm() == np.inf
    with pytest.raises(ValueError, match="stable"):
        ssm.h2_norm()
    with pytest.raises(ValueError, match="stable"):
        ssm.hankel_singular_values()


def test_dlti_cross_check():
    ssm = _example()[0]
    dense = ssm.to_dense()
    sys = scipy.signal.dlti(dense.a, dense.b[:, None], dense.c[None, :], dense.d, dt=1)
    _, (y,) = sys.impulse(n=60)
    np.testing.assert_allclose(y[:, 0], ssm.impulse(60), atol=1e-12)


def test_indexing_and_info():
    ssm = _example()
    ssm.info["tag"] = np.array(["a", "b"], dtype=object)
    ssm.info["method"] = "x"
    one = ssm[1]
    assert one.shape == () and one.order == 3 and one.info["tag"] == "b"
    np.testing.assert_allclose(one.impulse(20), ssm.impulse(20)[1])
    assert ssm[::-1].info["tag"].tolist() == ["b", "a"]
    assert ssm[np.array([True, False])].shape == (1,)
    assert len(ssm) == 2
    with pytest.raises(IndexError):
        one[0]


def test_save_load_round_trip(tmp_path):
    ssm = mor.reduce(np.random.default_rng(1).standard_normal((2, 3, 40)) * 0.9 ** np.arange(40), 6)
    path = tmp_path / "bank.npz"
    ssm.save(path)
    back = mor.load(path)
    assert back.shape == (2, 3)
    np.testing.assert_array_equal(back.compact()[0], ssm.compact()[0])
    np.testing.assert_array_equal(back.compact()[1], ssm.compact()[1])
    np.testing.assert_array_equal(back.direct, ssm.direct)
    assert back.info["method"] == "balanced"
    np.testing.assert_array_equal(back.info["l2"], ssm.info["l2"])
    assert back.info["reason"].shape == (2, 3)


def test_load_refuses_bad_files(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip archive")
    with pytest.raises(ValueError, match="not a readable"):
        mor.load(junk)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.ones(3))
    with pytest.raises(ValueError, match="not a mor ModalSSM"):
        mor.load(foreign)
    newer = tmp_path / "newer.npz"
    np.savez(newer, mor_format="mor.ModalSSM", mor_version=99)
    with pytest.raises(ValueError, match="version 99"):
        mor.load(newer)
    broken = tmp_path / "broken.npz"
    np.savez(broken, mor_format="mor.ModalSSM", mor_version=1, poles=np.ones((2, 3)),
             residues=np.ones((2, 2)), direct=np.ones(2), info_json="{}")
    with pytest.raises(ValueError, match="corrupt"):
        mor.load(broken)
    truncated = tmp_path / "truncated.npz"
    _example().save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable"):
        mor.load(truncated)


def test_tail_norm_of_one_system_with_a_cancelling_tail():
    """The square-root fallback for cancelling tails (clustered poles, opposing residues) works
    on a system without a batch axis and agrees with the same system in a batch of one."""
    poles, residues = [0.999 * np.exp(0.01j), 0.999 * np.exp(0.0100001j)], [1e6, -1e6]
    one = mor.ModalSSM.from_compact(poles, residues, 0.0)
    batch = mor.ModalSSM.from_compact([poles], [residues], [0.0])
    assert one.shape == ()
    np.testing.assert_allclose(one.tail_norm(100), batch.tail_norm(100)[0], rtol=1e-12)
    direct = np.linalg.norm(one.impulse(400_000)[100:])
    np.testing.assert_allclose(one.tail_norm(100), direct, rtol=1e-6)


def test_empty_batch_full_form_and_indexing():
    # found by tests/test_robustness.py: the full form of a batch of no systems (and an empty
    # selection) could not infer its width (reshape of size 0 with -1)
    ssm = mor.ModalSSM.from_compact(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0))
    assert ssm.poles.shape == ssm.residues.shape == (0, 0)
    assert ssm.hankel_singular_values().shape[0] == 0
    assert ssm.tail_norm(4).shape == (0,)
    assert _example()[:0].shape == (0,)


def test_from_dense_of_a_defective_matrix_reports_its_loss():
    # found by tests/test_robustness.py: an exactly defective A (a pure delay's nilpotent shift)
    # raised for the whole batch; reduce(..., on_fail="flag") raised instead of flagging it
    a = np.stack([np.eye(3, k=-1), np.diag([0.5, 0.2, -0.1])])
    b = np.stack([np.eye(3)[0], np.ones(3)])
    c = np.stack([np.eye(3)[2], np.ones(3)])
    ssm = mor.ModalSSM.from_dense(a, b, c, np.zeros(2))
    lost = ssm.info["conversion_error"]
    assert lost[0] > 0.1 and lost[1] < 1e-12
    with pytest.raises(ValueError, match="NaN or Inf"):
        mor.ModalSSM.from_dense(np.full((2, 2), np.nan), np.ones(2), np.ones(2), 0.0)
    delay = np.zeros((2, 6))
    delay[:, 3] = [1.0, 1e-138]
    red = mor.reduce(delay, 3, on_fail="flag")
    assert red.info["failed"].all() and "near-defective" in red.info["reason"][0]


@pytest.mark.parametrize("c", [1e-300, 1e-200, 1e200, 2.0**1000])
def test_norms_and_hankel_values_at_any_scale(c):
    # found by tests/test_robustness.py: the squared residues overflowed (RuntimeWarning, inf)
    # or underflowed (h2 norm of the direct term alone, Hankel values 0) far from unit scale
    base = mor.ModalSSM.from_compact(np.array([0.5, 0.9j]), np.array([1.0, 1 + 1j]), 0.3)
    big = mor.ModalSSM.from_compact(np.array([0.5, 0.9j]), np.array([1.0, 1 + 1j]) * c, 0.3 * c)
    np.testing.assert_allclose(big.h2_norm() / c, base.h2_norm(), rtol=1e-13)
    np.testing.assert_allclose(big.tail_norm(3) / c, base.tail_norm(3), rtol=1e-13)
    np.testing.assert_allclose(big.hankel_singular_values() / c, base.hankel_singular_values(),
                               rtol=1e-12)
    # the peak search had absolute thresholds: 7.6835075 at 1e200 against 7.6835127
    np.testing.assert_allclose(big.hinf_norm() / c, base.hinf_norm(), rtol=1e-13)


def test_repr_states_the_orders():
    # issue 17.6: min(initial=0) made every repr read "order 0..d", a single system included
    k = np.arange(64)
    h = 0.9**k * np.cos(0.4 * k) + 0.5 * 0.6**k  # order 3: a pair and a real pole
    assert repr(mor.reduce(h, 3)) == "ModalSSM(shape=(), order 3, modes 2)"
    assert repr(mor.reduce(h[None], 3)) == "ModalSSM(shape=(1,), order 3, modes 2)"
    assert repr(mor.reduce(np.stack([h, h]), [1, 3])) == "ModalSSM(shape=(2,), order 1..3, modes 1..2)"
    assert repr(_example()[:0]) == "ModalSSM(shape=(0,), empty)"
    assert repr(mor.ModalSSM([0.5], [1.0], 0.0)) == "ModalSSM(shape=(), order 1, modes 1)"


def test_compensated_impulse_error_is_exact():
    # the double-double kernel behind exact l2 (issue 17.6 item 3), against 50-digit mpmath:
    # pairs, real poles and padding, with residues that cancel to 1e-12 of their size
    mpmath = pytest.importorskip("mpmath")
    rng = np.random.default_rng(17)
    lam = 0.9 * np.exp(1j * rng.uniform(0.1, 3.0, 3))
    poles = np.array([[lam[0], lam[0] * (1 + 1e-12), -0.6, 0.3, 0], [lam[1], lam[2], 0.5, 0, 0]])
    residues = np.array([[1e6 + 2j, -1e6 - 2j, 0.4, -1e5, 0], [0.3 - 0.1j, 1j, -0.7, 0, 0]])
    residues[0, 3] = 1e5  # with the next pole: +-1e5 at 0.3 and 0.3 (1e-12 apart)
    poles[0, 4], residues[0, 4] = 0.3 * (1 + 1e-12), -1e5
    direct = np.array([0.1, -0.2])
    h = rng.standard_normal((2, 40)) * 0.8 ** np.arange(40)
    got = kernels.impulse_error_compensated(h, poles, residues, direct, np.array([1, 0]))
    with mpmath.workdps(50):
        for row, f in enumerate((1, 0)):
            lam = [mpmath.mpc(p.real, p.imag) for p in poles[f]]
            res = [mpmath.mpc(r.real, r.imag) if p.imag != 0 else mpmath.mpf(r.real)
                   for p, r in zip(poles[f], residues[f])]
            want = [float(mpmath.mpf(h[f, 0]) - mpmath.mpf(direct[f]))]
            for k in range(1, 40):
                model = mpmath.re(mpmath.fsum(r * p ** (k - 1) for p, r in zip(lam, res)))
                want.append(float(mpmath.mpf(h[f, k]) - model))
            np.testing.assert_allclose(got[row], want, rtol=1e-14, atol=1e-300)


def test_statespace_batch_with_a_zero_system():
    # found by tests/test_robustness.py: balanced_realization raised for the whole batch
    # ("order 1 exceeds the minimal order of a system in the batch") where one system was zero
    k = np.arange(32)
    sys = mor.StateSpace.from_fir(np.stack([0.5**k * np.cos(0.3 * k), np.zeros(32)]))
    for method, options in (("balanced", {}), ("balanced", {"dc_match": True}), ("hankel", {})):
        red = mor.reduce(sys, 3, method=method, **options)
        np.testing.assert_array_equal(red.order, [3, 0])
        assert red.info["rank_capped"][1] and red.info["hinf"][0] < 1e-5
    a, b, c, _, _ = mor.StateSpace.from_fir(np.zeros(8)).balanced_realization(2)
    assert not (a.any() or b.any() or c.any())


def test_tail_of_a_pole_an_ulp_inside_the_circle():
    # found by tests/test_robustness.py: conj(lambda) lambda rounds to 1 for |lambda| = 1 - eps,
    # the Gramian's diagonal divided by zero and the square-root fallback refused the stable
    # system ("the Gramian did not converge")
    pole = complex(float.fromhex("-0x1.f9d004a66ae22p-1"), float.fromhex("0x1.3d6e4674d735bp-3"))
    ssm = mor.ModalSSM.from_compact(np.array([pole]), np.array([1.0 - 0.5j]), 0.0)
    assert ssm.is_stable() and (np.conj(pole) * pole).real == 1.0
    tail, energy = ssm.tail_norm(5), ssm.h2_norm()
    assert np.isfinite(tail) and tail > 1e6 and tail == pytest.approx(energy, rel=1e-6)
    # the peak's refinement met infinite samples there (inf - inf in the parabolic step), and
    # the peak was inf: e^{i theta} - lambda rounds to 0 at the pole's angle, while the true
    # distance is at least 1 - |lambda| (each term's modulus is floored there)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        peak = ssm.hinf_norm()
    assert np.isfinite(peak) and energy <= peak <= abs(1 - 0.5j) / (1 - abs(np.array(pole)))


def test_load_refuses_an_unsupported_zip_version(tmp_path):
    # found by tests/test_robustness.py: a flipped byte in a bank's zip header ("version 15.2")
    # raised zipfile's NotImplementedError
    import struct
    mor.ModalSSM.from_compact(np.array([0.5]), np.array([1.0]), 0.0).save(tmp_path / "b.npz")
    raw = bytearray((tmp_path / "b.npz").read_bytes())
    for magic, at in ((b"PK\x03\x04", 4), (b"PK\x01\x02", 6)):
        i = raw.find(magic) + at
        raw[i:i + 2] = struct.pack("<H", 152)
    (tmp_path / "v.npz").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="not a readable .npz file"):
        mor.load(tmp_path / "v.npz")


def test_load_refuses_a_member_flagged_encrypted(tmp_path):
    # found by tests/test_robustness.py (long run): a flipped bit in the general-purpose flags
    # of a bank's zip headers marks a member encrypted, and zipfile raised RuntimeError
    mor.ModalSSM.from_compact(np.array([0.5]), np.array([1.0]), 0.0).save(tmp_path / "b.npz")
    raw = bytearray((tmp_path / "b.npz").read_bytes())
    for magic, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (i := raw.find(magic, start)) >= 0:
            raw[i + at] |= 1  # bit 0: encrypted
            start = i + 4
    (tmp_path / "e.npz").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="not a readable .npz file"):
        mor.load(tmp_path / "e.npz")


def test_error_report_of_residues_near_the_float_range():
    # found by tests/test_robustness.py (long run): the rounding bound of l2 summed residue
    # moduli to inf and warned of an overflow; an infinite bound sends the error to the exact
    # (compensated) path instead
    from mor.analysis.compare import rounding_bound

    h = np.r_[1.0, 0.5 ** np.arange(1, 40)][None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bound = rounding_bound(h, np.array([[0.999 + 0j]]), np.array([[1e307 + 0j]]))
    assert np.isinf(bound[0, -1]) and np.isfinite(bound[0, 1])


def test_from_dense_of_a_nearly_defective_matrix_reports_its_loss():
    # found by tests/test_robustness.py: a delay with a tiny tap (-1.7e-18) at its full order
    # has a nearly singular eigenvector matrix: T^-1 B overflowed to inf and from_compact
    # raised "residues has NaN or Inf entries" (from reduce and select_order too)
    h = np.zeros(7)
    h[[2, 6]] = [-1.7e-18, 1.0]
    for method in ("balanced", "hankel"):
        red = mor.reduce(h, 6, method=method, on_fail="flag")
        assert red.info["failed"] and "near-defective" in str(red.info["reason"])
    # (at tol=1 the order-0 model, whose best direct term is 0, meets it exactly)
    assert mor.select_order(h, 0.5, norm="hinf", method="hankel").order == -1


def _float32_response(poles, residues, direct, length):
    """The compact models ``(F, m)`` run as an engine runs them, recomputed with NumPy: at the
    power of two that puts the float64 response's peak in [1/2, 1), the parameters rounded
    with ``astype(complex64)`` / ``astype(float32)`` and ``z <- lambda z`` in float32. The
    complex product is spelled out in real float32 operations: NumPy's complex64 array
    product may fuse them (FMA) and round differently from IEEE's formula. Returns the
    deviation ``max |h32 - h| / max |h|`` and the float64 response (explicit powers)."""
    k = np.arange(length - 1)
    exact = np.zeros((poles.shape[0], length))
    exact[:, 0] = direct
    exact[:, 1:] = np.real(np.einsum("fm,fmk->fk", residues, poles[..., None] ** k))
    peak = np.abs(exact).max(axis=-1)
    e = np.frexp(peak)[1]
    down = np.ldexp(1.0, -e)
    p32 = poles.astype(np.complex64)
    z = (residues * down[:, None]).astype(np.complex64)
    zr, zi, pr, pi = z.real.copy(), z.imag.copy(), p32.real.copy(), p32.imag.copy()
    out = np.zeros(exact.shape, np.float32)
    out[:, 0] = (direct * down).astype(np.float32)
    for t in range(1, length):
        acc = np.zeros(poles.shape[0], np.float32)
        for n in range(poles.shape[1]):  # the modes in order, as the engine's sum
            acc = acc + zr[:, n]
        out[:, t] = acc
        zr, zi = zr * pr - zi * pi, zr * pi + zi * pr
    gap = np.abs(out - exact * down[:, None]).max(axis=-1)
    return np.where(peak > 0, gap / np.where(peak > 0, peak * down, 1.0), 0.0), exact


def test_float32_deviation_is_the_float32_recurrence():
    # issue 18.3: parameters rounded to complex64 and the recurrence in float32, recomputed
    rng = np.random.default_rng(18)
    f, m, length = 12, 5, 700
    radius = 1 - 10 ** rng.uniform(-3.5, -0.5, (f, m))
    angle = np.where(rng.random((f, m)) < 0.7, rng.uniform(0.01, 3.1, (f, m)), 0.0)
    poles = radius * np.exp(1j * angle)
    residues = rng.standard_normal((f, m)) + 1j * rng.standard_normal((f, m))
    residues = np.where(angle == 0, residues.real, residues) * 10.0 ** rng.integers(-5, 5, (f, 1))
    direct = rng.standard_normal(f)
    bank = mor.ModalSSM.from_compact(poles, residues, direct)
    got = bank.float32_deviation(length)
    want, exact = _float32_response(*bank.compact(), length)
    assert got.shape == (f,) and np.all(got > 0) and np.all(got < 1e-3)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(bank.impulse(length), exact, rtol=1e-9, atol=1e-12)
    # the batch shape kept, a single system's a 0-d array
    grid = mor.ModalSSM.from_compact(*(a.reshape((3, 4) + a.shape[1:]) for a in bank.compact()))
    np.testing.assert_array_equal(grid.float32_deviation(length), got.reshape(3, 4))
    assert np.shape(bank[0].float32_deviation(length)) == ()
    assert bank[0].float32_deviation(length) == got[0]


def test_float32_deviation_of_zero_and_at_any_scale():
    zero = mor.ModalSSM.from_compact(np.array([[0.5, 0.9j], [0.0, 0.0]]), np.zeros((2, 2)),
                                     np.zeros(2))
    np.testing.assert_array_equal(zero.float32_deviation(64), [0.0, 0.0])
    # a direct term alone: only its rounding to float32 (none for a float32 number)
    alone = mor.ModalSSM.from_compact(np.zeros((2, 1)), np.zeros((2, 1)), np.array([0.5, 0.1]))
    assert alone.float32_deviation(8)[0] == 0.0
    assert 0 < alone.float32_deviation(8)[1] <= 2.0**-24
    base = _example()
    p, r, d = base.compact()
    for c in (2.0**-1000, 2.0**-60, 2.0**90, 2.0**1000):  # scale-free, bit for bit
        scaled = mor.ModalSSM.from_compact(p, r * c, d * c)
        np.testing.assert_array_equal(scaled.float32_deviation(300), base.float32_deviation(300))
    with pytest.raises(ValueError, match="length"):
        base.float32_deviation(0)


def test_float32_deviation_against_reference_taps():
    rng = np.random.default_rng(7)
    bank = _example()
    length = 300
    own = bank.impulse(length)
    # against its own float64 response: the same number, bit for bit
    np.testing.assert_array_equal(bank.float32_deviation(length, reference=own),
                                  bank.float32_deviation(length))
    # against other taps: the float32 run's error relative to them
    taps = own + 1e-3 * rng.standard_normal(own.shape)
    want = np.abs(own - taps).max(axis=-1) / np.abs(taps).max(axis=-1)
    np.testing.assert_allclose(bank.float32_deviation(length, reference=taps), want,
                               rtol=1e-2)
    # a nonzero system against zero taps is infinitely far; zero against zero, 0
    zeros = np.zeros_like(own)
    assert np.all(np.isinf(bank.float32_deviation(length, reference=zeros)))
    quiet = mor.ModalSSM.from_compact(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1))
    assert quiet.float32_deviation(5, reference=np.zeros((1, 5)))[0] == 0.0
    with pytest.raises(ValueError, match="reference must have shape"):
        bank.float32_deviation(length, reference=own[..., :-1])


def test_float32_deviation_of_cancelling_residues():
    # two poles 2e-8 apart near 0.999 with residues +-1e3 max|h|: their net response moves l2
    # by a few percent, their rounding to complex64 moves the response by more than 1e-3
    length = 1024
    good = mor.ModalSSM.from_compact(np.array([0.95 * np.exp(0.3j), 0.9]),
                                     np.array([1 - 0.5j, 0.4]), 0.2)
    h = good.impulse(length)
    peak = np.abs(h).max()
    bad = mor.ModalSSM.from_compact(np.array([0.95 * np.exp(0.3j), 0.9, 0.999, 0.999 - 2e-8]),
                                    np.array([1 - 0.5j, 0.4, 1e3 * peak, -1e3 * peak]), 0.2)
    assert bad.float32_deviation(length) > 1e-3
    assert good.float32_deviation(length) < 1e-6
    want, _ = _float32_response(*(a[None] for a in bad.compact()), length)
    np.testing.assert_allclose(bad.float32_deviation(length), want[0], rtol=1e-6)


def test_frequency_response_of_a_near_defective_pair():
    """A pair with a tiny imaginary part and a huge residue (what diagonalising a nearly
    defective balanced model gives): its response lies in Im(R) Im(lambda), which the two
    fractions summed apart lose to cancellation; the common-denominator form keeps it."""
    lam, res = 2.35e-25 + 5.3e-94j, -1.3e59 - 1.16e231j
    ssm = mor.ModalSSM.from_compact(np.array([lam]), np.array([res]), 0.0)
    mpmath = pytest.importorskip("mpmath")
    w = np.linspace(0.1, np.pi, 9)
    with mpmath.workdps(400):  # the two fractions summed apart, exactly enough
        lam_m, res_m = mpmath.mpc(lam.real, lam.imag), mpmath.mpc(res.real, res.imag)
        exact = []
        for x in w:
            z = mpmath.exp(1j * mpmath.mpf(float(x)))
            value = res_m / 2 / (z - lam_m) + mpmath.conj(res_m) / 2 / (z - mpmath.conj(lam_m))
            exact.append(complex(value))
    np.testing.assert_allclose(ssm.freqresp(w), np.array(exact), rtol=1e-12)
    h = np.array([9.36e95, -6.58e58, 6.21e137, 1.46e113, -1.77e-49, 1.03e122, 6.38e-43])
    red = mor.reduce(mor.StateSpace.from_fir(h), 2, on_fail="flag")  # such a pair, hinf was 1
    assert red.info["hinf"] < 1e-12


@st.composite
def stable_dense(draw, max_states: int = 10):
    """A stable real dense system ``Q (Lambda + N) Q^T`` (``Lambda`` real Schur blocks of
    modulus up to 0.97, ``N`` strictly upper triangular of a drawn coupling: 0 gives a normal
    ``A``, 10 a strongly non-normal one) with random ``B``, ``C`` and ``D``."""
    n = draw(st.integers(1, max_states))
    coupling = draw(st.sampled_from([0.0, 0.3, 3.0, 10.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = np.diag(rng.uniform(-0.97, 0.97, n))
    for j in range(0, n - 1, 2):
        if rng.random() < 0.6:  # a complex pair
            r, phi = rng.uniform(0.2, 0.97), rng.uniform(0.05, np.pi - 0.05)
            t[j:j + 2, j:j + 2] = r * np.array([[np.cos(phi), -np.sin(phi)],
                                                [np.sin(phi), np.cos(phi)]])
            skew = 1 + rng.uniform(0, coupling)  # a non-normal block, the same eigenvalues
            t[j, j + 1], t[j + 1, j] = t[j, j + 1] * skew, t[j + 1, j] / skew
    t += coupling * np.triu(rng.standard_normal((n, n)), 2)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return mor.StateSpace(q @ t @ q.T, rng.standard_normal(n), rng.standard_normal(n),
                          rng.standard_normal())


def _check_dense_response(sys, response, values, w):
    """``values`` (``H(e^{iw})`` by `response`) against dense solves, within the first-order
    effect of a backward error ``64 n eps ||A||`` in ``A`` (times ``kappa_1(V)`` where the
    modal form was used) plus rounding of the result."""
    n = sys.n_states
    mats = np.exp(1j * w)[:, None, None] * np.eye(n) - sys.a
    right = np.linalg.solve(mats, sys.b[:, None])[..., 0]  # (zI - A)^{-1} B
    left = np.linalg.solve(np.swapaxes(mats, 1, 2), sys.c[:, None])[..., 0]
    direct = sys.d + right @ sys.c
    kappa = np.linalg.cond(np.linalg.eig(sys.a)[1], 1) if response.modal[0] else 1.0
    eps = np.finfo(float).eps
    tol = (64 * n * eps * kappa * np.linalg.norm(sys.a, 2) * np.linalg.norm(left, axis=1)
           * np.linalg.norm(right, axis=1) + 8 * eps * (abs(sys.d) + np.abs(direct)))
    assert np.all(np.abs(values - direct) <= tol)


@given(stable_dense())
def test_dense_response_agrees_with_a_solve_per_frequency(sys):
    """`DenseResponse` (one eigen or Schur decomposition) against a dense solve at every
    frequency, at points and on its grid, in both of its forms (the modal form only where the
    eigenvectors are well conditioned; the Schur form's back substitution in blocks of 3 rows
    and its grid in blocks of 100 frequencies)."""
    parts = (sys.a[None], sys.b[None], sys.c[None], sys.d[None])
    w = np.linspace(0.0, np.pi, 23)
    m = 4096
    grid_w = 2 * np.pi * np.arange(m // 2 + 1) / m
    both = [freq.DenseResponse(*parts)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(freq, "MODAL_COND_MAX", 0.0)
        patch.setattr(freq, "SCHUR_BLOCK_ROWS", 3)
        patch.setattr(freq, "SCHUR_BLOCK_BYTES", 16 * sys.n_states * 100)
        both.append(freq.DenseResponse(*parts))
        assert not both[1].modal[0]
        for response in both:
            _check_dense_response(sys, response, response.at(np.zeros(w.size, int), w), w)
            _check_dense_response(sys, response, response.grid(m)[0], grid_w)


def test_dense_response_of_a_shift_realisation_is_the_dtft():
    """The shift realisation of an FIR filter is nilpotent (defective: the Schur form), and
    its response is the filter's DTFT; a batch mixing it with a normal system (the modal form)
    keeps each system's own."""
    rng = np.random.default_rng(7)
    h = rng.standard_normal(40) * 0.9 ** np.arange(40)
    shift = mor.StateSpace.from_fir(h)
    modal = mor.ModalSSM.from_compact([0.999 * np.exp(0.7j), 0.5, -0.95], [1.0 + 0.2j, 0.4, 0.05],
                                      0.2)
    normal = modal.to_dense()
    n = shift.n_states
    pad = np.zeros((n, n))
    pad[: normal.n_states, : normal.n_states] = normal.a
    a = np.stack([shift.a, pad])
    b = np.stack([shift.b, np.r_[normal.b, np.zeros(n - normal.n_states)]])
    c = np.stack([shift.c, np.r_[normal.c, np.zeros(n - normal.n_states)]])
    response = freq.DenseResponse(a, b, c, np.array([shift.d, normal.d]))
    np.testing.assert_array_equal(response.modal, [False, True])
    m = freq.grid_size(response.size)
    grid = response.grid(m)
    np.testing.assert_allclose(grid[0], np.fft.rfft(h, m), rtol=0, atol=1e-13 * np.abs(h).sum())
    w = 2 * np.pi * np.arange(m // 2 + 1) / m
    np.testing.assert_allclose(grid[1], modal.freqresp(w), rtol=1e-12)
    w = np.array([0.1, 0.7, 0.7 + 1e-4, 3.0, 0.2])
    rows = np.array([0, 1, 1, 0, 0])
    want = np.where(rows == 0, (h * np.exp(-1j * w[:, None] * np.arange(h.size))).sum(1),
                    modal.freqresp(w))
    np.testing.assert_allclose(response.at(rows, w), want, rtol=1e-12)
    assert grid is response.grid(m) and not grid.flags.writeable  # kept for the next call
    swapped = response.take(np.array([1, 0]))  # the decompositions and the grid kept
    np.testing.assert_array_equal(swapped.modal, [True, False])
    np.testing.assert_array_equal(swapped.grid(m), grid[::-1])
    np.testing.assert_array_equal(swapped.at(1 - rows, w), response.at(rows, w))


def test_low_rank_gramian_factors():
    """A dense system whose Gramians have a low numerical rank (a normal A of 200 states with
    poles near the circle, the structure of Penzl's example, turned by an orthogonal
    similarity): its factors keep only that rank, solve the Stein equations to rounding, and
    give the Hankel singular values and the balanced truncation of full-width factors; a batch
    mixing it with a zero system and a full-rank one (a shift realisation) pads each to the
    widest."""
    rng = np.random.default_rng(21)
    n = 200
    lam = np.r_[-np.arange(1.0, n - 5), -1 + 100j, -1 + 200j, -1 + 400j]
    blocks = [np.diag(lam[: n - 6].real)] + [np.array([[x.real, x.imag], [-x.imag, x.real]])
                                              for x in lam[n - 6:]]
    cont = scipy.linalg.block_diag(*blocks)
    a = (np.eye(n) + cont) @ np.linalg.inv(np.eye(n) - cont)  # the bilinear map's A
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    b = np.r_[np.ones(n - 6), 10 * np.ones(6)]
    sys = mor.StateSpace(q @ a @ q.T, q @ b, q @ b, 0.0)
    lc, lo = sys.gramian_factors()
    assert lc.shape[-1] < n / 4 and lo.shape[-1] < n / 4
    p = scipy.linalg.solve_discrete_lyapunov(sys.a, np.outer(sys.b, sys.b))
    q_obs = scipy.linalg.solve_discrete_lyapunov(sys.a.T, np.outer(sys.c, sys.c))
    np.testing.assert_allclose(lc @ lc.T, p, atol=1e-12 * np.abs(p).max())
    np.testing.assert_allclose(lo @ lo.T, q_obs, atol=1e-12 * np.abs(q_obs).max())
    hsv = sys.hankel_singular_values()
    realisation = sys.balanced_realization(12)
    with pytest.MonkeyPatch.context() as patch:  # no truncation: full-width factors
        patch.setattr(gramians, "LOW_RANK_FRACTION", 0.0)
        assert sys.gramian_factors()[0].shape[-1] == n
        np.testing.assert_allclose(hsv, sys.hankel_singular_values(), rtol=1e-9,
                                   atol=1e-13 * hsv[0])
        full = sys.balanced_realization(12)
    # the same truncation (its states are defined up to rotations within clusters of nearly
    # equal values: compare the responses)
    ours, theirs = (mor.StateSpace(*r[:4]).impulse(3000) for r in (realisation, full))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-10 * np.abs(theirs).max())
    shift = mor.StateSpace.from_fir(rng.standard_normal(n + 1))
    batch = mor.StateSpace(np.stack([sys.a, np.zeros((n, n)), shift.a]),
                           np.stack([sys.b, np.zeros(n), shift.b]),
                           np.stack([sys.c, np.zeros(n), shift.c]), np.zeros(3))
    lc_b, lo_b = batch.gramian_factors()
    assert lc_b.shape[-1] == n  # the shift realisation's controllability Gramian is I
    np.testing.assert_allclose(lc_b[0] @ lc_b[0].T, p, atol=1e-12 * np.abs(p).max())
    assert not lc_b[1].any() and not lo_b[1].any()
    np.testing.assert_allclose(lc_b[2] @ lc_b[2].T, np.eye(n), atol=1e-14)
    np.testing.assert_allclose(batch.hankel_singular_values()[0], hsv, rtol=1e-9,
                               atol=1e-13 * hsv[0])
