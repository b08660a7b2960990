"""Gauss-Newton steps of the poles in a quadratic metric (`mor.fitting.metric_poles`): the
derivative sequences are the taps' derivatives, exact-order systems are recovered from nearby
poles (quadratically), an exact model does not move, and no pole crosses the circle."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import toeplitz

import mor
from mor.fitting.metric_poles import CIRCLE_KEEP, mode_columns, pole_step
from systems import stable_modal

LENGTH = 120


def _toeplitz_metric(rng, windows=2):
    """Rows of the causal convolution by low-pass-plus-white inputs: ``||F e||`` is the output
    error over the windows (full rank)."""
    inputs = rng.standard_normal((windows, LENGTH)).cumsum(1) * 0.1 \
        + rng.standard_normal((windows, LENGTH))
    return np.vstack([toeplitz(u, np.zeros(LENGTH)) for u in inputs])


def _energy(h, bank, factor):
    return float(np.sum((factor @ (h - bank.impulse(LENGTH))) ** 2))


def _batch(model):
    """A single system as a batch of one."""
    poles, residues, direct = model.compact()
    return mor.ModalSSM.from_compact(poles[None], residues[None], np.array([direct]))


def _descend(h, bank, factor, steps):
    """The accept / reject loop of `mor.torch` on an exact metric: residues re-solved at each
    stepped pole set, the step taken where ``J`` drops."""
    damping = np.array([1e-3])
    bank = mor.refit_residues(h[None], _batch(bank), metric=factor, hold_tail=False)
    for _ in range(steps):
        poles, _ = pole_step(h[None], bank, factor[None], damping)
        trial = mor.refit_residues(h[None], mor.ModalSSM.from_compact(
            poles, *bank.compact()[1:]), metric=factor, hold_tail=False)
        if _energy(h, trial[0], factor) < _energy(h, bank[0], factor):
            bank, damping = trial, damping / 3
        else:
            damping = damping * 4
    return bank[0]


@settings(max_examples=20, deadline=None)
@given(stable_modal(max_pairs=2, max_real=1, max_modulus=0.9, min_gap=0.1), st.integers(0, 2**16))
def test_the_derivative_sequences_are_the_taps_derivatives(system, seed):
    poles, residues, direct = system.compact()
    columns = mode_columns(poles, LENGTH, derivatives=True)
    m, pairs = poles.size, poles.imag != 0
    slopes = columns[:, m + pairs.sum():]
    z = slopes[:, :m] + 0j
    z[:, pairs] += 1j * slopes[:, m:]
    n = int(np.random.default_rng(seed).integers(m))
    step = 1e-6
    for direction, expected in ((1.0, np.real(residues[n] * z[:, n])),
                                (1j, -np.imag(residues[n] * z[:, n]))):
        if direction == 1j and not pairs[n]:
            continue
        moved = [poles.copy(), poles.copy()]
        moved[0][n] += step * direction
        moved[1][n] -= step * direction
        taps = [mor.ModalSSM.from_compact(p, residues, direct).impulse(LENGTH) for p in moved]
        numeric = (taps[0] - taps[1]) / (2 * step)
        np.testing.assert_allclose(numeric, expected, atol=1e-6 * np.abs(expected).max() + 1e-9)


@settings(max_examples=15, deadline=None)
@given(stable_modal(max_pairs=2, max_real=1, max_modulus=0.9, min_gap=0.15),
       st.integers(0, 2**16))
def test_exact_order_systems_are_recovered_from_nearby_poles(system, seed):
    rng = np.random.default_rng(seed)
    h = system.impulse(LENGTH)
    poles, residues, direct = system.compact()
    moved = poles * (1 + 0.01 * rng.uniform(-1, 1, poles.shape)) \
        * np.exp(1j * 0.01 * rng.uniform(-1, 1, poles.shape) * (poles.imag != 0))
    factor = _toeplitz_metric(rng)
    start = mor.ModalSSM.from_compact(moved, residues, direct)
    found = _descend(h, start, factor, steps=15)
    assert _energy(h, found, factor) <= 1e-18 * float(np.sum((factor @ h) ** 2))
    np.testing.assert_allclose(np.sort_complex(found.compact()[0]), np.sort_complex(poles),
                               atol=1e-7)


def test_an_exact_model_does_not_move():
    system = mor.ModalSSM.from_compact(np.array([0.9 * np.exp(0.3j), -0.5]),
                                       np.array([1.0 - 0.4j, 0.6]), 0.2)
    h = system.impulse(LENGTH)
    factor = _toeplitz_metric(np.random.default_rng(1))
    poles, decrease = pole_step(h[None], _batch(system), factor[None], np.array([1e-3]))
    np.testing.assert_allclose(poles[0], system.compact()[0], atol=1e-12)
    assert abs(decrease[0]) < 1e-20 * np.sum((factor @ h) ** 2)


def test_the_convergence_is_quadratic():
    system = mor.ModalSSM.from_compact(np.array([0.95 * np.exp(0.2j), 0.8]),
                                       np.array([1.0 + 0.5j, 0.7]), 0.3)
    h = system.impulse(LENGTH)
    factor = _toeplitz_metric(np.random.default_rng(2))
    bank = mor.ModalSSM.from_compact(np.array([0.945 * np.exp(0.205j), 0.79]),
                                     np.array([1.0 + 0.5j, 0.7]), 0.3)
    energies = [_energy(h, _descend(h, bank, factor, steps), factor) for steps in (1, 2, 3)]
    assert energies[1] < energies[0] * 1e-2 and energies[2] < energies[1] * 1e-3


def test_no_step_crosses_the_circle():
    # an error the poles can only meet by growing: a slower decay than the model's
    k = np.arange(LENGTH)
    h = 0.999 ** k * np.cos(0.2 * k)
    bank = mor.ModalSSM.from_compact(np.array([0.9 * np.exp(0.2j), 0.5]),
                                     np.array([1.0, 0.1 + 0j]), h[0])
    bank = mor.refit_residues(h[None], _batch(bank), hold_tail=False)
    before = np.abs(bank.compact()[0])
    poles, _ = pole_step(h[None], bank, np.eye(LENGTH)[None], np.array([1e-9]))
    after = np.abs(poles)
    assert np.all(1 - after >= CIRCLE_KEEP * (1 - before) * (1 - 1e-12))
    assert np.any(after > before)  # the step did push outwards


def test_a_filter_without_live_modes_is_left_alone():
    bank = mor.ModalSSM.from_compact(np.zeros((2, 1)), np.zeros((2, 1)), np.zeros(2))
    h = np.random.default_rng(0).standard_normal((2, LENGTH))
    poles, decrease = pole_step(h, bank, np.broadcast_to(np.eye(LENGTH), (2, LENGTH, LENGTH)),
                                np.full(2, 1e-3))
    assert np.all(poles == 0) and np.all(decrease == 0)


@settings(max_examples=15, deadline=None)
@given(stable_modal(max_pairs=2, max_real=2, max_modulus=0.97, min_gap=0.05),
       st.integers(0, 2**16))
def test_the_tail_derivatives_are_those_of_the_tail(system, seed):
    from mor.fitting.metric_poles import _tail
    poles, residues, direct = system.compact()
    pairs = poles.imag != 0
    value, by_residues, by_poles = _tail(poles, residues, LENGTH)
    assert np.isclose(value, system.tail_norm(LENGTH) ** 2, rtol=1e-9)
    rng = np.random.default_rng(seed)
    step = 1e-7
    # a random direction of the residue coefficients (Re R', then Im R' of pairs) and poles
    dc, dp = rng.standard_normal(by_residues.size), rng.standard_normal(by_poles.size)
    m = poles.size
    moved_residues = residues + step * (dc[:m] + 0j)
    moved_residues[pairs] += 1j * step * dc[m:]
    moved_poles = poles + step * (dp[:m] + 0j)
    moved_poles[pairs] += 1j * step * dp[m:]
    moved = mor.ModalSSM.from_compact(moved_poles, moved_residues, direct)
    numeric = (moved.tail_norm(LENGTH) ** 2 - value) / step
    assert np.isclose(numeric, by_residues @ dc + by_poles @ dp,
                      rtol=1e-4, atol=1e-6 * value + 1e-9)
