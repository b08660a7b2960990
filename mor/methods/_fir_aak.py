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
construction) by simultaneous Newton steps, ``O(n d)`` per sweep; ``Q``, ``Q'`` and ``P`` are
evaluated by Horner's rule inside the disk, where it is stable. Most of the ``n - 1`` zeros
of ``Q`` lie within about ``1 / n`` of the unit circle, on both sides of it and between the
wanted ones (on trained filters of ``L = 1024``: wanted zeros at modulus 0.9996, others at
1.0001), which shapes the iteration:

- each step is held to a trust region, ``|step| <= cap (1 - |z|)``: an iterate never leaves
  the disk, and approaches the circle geometrically instead of landing beyond it on a zero
  that is not wanted;
- Aberth's implicit deflation, ``step = N / (1 - N sum_k 1 / (z - z_k))`` with the Newton
  step ``N = Q / Q'``, runs over the other iterates within a *reach* only. Over all of them
  it hurts: the field of the wanted zeros near the circle is cancelled in ``Q'/Q`` by the
  unwanted zeros just outside it, so deflating the wanted ones alone leaves a spurious pull
  of ``d / (z - 1)`` (a start ``0.009`` from an isolated zero at 0.80 was sent to -1). Near
  iterates still repel, which keeps two of them off one zero.

`ATTEMPTS` lists the (reach, cap) pairs tried in turn. Measured on the 1024 trained filters at
orders 4-32, ``L = 1024`` and ``2048``, from the truncated construction's poles at twice the
order: the first pair converges on 1008-1024 of 1024, the list on all but 0-10, which the
caller starts again from wider truncations; full Aberth deflation with no trust region on
842-1010. Where the trust region is not binding the step is Newton's (Aberth's), so the
convergence stays quadratic. A start whose zeros do not converge to ``d`` distinct zeros
inside the disk is reported, never returned.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.signal

#: Newton sweeps before an attempt counts as not converged. On the 1024 trained filters
#: at orders 4-32 the first attempt converges in 4-8 sweeps (99th percentile 7-16, at most 25
#: but for one filter); an attempt that does not converge oscillates, so a cap well above
#: those keeps its cost low.
MAX_SWEEPS = 300
#: ``(reach, cap)`` of each attempt (module notes): Aberth's deflation over the iterates within
#: ``reach``, steps of at most ``cap (1 - |z|)``.
ATTEMPTS = ((0.01, 0.25), (0.03, 0.25), (0.1, 0.25), (0.01, 0.1))
#: An iterate this close to the circle is converging to a zero outside it: the attempt stops.
EDGE = 1e-12
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
def _refine(q, z, sweeps, rtol, reach, cap):
    """Zeros of ``Q`` inside the unit disk near the starts ``z`` (each inside it), in place,
    by Newton steps deflated over the other iterates within ``reach`` and held to ``cap``
    times the distance to the circle (module notes). Returns the sweeps used; ``-1`` if they
    did not converge, ``-2`` if an iterate came within `EDGE` of the circle. A zero has
    converged, and is held from then on, when its full step is below ``rtol`` relative or the
    value ``Q(z)`` is at the rounding level of its evaluation, where a step is noise."""
    d = z.size
    noise = 2.0 * q.size * 2.220446049250313e-16
    active = np.ones(d, dtype=np.bool_)
    for sweep in range(sweeps):
        for i in range(d):
            if not active[i]:
                continue
            zi = z[i]
            p, dp, size = _horner(q, zi)
            s = 0j
            for k in range(d):
                if k != i and abs(zi - z[k]) < reach:
                    s += 1.0 / (zi - z[k])
            ratio = p / dp
            step = ratio / (1.0 - ratio * s)
            limit = cap * (1.0 - abs(zi))
            held = abs(step) > limit
            if held:
                step *= limit / abs(step)
            z[i] = zi - step
            if abs(p) <= noise * size or (not held and abs(step) <= rtol * abs(zi)):
                active[i] = False
            elif 1.0 - abs(z[i]) < EDGE:
                return -2
        if not active.any():
            return sweep + 1
    return -1


def _flaw(z: np.ndarray, used: int) -> str:
    """Why the iterates ``z`` of `_refine` (which returned ``used``) are not the ``d`` zeros
    of ``Q`` inside the disk, or ``""``: by AAK there are exactly ``d``, so ``d`` distinct
    converged zeros inside the disk closed under conjugation are all of them."""
    if used == -1:
        return "the Schmidt polynomial's zeros did not converge from the truncated poles"
    if used == -2 or not np.all(np.abs(z) < 1.0):
        return ("an iterate from the truncated poles converged to a zero of the Schmidt "
                "polynomial outside the unit disk")
    scale = np.abs(z).max()
    gaps = np.abs(z[:, None] - z[None, :]) + np.eye(z.size) * scale
    if z.size > 1 and gaps.min() <= DISTINCT_RTOL * scale:
        return "two zeros of the Schmidt polynomial found from the truncated poles coincide"
    real = np.abs(z.imag) <= PAIR_RTOL * np.abs(z)
    upper, lower = z[~real & (z.imag > 0)], z[~real & (z.imag < 0)]
    if upper.size != lower.size or (upper.size and np.abs(
            np.sort_complex(upper) - np.sort_complex(np.conj(lower))).max() > PAIR_RTOL * scale):
        return "the Schmidt polynomial's zeros found are not closed under conjugation"
    return ""


def _conjugate_pairs(z: np.ndarray) -> np.ndarray:
    """The zeros ``z`` (closed under conjugation to `PAIR_RTOL`, `_flaw`) in compact form:
    each pair once, as the mean of its upper zero and its partner's conjugate, then the real
    zeros."""
    real = np.abs(z.imag) <= PAIR_RTOL * np.abs(z)
    upper = np.sort_complex(z[~real & (z.imag > 0)])
    mirror = np.sort_complex(np.conj(z[~real & (z.imag < 0)]))
    return np.concatenate([(upper + mirror) / 2, np.sort(z[real].real) + 0j])


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
    if not np.all(np.abs(full) < 1.0):
        return "a starting pole lies on or outside the unit circle"
    # a conjugate pair of starts may belong to two real zeros (and two real starts to a pair):
    # starts off the symmetry by a tiny rotation let Newton's steps leave it
    rotated = full * np.exp(1j * SPLIT * np.cos(np.arange(full.size) + 1.0))
    coefficients = np.ascontiguousarray(q, dtype=np.complex128)
    why = ""
    for reach, cap in ATTEMPTS:
        z = rotated.copy()
        used = _refine(coefficients, z, MAX_SWEEPS, STEP_RTOL, reach, cap)
        why = _flaw(z, used)
        if not why:
            break
    if why:
        return why
    z = _conjugate_pairs(z)
    pair = z.imag != 0
    # p_m = sum_k g_k q_{m+k}: the correlation of q with g, as a convolution
    p = scipy.signal.fftconvolve(q, g[n - 2::-1])[n - 1: 2 * n - 2] if n > 1 else np.zeros(1)
    p = p.astype(np.complex128)
    residues = np.array([_horner(p, zi)[0] / _horner(coefficients, zi)[1] for zi in z])
    # compact residues: a pair's mode carries twice the residue of each of its two poles
    return z, np.where(pair, 2 * residues, residues.real + 0j)
