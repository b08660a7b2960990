r"""Levenberg-Marquardt for a batch of independent nonlinear least-squares problems.

Each row ``b`` minimises ``f_b(x_b) = ||r_b(x_b)||^2`` on its own; the rows advance in lockstep
so that every evaluation is one batched (BLAS/LAPACK) call. The problem object supplies

- ``evaluate(x, rows)``: an evaluation of the rows ``rows`` at ``x`` (``(len(rows), n)``) with
  attributes ``cost`` (``f``, ``(len(rows),)``) and ``ok`` (whether the point is admissible:
  finite and well posed; inadmissible trial points are rejected like increases), and
  ``take(mask)`` selecting rows of it;
- ``normal_equations(evaluation)``: ``(J^T J, J^T r)`` at those points.

A step solves ``(J^T J + mu diag(s)) delta = -J^T r`` with ``s`` the running maximum of
``diag(J^T J)`` (MINPACK's scaling, invariant to the parameters' units; floored at
`SCALE_FLOOR` of the row's largest entry) and is accepted when the
gain ratio ``rho = (f(x) - f(x + delta)) / (predicted decrease)`` exceeds ``1e-4``; ``mu``
(dimensionless, ``1e-3`` at the start) then
shrinks by ``max(1/3, 1 - (2 rho - 1)^3)``, else it grows by a doubling factor (Nielsen 1999).
Only decreases are accepted: no row ends worse than it started. A row stops when an accepted step
lowers ``f`` by less than ``ftol f``, when the step is below ``xtol (||x|| + xtol)``, when ``mu``
exceeds ``1e16`` (no descent left at working precision), or after ``max_iter`` trial points.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

#: Gain ratio above which a trial point is accepted.
ACCEPT = 1e-4
#: Damping at the start (relative to the scaled diagonal of ``J^T J``).
INITIAL_DAMPING = 1e-3
#: Damping beyond which a row is considered stationary.
MAX_DAMPING = 1e16
#: Smallest scaling of a parameter, relative to the largest of its row.
SCALE_FLOOR = 1e-12


class Minimum(NamedTuple):
    """What `levenberg_marquardt` found per row."""

    x: np.ndarray  #: final parameters ``(B, n)``
    trials: np.ndarray  #: trial points used ``(B,)``
    converged: np.ndarray  #: stopped by ``ftol``, ``xtol`` or stationarity, not ``max_iter``


def levenberg_marquardt(problem, x0: np.ndarray, *, max_iter: int, ftol: float = 1e-8,
                        xtol: float = 1e-10) -> Minimum:
    """Minimise every row's sum of squares from ``x0`` (``(B, n)``).

    Returns the final parameters ``(B, n)``, the number of trial points each row used and
    whether it converged (stopped by the relative decrease ``ftol``, the step ``xtol`` or a
    damping beyond `MAX_DAMPING`, not by ``max_iter``). Rows whose start is not admissible
    (``ok`` false) are returned unchanged, not converged.
    """
    x = np.array(x0, dtype=np.float64, copy=True)
    batch = x.shape[0]
    used = np.zeros(batch, dtype=np.int64)
    current = problem.evaluate(x, np.arange(batch))
    cost = current.cost.copy()
    active = current.ok & np.isfinite(cost)
    admissible = active.copy()
    gram = np.zeros((batch, x.shape[1], x.shape[1]))
    grad = np.zeros_like(x)
    if active.any():
        gram[active], grad[active] = problem.normal_equations(current.take(active))
    scaling = _floored(np.diagonal(gram, axis1=1, axis2=2))
    damping = np.full(batch, INITIAL_DAMPING)
    growth = np.full(batch, 2.0)
    for _ in range(max_iter):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        used[rows] += 1
        lhs = gram[rows] + damping[rows, None, None] * _diag(scaling[rows])
        step = _solve(lhs, -grad[rows])
        predicted = -(np.einsum("bi,bi->b", step, grad[rows])
                      + 0.5 * np.einsum("bi,bij,bj->b", step, gram[rows], step))
        trial = problem.evaluate(x[rows] + step, rows)
        with np.errstate(invalid="ignore", divide="ignore"):
            gain = (cost[rows] - trial.cost) / predicted
        accept = trial.ok & np.isfinite(trial.cost) & (trial.cost < cost[rows]) \
            & (predicted > 0) & (gain > ACCEPT)
        small_step = np.linalg.norm(step, axis=1) <= xtol * (np.linalg.norm(x[rows], axis=1)
                                                            + xtol)
        good = rows[accept]
        flat = accept & (cost[rows] - trial.cost <= ftol * cost[rows])
        x[good] += step[accept]
        cost[good] = trial.cost[accept]
        if good.size:
            gram[good], grad[good] = problem.normal_equations(trial.take(accept))
            scaling[good] = np.maximum(scaling[good],
                                       _floored(np.diagonal(gram[good], axis1=1, axis2=2)))
        damping[rows], growth[rows] = update_damping(damping[rows], growth[rows], gain, accept)
        active[rows[flat | small_step]] = False
        active[rows[damping[rows] > MAX_DAMPING]] = False
    return Minimum(x, used, admissible & ~active)


def update_damping(damping: np.ndarray, growth: np.ndarray, gain: np.ndarray,
                   accepted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nielsen's update of the damping and its growth factor per row, from the gain ratio of
    the trial point and whether it was accepted (module notes)."""
    with np.errstate(invalid="ignore"):
        shrink = np.maximum(1 / 3, 1 - (2 * np.where(accepted, gain, 1.0) - 1) ** 3)
    return (np.where(accepted, damping * shrink, damping * growth),
            np.where(accepted, 2.0, growth * 2.0))


def _floored(diag: np.ndarray) -> np.ndarray:
    """MINPACK's scaling ``diag(J^T J)`` per row, floored at `SCALE_FLOOR` of the row's largest
    entry (a parameter that moves nothing, e.g. a mode with a zero residue, still gets a
    damped, hence regular, diagonal)."""
    top = diag.max(axis=1, initial=0.0, keepdims=True)
    return np.maximum(diag, np.maximum(SCALE_FLOOR * top, np.finfo(float).tiny))


def _solve(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Steps ``lhs^-1 rhs`` per row; a row whose system is singular gets the zero step (its
    trial point then predicts no decrease and is rejected: the damping grows)."""
    try:
        return np.linalg.solve(lhs, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        out = np.zeros_like(rhs)
        for i in range(rhs.shape[0]):
            try:
                out[i] = np.linalg.solve(lhs[i], rhs[i])
            except np.linalg.LinAlgError:
                pass
        return out


def _diag(v: np.ndarray) -> np.ndarray:
    """Stacked diagonal matrices ``(B, n, n)`` from ``(B, n)``."""
    out = np.zeros(v.shape + v.shape[-1:])
    idx = np.arange(v.shape[-1])
    out[:, idx, idx] = v
    return out
