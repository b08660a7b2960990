r"""Modal fitting by variable projection: poles optimised for the ``l2`` error over the taps.

For fixed poles the best residues are a linear least-squares solution
(`mor.methods.residues.fit_residues`); variable projection eliminates them and minimises

.. math::

    \phi(\lambda) = \big\| h[1:] - V(\lambda) R^*(\lambda) \big\|_2^2,
    \qquad R^*(\lambda) = \arg\min_R \| h[1:] - V(\lambda) R \|_2,

over the poles alone, by Levenberg-Marquardt (`scipy.optimize.least_squares`, finite-difference
Jacobian of the projected residual). The poles are parameterised so that every iterate is
stable and the model real: a pair ``lambda = rho sigmoid(a) e^{i b}`` (the conjugate implied), a
real pole ``lambda = rho tanh(c)``, with ``rho = 1 - 1e-9``; the structure (which modes are pairs)
comes from the initial model. The direct term is ``h[0]`` exactly. Each iteration costs
``2 modes + 1`` residual evaluations (``O(L modes^2)`` each): about a second per filter of
``L = 2048`` at 16 modes with the default ``max_iter = 20`` Jacobians, where the trained filters
have converged. The initial model comes
from any other method at the same order (``init="balanced"`` by default): the fit starts
from it and never ends worse than it in ``l2`` (the optimiser only accepts decreases).

This targets the ``l2`` error over the ``L`` taps (the lags a language model uses), which
balanced truncation and Hankel-norm approximation do not. Fitting the taps alone lets poles
crowd the circle with large residues that cancel inside the window and explode after it, so
the tail energy ``||h_hat[L:]||`` enters the objective with weight ``tail_weight`` (1 by
default; 0 fits the taps alone); ``tail`` and ``hinf`` are reported beside ``l2``.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize

from mor.methods.prony import PoleFamily
from mor.methods.residues import fit_residues

#: Every pole stays within this radius (strictly stable, whatever the iterate).
RADIUS = 1.0 - 1e-9


class ModalFamily(PoleFamily):
    """Variable-projection modal fits, started from another method's models."""

    name = "modal"

    @classmethod
    def from_fir(cls, h: np.ndarray, max_order: int, *, init: str = "balanced",
                 max_iter: int = 20, tail_weight: float = 1.0, **init_options
                 ) -> "ModalFamily":
        from mor.reduction import METHODS

        if init not in METHODS or init == "modal":
            raise ValueError(f"init must be one of {sorted(set(METHODS) - {'modal'})}, "
                             f"got {init!r}")
        start = METHODS[init].from_fir(h, max_order, **init_options)

        def find_poles(order, rows):
            poles, residues, _, _, _ = start.model(np.full(rows.size, order), rows)
            out = np.full((rows.size, order), np.nan, dtype=np.complex128)
            for r, i in enumerate(rows):
                live = (residues[r] != 0) & (np.abs(poles[r]) < 1)
                fitted = _fit_poles(h[i], poles[r, live], max_iter, tail_weight)
                full = np.concatenate([fitted, np.conj(fitted[fitted.imag != 0])])
                out[r, : full.size] = full
            return out

        return cls(h, max_order, "reflect", find_poles, hsv=start.hsv)  # one factorisation


def _fit_poles(h: np.ndarray, poles: np.ndarray, max_iter: int, tail_weight: float
               ) -> np.ndarray:
    """Compact poles minimising the projected l2 residual (plus the weighted tail energy),
    from ``poles`` (stable)."""
    if poles.size == 0 or h.size < 3:
        return poles
    pair = poles.imag != 0
    modulus = np.clip(np.abs(poles[pair]) / RADIUS, 1e-6, 1 - 1e-12)
    start = np.concatenate([np.log(modulus / (1 - modulus)), np.angle(poles[pair]),
                            np.arctanh(np.clip(poles[~pair].real / RADIUS, -1 + 1e-12,
                                               1 - 1e-12))])

    def unpack(x):
        k = int(pair.sum())
        lam = np.empty(poles.size, dtype=np.complex128)
        with np.errstate(over="ignore"):
            lam[pair] = RADIUS / (1 + np.exp(-x[:k])) * np.exp(1j * x[k:2 * k])
        lam[~pair] = RADIUS * np.tanh(x[2 * k:])
        return lam

    taps = h[None, :]
    live = np.ones((1, poles.size), dtype=bool)

    def residual(x):
        lam = unpack(x)
        residues, _ = fit_residues(taps, lam[None], live)
        k = np.arange(h.size - 1)
        model = np.real((residues[0][None, :] * lam[None, :] ** k[:, None]).sum(axis=1))
        return np.append(h[1:] - model, np.sqrt(tail_weight) * _tail(lam, residues[0],
                                                                   h.size))

    result = scipy.optimize.least_squares(residual, start, method="lm", x_scale="jac",
                                          max_nfev=max_iter * (start.size + 1), ftol=1e-7)
    best = result.x if np.sum(result.fun**2) <= np.sum(residual(start) ** 2) else start
    return unpack(best)


def _tail(lam: np.ndarray, residues: np.ndarray, length: int) -> float:
    r"""``||h_hat[L:]||_2`` of compact modes: ``(x^H G x)^{1/2}``, ``x = R lambda^{L-1}`` over the
    full (conjugate-closed) modes and ``G_mn = 1 / (1 - conj(lambda_m) lambda_n)``."""
    pair = lam.imag != 0
    full_lam = np.concatenate([lam, np.conj(lam[pair])])
    full_res = np.concatenate([np.where(pair, residues / 2, residues.real),
                               np.conj(residues[pair]) / 2])
    x = full_res * full_lam ** (length - 1)
    gram = 1.0 / (1.0 - np.conj(full_lam)[:, None] * full_lam[None, :])
    return float(np.sqrt(max(np.real(np.conj(x) @ gram @ x), 0.0)))
