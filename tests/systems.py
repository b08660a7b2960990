"""Hypothesis strategies and builders for stable modal systems with known order."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import mor


@st.composite
def stable_modal(draw, max_pairs: int = 4, max_real: int = 3, max_modulus: float = 0.9,
                 min_gap: float = 1e-3):
    """A stable real ModalSSM (batch of one) with distinct poles at least ``min_gap`` apart."""
    n_pairs = draw(st.integers(0, max_pairs))
    n_real = draw(st.integers(0 if n_pairs else 1, max_real))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    while True:
        mod = rng.uniform(0.2, max_modulus, n_pairs)
        ang = rng.uniform(0.05, np.pi - 0.05, n_pairs)
        pairs = mod * np.exp(1j * ang)
        reals = rng.uniform(-max_modulus, max_modulus, n_real)
        everything = np.concatenate([pairs, np.conj(pairs), reals])
        gaps = np.abs(everything[:, None] - everything[None, :]) + np.eye(everything.size)
        if gaps.min() >= min_gap:
            break
    res_pairs = rng.standard_normal(n_pairs) + 1j * rng.standard_normal(n_pairs)
    res_real = rng.standard_normal(n_real)
    res_pairs += 0.2 * np.sign(res_pairs.real)
    res_real += 0.2 * np.sign(res_real)
    poles = np.concatenate([pairs, reals])
    residues = np.concatenate([2 * res_pairs, res_real])
    direct = rng.standard_normal()
    return mor.ModalSSM.from_compact(poles, residues, direct)


def decayed_length(ssm: mor.ModalSSM, rel: float = 1e-13, cap: int = 8192) -> int:
    """Smallest L whose remaining l1 tail of the impulse response is below ``rel`` of the total."""
    h = np.abs(ssm.impulse(cap))
    total = h.sum()
    tail = total - np.cumsum(h)
    return int(np.argmax(tail <= rel * total)) + 1
