"""TF-IRKA (discrete time): exact on exact-order filters, stable, better l2 than its BT start."""

import numpy as np
from hypothesis import given, settings

import mor
from mor.demo import hyena_like_filters
from systems import decayed_length, stable_modal


@settings(max_examples=20, deadline=None)
@given(stable_modal(max_pairs=3, max_real=2, max_modulus=0.85, min_gap=0.05))
def test_recovers_exact_order_systems(system):
    h = system.impulse(decayed_length(system))
    fit = mor.reduce(h, int(system.order), method="irka")
    assert fit.info["l2"] <= 1e-8
    assert fit.is_stable()
    assert fit.info["hinf"] >= fit.info["aak"] * (1 - 1e-6) - 1e-12


def test_better_than_balanced_truncation_in_l2_on_trained_like_filters():
    h = hyena_like_filters(8, 512, seed=11)
    bt = mor.reduce(h, modes=4)
    fit = mor.reduce(h, modes=4, method="irka")
    assert np.all(fit.is_stable()) and np.all(fit.modes <= 4)
    assert np.median(fit.info["l2"] / bt.info["l2"]) < 1.0
    assert np.all(fit.info["hinf"] >= fit.info["aak"] * (1 - 1e-6))


def test_never_worse_than_its_start_with_least_squares_residues():
    from mor.fitting.least_squares import fit_residues

    h = hyena_like_filters(6, 400, seed=5)
    bt = mor.reduce(h, 6)
    fit = mor.reduce(h, 6, method="irka")
    poles, _, _ = bt.compact()
    residues, direct = fit_residues(h, poles, poles != 0)
    start = mor.compare(h, mor.ModalSSM.from_compact(poles, residues, direct))
    assert np.all(fit.info["l2"] <= start.l2 * (1 + 1e-9))
