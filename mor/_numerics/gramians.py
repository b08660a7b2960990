"""Cholesky-type factors of discrete-time Gramians (square-root form).

For a stable ``A`` the Stein equation ``P = A P A^H + B B^H`` has the solution
``P = sum_{k>=0} A^k B B^H (A^H)^k``. The squared Smith iteration sums it in factored form:

    Z_0 = B,   Z_{j+1} = [Z_j, A^{2^j} Z_j],   so that  Z_j Z_j^H = sum_{k < 2^j} A^k B B^H (A^H)^k,

and keeps ``Z`` at no more than ``n`` columns by a QR factorisation of ``Z^H`` (``Z Z^H = R^H R``).
Only sums of positive semi-definite terms and orthogonal transformations are involved, so the
factor is accurate in the square-root sense: Hankel singular values computed as singular values
of ``L_o^H L_c`` keep their accuracy down to ``eps * sigma_1``, unlike ``sqrt(eig(P Q))``, which
loses everything below ``sqrt(eps) * sigma_1``. ``2^j`` grows until ``||A^{2^j} Z|| <= eps ||Z||``:
about ``log2(40 / (1 - rho(A)))`` steps for spectral radius ``rho(A)``.
"""

from __future__ import annotations

import numpy as np

from mor._numerics.linalg import svd_gesvd
from mor._numerics.parallel import map_chunks, worker_threads

_MAX_DOUBLINGS = 64


def stein_factor(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Factor ``Z`` (``(..., n, n)``) with ``Z Z^H = sum_k A^k B B^H (A^H)^k``.

    See `_stein_factor`; this wrapper spreads large batches over worker threads.
    """
    batch = b.shape[:-2]
    count = int(np.prod(batch, dtype=np.int64))
    if count < 64 or worker_threads() < 2:
        return _stein_factor(a, b)
    a_flat = a.reshape((count,) + a.shape[len(batch):])
    b_flat = b.reshape((count,) + b.shape[-2:])
    out = np.empty((count, b.shape[-2], b.shape[-2]), dtype=np.result_type(a, b, np.float64))

    def run(sl):
        out[sl] = _stein_factor(a_flat[sl], b_flat[sl])

    map_chunks(run, count, -(-count // worker_threads()))
    return out.reshape(batch + out.shape[1:])


def _stein_factor(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Factor ``Z`` (``(..., n, n)``) with ``Z Z^H = sum_k A^k B B^H (A^H)^k``.

    Parameters
    ----------
    a : array, shape ``(..., n, n)`` or ``(..., n)``
        The state matrix, or its diagonal (modal form).
    b : array, shape ``(..., n, c)``
        The input matrix.

    Raises
    ------
    ValueError
        If some ``A`` in the batch has spectral radius ``>= 1`` (the sum diverges).
    """
    diagonal = a.ndim == b.ndim - 1
    radius = np.abs(a) if diagonal else np.abs(np.linalg.eigvals(a))
    if radius.size and not np.all(radius.max(axis=-1, initial=0.0) < 1.0):
        raise ValueError("the Gramian exists only for stable systems (spectral radius < 1)")
    n = b.shape[-2]
    z = b.astype(np.result_type(a, b, np.float64))
    apow = a.astype(z.dtype)
    for _ in range(_MAX_DOUBLINGS):
        az = apow[..., :, None] * z if diagonal else apow @ z
        if np.all(np.linalg.norm(az, axis=(-2, -1)) <= np.finfo(float).eps
                  * np.linalg.norm(z, axis=(-2, -1))):
            break
        z = np.concatenate([z, az], axis=-1)
        if z.shape[-1] > n:
            r = np.linalg.qr(np.conj(np.swapaxes(z, -1, -2)), mode="r")
            z = np.conj(np.swapaxes(r, -1, -2))
        apow = apow * apow if diagonal else apow @ apow
    else:  # pragma: no cover - only for radius within ~1e-19 of 1
        raise ValueError("the Gramian did not converge: a pole lies too close to the unit circle")
    if z.shape[-1] < n:  # converged before the factor filled n columns
        z = np.concatenate([z, np.zeros(z.shape[:-1] + (n - z.shape[-1],), z.dtype)], axis=-1)
    return z


def hankel_values_from_factors(lc: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Hankel singular values ``sigma(L_o^H L_c)``, sorted descending, shape ``(..., n)``."""
    n = lc.shape[-2]
    prod = np.conj(np.swapaxes(lo, -1, -2)) @ lc
    s = svd_gesvd(prod, compute_uv=False)
    out = np.zeros(prod.shape[:-2] + (n,))
    out[..., : s.shape[-1]] = s[..., :n]
    return out
