"""Minimax residue refit (cvxpy): never worse on its grid than least squares on the same poles,
constraints held, failures reported."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mor
from mor.demo import hyena_like_filters
from mor.fitting.least_squares import fit_residues
from mor.fitting.minimax import _basis, frequencies
from systems import stable_modal


def _grid_error(h, bank, grid):
    """Largest error on the refit's grid (`frequencies`), with the taps' DTFT computed directly."""
    poles, residues, direct = bank.compact()
    w = frequencies(grid, poles)
    target = np.exp(-1j * w[:, None] * np.arange(h.size)) @ h
    pair = poles.imag != 0
    x = np.concatenate([[direct], residues.real, residues[pair].imag])
    return np.abs(_basis(np.exp(1j * w), poles) @ x - target).max()


@settings(max_examples=15, deadline=None)
@given(stable_modal(max_pairs=3, max_real=2), st.integers(0, 2**16))
def test_minimax_is_no_worse_than_least_squares_on_its_grid(system, seed):
    rng = np.random.default_rng(seed)
    h = system.impulse(200) + 0.02 * rng.standard_normal(200)  # not exactly rational
    poles, _, _ = system.compact()
    residues, direct = fit_residues(h[None], poles[None], np.ones((1, poles.size), bool))
    ls = mor.ModalSSM.from_compact(poles, residues[0], direct[0])
    out = mor.refit(h, ls, grid=300)
    assert not out.info["failed"]
    assert out.info["grid_hinf"] <= out.info["grid_hinf_before"] * (1 + 1e-6) + 1e-9
    assert np.isclose(out.info["grid_hinf_before"], _grid_error(h, ls, 300))
    assert np.isclose(out.info["grid_hinf"], _grid_error(h, out, 300))
    np.testing.assert_array_equal(np.sort_complex(out.compact()[0]), np.sort_complex(poles))


def test_constraints_and_batches():
    h = hyena_like_filters(3, 256, seed=2)
    bank = mor.reduce(h, modes=3)
    free = mor.refit(h, bank)
    held = mor.refit(h, bank, dc_gain=True, max_residue=0.05)
    assert free.shape == held.shape == (3,)
    assert np.all(free.info["grid_hinf"] <= free.info["grid_hinf_before"] * (1 + 1e-6))
    np.testing.assert_allclose(held.freqresp(np.array([0.0]))[..., 0].real, h.sum(-1),
                               rtol=1e-6, atol=1e-8)
    assert np.abs(held.compact()[1]).max() <= 0.05 * (1 + 1e-6)
    assert np.all(held.info["grid_hinf"] >= free.info["grid_hinf"] * (1 - 1e-6))


def test_failures_are_reported_and_bad_input_refused():
    h = hyena_like_filters(2, 128, seed=3)
    bank = mor.reduce(h, modes=2)
    out = mor.refit(h, bank, solver="OSQP")  # a QP solver cannot take the cone program
    assert out.info["failed"].all() and all("solver" in r for r in out.info["reason"])
    np.testing.assert_array_equal(out.compact()[1], bank.compact()[1])  # left as it was
    with pytest.raises(ValueError, match="batch shape"):
        mor.refit(h[:1], bank)
    bad = h.copy()
    bad[1, 5] = np.nan
    with pytest.raises(ValueError, match=r"filter \(1,\)"):
        mor.refit(bad, bank)
    with pytest.raises(ValueError, match="max_residue"):
        mor.refit(h, bank, max_residue=-1.0)
