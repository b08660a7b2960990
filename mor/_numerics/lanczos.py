r"""Numba kernels: Lanczos for the largest-modulus eigenpairs of symmetric Hankel matrices.

The Hankel matrix ``H[i, j] = g[i + j]`` (``0 <= i, j < n``, ``g = h[1:2n]``, zero past the
taps) is symmetric, so ``H = Q diag(theta) Q^T`` and its singular values are ``|theta|``.
``H x`` is the correlation ``sum_j g[i + j] x[j]``: ``irfft(G conj(rfft(x)))[:n]`` with
``G = rfft(g, M)``, ``M >= 2 n - 1`` (no wrap-around); the FFTs are pocketfft's, compiled
into the kernel by rocket-fft.

Single-vector Lanczos: ``beta_j q_{j+1} = H q_j - alpha_j q_j - beta_{j-1} q_{j-1}``, then a
classical Gram-Schmidt pass over the whole basis, repeated when it cancels more than
``1 - 1/sqrt 2`` of the norm (Daniel, Gragg, Kaufman and Stewart). When Ritz vectors are wanted
the pass runs at every step (full re-orthogonalisation); for values alone only when Simon's
recurrence estimates that ``|q_i . q_{j+1}|`` has passed ``sqrt(eps)``, and at the step after
(partial re-orthogonalisation, Simon 1984: semi-orthogonality keeps the Ritz values accurate
to rounding, at a fraction of the cost). Either way ``H Q_m = Q_m T_m + beta_m q_{m+1} e_m^T``
with ``T_m`` tridiagonal (``alpha``, ``beta``) up to rounding, so a Ritz pair
``(theta, Q_m s)`` has the residual norm ``r = beta_m |s_m|``; with the gap ``delta`` to the
rest of the spectrum it lies within ``min(r, r^2 / delta)`` (Kato-Temple) of an eigenvalue.
Convergence is checked, at steps scheduled from the bound's decay, on the eigenvalues and
last eigenvector components of ``T_m``, computed together by the implicit QL method in
``O(m^2)`` (only the last row of the eigenvector matrix is rotated). The wanted eigenvectors
of ``T_m`` come at the end from inverse iteration (``O(m)`` each), and the Ritz vectors from
one product with the basis. An invariant subspace (``beta`` at rounding level) is continued
from a pseudo-random vector orthogonal to the basis, so rank-deficient matrices (exactly
low-order filters, zero filters) work. A single sequence meets one copy of a multiple
eigenvalue per invariant subspace (a pure delay's Hankel matrix has eigenvalues +-1 only), so
no residual bound can say that none was missed: where the structure suggests one may have
been (an invariant subspace met, or top values in pairs), a short Lanczos run on the
complement of the basis (`_deflated_peak`) looks for a value above the ``k``-th, and the
caller is told (`SUSPECT`, `MISSED`).
"""

from __future__ import annotations

import numba
import numpy as np
import rocket_fft  # noqa: F401  (registers np.fft for Numba)

_EPS = np.finfo(np.float64).eps
#: ``beta`` below this times the largest ``||H q||`` met is an invariant subspace.
_BREAKDOWN = 64 * _EPS
#: Partial re-orthogonalisation keeps ``|q_i . q_j|`` below this (semi-orthogonality, which
#: keeps the Ritz values accurate to rounding: Simon 1984).
_SEMI_ORTHOGONAL = np.sqrt(_EPS)
#: Ritz vectors are certified to residual norms of at most this times ``rtol * sigma_1``.
VECTOR_RESIDUAL = 1e3
#: Daniel-Gragg-Kaufman-Stewart: re-orthogonalise again when a pass keeps less than this.
_DGKS = 0.7071067811865476
#: What `lanczos_one` says of its values' completeness: nothing suggests a missed copy of a
#: multiple eigenvalue; the structure does (an invariant subspace met or values in pairs) but
#: a short look at the complement found none; it found one.
CLEAR, SUSPECT, MISSED = 0, 1, 2
#: Values below this times the largest are noise to the completeness tests.
_SIGNIFICANT = 1e-9
#: Lanczos steps on the complement of the basis looking for a missed eigenvalue.
_MISSED_STEPS = 12
#: A missed eigenvalue counts above the ``k``-th by more than this times the largest (the
#: basis is orthogonal to about sqrt(eps) with partial re-orthogonalisation, which blurs the
#: complement as much; so do the Ritz vectors' residuals, counted beside it).
_MISSED_RTOL = 1e-7


@numba.njit(cache=True, nogil=True)
def _apply(spectrum, x, m, out):
    """``out = H x`` for the Hankel matrix whose ``rfft(g, m)`` is ``spectrum``."""
    fx = np.fft.rfft(x, m)
    for i in range(fx.size):
        fx[i] = spectrum[i] * np.conj(fx[i])
    y = np.fft.irfft(fx, m)
    out[:] = y[: out.size]


@numba.njit(cache=True, nogil=True)
def _pseudo_random(out, seed):
    """Uniform values in ``[-1/2, 1/2)`` from a 64-bit linear congruential generator."""
    state = np.uint64(seed) * np.uint64(6364136223846793005) + np.uint64(1442695040888963407)
    for i in range(out.size):
        state = state * np.uint64(6364136223846793005) + np.uint64(1442695040888963407)
        out[i] = np.float64(state >> np.uint64(11)) * 2.0**-53 - 0.5


@numba.njit(cache=True, nogil=True)
def _orthogonalize(basis, dim, w):
    """Project ``w`` out of ``basis[:dim]`` (classical Gram-Schmidt, repeated per DGKS);
    returns the norm of what is left."""
    before = np.sqrt(np.dot(w, w))
    for _ in range(3):
        w -= np.dot(np.dot(basis[:dim], w), basis[:dim])
        after = np.sqrt(np.dot(w, w))
        if after >= _DGKS * before:
            break
        before = after
    return after


@numba.njit(cache=True, nogil=True)
def _next_omega(alpha, beta, omega, omega_prev, j, norm, largest, noise):
    """Simon's recurrence for ``q_{j+1} . q_i``, ``i <= j``, written into ``omega_prev``.

    With ``beta_j q_{j+1} = H q_j - alpha_j q_j - beta_{j-1} q_{j-1}`` and ``H q_i`` expanded
    by its own three-term relation,
    ``beta_j w_{j+1,i} = beta_i w_{j,i+1} + (alpha_i - alpha_j) w_{j,i} + beta_{i-1} w_{j,i-1}
    - beta_{j-1} w_{j-1,i}``, plus a rounding term of the size of ``sqrt(n) eps ||H||``
    with the sign of the rest. ``omega`` holds ``w_{j,.}``, ``omega_prev`` ``w_{j-1,.}``.
    Returns the largest ``|w_{j+1,i}|``.
    """
    drift = 0.0
    for i in range(j):
        t = beta[i] * omega[i + 1] + (alpha[i] - alpha[j]) * omega[i]
        if i > 0:
            t += beta[i - 1] * omega[i - 1]
        if j > 0:
            t -= beta[j - 1] * omega_prev[i]
        d = noise * (abs(alpha[i]) + beta[i] + abs(alpha[j]) + norm + largest)
        omega_prev[i] = (t + (d if t >= 0.0 else -d)) / norm
        drift = max(drift, abs(omega_prev[i]))
    omega_prev[j] = noise * largest / norm
    return max(drift, abs(omega_prev[j]))


@numba.njit(cache=True, nogil=True)
def tridiagonal_eig_last(alpha, beta):
    """Eigenvalues and last eigenvector components of a symmetric tridiagonal matrix.

    ``alpha`` is the diagonal (``m``), ``beta[j]`` couples ``j`` and ``j + 1`` (``m - 1`` used).
    Implicit QL with Wilkinson-type shifts (``tql2`` of EISPACK), rotating only the last row
    of the eigenvector matrix: ``O(m^2)``. Returns ``(values, last, ok)``; ``ok`` is false when
    an eigenvalue needed more than 60 sweeps (then the outputs are not to be used).
    """
    m = alpha.size
    d = alpha.copy()
    e = np.zeros(m)
    e[: m - 1] = beta[: m - 1]
    z = np.zeros(m)
    z[m - 1] = 1.0
    for low in range(m):
        sweeps = 0
        while True:
            high = low
            while high < m - 1:
                if abs(e[high]) <= _EPS * (abs(d[high]) + abs(d[high + 1])):
                    break
                high += 1
            if high == low:
                break
            sweeps += 1
            if sweeps > 60:
                return d, z, False
            g = (d[low + 1] - d[low]) / (2.0 * e[low])
            r = np.sqrt(g * g + 1.0)
            g = d[high] - d[low] + e[low] / (g + (r if g >= 0.0 else -r))
            s, c, p = 1.0, 1.0, 0.0
            deflated = False
            for i in range(high - 1, low - 1, -1):
                f = s * e[i]
                b = c * e[i]
                r = np.sqrt(f * f + g * g)
                e[i + 1] = r
                if r == 0.0:
                    d[i + 1] -= p
                    e[high] = 0.0
                    deflated = True
                    break
                s = f / r
                c = g / r
                g = d[i + 1] - p
                r = (d[i] - g) * s + 2.0 * c * b
                p = s * r
                d[i + 1] = g + p
                g = c * r - b
                f = z[i + 1]
                z[i + 1] = s * z[i] + c * f
                z[i] = c * z[i] - s * f
            if deflated:
                continue
            d[low] -= p
            e[low] = g
            e[high] = 0.0
    return d, z, True


@numba.njit(cache=True, nogil=True)
def _certified(alpha, beta, dim, k, rtol, kth_rtol, with_vectors):
    """Whether each of the top ``k`` Ritz values (by modulus) of ``T_dim`` is within
    ``max(rtol |theta_1|, kth_rtol |theta_k|)`` of an eigenvalue of ``H``; the largest bound
    relative to that allowance, times ``rtol`` (the test is ``worst <= rtol``); and the Ritz
    values (ascending). ``|theta_k|`` is at most the ``k``-th eigenvalue's modulus (Cauchy
    interlacing), so the allowance never exceeds ``kth_rtol sigma_k``.

    Kato-Temple needs the gap from a Ritz value to the rest of the spectrum. Beside the
    neighbouring Ritz values, the rest includes the unexplored middle of the spectrum, which
    the ``(k+1)``-th Ritz value bounds only once it has itself converged: the gap is at most
    ``|theta_k| - |theta_{k+1}| - r_{k+1}`` (zero while there is no ``(k+1)``-th value, leaving
    the plain residual bound). With ``with_vectors``, each residual norm must also be at most
    `VECTOR_RESIDUAL` ``* rtol`` times the largest value, whatever ``kth_rtol`` (a Ritz
    vector's error is its residual over the gap, not its square).
    """
    values, last, ok = tridiagonal_eig_last(alpha[:dim], beta)
    if not ok:
        values, vectors = np.linalg.eigh(tridiagonal(alpha, beta, dim))
        last = vectors[dim - 1].copy()
    order = np.argsort(values)
    values = values[order]
    resid = np.abs(beta[dim - 1] * last[order])
    ranked = np.argsort(-np.abs(values), kind="mergesort")
    scale = max(abs(values[ranked[0]]), np.finfo(np.float64).tiny)
    # the allowance relative to the largest value: at least rtol (nothing underflows)
    allowed = max(rtol, kth_rtol * (abs(values[ranked[min(k, dim) - 1]]) / scale))
    inner = 0.0
    if dim > k:
        inner = np.abs(values[ranked[k]]) + resid[ranked[k]]
    worst = 0.0
    for i in ranked[:k]:
        gap = abs(values[i]) - inner if dim > k else 0.0
        if i > 0:
            gap = min(gap, values[i] - values[i - 1])
        if i + 1 < dim:
            gap = min(gap, values[i + 1] - values[i])
        gap -= resid[i]
        r = resid[i]
        bound = min(r, r * r / gap) if gap > 0.0 else r
        score = bound / scale * (rtol / allowed)
        if with_vectors:
            score = max(score, r / VECTOR_RESIDUAL / scale)
        worst = max(worst, score)
    return worst <= rtol, worst, values


@numba.njit(cache=True, nogil=True)
def _tridiagonal_eigenvectors(alpha, beta, dim, wanted, values):
    """Unit eigenvectors of ``T_dim`` for the eigenvalues ``wanted`` (columns), by inverse
    iteration with a pivoted LU of ``T - theta I`` (LAPACK's ``dgttrf``/``dgtts2``), three
    solves each: ``O(dim)`` per vector instead of a dense eigensolver's ``O(dim^3)``.

    ``values`` are all eigenvalues of ``T_dim``. Inverse iteration separates a vector from
    its neighbours by the ratio of rounding to the gap, so when a wanted value lies within
    ``1e-6 ||T||`` of another, an empty ``(dim, 0)`` array is returned instead.
    """
    scale = max(np.abs(values).max(), np.finfo(np.float64).tiny)
    ordered = np.sort(values)
    for i in range(ordered.size - 1):
        if ordered[i + 1] - ordered[i] <= 1e-6 * scale:
            for theta in wanted:
                if abs(theta - ordered[i]) <= 2e-6 * scale:
                    return np.empty((dim, 0))
    tiny = _EPS * scale
    out = np.empty((dim, wanted.size))
    d, du, dl, du2 = np.empty(dim), np.empty(dim), np.empty(dim), np.zeros(dim)
    swap = np.zeros(dim, dtype=np.bool_)
    x = np.empty(dim)
    for col in range(wanted.size):
        d[:] = alpha[:dim] - wanted[col]
        du[: dim - 1] = beta[: dim - 1]
        dl[: dim - 1] = beta[: dim - 1]
        du2[:] = 0.0
        for i in range(dim - 1):  # LU with partial pivoting (dgttrf)
            swap[i] = abs(d[i]) < abs(dl[i])
            if not swap[i]:
                if d[i] == 0.0:
                    d[i] = tiny
                fact = dl[i] / d[i]
                dl[i] = fact
                d[i + 1] -= fact * du[i]
            else:
                fact = d[i] / dl[i]
                d[i] = dl[i]
                dl[i] = fact
                temp = du[i]
                du[i] = d[i + 1]
                d[i + 1] = temp - fact * d[i + 1]
                if i + 2 < dim:
                    du2[i] = du[i + 1]
                    du[i + 1] = -fact * du[i + 1]
        if d[dim - 1] == 0.0:
            d[dim - 1] = tiny
        _pseudo_random(x, col)  # LAPACK's dstein also starts from random vectors
        for _ in range(3):
            for i in range(dim - 1):  # forward (dgtts2)
                if not swap[i]:
                    x[i + 1] -= dl[i] * x[i]
                else:
                    temp = x[i]
                    x[i] = x[i + 1]
                    x[i + 1] = temp - dl[i] * x[i]
            x[dim - 1] /= d[dim - 1]
            if dim > 1:
                x[dim - 2] = (x[dim - 2] - du[dim - 2] * x[dim - 1]) / d[dim - 2]
            for i in range(dim - 3, -1, -1):
                x[i] = (x[i] - du[i] * x[i + 1] - du2[i] * x[i + 2]) / d[i]
            size = np.sqrt(np.dot(x, x))
            if not np.isfinite(size) or size == 0.0:
                return np.empty((dim, 0))
            x /= size
        out[:, col] = x
    return out


@numba.njit(cache=True, nogil=True)
def _steps_to_go(bound, earlier, steps, rtol, k):
    """Lanczos steps until the next convergence check: the bound's decay since the last check,
    extrapolated to ``rtol`` (it converges faster than that, so 3/4 of it), between 1 and
    ``k / 4``; each check costs ``O(m^2)``, as much as several steps."""
    most = max(2, k // 4)
    if not (bound < earlier < np.inf) or bound <= 0.0:
        return max(2, k // 8)
    rate = (np.log(earlier) - np.log(bound)) / steps
    return int(min(most, max(1.0, 0.75 * (np.log(bound) - np.log(rtol)) / rate)))


@numba.njit(cache=True, nogil=True)
def tridiagonal(alpha, beta, dim):
    """The dense ``dim x dim`` symmetric tridiagonal matrix with ``alpha`` on the diagonal and
    ``beta`` beside it."""
    t = np.zeros((dim, dim))
    for j in range(dim):
        t[j, j] = alpha[j]
        if j + 1 < dim:
            t[j, j + 1] = beta[j]
            t[j + 1, j] = beta[j]
    return t


@numba.njit(cache=True, nogil=True)
def _grow(a, size):
    out = np.zeros((size,) + a.shape[1:])
    out[: a.shape[0]] = a
    return out


@numba.njit(cache=True, nogil=True)
def lanczos_one(spectrum, n, m, k, rtol, kth_rtol, max_dim, theta, vectors, want_vectors):
    """Top-``k`` eigenpairs by modulus of one Hankel matrix (see the module notes), each value
    certified to ``max(rtol sigma_1, kth_rtol sigma_k)`` (`_certified`).

    Writes ``theta`` (``k``, decreasing ``|theta|``) and, when ``want_vectors``, the Ritz
    vectors as the columns of ``vectors`` (``n x k``). Returns the basis size used, or minus
    the relative error bound reached when ``max_dim`` vectors did not certify ``rtol``, and
    `CLEAR`, `SUSPECT` or `MISSED`: whether a copy of a multiple eigenvalue above the ``k``-th
    may have been missed (see the module notes and `_deflated_peak`).
    """
    capacity = min(max_dim, 3 * k + 16)
    basis = np.empty((capacity + 1, n))
    alpha = np.zeros(capacity)
    beta = np.zeros(capacity)
    omega = np.zeros(capacity + 1)  # estimates of q_j . q_i (i <= j), then of the next
    omega_prev = np.zeros(capacity + 1)
    omega[0] = 1.0
    noise = 0.5 * np.sqrt(n) * _EPS
    force = False
    w = np.empty(n)
    _pseudo_random(w, 0)  # the same start for every filter: results do not depend on the batch
    basis[0] = w / np.sqrt(np.dot(w, w))
    next_check = k + k // 4
    values = np.zeros(0)  # Ritz values of the last convergence check
    checked, checked_bound = 0, np.inf
    largest = 0.0
    dim = 0
    restarts = 0
    while True:
        j = dim
        _apply(spectrum, basis[j], m, w)
        largest = max(largest, np.sqrt(np.dot(w, w)))
        alpha[j] = np.dot(basis[j], w)
        w -= alpha[j] * basis[j]
        if j > 0:
            w -= beta[j - 1] * basis[j - 1]
        norm = np.sqrt(np.dot(w, w))
        # Gram-Schmidt over the whole basis: at every step for Ritz vectors; for values only
        # when the estimated loss of orthogonality passes sqrt(eps), and at the step after
        # (partial re-orthogonalisation); what it removes is rounding, not kept in T
        if want_vectors:
            norm = _orthogonalize(basis, j + 1, w)
        elif norm > 0.0:
            drift = _next_omega(alpha, beta, omega, omega_prev, j, norm, largest, noise)
            if force or drift > _SEMI_ORTHOGONAL:
                norm = _orthogonalize(basis, j + 1, w)
                omega_prev[: j + 1] = noise
                force = not force
            omega_prev, omega = omega, omega_prev
            omega[j + 1] = 1.0
        dim = j + 1
        if dim == capacity and capacity < max_dim:
            capacity = min(max_dim, 2 * capacity)
            basis, alpha, beta = _grow(basis, capacity + 1), _grow(alpha, capacity), \
                _grow(beta, capacity)
            omega, omega_prev = _grow(omega, capacity + 1), _grow(omega_prev, capacity + 1)
        if norm > _BREAKDOWN * largest and dim < n:
            beta[j] = norm
            basis[dim] = w / norm
        else:  # invariant subspace: exact Ritz values so far, continue elsewhere
            beta[j] = 0.0
            omega[:dim] = noise
            omega_prev[:dim] = noise
            omega[dim] = 1.0
            while dim < n:
                restarts += 1
                _pseudo_random(w, 7919 * restarts)
                size = np.sqrt(np.dot(w, w))
                norm = _orthogonalize(basis, dim, w)
                if norm > 1e-8 * size:
                    basis[dim] = w / norm
                    break
        if dim >= next_check or dim == max_dim or dim == n:
            good, worst, values = _certified(alpha, beta, dim, k, rtol, kth_rtol,
                                             want_vectors)
            if good or dim == n:
                break
            if dim == max_dim:
                return -worst, CLEAR
            next_check = dim + _steps_to_go(worst, checked_bound, dim - checked, rtol, k)
            checked, checked_bound = dim, worst
    top = np.argsort(-np.abs(values), kind="mergesort")[:k]  # the last check's Ritz values
    theta[:] = values[top]
    if want_vectors:
        ritz = _tridiagonal_eigenvectors(alpha, beta, dim, theta, values)
        if ritz.shape[1] == 0:  # clustered or failed: LAPACK's dense eigensolver
            values, s = np.linalg.eigh(tridiagonal(alpha, beta, dim))
            top = np.argsort(-np.abs(values), kind="mergesort")[:k]
            theta[:] = values[top]
            ritz = np.empty((dim, k))
            for col in range(k):
                ritz[:, col] = s[:, top[col]]
        vectors[:, :] = np.dot(basis[:dim].T, ritz)
    top_value = abs(theta[0])
    met_invariant = restarts > 0 and abs(theta[k - 1]) > _SIGNIFICANT * top_value
    if dim == n or not (met_invariant or _paired(theta, _MISSED_RTOL, _SIGNIFICANT)):
        return dim, CLEAR
    # a single Krylov sequence meets one copy of a multiple eigenvalue per invariant subspace:
    # where it met one (a restart) or the values come in pairs (+-lambda of an exchange-like
    # structure, or two copies), what the basis leaves out must hold nothing above the k-th
    # value (beyond the blur of the Ritz vectors' residuals)
    tv, last, ok = tridiagonal_eig_last(alpha[:dim], beta)
    if not ok:
        tv, s = np.linalg.eigh(tridiagonal(alpha, beta, dim))
        last = s[dim - 1].copy()
    ranked = np.argsort(-np.abs(tv), kind="mergesort")[:k]
    resid = np.abs(beta[dim - 1] * last[ranked]).max()
    floor = abs(theta[k - 1]) + 4.0 * resid + _MISSED_RTOL * top_value
    if _deflated_peak(spectrum, m, basis, dim, _MISSED_STEPS) > floor:
        return dim, MISSED
    return dim, SUSPECT


@numba.njit(cache=True, nogil=True)
def _paired(theta, rtol, floor):
    """Whether two consecutive values ``theta`` (by decreasing modulus) above ``floor`` times
    the largest have moduli within ``rtol`` of each other."""
    top = abs(theta[0])
    for i in range(theta.size - 1):
        a, b = abs(theta[i]), abs(theta[i + 1])
        if b > floor * top and a - b <= rtol * a:
            return True
    return False


@numba.njit(cache=True, nogil=True)
def _deflated_peak(spectrum, m, explored, dim, steps):
    """A lower estimate of the largest ``|eigenvalue|`` of ``H`` restricted to the complement
    of the Lanczos basis ``explored[:dim]``: ``steps`` Lanczos steps (full
    re-orthogonalisation) from a pseudo-random start in that complement. Where the basis holds
    the top eigenvectors it is at most the next eigenvalue; a copy of a larger one that the
    sequence missed shows within a few steps (a random start has a component on it)."""
    n = explored.shape[1]
    steps = min(steps, n - dim)
    if steps <= 0:
        return 0.0
    basis = np.empty((steps + 1, n))
    alpha = np.zeros(steps)
    beta = np.zeros(steps)
    w = np.empty(n)
    _pseudo_random(w, 104729)
    norm = _orthogonalize(explored, dim, w)
    if norm == 0.0:
        return 0.0
    basis[0] = w / norm
    count = 0
    largest = 0.0
    for j in range(steps):
        _apply(spectrum, basis[j], m, w)
        _orthogonalize(explored, dim, w)
        largest = max(largest, np.sqrt(np.dot(w, w)))
        alpha[j] = np.dot(basis[j], w)
        norm = _orthogonalize(basis, j + 1, w)
        count = j + 1
        if norm <= _BREAKDOWN * largest:
            break
        beta[j] = norm
        basis[j + 1] = w / norm
    values = np.linalg.eigvalsh(tridiagonal(alpha, beta, count))
    return np.abs(values).max()


@numba.njit(cache=True, nogil=True)
def lanczos_rows(spectra, n, m, k, rtol, kth_rtol, max_dim, theta, vectors, want_vectors, dims,
                 status):
    """`lanczos_one` for each row of ``spectra`` (``F x (m // 2 + 1)``)."""
    for f in range(spectra.shape[0]):
        dims[f], status[f] = lanczos_one(spectra[f], n, m, k, rtol, kth_rtol, max_dim,
                                         theta[f], vectors[f], want_vectors)
