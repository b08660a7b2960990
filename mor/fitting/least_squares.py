r"""Best residues for given poles: linear least squares on the taps.

For compact poles ``lambda_n`` (a non-real pole stands for its conjugate pair) the model
``h_hat[k] = Re sum_n R'_n lambda_n^{k-1}`` (``k >= 1``) is linear in the real unknowns
``(Re R'_n, Im R'_n)`` of a pair and ``R'_n`` of a real pole:

.. math::

    \min_{R'} \sum_{k=1}^{L-1} w_k \Big(h[k] - \mathrm{Re} \sum_n R'_n \lambda_n^{k-1}\Big)^2,

solved per filter (chunks of filters on worker threads) by LAPACK's SVD-based least squares
(``gelsd``, NumPy's cut-off for negligible singular values) on column-scaled Vandermonde
columns (``Re lambda^{k-1}`` and ``-Im lambda^{k-1}`` for a pair): in a Numba kernel
(`mor.fitting._least_squares_kernels`) where every pole lies inside the circle and the weights are uniform,
otherwise in NumPy (`fit_residues_reference`, which the tests compare with the kernel). The
direct term is ``h[0]`` exactly: no modal term reaches lag 0. Every pole-based method fits its
residues here.

With ``tail_weight = t > 0`` (and every pole inside the circle) the model's tail beyond the
window enters the cost, ``... + t ||h_hat[L:]||^2``: at ``t = 1`` the residues fit the
zero-padded filter (the taps followed by zeros) over all time, which by Parseval is the
``L^2`` error on the unit circle, ``||H - H_hat||_2``: the function that AAA samples. The tail
is the quadratic form ``c^T A c`` of the Gram matrix of the geometric sequences beyond lag
``L - 1`` (closed form, `tail_gram`); a factor ``F^T F = A`` (pivoted Cholesky in the
kernel, a symmetric eigensolver in NumPy) is stacked under the design matrix, so the solve
stays a least-squares problem. Without the
tail a pole close to the circle gets whatever residue helps the ``L`` taps, however large its
response after them and its resonance ``|R| / (1 - |lambda|)`` on the circle: one ``firwin``
design at 8 poles had a pole at ``|lambda| = 0.99997`` and a relative H-infinity error of 155.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

from mor.fitting._least_squares_kernels import _residue_fit_rows
from mor._numerics.parallel import map_chunks

#: Filters per task when the least-squares solves run on worker threads.
RESIDUE_CHUNK = 64


def fit_residues(h: np.ndarray, poles: np.ndarray, live: np.ndarray,
                 weights: np.ndarray | None = None, weight_filter: np.ndarray | None = None,
                 tail_weight: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
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
    tail_weight : float
        Weight ``t >= 0`` of the model's tail energy ``||h_hat[L:]||^2`` in the cost (``1``:
        the zero-padded filter fitted over all time); ignored for a filter with a pole on or
        outside the unit circle (its tail is infinite).

    Returns
    -------
    residues : ndarray ``(F, m)``, complex
        Compact residues (zero where not ``live``; real for real poles).
    direct : ndarray ``(F,)``
        ``h[0]``.
    """
    h = np.ascontiguousarray(h, dtype=np.float64)
    f, length = h.shape
    residues = np.zeros(poles.shape, dtype=np.complex128)
    if weights is None and weight_filter is None:  # the kernel, where every pole is stable
        poles = np.ascontiguousarray(poles, dtype=np.complex128)
        live = np.ascontiguousarray(live, dtype=bool)
        fast = np.all(~live | (np.abs(poles) < 1.0), axis=1)
    else:
        fast = np.zeros(f, dtype=bool)

    def fit(rows: slice) -> None:
        chunk = np.arange(rows.start, rows.stop)
        if fast[rows].any():
            _residue_fit_rows(h, poles, live, chunk[fast[rows]], float(tail_weight), residues)
        for i in chunk[~fast[rows]]:
            residues[i] = _fit_one(h[i], poles[i], live[i], weights, weight_filter,
                                   tail_weight)

    map_chunks(fit, f, RESIDUE_CHUNK)
    return residues, h[:, 0].copy()


def complex64_poles(poles: np.ndarray) -> np.ndarray:
    """``poles`` rounded to complex64, as engines store them, where that keeps a pole strictly
    inside the unit circle and of its kind (a pair stays a pair, a real pole real); the
    others as they are. Residues fitted anew on these poles (`fit_residues`) make a model
    whose float32 run loses only the residues' rounding and the recurrence's."""
    poles = np.asarray(poles, dtype=np.complex128)
    with np.errstate(over="ignore"):  # beyond float32's range: outside the circle
        near = poles.astype(np.complex64).astype(np.complex128)
    kept = (np.abs(poles) < 1.0) & (np.abs(near) < 1.0) & ((near.imag == 0) == (poles.imag == 0))
    return np.where(kept, near, poles)


def fit_residues_reference(h: np.ndarray, poles: np.ndarray, live: np.ndarray,
                           weights: np.ndarray | None = None,
                           weight_filter: np.ndarray | None = None, tail_weight: float = 0.0
                           ) -> tuple[np.ndarray, np.ndarray]:
    """NumPy reference for `fit_residues`: explicit powers ``exp(k log lambda)``, one filter at
    a time (and the path that `fit_residues` takes for weights, a weight filter or poles on or
    outside the circle)."""
    residues = np.stack([_fit_one(h[i], poles[i], live[i], weights, weight_filter, tail_weight)
                         for i in range(h.shape[0])]) if h.shape[0] else np.zeros(poles.shape,
                                                                                   complex)
    return residues, h[:, 0].copy()


def _fit_one(h: np.ndarray, poles: np.ndarray, live: np.ndarray, weights, weight_filter,
             tail_weight: float) -> np.ndarray:
    """Compact residues ``(m,)`` of one filter (zero where not ``live``)."""
    length = h.size
    k = np.arange(max(length - 1, 0))
    residues = np.zeros(poles.shape, dtype=np.complex128)
    idx = np.flatnonzero(live)
    if idx.size == 0 or k.size == 0:
        return residues
    sqrt_w = np.ones(k.size) if weights is None else np.sqrt(np.asarray(weights)[1:])
    lam = poles[idx]
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
    target = _filtered(h[1:], weight_filter) * sqrt_w
    design /= scale
    if tail_weight > 0 and np.all(np.abs(lam) < 1.0):
        gram = tail_gram(lam, length) / np.outer(scale, scale)
        w, u = np.linalg.eigh(gram)
        half = (u * np.sqrt(tail_weight * np.maximum(w, 0.0))).T
        design = np.concatenate([design, half])
        target = np.concatenate([target, np.zeros(half.shape[0])])
    coef = np.linalg.lstsq(design, target, rcond=None)[0] / scale
    with np.errstate(under="ignore", over="ignore"):
        coef /= np.exp(np.concatenate([grow, grow[pair]]))
    value = coef[: idx.size].astype(np.complex128)
    value[pair] += 1j * coef[idx.size:]
    residues[idx] = value
    return residues


def tail_gram(lam: np.ndarray, length: int) -> np.ndarray:
    """``A`` with ``||h_hat[L:]||^2 = c^T A c`` for compact poles ``lam`` (all inside the circle)
    and the real coefficients ``c`` of `fit_residues` (``Re R'`` of every pole, then ``Im R'``
    of the pairs): the columns ``Re(a lambda^{k-1})`` (``a = 1``, or ``a = i`` for ``Im R'``)
    have the inner products ``sum_{k >= L} Re(a x^{k-1}) Re(b y^{k-1}) = Re(a b S(x y) +
    a conj(b) S(x conj y)) / 2`` with ``S(q) = q^(L-1) / (1 - q)``."""
    pair = lam.imag != 0
    lams = np.concatenate([lam, lam[pair]])
    coef = np.concatenate([np.ones(lam.size), np.full(int(pair.sum()), 1j)])
    x, y = lams[:, None], lams[None, :]
    a, b = coef[:, None], coef[None, :]
    # 1 - |lambda|^2 as (1 - |lambda|)(1 + |lambda|) where a pole meets itself, as
    # `ModalSSM.tail_norm` has it: within an ulp of the circle x conj(x) rounds to 1
    same = x == y
    modulus = np.abs(x)
    own = (1.0 - modulus) * (1.0 + modulus)

    def geometric(q, gap):
        return q ** (length - 1) / gap

    with np.errstate(under="ignore"):
        direct = geometric(x * y, np.where(same & (x.imag == 0), own, 1.0 - x * y))
        mixed = geometric(x * np.conj(y), np.where(same, own, 1.0 - x * np.conj(y)))
        return 0.5 * np.real(a * b * direct + a * np.conj(b) * mixed)


def _filtered(a: np.ndarray, taps: np.ndarray | None) -> np.ndarray:
    """``taps * a`` along the first axis, cut to its length (``a`` itself without taps)."""
    return a if taps is None else scipy.signal.lfilter(taps, [1.0], a, axis=0)
