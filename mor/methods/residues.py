r"""Best residues for given poles: linear least squares on the taps.

For compact poles ``lambda_n`` (a non-real pole stands for its conjugate pair) the model
``h_hat[k] = Re sum_n R'_n lambda_n^{k-1}`` (``k >= 1``) is linear in the real unknowns
``(Re R'_n, Im R'_n)`` of a pair and ``R'_n`` of a real pole:

.. math::

    \min_{R'} \sum_{k=1}^{L-1} w_k \Big(h[k] - \mathrm{Re} \sum_n R'_n \lambda_n^{k-1}\Big)^2,

solved per filter (chunks of filters on worker threads) by a QR-based least-squares solve on
column-scaled Vandermonde columns (``Re lambda^{k-1}`` and ``-Im lambda^{k-1}`` for a pair). The
direct term is ``h[0]`` exactly: no modal term reaches lag 0. Every pole-based method fits its
residues here.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

from mor._parallel import map_chunks

#: Filters per task when the least-squares solves run on worker threads.
RESIDUE_CHUNK = 64


def fit_residues(h: np.ndarray, poles: np.ndarray, live: np.ndarray,
                 weights: np.ndarray | None = None, weight_filter: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares residues for compact ``poles`` (``(F, m)``, modes where ``live``).

    Parameters
    ----------
    h : ndarray ``(F, L)``
        The taps.
    poles, live : ndarray ``(F, m)``
        Compact poles and which of them are used.
    weights : ndarray ``(L,)``, optional
        Nonnegative weights ``w_k`` of the taps (``k >= 1``); uniform by default.
    weight_filter : ndarray ``(K,)``, optional
        FIR taps ``g``: the errors are filtered by ``g`` (causally, cut to the window) before
        the weights apply, i.e. the error spectrum is weighted by ``|G(e^{iw})|^2``.

    Returns
    -------
    residues : ndarray ``(F, m)``, complex
        Compact residues (zero where not ``live``; real for real poles).
    direct : ndarray ``(F,)``
        ``h[0]``.
    """
    f, length = h.shape
    k = np.arange(max(length - 1, 0))
    sqrt_w = np.ones(k.size) if weights is None else np.sqrt(np.asarray(weights)[1:])
    residues = np.zeros(poles.shape, dtype=np.complex128)

    def fit(rows: slice) -> None:  # one least-squares solve per filter
        for i in range(rows.start, rows.stop):
            idx = np.flatnonzero(live[i])
            if idx.size == 0 or k.size == 0:
                continue
            lam = poles[i, idx]
            # lambda^k / max(1, |lambda|)^(L-2): no overflow for poles outside the circle
            grow = np.maximum(np.log(np.maximum(np.abs(lam), 1e-300)), 0.0) * (k.size - 1)
            with np.errstate(divide="ignore", invalid="ignore"):  # 0 * log(0) at k = 0
                logs = np.where(lam == 0, -np.inf, np.log(np.where(lam == 0, 1, lam)))
                powers = np.exp(k[:, None] * logs[None, :] - grow[None, :])
            powers[0, lam == 0] = 1.0  # 0^0
            pair = lam.imag != 0
            columns = [powers.real, -powers[:, pair].imag]
            design = _filtered(np.concatenate(columns, axis=1), weight_filter) * sqrt_w[:, None]
            scale = np.linalg.norm(design, axis=0)
            scale[scale == 0] = 1.0
            target = _filtered(h[i, 1:], weight_filter) * sqrt_w
            coef = np.linalg.lstsq(design / scale, target, rcond=None)[0] / scale
            with np.errstate(under="ignore", over="ignore"):
                coef /= np.exp(np.concatenate([grow, grow[pair]]))
            value = coef[: idx.size].astype(np.complex128)
            value[pair] += 1j * coef[idx.size:]
            residues[i, idx] = value

    map_chunks(fit, f, RESIDUE_CHUNK)
    return residues, h[:, 0].copy()


def _filtered(a: np.ndarray, taps: np.ndarray | None) -> np.ndarray:
    """``taps * a`` along the first axis, cut to its length (``a`` itself without taps)."""
    return a if taps is None else scipy.signal.lfilter(taps, [1.0], a, axis=0)
