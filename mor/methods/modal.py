r"""Modal fitting by variable projection: poles optimised for the ``l2`` error over the taps.

For fixed poles the best residues are a linear least-squares solution
(`mor.methods.residues.fit_residues`); variable projection eliminates them and minimises

.. math::

    \phi(\lambda) = \big\| h[1:] - V(\lambda) R^*(\lambda) \big\|_2^2,
    \qquad R^*(\lambda) = \arg\min_R \| h[1:] - V(\lambda) R \|_2,

over the poles alone, by Levenberg-Marquardt (`scipy.optimize.least_squares`) with the exact
Jacobian of the projected residual (Golub-Pereyra; `_Projection`). The poles are parameterised so
that every iterate is stable and the model real: a pair ``lambda = rho sigmoid(a) e^{i b}`` (the
conjugate implied), a real pole ``lambda = rho tanh(c)``, with ``rho = 1 - 1e-9``; the structure
(which modes are pairs) comes from the initial model. The direct term is ``h[0]`` exactly. Each
evaluation costs one thin QR of the ``L x 2 modes`` design, ``O(L modes^2)``, and its Jacobian
``O(L modes^2)`` more; ``max_iter`` bounds the evaluations at ``10 max_iter``. On the shared
trained filters (``L = 2048``) a fit takes about 0.05 / 0.1 / 0.3 / 1 s per filter at 1 / 2 / 4 / 8
modes on one core (20-30x less than with a finite-difference Jacobian, to the same optimum). The
initial model comes from any other method at the same order (``init="balanced"`` by default): the
fit starts from it and never ends worse than it in ``l2`` (the optimiser only accepts decreases;
with a frequency ``weight``, in the weighted loss).

This targets the ``l2`` error over the ``L`` taps (the lags a language model uses), which balanced
truncation and Hankel-norm approximation do not. Fitting the taps alone lets poles crowd the circle
with large residues that cancel inside the window and explode after it, so the tail energy
``||h_hat[L:]||`` enters the objective with weight ``tail_weight`` (1 by default; 0 fits the taps
alone), and with ``limit_tail=True`` (default) the tail is held to at most that of the starting
poles with least-squares residues (the point the fit starts from; up to ``1e-9 ||h||``): a fit that
ends above it is redone with ten times the weight, up to three times, and the start is kept if none
stays below. ``tail`` and ``hinf`` are reported beside ``l2``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.signal

from mor.methods.prony import PoleFamily
from mor.ssm import ModalSSM

#: Every pole stays within this radius (strictly stable, whatever the iterate).
RADIUS = 1.0 - 1e-9
#: Refits with a ten times larger tail weight before a fit whose tail exceeds its start's is
#: given up (``limit_tail``).
TAIL_RETRIES = 3
#: Residual evaluations allowed per unit of ``max_iter``.
NFEV_PER_ITER = 10


class ModalFamily(PoleFamily):
    """Variable-projection modal fits, started from another method's models."""

    name = "modal"

    @classmethod
    def from_fir(cls, h: np.ndarray, max_order: int, *, init: str | ModalSSM = "balanced",
                 max_iter: int = 20, tail_weight: float = 1.0, limit_tail: bool = True,
                 weight=None, **init_options) -> "ModalFamily":
        """``init``: a method's name, or a stable `ModalSSM` per filter (then ``order`` must be
        each model's order). ``weight``: FIR taps ``w``; poles and residues then minimise
        ``||w * (h - h_hat)||`` over the window (the error spectrum weighted by
        ``|W(e^{iw})|^2``)."""
        if weight is not None:
            weight = np.asarray(weight, dtype=np.float64)
            if weight.ndim != 1 or weight.size == 0 or not np.isfinite(weight).all():
                raise ValueError(f"weight must be finite 1-D FIR taps, got shape {weight.shape}")
        fit = (max_iter, tail_weight, limit_tail, weight)
        if isinstance(init, ModalSSM):
            return cls._from_models(h, max_order, init, fit)
        from mor.reduction import METHODS

        if init not in METHODS or init == "modal":
            raise ValueError(f"init must be a ModalSSM or one of "
                             f"{sorted(set(METHODS) - {'modal'})}, got {init!r}")
        start = METHODS[init].from_fir(h, max_order, **init_options)

        def find_poles(order, rows):
            poles, residues, _, _, _ = start.model(np.full(rows.size, order), rows)
            return _fitted(h, rows, order, poles, residues, *fit)

        return cls(h, max_order, "reflect", find_poles, hsv=start.hsv,  # one factorisation
                   weight_filter=weight)

    @classmethod
    def _from_models(cls, h, max_order, init: ModalSSM, fit: tuple):
        count = int(np.prod(init.shape, dtype=np.int64))
        if count != h.shape[0]:
            raise ValueError(f"init holds {count} models for {h.shape[0]} filters")
        if not np.all(init.is_stable()):
            raise ValueError("init has poles on or outside the unit circle")
        poles, residues, _ = (a.reshape(h.shape[0], -1) for a in init.compact())
        given = np.asarray(init.order).reshape(-1)

        def find_poles(order, rows):
            wrong = rows[given[rows] != order]
            if wrong.size:
                raise ValueError(f"init model {int(wrong[0])} has order "
                                 f"{int(given[wrong[0]])}, but order {order} was asked: pass "
                                 f"order= with the models' orders")
            return _fitted(h, rows, order, poles[rows], residues[rows], *fit)

        return cls(h, max_order, "reflect", find_poles, weight_filter=fit[-1])


def _fitted(h, rows, order, poles, residues, max_iter, tail_weight, limit_tail, weight
            ) -> np.ndarray:
    """Full (conjugate-closed) fitted poles ``(rows, order)`` from compact starting models."""
    out = np.full((rows.size, order), np.nan, dtype=np.complex128)
    for r, i in enumerate(rows):
        live = (residues[r] != 0) & (np.abs(poles[r]) < 1)
        fitted = _fit_poles(h[i], poles[r, live], max_iter, tail_weight, limit_tail, weight)
        full = np.concatenate([fitted, np.conj(fitted[fitted.imag != 0])])
        out[r, : full.size] = full
    return out


def _fit_poles(h: np.ndarray, poles: np.ndarray, max_iter: int, tail_weight: float,
               limit_tail: bool = True, weight: np.ndarray | None = None) -> np.ndarray:
    """Compact poles minimising the projected l2 residual (plus the weighted tail energy),
    from ``poles`` (stable). With ``limit_tail``, a fit whose tail exceeds the start's is
    redone with ten times the tail weight (up to ``TAIL_RETRIES`` times), else the start kept."""
    if poles.size == 0 or h.size < 3:
        return poles
    pair = poles.imag != 0
    modulus = np.clip(np.abs(poles[pair]) / RADIUS, 1e-6, 1 - 1e-12)
    start = np.concatenate([np.log(modulus / (1 - modulus)), np.angle(poles[pair]),
                            np.arctanh(np.clip(poles[~pair].real / RADIUS, -1 + 1e-12,
                                               1 - 1e-12))])
    start_tail = _Projection(h, pair, 1.0, weight).tail(start)
    allowed = start_tail * (1 + 1e-9) + 1e-9 * np.linalg.norm(h)
    for attempt in range(TAIL_RETRIES + 1 if limit_tail else 1):
        now = tail_weight if attempt == 0 else max(tail_weight, 1.0) * 10.0 ** attempt
        problem = _Projection(h, pair, now, weight)
        result = scipy.optimize.least_squares(problem.residual, start, jac=problem.jacobian,
                                              method="lm", x_scale="jac",
                                              max_nfev=NFEV_PER_ITER * max_iter, ftol=1e-7)
        if np.sum(result.fun**2) > np.sum(problem.residual(start) ** 2):
            return problem.poles(start)  # the optimiser only accepts decreases
        if not limit_tail or problem.tail(result.x) <= allowed:
            return problem.poles(result.x)
    return problem.poles(start)


class _Projection:
    r"""The variable-projection residual of one filter and its exact Jacobian.

    For parameters ``x`` the compact poles are ``lambda = RADIUS sigmoid(a) e^{i b}`` (pairs)
    and ``RADIUS tanh(c)`` (real poles); with the real design ``Phi(x)`` (columns
    ``Re lambda^k``, ``-Im lambda^k`` per pair, ``lambda^k`` per real pole, ``k = 0..L-2``),
    both it and ``y = h[1:]`` filtered by the optional ``weight`` (FIR taps ``w``, causal, cut
    to the window), thin QR ``Phi = Q R`` and residues ``c = R^{-1} Q^T y``, the residual is
    ``r = [y - Phi c, sqrt(t) ||h_hat[L:]||]``. Its Jacobian (Golub-Pereyra) is
    ``-(I - Q Q^T) dPhi_j c - Q R^{-T} dPhi_j^T r`` for the window, where ``dPhi_j`` touches
    the columns of one mode only; the tail row is differentiated through the poles (``c``
    fixed) and through ``c``, ``dc/dx_j = -Phi^+ dPhi_j c + (Phi^T Phi)^{-1} dPhi_j^T r``, by
    central differences of the ``O(m^2)`` tail formula. One QR per evaluation, ``O(L m^2)``.
    """

    def __init__(self, h: np.ndarray, pair: np.ndarray, tail_weight: float,
                 weight: np.ndarray | None = None):
        self.weight = weight
        self.y, self.length = self._filtered(h[1:]), h.size
        self.pair, self.tail_weight = pair, tail_weight
        self.k = np.arange(h.size - 1)
        self._cache: tuple | None = None

    def _filtered(self, a: np.ndarray) -> np.ndarray:
        """``w * a`` along the first axis, cut to its length (the identity without a weight)."""
        return a if self.weight is None else scipy.signal.lfilter(self.weight, [1.0], a, axis=0)

    def poles(self, x: np.ndarray) -> np.ndarray:
        p = int(self.pair.sum())
        lam = np.empty(self.pair.size, dtype=np.complex128)
        with np.errstate(over="ignore"):
            lam[self.pair] = RADIUS / (1 + np.exp(-x[:p])) * np.exp(1j * x[p:2 * p])
        lam[~self.pair] = RADIUS * np.tanh(x[2 * p:])
        return lam

    def _solve(self, x: np.ndarray) -> tuple:
        if self._cache is not None and np.array_equal(self._cache[0], x):
            return self._cache[1]
        lam = self.poles(x)
        with np.errstate(divide="ignore", under="ignore"):
            logs = np.log(np.where(lam == 0, 1e-300, lam))
        powers = np.exp(self.k[:, None] * logs[None, :])  # lambda^k, (L-1, m)
        design = self._filtered(np.concatenate([powers.real, -powers[:, self.pair].imag],
                                               axis=1))
        scale = np.linalg.norm(design, axis=0)
        scale[scale == 0] = 1.0
        q, r = np.linalg.qr(design / scale)
        coef = scipy.linalg.solve_triangular(r, q.T @ self.y, check_finite=False) / scale \
            if np.all(np.abs(np.diag(r)) > 1e-14 * np.abs(r).max()) else \
            np.linalg.lstsq(design / scale, self.y, rcond=None)[0] / scale
        residues = coef[:lam.size].astype(np.complex128)
        residues[self.pair] += 1j * coef[lam.size:]
        fit = design @ coef
        solved = (lam, powers, q, r, scale, residues, self.y - fit)
        self._cache = (x.copy(), solved)
        return solved

    def tail(self, x: np.ndarray) -> float:
        """``||h_hat[L:]||`` of the poles ``x`` with their least-squares residues."""
        lam, _, _, _, _, residues, _ = self._solve(x)
        return _tail(lam, residues, self.length)

    def residual(self, x: np.ndarray) -> np.ndarray:
        lam, _, _, _, _, residues, res = self._solve(x)
        return np.append(res, np.sqrt(self.tail_weight) * _tail(lam, residues, self.length))

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        lam, powers, q, r, scale, residues, res = self._solve(x)
        pairs, reals = np.flatnonzero(self.pair), np.flatnonzero(~self.pair)
        # d lambda / d x for each parameter, and the mode it moves
        modes = np.concatenate([pairs, pairs, reals])
        sig = np.abs(lam[pairs]) / RADIUS
        dlam = np.concatenate([lam[pairs] * (1 - sig), 1j * lam[pairs],
                               RADIUS * (1 - (lam[reals].real / RADIUS) ** 2)])
        # d(lambda^k)/d lambda = k lambda^(k-1) = k lambda^k / lambda (lambda != 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            k_pow = np.where(lam[modes] != 0, self.k[:, None] * powers[:, modes] / lam[modes],
                             (self.k[:, None] == 1).astype(float))
        moved = self._filtered(dlam * k_pow)  # d(lambda_n^k)/dx_j, weighted, (L-1, n)
        d = np.real(residues[modes] * moved)  # dPhi/dx_j c
        # (dPhi/dx_j)^T r: nonzero in mode n's columns only (Re and -Im for a pair)
        g = np.zeros((q.shape[1], x.size))
        cols = np.arange(x.size)
        g[modes, cols] = moved.real.T @ res
        pair_col = lam.size + np.cumsum(self.pair) - 1  # column of -Im lambda^k per pair mode
        is_pair = self.pair[modes]
        g[pair_col[modes[is_pair]], cols[is_pair]] = -(moved[:, is_pair].imag.T @ res)
        solve_t = scipy.linalg.solve_triangular(r, g / scale[:, None], trans="T",
                                                check_finite=False)  # R^-T S^-1 g
        jac = -(d - q @ (q.T @ d)) - q @ solve_t
        if self.tail_weight == 0.0:
            return np.vstack([jac, np.zeros((1, x.size))])
        # the tail row: through the poles with the coefficients fixed, and through the
        # coefficients, dc/dx_j = -Phi^+ dPhi_j c + (Phi^T Phi)^-1 dPhi_j^T r
        dcoef = scipy.linalg.solve_triangular(r, solve_t - q.T @ d, check_finite=False) \
            / scale[:, None]
        coef = np.concatenate([residues.real, residues[self.pair].imag])
        row = _central_difference(lambda x_: self._tail_of(x_, coef), x) \
            + _central_difference(lambda c_: self._tail_of(x, c_), coef) @ dcoef
        return np.vstack([jac, np.sqrt(self.tail_weight) * row])

    def _tail_of(self, x: np.ndarray, coef: np.ndarray) -> float:
        m = self.pair.size
        residues = coef[:m].astype(np.complex128)
        residues[self.pair] += 1j * coef[m:]
        return _tail(self.poles(x), residues, self.length)


def _central_difference(f, x: np.ndarray) -> np.ndarray:
    """The gradient of a scalar function by central differences (cheap functions only)."""
    step = 1e-6 * np.maximum(1.0, np.abs(x))
    out = np.empty(x.size)
    for j in range(x.size):
        up, down = x.copy(), x.copy()
        up[j] += step[j]
        down[j] -= step[j]
        out[j] = (f(up) - f(down)) / (2 * step[j])
    return out


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
