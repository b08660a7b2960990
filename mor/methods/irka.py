r"""Discrete-time H2-optimal poles by the iterative rational Krylov algorithm, from transfer
function samples (TF-IRKA, Beattie & Gugercin 2012), for FIR filters.

A stable reduced model ``H_r`` of order ``r`` with simple poles ``lambda_i`` is a stationary
point of ``||H - H_r||_{H2}`` (the ``l2`` norm of the whole impulse response, the error
balanced truncation and AAK do not minimise) only if it interpolates ``H`` and ``H'`` at the
mirror images ``sigma_i = 1 / conj(lambda_i)`` of its poles (the discrete-time Meier-Luenberger
conditions). TF-IRKA iterates: given points ``sigma`` (closed under conjugation), the Hermite
Loewner pencil

.. math::

    \mathbb{L}_{ij} = \frac{G(\sigma_i) - G(\sigma_j)}{\sigma_i - \sigma_j},\quad
    \mathbb{L}_{ii} = G'(\sigma_i),\qquad
    \mathbb{M}_{ij} = \frac{\sigma_i G(\sigma_i) - \sigma_j G(\sigma_j)}{\sigma_i - \sigma_j},\quad
    \mathbb{M}_{ii} = G(\sigma_i) + \sigma_i G'(\sigma_i)

of the strictly proper part ``G(z) = H(z) - h[0]`` (the direct term is matched exactly and apart)
gives the order-``r`` interpolant ``G_r(z) = g_\sigma^T (\mathbb{M} - z \mathbb{L})^{-1}
g_\sigma``, whose poles are the eigenvalues of the pencil ``(M, L)``; the next points are their
mirror images. ``G(z) = sum_{k>=1} h[k] z^{-k}`` is evaluated at ``|sigma| > 1``, where its powers
decay. The iteration starts from the balanced-truncation poles of the same order; a pole that
leaves the disk is reflected before mirroring; it stops when the points move less than ``rtol``
(relative) or after ``max_iter`` steps. Residues and the direct term are fitted by least squares on
the taps, like every pole-based method, and of the iterates (the start included) the one whose fit
of the taps is best is returned: the result is never worse than balanced truncation's poles with
least-squares residues, also where the Loewner pencil is ill-conditioned (poles near the origin put
``sigma`` far out).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from mor.fitting.least_squares import fit_residues
from mor.methods.balanced import BalancedFamily
from mor.methods.base import PoleMethod, register


#: Pencil eigenvalues whose imaginary part is below this (relative to the modulus) are real.
PAIR_RTOL = 1e-8
#: A pole below this modulus stops the iteration: its interpolation point 1 / conj(lambda) is
#: at infinity (balanced truncation of an FIR filter to its full order has poles at 0).
MIRROR_MIN = 1e-100


@register
class IrkaFamily(PoleMethod):
    """TF-IRKA poles started from balanced truncation; see the module notes."""

    name = "irka"

    @classmethod
    def from_fir(cls, h: np.ndarray, max_order: int, *, max_iter: int = 50,
                 rtol: float = 1e-8, unstable: str = "reflect") -> "IrkaFamily":
        """TF-IRKA models of flat FIR filters ``h`` ``(F, L)`` up to ``max_order``.

        Parameters
        ----------
        max_iter : int
            Iterations at most (50).
        rtol : float
            Stop when no interpolation point moves more than this, relative.
        unstable : {"reflect", "drop", "keep"}
            Poles of the final model on or outside the unit circle: reflected, dropped or kept.

        Notes
        -----
        ``info`` reports per filter ``iterations`` and ``converged`` (the points settled within
        ``rtol`` before ``max_iter`` or a breakdown of the pencil).
        """
        if not (isinstance(max_iter, (int, np.integer)) and not isinstance(max_iter, bool)
                and max_iter >= 0):
            raise ValueError(f"max_iter must be an integer >= 0, got {max_iter!r}")
        if not (isinstance(rtol, (int, float, np.integer, np.floating))
                and not isinstance(rtol, (bool, np.bool_)) and np.isfinite(rtol) and rtol > 0):
            raise ValueError(f"rtol must be a positive finite number, got {rtol!r}")
        start = BalancedFamily.from_fir(h, max_order)

        def find_poles(order, rows):
            begin = start.model(np.full(rows.size, order), rows)
            out = np.full((rows.size, order), np.nan, dtype=np.complex128)
            iterations = np.zeros(rows.size, dtype=np.int64)
            converged = np.ones(rows.size, dtype=bool)
            for r, i in enumerate(rows):
                live = begin.poles[r][begin.residues[r] != 0]
                full = np.concatenate([live, np.conj(live[live.imag != 0])])
                if full.size:
                    full, iterations[r], converged[r] = _irka(h[i], full, max_iter, rtol)
                    out[r, : full.size] = full
            return out, {"iterations": iterations, "converged": converged}

        return cls(h, max_order, unstable, find_poles, hsv=start.hsv)


def _irka(h: np.ndarray, poles: np.ndarray, max_iter: int, rtol: float
          ) -> tuple[np.ndarray, int, bool]:
    """TF-IRKA iterations from full (conjugate-closed) stable ``poles``: the iterate (start
    included) whose least-squares residues fit the taps best, the iterations run, and whether
    the points converged (moved less than ``rtol``) before ``max_iter`` or a breakdown."""
    best, best_error = poles, _tap_error(h, poles)
    for step in range(1, max_iter + 1):
        if np.any(np.abs(poles) < MIRROR_MIN):  # a pole at 0 mirrors to infinity (an FIR's BT)
            return best, step - 1, False
        sigma = 1.0 / np.conj(poles)
        new = _conjugate_closed(_loewner_poles(h, sigma))
        if new is None:
            return best, step, False  # the pencil broke down
        outside = np.abs(new) >= 1.0
        new[outside] = 1.0 / np.conj(new[outside])
        poles = new
        error = _tap_error(h, poles)
        if error < best_error:
            best, best_error = poles, error
        if np.any(np.abs(poles) < MIRROR_MIN):  # its next points would be at infinity
            return best, step, False
        moved = np.abs(np.sort_complex(1.0 / np.conj(new)) - np.sort_complex(sigma))
        if np.all(moved <= rtol * np.abs(np.sort_complex(sigma))):
            return best, step, True
    return best, max_iter, max_iter == 0


def _tap_error(h: np.ndarray, poles: np.ndarray) -> float:
    """``||h - h_hat||`` over the taps with least-squares residues for full ``poles``."""
    compact = poles[poles.imag >= 0][None]
    residues, _ = fit_residues(h[None], compact, np.ones(compact.shape, dtype=bool))
    powers = compact[0][None, :] ** np.arange(h.size - 1)[:, None]  # lambda^(k-1), 0^0 = 1
    return float(np.linalg.norm(h[1:] - np.real(powers @ residues[0])))


def _loewner_poles(h: np.ndarray, sigma: np.ndarray) -> np.ndarray | None:
    """Poles of the Hermite Loewner interpolant of the strictly proper part at ``sigma``."""
    h = np.concatenate([[0.0], h[1:]])  # G(z) = H(z) - h[0]: the pencil is strictly proper
    x = 1.0 / sigma  # G(sigma) = sum_k h[k] x^k, |x| < 1
    value = np.polynomial.polynomial.polyval(x, h)
    k = np.arange(h.size)
    slope = -np.polynomial.polynomial.polyval(x, k * h) / sigma  # H'(sigma)
    diff = sigma[:, None] - sigma[None, :]
    np.fill_diagonal(diff, 1.0)
    if not np.all(np.isfinite(diff) & (diff != 0)):
        return None  # a repeated point (a double pole): no Hermite pencil of simple points
    loewner = (value[:, None] - value[None, :]) / diff
    shifted = (sigma * value)[:, None] - (sigma * value)[None, :]
    m = shifted / diff
    np.fill_diagonal(loewner, slope)
    np.fill_diagonal(m, value + sigma * slope)
    try:
        eig = scipy.linalg.eigvals(m, loewner)
    except (np.linalg.LinAlgError, ValueError):
        return None
    return eig if np.all(np.isfinite(eig)) else None


def _conjugate_closed(eig: np.ndarray | None) -> np.ndarray | None:
    """Eigenvalues of a pencil that is real up to rounding, made exactly conjugate-closed."""
    if eig is None:
        return None
    tiny = PAIR_RTOL * np.maximum(np.abs(eig), 1e-300)
    real = eig[np.abs(eig.imag) <= tiny].real
    upper = eig[eig.imag > tiny]
    lower = eig[eig.imag < -tiny]
    if upper.size != lower.size:
        return None
    return np.concatenate([upper, np.conj(upper), real])
