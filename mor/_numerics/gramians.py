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

A dense ``A`` costs two products of ``n x n`` matrices per step. Both Gramians of a system
(`gramian_pair`) share the squarings ``A^{2^j}``, and while the factor has a low numerical
rank (`LOW_RANK_FRACTION`, from `LOW_RANK_MIN_STATES` states) each step compresses it to that
rank by an SVD of ``Z^H`` (again an orthogonal transformation, ``Z Z^H = V S^2 V^H``),
dropping the singular values below ``eps`` times the largest: ``Z`` changes by at most
``eps ||Z||``, what rounding its products does anyway. The products with ``A^{2^j}`` then cost ``n^2`` times the rank, not ``n^3``
(Penzl's example, 1006 states: a rank of 54).
"""

from __future__ import annotations

import numpy as np

from mor._numerics.linalg import svd_gesvd
from mor._numerics.parallel import map_chunks, worker_threads

_MAX_DOUBLINGS = 64
#: A dense factor of at most this fraction of ``n`` columns is compressed to its numerical
#: rank at every step (an SVD of ``Z^H``, ``O(n k^2)``, at most about a squaring's cost); a
#: wider one grows to ``n`` columns and is then compressed by QR without truncation, where a
#: low rank would save little. Measured at ``n = 1006`` (one thread): Penzl's example (rank 54)
#: 1.0 s against 5.0 s for the factors one by one without truncation; a full-rank shift
#: realisation 1.0 s against 1.1 s, a random ``A`` of spectral radius 0.95 1.2 s against 1.8 s.
LOW_RANK_FRACTION = 0.5
#: Systems of fewer states keep the full-width iteration: their products cost as little as the
#: SVDs (one thread, Penzl's structure: 0.031 s either way at 128 states, 0.088 s against
#: 0.058 s at 200, 0.75 s against 0.27 s at 500).
LOW_RANK_MIN_STATES = 160


def stein_factor(a: np.ndarray, b: np.ndarray) -> np.ndarray:
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
    (z,) = _in_chunks(a, ((b, False),))
    return _padded(z, b.shape[-2])


def gramian_pair(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Factors ``(L_c, L_o)`` of both Gramians of ``(A, B, C^H)``, sharing the squarings.

    ``L_c L_c^H = sum_k A^k B B^H (A^H)^k`` and ``L_o L_o^H = sum_k (A^H)^k C C^H A^k``, for
    ``A`` ``(..., n, n)`` and ``B``, ``C`` ``(..., n, c)``. Each factor is ``(..., n, k)``: ``k``
    the largest numerical rank in the batch where that is at most `LOW_RANK_FRACTION` ``n``
    (and ``n >= LOW_RANK_MIN_STATES``), else ``k = n``; a system of a lower rank has zero
    columns beyond its own.

    Raises
    ------
    ValueError
        If some ``A`` in the batch has spectral radius ``>= 1`` (the sums diverge).
    """
    n = b.shape[-2]
    return tuple(z if z.shape[-1] <= LOW_RANK_FRACTION * n and n >= LOW_RANK_MIN_STATES
                 else _padded(z, n)
                 for z in _in_chunks(a, ((b, False), (c, True))))


def _padded(z: np.ndarray, n: int) -> np.ndarray:
    """``z`` with zero columns appended up to ``n``."""
    if z.shape[-1] >= n:
        return z
    return np.concatenate([z, np.zeros(z.shape[:-1] + (n - z.shape[-1],), z.dtype)], axis=-1)


def _in_chunks(a: np.ndarray, sides) -> list[np.ndarray]:
    """`_stein_factors`, spreading large batches over worker threads (factors of chunks that
    differ in width padded with zero columns)."""
    batch = sides[0][0].shape[:-2]
    count = int(np.prod(batch, dtype=np.int64))
    if count < 64 or worker_threads() < 2:
        return _stein_factors(a, sides)
    a_flat = a.reshape((count,) + a.shape[len(batch):])
    flat = [(b.reshape((count,) + b.shape[-2:]), adjoint) for b, adjoint in sides]
    parts: dict[int, list[np.ndarray]] = {}

    def run(sl):
        parts[sl.start] = _stein_factors(a_flat[sl], [(b[sl], adj) for b, adj in flat])

    map_chunks(run, count, -(-count // worker_threads()))
    out = []
    for i in range(len(sides)):
        pieces = [parts[k][i] for k in sorted(parts)]
        width = max(p.shape[-1] for p in pieces)
        pieces = [_padded(p, width) for p in pieces]
        out.append(np.concatenate(pieces).reshape(batch + pieces[0].shape[1:]))
    return out


def _stein_factors(a: np.ndarray, sides) -> list[np.ndarray]:
    """Factors ``Z`` with ``Z Z^H = sum_k M^k B B^H (M^H)^k`` for each ``(B, adjoint)`` of
    ``sides``, ``M = A^H`` where ``adjoint`` else ``A`` (``A`` dense ``(..., n, n)`` or its
    diagonal ``(..., n)``), from one sequence of squarings ``A^{2^j}``; ``(..., n, k)`` with
    ``k <= n``."""
    diagonal = a.ndim == sides[0][0].ndim - 1
    radius = np.abs(a) if diagonal else np.abs(np.linalg.eigvals(a))
    if radius.size and not np.all(radius.max(axis=-1, initial=0.0) < 1.0):
        raise ValueError("the Gramian exists only for stable systems (spectral radius < 1)")
    n = sides[0][0].shape[-2]
    dtype = np.result_type(a, *(b for b, _ in sides), np.float64)
    factors = [b.astype(dtype) for b, _ in sides]
    pending = list(range(len(sides)))
    apow = a.astype(dtype)
    for _ in range(_MAX_DOUBLINGS):
        for i in list(pending):
            z, adjoint = factors[i], sides[i][1]
            if diagonal:
                az = (np.conj(apow) if adjoint else apow)[..., :, None] * z
            else:
                az = (np.conj(np.swapaxes(apow, -1, -2)) if adjoint else apow) @ z
            if np.all(np.linalg.norm(az, axis=(-2, -1)) <= np.finfo(float).eps
                      * np.linalg.norm(z, axis=(-2, -1))):
                pending.remove(i)
                continue
            factors[i] = _compress(np.concatenate([z, az], axis=-1), n,
                                   not diagonal and n >= LOW_RANK_MIN_STATES)
        if not pending:
            break
        apow = apow * apow if diagonal else apow @ apow
    else:  # pragma: no cover - only for radius within ~1e-19 of 1
        raise ValueError("the Gramian did not converge: a pole lies too close to the unit circle")
    return factors


def _compress(z: np.ndarray, n: int, low_rank: bool) -> np.ndarray:
    """A factor with the same ``Z Z^H`` and at most ``n`` columns: by an SVD of ``Z^H``, to its
    numerical rank (singular values above ``eps`` times the largest), where ``low_rank`` and
    ``Z`` has at most `LOW_RANK_FRACTION` ``n`` columns; else by QR once it has more than ``n``."""
    if low_rank and z.shape[-1] <= LOW_RANK_FRACTION * n:
        _, s, vh = svd_gesvd(np.conj(np.swapaxes(z, -1, -2)))
        s = np.where(s > np.finfo(float).eps * s[..., :1], s, 0.0)
        width = int((s > 0).sum(axis=-1).max(initial=0))
        return np.conj(np.swapaxes(vh[..., :width, :], -1, -2)) * s[..., None, :width]
    if z.shape[-1] > n:
        r = np.linalg.qr(np.conj(np.swapaxes(z, -1, -2)), mode="r")
        return np.conj(np.swapaxes(r, -1, -2))
    return z


def hankel_values_from_factors(lc: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Hankel singular values ``sigma(L_o^H L_c)``, sorted descending, shape ``(..., n)``."""
    n = lc.shape[-2]
    prod = np.conj(np.swapaxes(lo, -1, -2)) @ lc
    s = svd_gesvd(prod, compute_uv=False)
    out = np.zeros(prod.shape[:-2] + (n,))
    out[..., : s.shape[-1]] = s[..., :n]
    return out
