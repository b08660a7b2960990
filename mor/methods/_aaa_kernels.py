r"""Numba kernel of AAA's greedy loop on the upper half circle, batched over filters.

The NumPy reference is `mor.methods.aaa.aaa_greedy_reference` (one SVD of the real Loewner
matrix per step); the tests compare the two. Notation as there: samples ``f_i`` at points
``z_i`` (``i < n``), real weight parameters ``x`` (one per self-conjugate support point, two
per conjugate pair), and the real Loewner matrix ``A`` (``2n x k``: the real parts of the free
samples' rows, then their imaginary parts; support rows zero), whose last right singular
vector is ``x``.

Instead of an SVD of ``A`` per step the kernel keeps ``A = B S`` with ``B`` (``2n x k``, stored
as ``k`` rows of length ``2n``), ``S`` (``k x k``, upper triangular) and the exact Gram matrix
``G = B^T B`` (near ``I``). A step costs ``O(n k)``:

- a new support point ``j`` zeroes its two rows of ``B``: ``G <- G - b_j b_j^T`` (``b_j`` the
  removed rows, ``2 x k``), exact, with ``S`` unchanged;
- its new Loewner columns ``C`` (one, or two for a pair) are projected out of ``B`` in the
  metric ``G`` (block classical Gram-Schmidt): ``Y = G^{-1} B^T C``, ``C' = C - B Y``,
  ``B <- [B, C' R^{-1}]``, ``S <- [[S, Y], [0, R]]`` with ``R`` the diagonal of the norms of
  ``C'``. No second pass: ``G``'s new rows, ``B^T C' R^{-1}`` and ``R^{-1} C'^T C' R^{-1}``,
  are measured in the same sweep over ``B`` that forms ``C'``, so ``G`` stays the exact Gram
  matrix of the stored ``B`` even where ``C`` was nearly dependent;
- ``A^T A = S^T G S = (L^T S)^T (L^T S)`` with ``G = L L^T`` (Cholesky, ``k x k``): the
  weights are the last right singular vector of the small triangular ``L^T S``, by inverse
  iteration, Lanczos on the same operator where that stalls (nearly equal smallest singular
  values), an SVD where neither settles. When ``G`` has drifted from ``I`` (a diagonal
  entry of ``L`` below ``DRIFT``, or ``G`` numerically singular) ``B`` is
  re-orthonormalised by a Householder QR, ``B = Q T``:
  ``B <- Q``, ``S <- T S``, ``G <- I``;
- the barycentric value ``r(z_i) = N_i / D_i`` at the free points from stored Cauchy columns
  ``1 / (z_i - z_j)`` (and ``1 / (z_i - conj z_j)`` for a pair), and the error
  ``|f_i - r(z_i)|`` that chooses the next point.
"""

from __future__ import annotations

import numba
import numpy as np

from mor._numerics.lanczos import tridiagonal
from mor._numerics.parallel import map_chunks

CHUNK_FILTERS = 4  # filters per task on the worker threads
CHUNK = 512  # rows per block of the update sweep (a block of B stays in cache)
INVERSE_STEPS = 60  # inverse iterations for the weights before Lanczos takes over
INVERSE_TOL = 1e-14  # ... and the change per iteration that counts as settled
LANCZOS_TOL = 1e-14  # Lanczos: residual / gap (the angle to the eigenvector) that counts as settled
LANCZOS_CHECK = 4  # Lanczos steps between convergence checks
FAST = {"reassoc", "contract"}  # vectorised sums; no assumptions about inf and NaN
DRIFT = 0.5  # re-orthonormalise when the Cholesky factor of G has a diagonal entry below this


def real_points(z: np.ndarray) -> np.ndarray:
    """The self-conjugate sample points (``z = 1`` and ``z = -1``)."""
    return np.abs(z.imag) < 1e-14


@numba.njit(cache=True)
def _cho_solve(lo, k, t):
    """``G^{-1} T`` for ``G = L L^T`` (``L`` the leading ``k x k`` block of ``lo``)."""
    y = t.copy()
    for c in range(t.shape[1]):
        for a in range(k):
            for b in range(a):
                y[a, c] -= lo[a, b] * y[b, c]
            y[a, c] /= lo[a, a]
        for a in range(k - 1, -1, -1):
            for b in range(a + 1, k):
                y[a, c] -= lo[b, a] * y[b, c]
            y[a, c] /= lo[a, a]
    return y


@numba.njit(cache=True, fastmath=FAST)
def _inner(basis, k, cols):
    """``B^T C`` (``k x b``): one sweep over ``B``."""
    t = np.zeros((k, cols.shape[0]))
    for a in range(k):
        row = basis[a]
        for c in range(cols.shape[0]):
            col = cols[c]
            acc = 0.0
            for i in range(row.size):
                acc += row[i] * col[i]
            t[a, c] = acc
    return t


@numba.njit(cache=True, fastmath=FAST)
def _subtract(basis, k, y, cols):
    """``C <- C - B Y``, and the exact ``B^T C`` and ``C^T C`` of the result: one sweep over
    ``B`` in blocks of rows that stay in cache between the update and the products (each
    operand a contiguous slice of one row, so that the loops vectorise)."""
    nb, m = cols.shape
    cross = np.zeros((k, nb))
    inner = np.zeros((nb, nb))
    for start in range(0, m, CHUNK):
        stop = min(start + CHUNK, m)
        for c in range(nb):
            col = cols[c, start:stop]
            for a in range(k):
                ya = y[a, c]
                row = basis[a, start:stop]
                for i in range(col.size):
                    col[i] -= ya * row[i]
            for a in range(k):
                row = basis[a, start:stop]
                acc = 0.0
                for i in range(col.size):
                    acc += row[i] * col[i]
                cross[a, c] += acc
            for e in range(c + 1):
                other = cols[e, start:stop]
                acc = 0.0
                for i in range(col.size):
                    acc += other[i] * col[i]
                inner[c, e] += acc
    return cross, inner


@numba.njit(cache=True)
def _append(basis, s, g, lo, k, cols):
    """Append the Loewner columns ``cols`` (``b x 2n``) to ``A = B S`` (``k`` columns so far):
    ``C = B Y + C'`` with ``Y = G^{-1} B^T C``, ``B <- [B, C' / |C'|]``,
    ``S <- [[S, Y], [0, diag |C'|]]``, and ``G``'s new rows measured. A zero remainder enters
    as a zero column of ``B`` with ``S``'s entry 0 (``G``'s entry 1, never used)."""
    nb = cols.shape[0]
    y = _cho_solve(lo, k, _inner(basis, k, cols))
    cross, inner = _subtract(basis, k, y, cols)
    norm = np.sqrt(np.diag(inner))
    scale = np.where(norm > 0.0, norm, 1.0)
    s[:k, k:k + nb] = y
    s[k:k + nb, k:k + nb] = np.diag(norm)
    for c in range(nb):
        basis[k + c] = cols[c] / scale[c]
        g[:k, k + c] = cross[:, c] / scale[c]
        g[k + c, :k] = g[:k, k + c]
        for e in range(c + 1):
            g[k + c, k + e] = g[k + e, k + c] = inner[c, e] / (scale[c] * scale[e])
        if norm[c] == 0.0:
            g[k + c, k + c] = 1.0


@numba.njit(cache=True)
def _remove_rows(basis, g, k, rows):
    """Zero the rows ``rows`` of ``B`` and downdate ``G`` exactly."""
    for a in range(k):
        for b in range(a, k):
            v = g[a, b]
            for i in rows:
                v -= basis[a, i] * basis[b, i]
            g[a, b] = v
            g[b, a] = v
    for a in range(k):
        for i in rows:
            basis[a, i] = 0.0


@numba.njit(cache=True)
def _cholesky(g, k, lo):
    """``G = L L^T`` into ``lo``'s leading ``k x k`` block; the smallest diagonal entry of
    ``L`` (``-1`` if ``G`` is not numerically positive definite)."""
    smallest = np.inf
    for a in range(k):
        for b in range(a + 1):
            v = g[a, b]
            for e in range(b):
                v -= lo[a, e] * lo[b, e]
            if a == b:
                if v <= 0.0:
                    return -1.0
                lo[a, a] = np.sqrt(v)
                smallest = min(smallest, lo[a, a])
            else:
                lo[a, b] = v / lo[b, b]
    return smallest


@numba.njit(cache=True)
def _factor(basis, s, g, k):
    """The Cholesky factor of ``G``, after re-orthonormalising ``B`` if ``G`` has drifted."""
    lo = np.zeros_like(g)
    if _cholesky(g, k, lo) >= DRIFT:
        return lo
    q, t = np.linalg.qr(np.ascontiguousarray(basis[:k].T))
    basis[:k] = q.T
    s[:k, :k] = t @ np.ascontiguousarray(s[:k, :k])
    g[:k, :k] = np.eye(k)
    lo[:k, :k] = np.eye(k)
    return lo


@numba.njit(cache=True)
def _solve_normal(m, k, v, out):
    """``out = (M^T M)^{-1} v`` for the upper triangular ``M``: ``M^T y = v`` (forward), then
    ``M out = y`` (backward)."""
    for a in range(k):
        acc = v[a]
        for b in range(a):
            acc -= m[b, a] * out[b]
        out[a] = acc / m[a, a]
    for a in range(k - 1, -1, -1):
        acc = out[a]
        for b in range(a + 1, k):
            acc -= m[a, b] * out[b]
        out[a] = acc / m[a, a]


@numba.njit(cache=True)
def _lanczos_smallest(m, k, start):
    """The last right singular vector of ``M`` as the dominant eigenvector of ``(M^T M)^{-1}``,
    by Lanczos with full re-orthogonalisation from ``start``: settled when the Ritz pair's
    residual over its gap to the next Ritz value (a bound on the angle to the eigenvector)
    is below ``LANCZOS_TOL``, at the latest when the Krylov space is the whole space (``k``
    steps). Returns a zero vector if it did not settle (then an SVD decides)."""
    basis = np.zeros((k + 1, k))
    alpha = np.zeros(k)
    beta = np.zeros(k)
    w = np.empty(k)
    basis[0] = start / np.sqrt(np.dot(start, start))
    for j in range(k):
        _solve_normal(m, k, basis[j], w)
        alpha[j] = np.dot(w, basis[j])
        for _ in range(2):  # full re-orthogonalisation, twice is enough
            for i in range(j + 1):
                c = np.dot(w, basis[i])
                for a in range(k):
                    w[a] -= c * basis[i, a]
        beta[j] = np.sqrt(np.dot(w, w))
        last = j == k - 1 or beta[j] <= 1e-300
        if last or j % LANCZOS_CHECK == LANCZOS_CHECK - 1:
            size = j + 1
            theta, vec = np.linalg.eigh(tridiagonal(alpha, beta, size))
            top = vec[:, size - 1]
            gap = theta[size - 1] - theta[size - 2] if size > 1 else theta[0]
            if last or beta[j] * abs(top[size - 1]) <= LANCZOS_TOL * gap:
                out = np.zeros(k)
                for i in range(size):
                    for a in range(k):
                        out[a] += top[i] * basis[i, a]
                return out / np.sqrt(np.dot(out, out))
        basis[j + 1] = w / beta[j]
    return np.zeros(k)


@numba.njit(cache=True)
def _weights(s, lo, k):
    """The last right singular vector of the triangular ``M = L^T S`` (``k x k``): inverse
    iteration ``v <- (M^T M)^{-1} v`` (two triangular solves, ``O(k^2)``) from ``e_k``, which
    converges like ``(sigma_k / sigma_{k-1})^2`` per step; where the observed rate says it
    would not settle to ``INVERSE_TOL`` within ``INVERSE_STEPS`` steps (nearly equal smallest
    singular values), Lanczos on the same operator from the current iterate
    (`_lanczos_smallest`: a few dozen triangular solves where an SVD of ``M`` costs as much as
    hundreds), and an SVD of ``M`` only if that does not settle either. ``M`` is scaled to
    ``max |M| = 1`` (a spread of the samples near rounding made it 1e-95, and the inverse
    iteration overflowed); zero pivots are raised to ``eps``."""
    m = np.ascontiguousarray(lo[:k, :k].T) @ np.ascontiguousarray(s[:k, :k])
    top = np.abs(m).max()
    v = np.zeros(k)
    v[k - 1] = 1.0
    if not top > 0.0:  # a zero Loewner matrix (constant samples): any weights interpolate
        return v
    m /= top  # the singular vectors of M: its scale (the samples' spread) must not overflow
    floor = np.finfo(np.float64).eps
    for a in range(k):
        if abs(m[a, a]) < floor:
            m[a, a] = floor if m[a, a] >= 0.0 else -floor
    u = np.empty(k)
    previous = np.inf
    for step in range(INVERSE_STEPS):
        _solve_normal(m, k, v, u)
        norm = 0.0
        dot = 0.0
        for a in range(k):
            norm += u[a] * u[a]
            dot += u[a] * v[a]
        if not 0.0 < norm < np.inf:
            break
        scale = (1.0 if dot >= 0.0 else -1.0) / np.sqrt(norm)
        change = 0.0
        for a in range(k):
            value = u[a] * scale
            change = max(change, abs(value - v[a]))
            v[a] = value
        if change <= INVERSE_TOL:
            return v
        if step >= 3 and change >= 0.5 * previous:  # slow: Lanczos is faster
            rate = change / previous
            if rate >= 1.0 or step + np.log(INVERSE_TOL / change) / np.log(rate) > INVERSE_STEPS:
                break
        previous = change
    x = _lanczos_smallest(m, k, v)
    if np.dot(x, x) > 0.0:
        return x if np.dot(x, v) >= 0.0 else -x
    return np.linalg.svd(m)[2][k - 1].copy()


@numba.njit(cache=True)
def _errors(f, free, cauchy, fvals, pair, x, k, err):
    """``err_i = |f_i - N_i / D_i|`` at the free points (``-1`` elsewhere) for the weights
    ``x``. Slot ``p`` holds a support point's Cauchy column ``1 / (z - z_j)`` and value; a pair
    (``pair[p]``) takes slots ``p, p + 1`` for ``z_j, conj z_j`` with the weights
    ``x_p + i x_{p+1}`` and its conjugate."""
    n = f.size
    num = np.zeros(n, dtype=np.complex128)
    den = np.zeros(n, dtype=np.complex128)
    for p in range(k):
        if pair[p]:
            coef = x[p] + 1j * x[p + 1]
        elif p > 0 and pair[p - 1]:
            coef = x[p - 1] - 1j * x[p]
        else:
            coef = x[p] + 0j
        row = cauchy[p]
        fp = fvals[p]
        for i in range(n):
            term = coef * row[i]
            den[i] += term
            num[i] += term * fp
    for i in range(n):  # |f - N / D| = |f D - N| / |D|
        resid = f[i] * den[i] - num[i]
        d2 = den[i].real ** 2 + den[i].imag ** 2
        if not free[i]:
            err[i] = -1.0
        elif d2 > 0.0:
            err[i] = np.sqrt((resid.real ** 2 + resid.imag ** 2) / d2)
        else:  # a zero of the denominator on the grid: a pole there
            err[i] = np.inf


@numba.njit(cache=True)
def _next_point(err, free, real_point, last):
    """The free point of largest error among the self-conjugate ones (``last``) or the others;
    ``-1`` if there is none."""
    best, j = -np.inf, -1
    for i in range(err.size):
        if free[i] and real_point[i] == last and err[i] > best:
            best, j = err[i], i
    return j


@numba.njit(cache=True)
def _loewner(z, f, free, point, value, cauchy, out):
    """``cauchy_i = 1 / (z_i - point) = conj(z_i - point) / |z_i - point|^2`` and
    ``out_i = (f_i - value) cauchy_i`` at the free points (0 elsewhere)."""
    for i in range(z.size):
        d = z[i] - point
        if free[i]:
            cauchy[i] = np.conj(d) / (d.real ** 2 + d.imag ** 2)
        else:
            cauchy[i] = 0.0
        out[i] = (f[i] - value) * cauchy[i]


@numba.njit(cache=True)
def _support_columns(z, f, free, real_point, j, k, cauchy, fvals, pair):
    """The real Loewner columns of the new support point ``j`` (slots from ``k``): for
    ``z = +-1`` one column ``c1 = (f - f_j) / (z - z_j)`` (as in the reference, with the
    complex ``f_j`` in the column and its real part as the value); for a pair also
    ``c2 = (f - conj f_j) / (z - conj z_j)`` and the columns ``c1 + c2``, ``i (c1 - c2)`` of
    ``Re w`` and ``Im w``. Each column holds its real parts, then its imaginary parts."""
    n = z.size
    c1 = np.empty(n, dtype=np.complex128)
    _loewner(z, f, free, z[j], f[j], cauchy[k], c1)
    if real_point[j]:
        fvals[k] = f[j].real
        cols = np.empty((1, 2 * n))
        cols[0, :n], cols[0, n:] = c1.real, c1.imag
        return cols
    c2 = np.empty(n, dtype=np.complex128)
    _loewner(z, f, free, np.conj(z[j]), np.conj(f[j]), cauchy[k + 1], c2)
    fvals[k], fvals[k + 1], pair[k] = f[j], np.conj(f[j]), True
    cols = np.empty((2, 2 * n))
    cols[0, :n], cols[0, n:] = c1.real + c2.real, c1.imag + c2.imag
    cols[1, :n], cols[1, n:] = c2.imag - c1.imag, c1.real - c2.real
    return cols


@numba.njit(cache=True)
def aaa_greedy_one(z, f, real_point, order, support, weights):
    """AAA's greedy loop for one filter; fills ``support`` (indices into ``z``) and
    ``weights`` (real parameters) and returns the number of support indices."""
    n = z.size
    if order == 0 or np.abs(f).max() == 0.0:
        return 0
    size = order + 1
    free = np.ones(n, dtype=np.bool_)
    basis = np.zeros((size, 2 * n))
    cauchy = np.zeros((size, n), dtype=np.complex128)
    fvals = np.zeros(size, dtype=np.complex128)
    pair = np.zeros(size, dtype=np.bool_)
    s = np.zeros((size, size))
    g = np.zeros((size, size))
    err = np.abs(f - f.mean())
    x = np.zeros(0)
    k = 0
    count = 0
    while k < size:
        j = _next_point(err, free, real_point, size - k == 1)
        if j < 0:
            break
        support[count] = j
        count += 1
        free[j] = False
        _remove_rows(basis, g, k, np.array([j, n + j]))
        cols = _support_columns(z, f, free, real_point, j, k, cauchy, fvals, pair)
        _append(basis, s, g, _factor(basis, s, g, k), k, cols)
        k += cols.shape[0]
        x = _weights(s, _factor(basis, s, g, k), k)
        if k < size:
            _errors(f, free, cauchy, fvals, pair, x, k, err)
    weights[:k] = x
    return count


@numba.njit(cache=True, nogil=True)
def _aaa_greedy_rows(z, f, real_point, order, support, weights, counts):
    """`aaa_greedy_one` for each row of ``f``, without the GIL."""
    for r in range(f.shape[0]):
        counts[r] = aaa_greedy_one(z, f[r], real_point, order, support[r], weights[r])


def aaa_greedy(z: np.ndarray, f: np.ndarray, order: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AAA's greedy loop on the upper half circle for a batch of sample rows, in chunks of
    ``CHUNK_FILTERS`` rows on mor's worker threads (the kernel releases the GIL).

    Parameters
    ----------
    z : ndarray ``(n,)``, complex
        Sample points on the upper half circle (``z[0] = 1``).
    f : ndarray ``(F, n)``, complex
        Samples per filter.
    order : int
        Support points are added until ``order + 1`` are held (conjugates counted).

    Returns
    -------
    support : ndarray ``(F, order + 1)``, int
        Indices into ``z`` of the support points in the order chosen (``-1`` padded).
    weights : ndarray ``(F, order + 1)``
        Real weight parameters (zero padded), unit norm: one per self-conjugate point, the real
        and imaginary parts of ``w`` for a pair.
    counts : ndarray ``(F,)``, int
        Support indices per filter (0 for a zero filter or ``order = 0``).
    """
    z = np.ascontiguousarray(z, dtype=np.complex128)
    f = np.ascontiguousarray(f, dtype=np.complex128)
    real_point = real_points(z)
    support = np.full((f.shape[0], order + 1), -1, dtype=np.int64)
    weights = np.zeros((f.shape[0], order + 1))
    counts = np.zeros(f.shape[0], dtype=np.int64)

    def run(rows: slice) -> None:
        _aaa_greedy_rows(z, f[rows], real_point, int(order), support[rows], weights[rows],
                         counts[rows])

    map_chunks(run, f.shape[0], CHUNK_FILTERS)
    return support, weights, counts
