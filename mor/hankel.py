r"""Hankel singular values and singular vectors of FIR filters.

The Hankel matrix of a filter of length ``L`` is ``H[i, j] = h[i + j + 1]`` for
``0 <= i, j < N = L - 1``: symmetric, and zero below the main anti-diagonal. Its singular values
are the Hankel singular values of the filter's shift-register realisation (whose
controllability Gramian is the identity), so no Lyapunov equation is needed.

Two paths, chosen automatically:

* ``dense``: the Hankel matrix and LAPACK ``gesvd`` (accurate small singular values; ``gesdd``
  is not). ``O(L^3)`` time and ``O(L^2)`` memory; all ``L - 1`` values.
* ``krylov``: a matrix-free block Lanczos method for the ``k`` largest. ``H x`` is a
  correlation, ``(H x)[i] = sum_j g[i + j] x[j]`` with ``g = h[1:]``, computed by real FFTs of a
  fast length ``M >= 2N - 1`` (no wrap-around), batched across filters and vectors. Because
  ``H`` is symmetric, ``H = Q diag(theta) Q^T`` and ``sigma = |theta|``: Lanczos on ``H`` itself,
  not on ``H^T H`` (which squares the spectrum and halves the attainable accuracy). The Krylov
  basis is fully re-orthogonalised (classical Gram-Schmidt, twice); after every block the
  Rayleigh-Ritz values of ``T = Q^T H Q`` are checked by their exact residual norms
  ``||H y - theta y|| = ||B S_last||``. Iteration stops when every one of the top ``k`` has
  residual ``<= rtol * sigma_1``, which certifies that each value lies within
  ``rtol * sigma_1`` of a Hankel singular value.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from mor._linalg import svd_gesvd
from mor._parallel import map_chunks, worker_threads
from mor.conventions import as_filters

#: Hankel sizes up to this use the dense path when ``method="auto"``.
DENSE_MAX_SIZE = 160
#: Default certified accuracy of the Krylov path, relative to ``sigma_1``.
KRYLOV_RTOL = 1e-11
_KRYLOV_CACHE = 2**23  # bytes of Krylov basis per chunk of filters
# Lanczos block size. Measured on trained filters (L = 1024..4096, k = 5..65): blocks of 4 are
# fastest; larger blocks need more vectors than their BLAS-3 efficiency wins back.
_BLOCK = 4


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
        s, u, v = _krylov_chunked(flat, k, rtol, vectors, n)
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


def _krylov_chunked(flat: np.ndarray, k: int, rtol: float, vectors: bool, n: int):
    f = flat.shape[0]
    block = _BLOCK
    max_dim = min(n - n % block, max(8 * k, 16 * block, 512))
    # The orthogonalisation streams the basis through memory several times a step: chunks of
    # filters whose bases (typically 2k vectors) stay in cache run 2-3x faster than big batches.
    chunk = max(1, min(-(-f // worker_threads()), _KRYLOV_CACHE // (16 * k * n)))
    out_s = np.empty((f, k))
    out_u = np.empty((f, n, k)) if vectors else None
    out_v = np.empty((f, n, k)) if vectors else None

    def run(sl):
        theta, q = _krylov_eigh(flat[sl], k, rtol, block, max_dim, vectors, n)
        out_s[sl] = np.abs(theta)
        if vectors:
            out_v[sl] = q
            out_u[sl] = q * np.where(theta < 0, -1.0, 1.0)[:, None, :]

    map_chunks(run, f, chunk)
    return out_s, out_u, out_v


def _krylov_eigh(h: np.ndarray, k: int, rtol: float, block: int, max_dim: int,
                 vectors: bool, n: int):
    """Top-``k`` eigenpairs (by modulus) of the symmetric Hankel matrices of ``h`` (``(F, L)``).

    Returns ``theta`` (``(F, k)``, sorted by decreasing ``|theta|``) and the Ritz vectors
    ``(F, N, k)`` (``None`` unless ``vectors``).
    """
    f = h.shape[0]
    m = scipy.fft.next_fast_len(2 * n - 1, real=True)
    spectrum = scipy.fft.rfft(h[:, 1:2 * n], n=m, axis=-1)[:, None, :]

    def apply(spec, rows):  # (F, b, N) -> (F, b, N): rows of H x
        prod = spec * np.conj(scipy.fft.rfft(rows, n=m, axis=-1))
        return scipy.fft.irfft(prod, n=m, axis=-1)[..., :n]

    rng = np.random.default_rng(0x5EED)
    theta_out = np.empty((f, k))
    vec_out = np.empty((f, n, k)) if vectors else None
    live = np.arange(f)
    done = np.zeros(f, dtype=bool)
    capacity = min(max_dim, 4 * k + 4 * block)
    basis = np.empty((f, capacity, n))
    tmat = np.zeros((f, capacity, capacity))
    basis[:, :block] = _orthonormal_rows(rng.standard_normal((f, block, n)))
    dim, step = block, 0
    while True:
        lo = max(dim - 2 * block, 0)
        w = apply(spectrum[live], basis[:, dim - block:dim])
        w_norm = np.linalg.norm(w, axis=(1, 2))
        # Local block three-term step, then one full re-orthogonalisation pass (CGS2).
        near = basis[:, lo:dim]
        coef = near @ np.swapaxes(w, 1, 2)
        w -= np.swapaxes(coef, 1, 2) @ near
        active = basis[:, :dim]
        full = active @ np.swapaxes(w, 1, 2)
        w -= np.swapaxes(full, 1, 2) @ active
        full[:, lo:dim] += coef
        tmat[:, :dim, dim - block:dim] = full
        tmat[:, dim - block:dim, :dim] = np.swapaxes(full, 1, 2)
        q, beta = np.linalg.qr(np.swapaxes(w, 1, 2))
        last = dim + block > max_dim
        step += 1
        if dim >= k and (step % max(1, k // (4 * block)) == 0 or last):
            t = tmat[:, :dim, :dim]
            ritz, s = np.linalg.eigh(0.5 * (t + np.swapaxes(t, 1, 2)))
            top = np.argsort(-np.abs(ritz), axis=1, kind="stable")[:, :k]
            theta = np.take_along_axis(ritz, top, axis=1)
            s_top = np.take_along_axis(s, top[:, None, :], axis=2)
            resid = np.linalg.norm(beta @ s_top[:, dim - block:dim, :], axis=1)
            bound = (_ritz_error_bound(theta, resid, ritz)
                     / np.maximum(np.abs(theta[:, :1]), np.finfo(float).tiny))
            new = np.all(bound <= rtol, axis=1) & ~done
            if last and not (done | new).all():
                raise RuntimeError(
                    f"Krylov Hankel solver reached its basis limit ({max_dim} vectors) with "
                    f"relative error bound {bound.max():.1e} > rtol = {rtol:.1e}; use "
                    f"method='dense' or a larger rtol")
            if new.any():
                theta_out[live[new]] = theta[new]
                if vectors:
                    vec_out[live[new]] = np.swapaxes(
                        np.swapaxes(s_top[new], 1, 2) @ active[new], 1, 2)
                done |= new
            if done.all():
                break
            if done.sum() * 4 >= done.size:  # drop finished filters once they are many
                keep = ~done
                live, tmat, done = live[keep], tmat[keep], done[keep]
                q, beta, w_norm = q[keep], beta[keep], w_norm[keep]
                basis = _take_rows(basis, keep, dim)
        rows = np.swapaxes(q, 1, 2)
        small = np.abs(np.diagonal(beta, axis1=1, axis2=2)).min(axis=1) < 1e-8 * w_norm
        if small.any():  # (near) invariant subspace: the QR basis is noise, orthogonalise it
            active = basis[:, :dim]
            rows -= (active @ np.swapaxes(rows, 1, 2)).transpose(0, 2, 1) @ active
            rows = _orthonormal_rows(rows)
        if dim + block > basis.shape[1]:
            capacity = min(max_dim, 2 * basis.shape[1])
            grown = np.empty((live.size, capacity, n))
            grown[:, :dim] = basis[:, :dim]
            basis = grown
            tmat = np.pad(tmat, ((0, 0), (0, capacity - tmat.shape[1]),
                                 (0, capacity - tmat.shape[1])))
        basis[:, dim:dim + block] = rows
        dim += block
    return theta_out, vec_out


def _take_rows(basis: np.ndarray, keep: np.ndarray, dim: int) -> np.ndarray:
    """``basis[keep]``, copying only the ``dim`` vectors in use."""
    out = np.empty((int(keep.sum()),) + basis.shape[1:])
    out[:, :dim] = basis[keep, :dim]
    return out


def _ritz_error_bound(theta: np.ndarray, resid: np.ndarray, ritz: np.ndarray) -> np.ndarray:
    """``min(||r||, ||r||^2 / gap)`` per Ritz value (Kato-Temple), the gap from the Ritz values.

    ``ritz`` holds all Ritz values of each filter, sorted ascending; ``gap`` is the distance from
    ``theta`` to the nearest other one, less its residual.
    """
    pos = np.searchsorted
    gaps = np.empty_like(theta)
    for i in range(theta.shape[0]):
        r = ritz[i]
        j = pos(r, theta[i])
        left = np.where(j > 0, theta[i] - r[np.maximum(j - 1, 0)], np.inf)
        right = np.where(j + 1 < r.size, r[np.minimum(j + 1, r.size - 1)] - theta[i], np.inf)
        gaps[i] = np.minimum(left, right)
    gaps = np.maximum(gaps - resid, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        temple = np.where(gaps > 0, resid**2 / gaps, np.inf)
    return np.minimum(resid, temple)


def _orthonormal_rows(rows: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(np.swapaxes(rows, 1, 2))
    return np.swapaxes(q, 1, 2)
