r"""One damped Gauss-Newton step of a modal model's poles in a quadratic metric.

A compact modal model has the taps ``h_hat[0] = D`` and ``h_hat[k] = Re sum_n R'_n
lambda_n^{k-1}`` (``k >= 1``). Its error ``e = h - h_hat`` costs ``J = ||F e||^2`` in a metric
``M = F^T F``. The poles enter nonlinearly, through the sequences

.. math::

    \frac{\partial \hat h[k]}{\partial\, \mathrm{Re}\, \lambda_n}
        = \mathrm{Re}\big(R'_n (k-1) \lambda_n^{k-2}\big), \qquad
    \frac{\partial \hat h[k]}{\partial\, \mathrm{Im}\, \lambda_n}
        = -\mathrm{Im}\big(R'_n (k-1) \lambda_n^{k-2}\big)

(a real pole moves along the real axis only), the residues linearly, through ``Re
lambda_n^{k-1}`` and ``-Im lambda_n^{k-1}``. With ``A`` the residue columns and ``B`` the pole
derivatives mapped by ``F``, and ``P`` the projector onto the complement of ``A``'s range, the
variable-projection (Kaufman) step of the poles is

.. math::

    \min_\delta \|P (F e - B \delta)\|^2 + \nu \sum_j s_j \delta_j^2, \qquad
    s_j = \|P B_{:, j}\|^2 ,

Marquardt's scaled damping ``nu`` (dimensionless) on the poles, the residues eliminated: they
are re-solved at the new poles (`mor.refit_residues`), not taken from the linear model. Where
the tail ``T = ||h_hat[L:]||`` is held with the multiplier ``mu``, the step is that of ``J + mu
T^2``: ``sqrt(mu) T`` is one more residual, linearised through its closed-form derivatives
(`mor.fitting.varpro`). The
step needs ``F`` only on the span of ``delta_0``, ``h``, the modes ``lambda^{k-1}`` and their
derivatives ``(k-1) lambda^{k-2}`` (`mode_columns`): a metric recorded on that span
(`mor.torch.calibration`) gives the exact Gauss-Newton step, although ``M`` itself is never
formed. A pole moves at most half way to the unit circle in one step, ``1 - |lambda'| >=
(1 - |lambda|) / 2``: the decay of a pole near the circle, on which every later tap depends, is
where the linear model fails first.
"""

from __future__ import annotations

import numpy as np

from mor.fitting.minimax import live_modes
from mor.fitting.varpro import _TailEnergy, _powers
from mor.systems.modal import ModalSSM

#: A pole keeps at least this fraction of its distance to the unit circle in one step.
CIRCLE_KEEP = 0.5
#: Scalings ``s_j`` are floored at this fraction of the largest of the filter.
SCALE_FLOOR = 1e-12


def mode_columns(lam: np.ndarray, length: int, derivatives: bool = False) -> np.ndarray:
    r"""The real sequences a model with compact poles ``lam`` is built from, ``(L, c)``.

    ``Re lambda^{k-1}`` for every pole and ``Im lambda^{k-1}`` for every pair (zero at
    ``k = 0``); with ``derivatives``, also ``Re`` and (pairs) ``Im`` of ``(k-1) lambda^{k-2}``
    (zero at ``k <= 1``), which span the taps' derivatives with respect to the poles.
    """
    lam = np.asarray(lam, dtype=np.complex128)
    out = np.zeros((length, 0))
    if lam.size == 0 or length < 2:
        return out
    pairs = lam.imag != 0
    powers = _powers(lam[None], length - 1)[0]  # lambda^(k-1), k = 1..L-1
    cols = [powers.real, powers[:, pairs].imag]
    if derivatives:
        slope = np.zeros_like(powers)  # (k-1) lambda^(k-2), k = 1..L-1
        slope[1:] = np.arange(1, length - 1)[:, None] * powers[:-1]
        cols += [slope.real, slope[:, pairs].imag]
    out = np.zeros((length, sum(c.shape[1] for c in cols)))
    out[1:] = np.concatenate(cols, axis=1)
    return out


def pole_step(h: np.ndarray, bank: ModalSSM, factor: np.ndarray, damping: np.ndarray,
              tail_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""The damped Gauss-Newton step of each filter's poles for least ``||F (h - h_hat)||``.

    Parameters
    ----------
    h : numpy.ndarray, shape (F, L)
        The filters.
    bank : ModalSSM
        Their models, batch shape ``(F,)``: the point the step starts from (its residues best
        optimal in the metric, e.g. from `mor.refit_residues`).
    factor : numpy.ndarray, shape (F, K, L)
        ``F`` per filter; exact at least on the span of `mode_columns` (with derivatives) of
        the bank's poles, ``delta_0`` and ``h``.
    damping : numpy.ndarray, shape (F,)
        Marquardt's ``nu`` per filter (module notes).
    tail_weight : numpy.ndarray, shape (F,), optional
        ``mu`` per filter: the step is that of ``J + mu ||h_hat[L:]||^2`` (module notes); the
        multiplier of a tail hold (`mor.refit_residues`'s ``info["mu"]``). Default 0.

    Returns
    -------
    poles : numpy.ndarray, shape (F, m)
        The stepped compact poles, in ``bank.compact()``'s order (padding kept).
    decrease : numpy.ndarray, shape (F,)
        The decrease of ``J`` the linear model predicts (at the re-solved residues); 0 where
        a filter has no live mode.
    """
    poles, residues, direct = bank.compact()
    length = h.shape[1]
    error = h - bank.impulse(length)
    decrease = np.zeros(len(h))
    weights = np.zeros(len(h)) if tail_weight is None else np.asarray(tail_weight, float)
    for i in range(len(h)):
        live = live_modes(poles[i], residues[i])
        if not live.any() or length < 3:
            continue
        lam, res = poles[i, live], residues[i, live]
        delta, decrease[i] = _step(error[i], lam, res, factor[i], damping[i], weights[i])
        poles[i, live] = _towards_circle(lam, lam + delta)
    return poles, decrease


def _step(error: np.ndarray, lam: np.ndarray, res: np.ndarray, f: np.ndarray,
          damping: float, tail_weight: float) -> tuple[np.ndarray, float]:
    """The complex pole moves of one filter and the predicted decrease (module notes)."""
    length = error.size
    pairs = lam.imag != 0
    m, p = lam.size, int(pairs.sum())
    columns = mode_columns(lam, length, derivatives=True)
    modes, slopes = columns[:, :m + p], columns[:, m + p:]  # Re (all), Im (pairs) of each
    z = slopes[:, :m] + 0j
    z[:, pairs] += 1j * slopes[:, m:]  # (k-1) lambda^(k-2)
    weighted = res[None, :] * z
    moves = np.concatenate([weighted.real, -weighted[:, pairs].imag], axis=1)
    a = f @ (modes * np.where(np.arange(m + p) < m, 1.0, -1.0))  # the columns of c
    b = f @ moves
    y = f @ error
    if tail_weight > 0:  # one more residual: sqrt(mu) T, linearised
        value, by_residues, by_poles = _tail(lam, res, length)
        if value > 0:
            root = np.sqrt(tail_weight) / (2 * np.sqrt(value))  # d sqrt(mu T^2) = root dT^2
            a = np.vstack([a, root * by_residues])
            b = np.vstack([b, root * by_poles])
            y = np.concatenate([y, [-np.sqrt(tail_weight * value)]])
    q, _ = np.linalg.qr(a / np.where((n := np.linalg.norm(a, axis=0)) > 0, n, 1.0))
    pb = b - q @ (q.T @ b)
    py = y - q @ (q.T @ y)
    scale = np.sum(pb * pb, axis=0)
    scale = np.maximum(scale, SCALE_FLOOR * scale.max()) if scale.max() > 0 else np.ones_like(scale)
    lhs = np.vstack([pb, np.diag(np.sqrt(damping * scale))])
    delta = np.linalg.lstsq(lhs, np.concatenate([py, np.zeros(scale.size)]), rcond=None)[0]
    fitted = pb @ delta
    decrease = float(py @ py - (py - fitted) @ (py - fitted))
    move = delta[:m] + 0j
    move[pairs] += 1j * delta[m:m + p]
    return move, decrease


def _tail(lam: np.ndarray, res: np.ndarray, length: int
          ) -> tuple[float, np.ndarray, np.ndarray]:
    """``T^2 = ||h_hat[L:]||^2`` and its derivatives with respect to the residue coefficients
    and the pole moves, in `_step`'s column orders."""
    pairs = lam.imag != 0
    order = np.argsort(~pairs, kind="stable")  # `_TailEnergy` takes the pairs first
    tail = _TailEnergy(lam[order][None], res[order][None], length)
    by_poles, by_coef = tail.gradients(int(pairs.sum()))
    v = np.empty(lam.size, complex)
    v[order] = by_poles[0]  # dT^2 = Re sum_n v_n dlambda_n
    m, p = lam.size, int(pairs.sum())
    coef = np.empty(m + p)
    coef[order] = by_coef[0, :m]
    coef[m:] = by_coef[0, m:]  # the pairs keep their order among themselves
    return float(tail.value[0]), coef, np.concatenate([v.real, -v[pairs].imag])


def _towards_circle(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """``after`` with each modulus held to ``1 - |lambda'| >= CIRCLE_KEEP (1 - |lambda|)``."""
    limit = 1.0 - CIRCLE_KEEP * (1.0 - np.abs(before))
    modulus = np.abs(after)
    return np.where(modulus > limit, after * (limit / np.where(modulus > 0, modulus, 1.0)), after)
