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

Where ``sigma_{d+1}`` is a multiple value, of the ``sigma_{k+1} = ... = sigma_{k+r}``, every
eigenvector of the value gives the same stable part (AAK: the error ``G - \hat G`` is the
same all-pass function), of order ``k``: the zeros of ``Q`` beyond the ``k`` cancel with
``P``. The caller passes the order below the cluster, and a singular vector is made an
eigenvector first (`_eigenvector`). Nearly multiple zeros inside the disk (a ``k``-fold zero
is split by rounding into a ring of radius ``eps^(1/k)``) carry residues that cancel: the
modal form is then inaccurate (`_modal_form_error`), and that is reported too.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.signal

from mor.conventions import CONVERSION_RTOL

EPS = np.finfo(np.float64).eps

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
STEP_RTOL = 4 * EPS
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
    noise = 2.0 * q.size * EPS
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


def _correlate(a: np.ndarray, b: np.ndarray, size: int) -> np.ndarray:
    """``c_i = sum_k a_k b_{i+k}`` for ``0 <= i < size`` (zero past the ends of ``b``): with
    ``b = g``, the product of the Hankel matrix of ``g`` with ``a``."""
    return scipy.signal.fftconvolve(b, a[::-1])[a.size - 1: a.size - 1 + size]


def _eigenvector(g: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The unit eigenvector of ``Gamma`` nearest ``q``, a unit singular vector of a value
    ``sigma``: where ``sigma`` and ``-sigma`` are both (nearly) eigenvalues, a singular
    vector mixes their eigenvectors, ``q = c q_+ + s q_-``, and ``Gamma q / sigma = c q_+ -
    s q_-``, so the longer of ``q +- Gamma q / sigma`` is one of them (for a simple value it
    is ``2 q`` to rounding). Any eigenvector of a cluster's value serves the construction
    (`fir_aak`)."""
    image = _correlate(q, g, q.size)
    size = np.linalg.norm(image)
    if size == 0:
        return q
    plus, minus = q + image / size, q - image / size
    best = plus if np.linalg.norm(plus) >= np.linalg.norm(minus) else minus
    return best / np.linalg.norm(best)


def fir_aak(g: np.ndarray, q: np.ndarray, starts: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, float] | str:
    """The exact order-``d`` Hankel-norm approximant of one FIR filter (module notes).

    Parameters
    ----------
    g : ndarray ``(n,)``
        The taps ``h[1:]``.
    q : ndarray ``(n,)``
        A unit singular vector of the Hankel matrix for ``sigma_{d+1}``, or for the top of
        its cluster (made an eigenvector, `_eigenvector`).
    starts : ndarray ``(m,)``, complex
        Compact starting poles (one of each conjugate pair), ``d`` poles in all.

    Returns
    -------
    (poles, residues, lost) : compact form (`mor.ModalSSM.from_compact`) and what the modal
    form loses to rounding (`_modal_form_error`, the ``conversion_error``), or a string
    saying why the zeros were not found or why the modal form is inaccurate (above
    `CONVERSION_RTOL`).
    """
    n = g.size
    q = _eigenvector(g, q)
    full = np.concatenate([starts, np.conj(starts[starts.imag != 0])])
    if full.size == 0:
        return full, full.copy(), 0.0
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
    p = _correlate(g, q[1:], n - 1) if n > 1 else np.zeros(1)
    p = p.astype(np.complex128)
    residues = np.array([_horner(p, zi)[0] / _horner(coefficients, zi)[1] for zi in z])
    # compact residues: a pair's mode carries twice the residue of each of its two poles
    residues = np.where(pair, 2 * residues, residues.real + 0j)
    lost = _modal_form_error(z, residues)
    if lost > CONVERSION_RTOL:
        return ("the Schmidt polynomial's zeros inside the disk are near-multiple: the "
                f"approximant's modal form would be off by {lost:.1e} (relative) on its Markov "
                "parameters (near-defective poles)")
    return z, residues, lost


def _modal_form_error(poles: np.ndarray, residues: np.ndarray) -> float:
    r"""What the modal form loses to rounding on its Markov parameters ``h_j = Re sum_i R_i
    lambda_i^{j-1}``, ``1 <= j <= 2 d`` (which determine an order-``d`` system), relative to
    them: ``eps || sum_i |R_i| |lambda_i|^{j-1} ||_2 / ||h||_2``, the terms' rounding against
    their sum. Near-multiple poles carry huge residues that cancel in ``h``: ``1.6e-2`` for a
    15-fold zero split by rounding into a ring, against ``5e-15`` on a trained filter (index
    738, ``L = 2048``, order 32) whose residues' worst-case evaluation bound (Horner's ``2 n
    eps`` over the values) reached ``1.8e-6``, which is why that bound is not used."""
    powers = np.arange(2 * poles.size)
    terms = residues[:, None] * poles[:, None] ** powers
    markov = np.linalg.norm(terms.sum(axis=0).real)
    spread = EPS * np.linalg.norm(np.abs(terms))
    if markov == 0:
        return 0.0 if spread == 0 else np.inf
    return float(spread / markov)
