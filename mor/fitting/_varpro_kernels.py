r"""Numba kernels of the unweighted variable projection (`mor.fitting.varpro`).

The design of a modal fit has the columns ``Re lambda^k`` and ``-Im lambda^k``, ``k < N``; the
derivative columns are ``Re beta k lambda^(k-1)``. Every inner product of two such columns is a
geometric sum, so the Gram matrices cost ``O(m^2)`` per filter instead of ``O(N m^2)``:

.. math::

    S(x) = \sum_{k<N} x^k, \qquad U_1(x) = \sum_{k<N} k x^{k-1}, \qquad
    U_2(x) = \sum_{k<N} k^2 x^{k-1},

for ``x = lambda mu`` and ``x = lambda conj(mu)`` (`design_sums`). With ``u = 1 - x``:
``S = (1 - x^N) / u``, ``U_1 = S'``, ``U_2 = S' + x S''``, used where ``|u| >= 1/20``
(relative errors grow like ``eps / |u|``). Nearer to ``x = 1`` the sums are written in
``s = log x`` (taken from the poles' logarithms, which the parameterisation gives to full
relative accuracy, and reduced modulo ``2 pi i``): with ``S_p = sum k^p x^k`` and
``U_p = S_p / x``, ``S = F / E``, ``S_1 = N x^N / E - F x / E^2`` and ``S_2 = dS_1/ds``, where
``E = expm1(s)``, ``F = expm1(N s)`` and ``x^N = exp(N s)`` (not ``1 + F``, which loses it
below ``eps``); where ``|N s| < 1/2`` by the series ``S_p = N^(p+1) sum_j (N s)^j / j! Q_(p+j)``,
``Q_q = sum_k (k/N)^q / N``. The sums are exact to about ``1e-12`` of the sum of absolute values
(tested against extended precision). The terms that remain are ``O(N m)`` passes over the taps
(`tap_moments`, `residual_moments`), the powers by repeated multiplication in real arithmetic
(vectorised over the modes), set again from ``exp(k log lambda)`` every `RESYNC` taps.

The dense path of `mor.fitting.varpro.ModalProjection` (explicit design, BLAS products) is the
reference; the tests compare them.
"""

from __future__ import annotations

import cmath
import math

import numba
import numpy as np

#: Below this distance ``|1 - x|`` the sums are evaluated in ``s = log x``.
NEAR_ONE = 0.05
#: Below this ``|N s|`` the sums are evaluated by their Taylor series (`TAYLOR_TERMS` terms:
#: ``0.5^24 / 24!`` is below ``1e-30``).
TAYLOR_RADIUS = 0.5
TAYLOR_TERMS = 24
#: Powers ``lambda^k`` are recomputed from ``exp(k log lambda)`` every this many taps.
RESYNC = 64


def moment_table(count: int) -> np.ndarray:
    """``Q_q = (1/N) sum_{k<N} (k/N)^q`` for ``q <= TAYLOR_TERMS + 2``, ``N = count``."""
    k = np.arange(count, dtype=np.float64) / count
    return np.array([np.mean(k**q) for q in range(TAYLOR_TERMS + 3)])


@numba.njit(cache=True, error_model="numpy")
def _expm1(z):
    """``exp(z) - 1`` to full relative accuracy for complex ``z``."""
    half = math.sin(0.5 * z.imag)
    return complex(math.expm1(z.real) * math.cos(z.imag) - 2.0 * half * half,
                   math.exp(z.real) * math.sin(z.imag))


@numba.njit(cache=True, error_model="numpy")
def _power(x, n):
    """``x^n`` for complex ``x`` with ``|x| <= 1`` and an integer ``n >= 0`` (``0^0 = 1``)."""
    if n == 0:
        return 1.0 + 0.0j
    if x == 0:
        return 0.0j
    return cmath.exp(n * cmath.log(x))


@numba.njit(cache=True, error_model="numpy")
def _sums(x, s, before, n, table):
    """``(S, U_1, U_2)`` of ``x = exp(s)`` over ``n`` taps, given ``before = x^(n-2)``
    (module notes)."""
    u = 1.0 - x
    if abs(u) >= NEAR_ONE:
        v = 1.0 / u
        last = before * x
        s0 = (1.0 - last * x) * v
        d1 = (s0 - n * last) * v
        d2 = (2.0 * d1 - n * (n - 1.0) * before) * v  # S'' = (2 S' - n (n-1) x^(n-2)) / u
        return s0, d1, d1 + x * d2
    turns = round(s.imag / (2.0 * math.pi))
    s = complex(s.real, s.imag - 2.0 * math.pi * turns)
    ns = n * s
    if abs(ns) < TAYLOR_RADIUS:
        t0 = t1 = t2 = 0.0j
        term = 1.0 + 0.0j
        for j in range(TAYLOR_TERMS):
            t0 += term * table[j]
            t1 += term * table[j + 1]
            t2 += term * table[j + 2]
            term *= ns / (j + 1)
        s0, s1, s2 = n * t0, n * n * t1, n * n * n * t2
    else:
        v = 1.0 / _expm1(s)
        f, ef = _expm1(ns), cmath.exp(ns)  # (1 + f would lose x^n once it is below eps)
        ex = x
        s0 = f * v
        s1 = (n * ef - ex * s0) * v
        s2 = (n * n * ef - 2.0 * n * ef * ex * v - ex * s0 + 2.0 * ex * ex * s0 * v) * v
    return s0, s1 / x, s2 / x


@numba.njit(cache=True, nogil=True, error_model="numpy")
def design_sums(lam, logs, n, table, out):
    """``out[b, v, t, i, j]``: sum ``t`` (``S``, ``U_1``, ``U_2``) of ``x = lambda_i mu_j`` with
    ``mu = lambda`` (``v = 0``) or ``conj(lambda)`` (``v = 1``), ``n`` taps, for every row ``b``
    of ``lam`` ``(B, m)`` and its logarithms ``logs``."""
    m = lam.shape[1]
    before = np.empty(m, dtype=np.complex128)  # lambda^(n-2)
    for b in range(lam.shape[0]):
        for i in range(m):
            before[i] = _power(lam[b, i], n - 2)
        for i in range(m):
            for j in range(i, m):
                for v in range(2):
                    mu = lam[b, j] if v == 0 else lam[b, j].conjugate()
                    smu = logs[b, j] if v == 0 else logs[b, j].conjugate()
                    pmu = before[j] if v == 0 else before[j].conjugate()
                    s0, u1, u2 = _sums(lam[b, i] * mu, logs[b, i] + smu, before[i] * pmu, n,
                                       table)
                    out[b, v, 0, i, j], out[b, v, 1, i, j], out[b, v, 2, i, j] = s0, u1, u2
                    if v == 1:  # x(j, i) = conj(x(i, j))
                        s0, u1, u2 = s0.conjugate(), u1.conjugate(), u2.conjugate()
                    out[b, v, 0, j, i], out[b, v, 1, j, i], out[b, v, 2, j, i] = s0, u1, u2


@numba.njit(cache=True, nogil=True, error_model="numpy")
def real_products(sums, a, b, mode_a, mode_b, out):
    """``out[r, i, j] = <Re a_i f_i, Re b_j g_j>`` from ``sums[r, 0] = sum f g`` and
    ``sums[r, 1] = sum f conj(g)`` (over modes, ``(B, 2, m, m)``); column ``i`` belongs to mode
    ``mode_a[i]``: ``1/2 Re(a b sum f g) + 1/2 Re(a conj(b) sum f conj(g))``."""
    for r in range(out.shape[0]):
        for i in range(out.shape[1]):
            for j in range(out.shape[2]):
                ab = a[r, i] * b[r, j]
                ac = a[r, i] * b[r, j].conjugate()
                out[r, i, j] = 0.5 * ((ab * sums[r, 0, mode_a[i], mode_b[j]]).real
                                      + (ac * sums[r, 1, mode_a[i], mode_b[j]]).real)


@numba.njit(cache=True, error_model="numpy")
def _resync(lam, logs, k, zr, zi):
    """``zr + i zi = lambda^k`` from ``exp(k log lambda)``."""
    for i in range(lam.size):
        if k == 0:
            z = 1.0 + 0.0j
        elif lam[i] == 0:
            z = 0.0j
        else:
            z = cmath.exp(k * logs[i])
        zr[i], zi[i] = z.real, z.imag


@numba.njit(cache=True, nogil=True, error_model="numpy")
def tap_moments(lam, logs, y, out):
    """``out[b, i] = sum_k y[b, k] lambda_{b,i}^k``."""
    m = lam.shape[1]
    zr, zi, lr, li, ar, ai = np.empty((6, m))
    for b in range(lam.shape[0]):
        lr[:], li[:], ar[:], ai[:] = lam[b].real, lam[b].imag, 0.0, 0.0
        for k in range(y.shape[1]):
            if k % RESYNC == 0:
                _resync(lam[b], logs[b], k, zr, zi)
            yk = y[b, k]
            for i in range(m):  # real arithmetic over the modes: vectorised
                ar[i] += yk * zr[i]
                ai[i] += yk * zi[i]
                t = zr[i] * lr[i] - zi[i] * li[i]
                zi[i] = zr[i] * li[i] + zi[i] * lr[i]
                zr[i] = t
        for i in range(m):
            out[b, i] = complex(ar[i], ai[i])


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def residual_moments(lam, logs, residues, y, solve, res, w):
    """Where ``solve[b]``: ``res[b, k] = y[b, k] - Re sum_i R_i lambda_i^k`` (else ``res[b]`` is
    given); then ``w[b, i] = sum_k res[b, k] k lambda_i^(k-1)``."""
    m = lam.shape[1]
    zr, zi, pr, pi, lr, li, cr, ci, wr, wi = np.empty((10, m))
    for b in range(lam.shape[0]):
        lr[:], li[:], cr[:], ci[:] = lam[b].real, lam[b].imag, residues[b].real, residues[b].imag
        pr[:], pi[:], wr[:], wi[:] = 0.0, 0.0, 0.0, 0.0
        for k in range(y.shape[1]):
            if k % RESYNC == 0:
                _resync(lam[b], logs[b], k, zr, zi)
            if solve[b]:
                model = 0.0
                for i in range(m):
                    model += cr[i] * zr[i] - ci[i] * zi[i]
                res[b, k] = y[b, k] - model
            rk = res[b, k] * k
            for i in range(m):  # w += r_k k lambda^(k-1); lambda^k advanced
                wr[i] += rk * pr[i]
                wi[i] += rk * pi[i]
                pr[i], pi[i] = zr[i], zi[i]
                t = zr[i] * lr[i] - zi[i] * li[i]
                zi[i] = zr[i] * li[i] + zi[i] * lr[i]
                zr[i] = t
        for i in range(m):
            w[b, i] = complex(wr[i], wi[i])


@numba.njit(cache=True, nogil=True, error_model="numpy")
def cholesky_rows(gram, out):
    """Upper Cholesky factors ``out[b]`` (``R^T R = gram[b]``); returns per row whether every
    pivot was positive (where not, ``out[b]`` is incomplete)."""
    batch, n = gram.shape[0], gram.shape[1]
    factored = np.ones(batch, dtype=np.bool_)
    for b in range(batch):
        r = out[b]
        r[:] = 0.0
        for j in range(n):
            acc = gram[b, j, j]
            for c in range(j):
                acc -= r[c, j] * r[c, j]
            if not acc > 0.0:
                factored[b] = False
                break
            root = math.sqrt(acc)
            r[j, j] = root
            for i in range(j + 1, n):
                acc = gram[b, j, i]
                for c in range(j):
                    acc -= r[c, j] * r[c, i]
                r[j, i] = acc / root
    return factored


@numba.njit(cache=True, nogil=True, error_model="numpy")
def upper_inverse_rows(r, out):
    """``out[b] = r[b]^(-1)`` for upper triangular ``r[b]`` with a nonzero diagonal."""
    n = r.shape[1]
    for b in range(r.shape[0]):
        inv = out[b]
        inv[:] = 0.0
        for j in range(n - 1, -1, -1):
            inv[j, j] = 1.0 / r[b, j, j]
            for i in range(j - 1, -1, -1):
                acc = 0.0
                for c in range(i + 1, j + 1):
                    acc += r[b, i, c] * inv[c, j]
                inv[i, j] = -acc / r[b, i, i]
