r"""The exact optimal Hankel-norm approximant of an FIR filter, from its Schmidt polynomial.

The Hankel matrix of an FIR filter ``G(z) = sum_{k=1}^{n} g_k z^{-k}`` (``g = h[1:]``,
``n = L - 1``) is the finite symmetric ``Gamma[i, j] = g_{i+j+1}`` (``0 <= i, j < n``). Let
``Gamma q = theta q`` with ``|theta| = sigma_{d+1}`` and ``Q(z) = sum_j q_j z^j``. The strictly
causal part of ``G(z) Q(z)`` is ``sum_i (Gamma q)_i z^{-i-1} = theta z^{-1} Q(z^{-1})``, so

.. math::

    G(z) = \theta \, \frac{z^{-1} Q(z^{-1})}{Q(z)} + \frac{P(z)}{Q(z)}, \qquad
    P(z) = \sum_{m=0}^{n-2} p_m z^m, \quad p_m = \sum_{k=1}^{n-1-m} g_k q_{m+k}.

The first term is ``sigma_{d+1}`` times an all-pass function (``|Q(e^{-iw})| = |Q(e^{iw})|``
for real ``q``). By Adamjan, Arov and Krein, ``Q`` has exactly ``d`` zeros ``lambda_i`` in the
open unit disk when ``sigma_d > sigma_{d+1} > sigma_{d+2}``; the stable part of ``P / Q``,

.. math::

    \hat G(z) = \sum_{|\lambda_i| < 1} \frac{r_i}{z - \lambda_i}, \qquad
    r_i = \frac{P(\lambda_i)}{Q'(\lambda_i)},

is then the optimal Hankel-norm approximant of order ``d``: ``G - \hat G`` is the all-pass
term plus an antistable (anti-causal) part, which the Hankel norm does not see, so
``||G - \hat G||_H = sigma_{d+1}`` exactly, with no intermediate truncation of ``G``.

The ``d`` zeros are found from nearby starting points (the poles of a truncated Glover
construction) by simultaneous Newton steps with implicit deflation (Aberth-Ehrlich restricted
to the wanted zeros, one of each conjugate pair iterated and its conjugate deflated), ``O(n d)``
per sweep; ``Q``, ``Q'`` and ``P`` are evaluated by Horner's rule inside the disk, where it is
stable. A start whose zeros do not converge to ``d`` distinct zeros inside the disk is
reported, never returned.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.signal

#: Newton sweeps before a zero set counts as not converged.
MAX_SWEEPS = 60
#: Converged: every step below this relative to its zero.
STEP_RTOL = 4 * np.finfo(np.float64).eps
#: Zeros closer than this (relative) count as one: the set is not ``d`` distinct zeros.
DISTINCT_RTOL = 1e-9
#: A zero within this (relative) of the real axis is real, and a zero and a conjugate that
#: agree to it are a pair (the iteration runs in complex arithmetic without enforcing the
#: symmetry of a real polynomial's zeros; converged zeros keep it to rounding).
PAIR_RTOL = 1e-8
#: Rotation (radians) that moves the starts off the conjugate symmetry.
SPLIT = 1e-7


@numba.njit(cache=True, nogil=True)
def _horner(c, z):
    """``(C(z), C'(z), sum_j |c_j| |z|^j)`` for ``C(z) = sum_j c_j z^j``: the last bounds
    the rounding of the first (by ``2 n eps`` times it)."""
    p = 0j
    dp = 0j
    size = 0.0
    r = abs(z)
    for j in range(c.size - 1, -1, -1):
        dp = dp * z + p
        p = p * z + c[j]
        size = size * r + abs(c[j])
    return p, dp, size


@numba.njit(cache=True, nogil=True)
def _refine(q, z, sweeps, rtol):
    """Zeros of ``Q`` near the starts ``z``, in place; the sweeps used, or ``-1`` if they did
    not converge: every step below ``rtol`` relative, or the value ``Q(z)`` at the rounding
    level of its evaluation, where a step is noise."""
    d = z.size
    noise = 2.0 * q.size * 2.220446049250313e-16
    for sweep in range(sweeps):
        moved = 0.0
        for i in range(d):
            zi = z[i]
            p, dp, size = _horner(q, zi)
            s = 0j
            for k in range(d):
                if k != i:
                    s += 1.0 / (zi - z[k])
            ratio = p / dp
            step = ratio / (1.0 - ratio * s)
            z[i] = zi - step
            if abs(p) > noise * size:
                moved = max(moved, abs(step) / max(abs(zi), 1e-300))
        if moved <= rtol:
            return sweep + 1
    return -1


def fir_aak(g: np.ndarray, q: np.ndarray, starts: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray] | str:
    """The exact order-``d`` Hankel-norm approximant of one FIR filter (module notes).

    Parameters
    ----------
    g : ndarray ``(n,)``
        The taps ``h[1:]``.
    q : ndarray ``(n,)``
        A unit eigenvector of the Hankel matrix for the eigenvalue ``+-sigma_{d+1}``.
    starts : ndarray ``(m,)``, complex
        Compact starting poles (one of each conjugate pair), ``d`` poles in all.

    Returns
    -------
    (poles, residues) : compact form (`mor.ModalSSM.from_compact`), or a string saying why the
    zeros were not found.
    """
    n = g.size
    full = np.concatenate([starts, np.conj(starts[starts.imag != 0])])
    if full.size == 0:
        return full, full.copy()
    # a conjugate pair of starts may belong to two real zeros (and two real starts to a pair):
    # starts off the symmetry by a tiny rotation let Newton's steps leave it
    z = full * np.exp(1j * SPLIT * np.cos(np.arange(full.size) + 1.0))
    used = _refine(np.ascontiguousarray(q, dtype=np.complex128), z, MAX_SWEEPS, STEP_RTOL)
    if used < 0:
        return "the Schmidt polynomial's zeros did not converge from the truncated poles"
    if not np.all(np.abs(z) < 1.0):
        return "a zero of the Schmidt polynomial found from the truncated poles lies outside " \
               "the unit disk"
    scale = np.abs(z).max()
    gaps = np.abs(z[:, None] - z[None, :]) + np.eye(z.size) * scale
    if z.size > 1 and gaps.min() <= DISTINCT_RTOL * scale:
        return "two zeros of the Schmidt polynomial found from the truncated poles coincide"
    # the real zeros, and the upper zeros each matched by the conjugate of a lower one
    real = np.abs(z.imag) <= PAIR_RTOL * np.abs(z)
    upper, lower = z[~real & (z.imag > 0)], z[~real & (z.imag < 0)]
    if upper.size != lower.size:
        return "the Schmidt polynomial's zeros found are not closed under conjugation"
    upper, mirror = np.sort_complex(upper), np.sort_complex(np.conj(lower))
    if upper.size and np.abs(upper - mirror).max() > PAIR_RTOL * scale:
        return "the Schmidt polynomial's zeros found are not closed under conjugation"
    z = np.concatenate([(upper + mirror) / 2, np.sort(z[real].real) + 0j])
    pair = z.imag != 0
    # p_m = sum_k g_k q_{m+k}: the correlation of q with g, as a convolution
    p = scipy.signal.fftconvolve(q, g[n - 2::-1])[n - 1: 2 * n - 2] if n > 1 else np.zeros(1)
    residues = np.empty_like(z)
    for i in range(z.size):
        value = _horner(p.astype(np.complex128), z[i])[0]
        slope = _horner(np.ascontiguousarray(q, dtype=np.complex128), z[i])[1]
        residues[i] = value / slope
    # compact residues: a pair's mode carries twice the residue of each of its two poles
    return z, np.where(pair, 2 * residues, residues.real + 0j)
