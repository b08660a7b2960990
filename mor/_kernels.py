"""Numba kernels for the loops NumPy cannot batch well, each with a NumPy reference.

The tests compare every kernel against its reference. Kernels work on flattened batches
(first axis = filter) and are compiled with ``cache=True``.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, parallel=True)
def _impulse_compact_numba(poles, residues, direct, length, out):
    for f in numba.prange(poles.shape[0]):
        out[f, 0] = direct[f]
        for k in range(1, length):
            out[f, k] = 0.0
        for n in range(poles.shape[1]):
            z = residues[f, n]
            if z == 0:
                continue
            p = poles[f, n]
            for k in range(1, length):
                out[f, k] += z.real
                z *= p


def impulse_compact(poles: np.ndarray, residues: np.ndarray, direct: np.ndarray,
                    length: int) -> np.ndarray:
    """``h[0] = D``, ``h[k] = Re sum_n R_n lambda_n^{k-1}`` for a flat batch ``(F, m)``.

    Powers are accumulated by repeated multiplication: the relative error of ``lambda^k`` grows
    like ``k * eps``, below ``1e-10`` for ``k`` up to ``10^5``.
    """
    poles = np.ascontiguousarray(poles, dtype=np.complex128)
    residues = np.ascontiguousarray(residues, dtype=np.complex128)
    direct = np.ascontiguousarray(direct, dtype=np.float64)
    out = np.empty((poles.shape[0], length), dtype=np.float64)
    if length > 0:
        _impulse_compact_numba(poles, residues, direct, length, out)
    return out


def impulse_compact_reference(poles: np.ndarray, residues: np.ndarray, direct: np.ndarray,
                              length: int) -> np.ndarray:
    """NumPy reference for `impulse_compact` (explicit powers; memory ``F * m * L``)."""
    k = np.arange(max(length - 1, 0))
    vander = poles[:, :, None] ** k
    out = np.empty((poles.shape[0], length))
    if length > 0:
        out[:, 0] = direct
        out[:, 1:] = np.real(np.einsum("fn,fnk->fk", residues, vander))
    return out


@numba.njit(cache=True, parallel=True)
def _fir_dtft_numba(h, rows, w, out):
    length = h.shape[1]
    for j in numba.prange(w.shape[0]):
        z = np.exp(-1j * w[j])
        acc = 0j
        f = rows[j]
        for k in range(length - 1, -1, -1):
            acc = acc * z + h[f, k]
        out[j] = acc


def fir_dtft(h: np.ndarray, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``H_f(e^{iw_j}) = sum_k h[f, k] e^{-i w_j k}`` for pairs ``(f, w_j) = (rows[j], w[j])``.

    Horner's rule, ``O(L)`` per pair; ``h`` has shape ``(F, L)``, ``rows`` and ``w`` ``(K,)``.
    """
    h = np.ascontiguousarray(h, dtype=np.float64)
    w = np.ascontiguousarray(w, dtype=np.float64)
    out = np.empty(w.shape, dtype=np.complex128)
    _fir_dtft_numba(h, np.ascontiguousarray(rows, dtype=np.int64), w, out)
    return out


def fir_dtft_reference(h: np.ndarray, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
    """NumPy reference for `fir_dtft`."""
    k = np.arange(h.shape[1])
    return (h[rows] * np.exp(-1j * w[:, None] * k)).sum(axis=1)
