r"""Hankel singular values and singular vectors of FIR filters.

The Hankel matrix of a filter of length ``L`` is ``H[i, j] = h[i + j + 1]`` for
``0 <= i, j < N = L - 1``: symmetric, and zero below the main anti-diagonal. Its singular values
are the Hankel singular values of the filter's shift-register realisation (whose
controllability Gramian is the identity), so no Lyapunov equation is needed.

Two paths, chosen automatically:

* ``dense``: the Hankel matrix and LAPACK ``gesvd`` (accurate small singular values; ``gesdd``
  is not). ``O(L^3)`` time and ``O(L^2)`` memory; all ``L - 1`` values.
* ``krylov``: matrix-free Lanczos for the ``k`` largest (`mor._numerics.lanczos`, one Numba kernel per
  filter, filters spread over the worker threads). ``H x`` is a correlation,
  ``(H x)[i] = sum_j g[i + j] x[j]`` with ``g = h[1:]``, computed by real FFTs of a fast length
  ``M >= 2N - 1`` (no wrap-around). Because ``H`` is symmetric, ``H = Q diag(theta) Q^T`` and
  ``sigma = |theta|``: Lanczos on ``H`` itself, not on ``H^T H`` (which squares the spectrum and
  halves the attainable accuracy), the basis re-orthogonalised in full for vectors and partially
  (semi-orthogonality) for values alone. Iteration stops
  when every one of the top ``k`` Ritz values has a Kato-Temple error bound (from its exact
  residual norm and its gap to the other Ritz values) ``<= rtol * sigma_1``, which certifies
  that each value lies within ``rtol * sigma_1`` of a Hankel singular value.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from mor._numerics.lanczos import lanczos_rows
from mor._numerics.linalg import svd_gesvd
from mor._numerics.parallel import map_chunks, worker_threads
from mor.conventions import as_filters

#: Hankel sizes up to this use the dense path when ``method="auto"``.
DENSE_MAX_SIZE = 160
#: Default certified accuracy of the Krylov path, relative to ``sigma_1``.
KRYLOV_RTOL = 1e-11


def hankel_matrix(h: np.ndarray, size: int | None = None) -> np.ndarray:
    """Dense Hankel matrices ``H[..., i, j] = h[..., i + j + 1]`` (zero past the last tap).

    Of size ``L - 1`` by default (the filter's Hankel matrix); a smaller ``size`` ``P`` gives
    the square data Hankel matrix of the taps ``1 .. 2P - 1``.
    """
    n = h.shape[-1] - 1 if size is None else size
    padded = np.concatenate([h, np.zeros(h.shape[:-1] + (max(2 * n - h.shape[-1], 0),))],
                            axis=-1)
    idx = np.arange(n)[:, None] + np.arange(n)[None, :] + 1
    return padded[..., idx]


def hankel_singular_values(h, k: int | None = None, *, method: str = "auto",
                           rtol: float = KRYLOV_RTOL) -> np.ndarray:
    r"""Hankel singular values of FIR filters, or of a system object.

    Parameters
    ----------
    h : array_like, shape ``(..., L)``, or ModalSSM or StateSpace
        Real FIR filters (taps ``h[0..L-1]``). A system object returns its own
        ``hankel_singular_values()`` (from square-root Gramians).
    k : int, optional
        Number of values, ``1 <= k <= L - 1``; all ``L - 1`` when omitted.
    method : {"auto", "dense", "krylov"}
        ``auto`` takes the dense path for ``L - 1 <= 160`` or ``k > (L - 1) / 4`` and the
        matrix-free Krylov path otherwise.
    rtol : float
        Krylov path: certified accuracy of every value, relative to ``sigma_1``.

    Returns
    -------
    ndarray, shape ``(..., k)``
        ``sigma_1 >= ... >= sigma_k`` (zeros for a zero filter; an empty last axis for ``L = 1``).
    """
    if hasattr(h, "hankel_singular_values") and not isinstance(h, np.ndarray):
        values = h.hankel_singular_values()
        return values if k is None else values[..., :k]
    h = as_filters(h)
    return hankel_svd(h, k, method=method, rtol=rtol, vectors=False)[0]


def hankel_svd(h: np.ndarray, k: int | None, *, method: str = "auto",
               rtol: float = KRYLOV_RTOL, vectors: bool = True, size: int | None = None):
    r"""Leading singular triplets of the Hankel matrices of validated filters ``(..., L)``.

    Returns ``(sigma, u, v)`` with ``H ~ u diag(sigma) v^T``, ``u`` and ``v`` of shape
    ``(..., N, k)`` (``None`` when ``vectors`` is false), ``N = L - 1`` or the given ``size``
    (see :func:`hankel_matrix`).
    """
    n = h.shape[-1] - 1 if size is None else int(size)
    if not 0 <= n <= h.shape[-1] - 1:
        raise ValueError(f"size must lie in [0, L - 1], got {n}")
    if k is None:
        k = n
    k = int(k)
    if not 0 <= k <= n:
        raise ValueError(f"k must satisfy 0 <= k <= L - 1 = {n}, got {k}")
    if method == "auto":
        method = "dense" if (n <= DENSE_MAX_SIZE or 4 * k > n) else "krylov"
    if method not in ("dense", "krylov"):
        raise ValueError(f"method must be 'auto', 'dense' or 'krylov', got {method!r}")
    batch = h.shape[:-1]
    flat = h.reshape(-1, h.shape[-1])
    if k == 0 or flat.shape[0] == 0:
        empty = np.zeros(batch + (k,))
        vec = np.zeros(batch + (n, k)) if vectors else None
        return empty, vec, vec
    if method == "dense":
        s, u, v = _dense(flat, k, vectors, n)
    else:
        s, u, v = _krylov(flat, k, rtol, vectors, n)
    s = s.reshape(batch + (k,))
    if vectors:
        u, v = u.reshape(batch + (n, k)), v.reshape(batch + (n, k))
    return s, u, v


def _dense(flat: np.ndarray, k: int, vectors: bool, size: int):
    hm = hankel_matrix(flat, size)
    if not vectors:
        return svd_gesvd(hm, compute_uv=False)[:, :k], None, None
    u, s, vh = svd_gesvd(hm)
    return s[:, :k], u[:, :, :k], np.swapaxes(vh[:, :k, :], 1, 2)


def _krylov(flat: np.ndarray, k: int, rtol: float, vectors: bool, n: int):
    """Top-``k`` Hankel singular triplets of each row by `mor._numerics.lanczos`, on worker threads."""
    f = flat.shape[0]
    m = scipy.fft.next_fast_len(2 * n - 1, real=True)
    spectra = scipy.fft.rfft(flat[:, 1:2 * n], n=m, axis=-1)
    max_dim = min(n, max(8 * k, 512))
    theta = np.empty((f, k))
    q = np.empty((f, n, k)) if vectors else np.empty((f, 0, 0))
    dims = np.empty(f)

    def run(sl):
        lanczos_rows(spectra[sl], n, m, k, rtol, max_dim, theta[sl], q[sl], vectors,
                     dims[sl])

    map_chunks(run, f, max(1, -(-f // (4 * worker_threads()))))
    if (dims < 0).any():
        raise RuntimeError(
            f"Krylov Hankel solver reached its basis limit ({max_dim} vectors) with relative "
            f"error bound {-dims.min():.1e} > rtol = {rtol:.1e}; use method='dense' or a "
            f"larger rtol")
    s = np.abs(theta)
    if not vectors:
        return s, None, None
    return s, q * np.where(theta < 0, -1.0, 1.0)[:, None, :], q
