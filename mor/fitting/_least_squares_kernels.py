"""Numba kernel of the least-squares residue fit (`mor.fitting.least_squares.fit_residues`).

Its NumPy reference is `mor.fitting.least_squares.fit_residues_reference`; the tests compare them.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _psd_factor(gram):
    """``F`` (``r x n``, ``r`` the numerical rank) with ``F^T F = G`` for a positive
    semidefinite ``G``: Cholesky with diagonal pivoting, stopped where the largest remaining
    pivot is below ``n eps max diag G`` (what is left is rounding)."""
    n = gram.shape[0]
    d = np.empty(n)
    for a in range(n):
        d[a] = gram[a, a]
    perm = np.arange(n)
    low = np.zeros((n, n))  # columns of the factor, rows in the original order
    top = 0.0
    for a in range(n):
        top = max(top, d[a])
    tol = n * np.finfo(np.float64).eps * top
    rank = 0
    for j in range(n):
        best = j
        for i in range(j + 1, n):
            if d[perm[i]] > d[perm[best]]:
                best = i
        perm[j], perm[best] = perm[best], perm[j]
        pivot = d[perm[j]]
        if pivot <= tol:
            break
        p = perm[j]
        root = np.sqrt(pivot)
        low[p, j] = root
        for i in range(j + 1, n):
            q = perm[i]
            acc = gram[q, p]
            for c in range(j):
                acc -= low[q, c] * low[p, c]
            low[q, j] = acc / root
            d[q] -= low[q, j] * low[q, j]
        rank += 1
    out = np.empty((rank, n))
    for j in range(rank):
        for a in range(n):
            out[j, a] = low[a, j]
    return out


@numba.njit(cache=True, nogil=True)
def _residue_fit_rows(h, poles, live, rows, tail_weight, residues):
    """`mor.fitting.least_squares.fit_residues` for the filters ``rows`` whose live poles all lie
    inside the unit circle, with uniform weights and no weight filter: the design columns
    ``Re lambda^(k-1)``, ``-Im lambda^(k-1)`` by repeated multiplication (flushed to zero
    below ``1e-250``: no subnormal arithmetic), scaled to unit norm, the square root of the
    tail's Gram matrix stacked under them when ``tail_weight > 0``, and LAPACK's ``gelsd``
    with NumPy's default cut-off ``eps max(rows, columns)``."""
    length = h.shape[1]
    taps = length - 1
    for i in rows:
        count = 0
        pairs = 0
        for n in range(poles.shape[1]):
            if live[i, n]:
                count += 1
                if poles[i, n].imag != 0.0:
                    pairs += 1
        if count == 0 or taps == 0:
            continue
        lam = np.empty(count, dtype=np.complex128)
        idx = np.empty(count, dtype=np.int64)
        c = 0
        for n in range(poles.shape[1]):
            if live[i, n]:
                lam[c] = poles[i, n]
                idx[c] = n
                c += 1
        cols = count + pairs
        extra = cols if tail_weight > 0.0 else 0
        # unused tail rows stay zero; column-major, as the loops below and LAPACK walk it
        design = np.zeros((cols, taps + extra)).T
        second = np.empty(count, dtype=np.int64)  # column of -Im for a pair, -1 for a real pole
        c = count
        for n in range(count):
            if lam[n].imag != 0.0:
                second[n] = c
                c += 1
            else:
                second[n] = -1
        for n in range(count):
            p = 1.0 + 0.0j
            q = lam[n]
            col2 = second[n]
            for k in range(taps):
                design[k, n] = p.real
                if col2 >= 0:
                    design[k, col2] = -p.imag
                p *= q
                if abs(p.real) + abs(p.imag) < 1e-250:
                    break
        scale = np.empty(cols)
        for c in range(cols):
            acc = 0.0
            for k in range(taps):
                acc += design[k, c] * design[k, c]
            scale[c] = np.sqrt(acc) if acc > 0.0 else 1.0
            for k in range(taps):
                design[k, c] /= scale[c]
        target = np.zeros(taps + extra)
        target[:taps] = h[i, 1:]
        if extra:
            lams = np.empty(cols, dtype=np.complex128)
            coef = np.empty(cols, dtype=np.complex128)
            for n in range(count):
                lams[n] = lam[n]
                coef[n] = 1.0
                if second[n] >= 0:
                    lams[second[n]] = lam[n]
                    coef[second[n]] = 1.0j
            start = np.empty(cols, dtype=np.complex128)  # lambda^(L-1): where the tail starts
            for a in range(cols):
                start[a] = np.exp(taps * np.log(lams[a])) if lams[a] != 0 else 0.0
            gram = np.empty((cols, cols))
            for a in range(cols):
                for b in range(a + 1):
                    sx = start[a] * start[b] / (1.0 - lams[a] * lams[b])
                    sy = start[a] * np.conj(start[b]) / (1.0 - lams[a] * np.conj(lams[b]))
                    v = 0.5 * (coef[a] * coef[b] * sx + coef[a] * np.conj(coef[b]) * sy).real
                    v /= scale[a] * scale[b]
                    gram[a, b] = v
                    gram[b, a] = v
            factor = _psd_factor(gram)  # factor^T factor = gram
            root = np.sqrt(tail_weight)
            for a in range(factor.shape[0]):
                for b in range(cols):
                    design[taps + a, b] = root * factor[a, b]
        solution = np.linalg.lstsq(design, target,
                                   np.finfo(np.float64).eps * max(taps + extra, cols))[0]
        for n in range(count):
            value = solution[n] / scale[n] + 0.0j
            if second[n] >= 0:
                value += 1.0j * solution[second[n]] / scale[second[n]]
            residues[i, idx[n]] = value
