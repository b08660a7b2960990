r"""The Hankel decomposition of long FIR filters on a torch device: block Lanczos, batched.

The Hankel matrix ``H[i, j] = g_{i+j}`` (``g = h[1:]``, ``0 <= i, j < n = L - 1``) is
symmetric, ``H = Q diag(theta) Q^T``, ``sigma = |theta|``, as on the CPU path
(`mor.analysis.spectrum`). ``H X`` for a block ``X`` of vectors is a correlation, computed for
every filter and vector of a batch at once by real FFTs of length ``M >= 2 n - 1`` (a power
of two, no wrap-around): ``irfft(rfft(g, M) conj(rfft(x, M)))[:n]``.

Block Lanczos with full re-orthogonalisation (two classical Gram-Schmidt passes against the
whole basis, then a QR of the block, repeated so that a block that lost its norm to
cancellation, an invariant subspace, continues from the rounding-level directions it has,
orthogonal to the basis): ``H Q_m = Q_m T_m + Q_{m+1} B_{m+1} E_m^T`` with ``T_m`` block
tridiagonal. A Ritz pair ``(theta, Q_m s)`` has the residual norm ``||B_{m+1} s_last||``
(``s_last`` its last block of components), so it lies within that of an eigenvalue; the
iteration stops when each of the top ``k`` Ritz pairs has a residual of at most ``rtol *
sigma_1`` (which certifies the values as the CPU path does, and the vectors' residuals to
the same bound). A block of ``b`` vectors meets up to ``b`` copies of a multiple value, where
a single sequence meets one. Everything runs in float64 on the device, the filters in
batches sized from its free memory; only ``O(k^2)`` numbers per filter come back.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: Vectors per Lanczos block.
BLOCK = 16
#: Basis limit, in vectors: ``min(n, max(BASIS_PER_VALUE k, BASIS_MIN))`` (as the CPU path's).
BASIS_PER_VALUE = 8
BASIS_MIN = 512
#: Ritz residuals are checked every this many blocks once the basis holds ``k + BLOCK``.
CHECK_EVERY = 2
#: Cholesky QR of a block where its factor's diagonal spans less than this ratio (the
#: block's condition number is then below about its inverse, and the orthogonality lost,
#: ``eps`` times its square, is restored by the second pass); Householder QR elsewhere.
CHOLESKY_MIN_RATIO = 1e-5
#: Share of the device's free memory a batch of filters may take.
MEMORY_SHARE = 0.6


def hankel_blocks(h: np.ndarray, k: int, *, rtol: float, device, block: int = BLOCK,
                  batch: int | None = None) -> dict[str, np.ndarray]:
    """The top-``k`` Hankel eigenpairs of filters ``h`` ``(F, L)`` on ``device``, reduced to
    what balanced truncation needs.

    Returns a dict of NumPy float64 arrays: ``sigma`` ``(F, k)`` (descending), ``u0`` and
    ``v0`` ``(F, k)`` (the first rows of ``U`` and ``V`` in ``H ~ U diag(sigma) V^T``),
    ``shifted_gram`` ``(F, k, k)`` (``V[1:]^T V[:-1]``), ``residual`` ``(F, k)`` (each Ritz
    pair's residual norm, relative to ``sigma_1``) and ``basis`` ``(F,)`` (vectors used).

    Raises
    ------
    RuntimeError
        If a filter's top ``k`` pairs are not certified within the basis limit.
    """
    device = torch.device(device)
    f, length = h.shape
    n = length - 1
    out = {"sigma": np.zeros((f, k)), "u0": np.zeros((f, k)), "v0": np.zeros((f, k)),
           "shifted_gram": np.zeros((f, k, k)), "residual": np.zeros((f, k)),
           "basis": np.zeros(f, dtype=np.int64)}
    if f == 0 or k == 0 or n == 0:
        return out
    block = max(1, min(block, n))
    limit = min(n, max(BASIS_PER_VALUE * k, BASIS_MIN, k + 2 * block))
    limit -= limit % block
    if batch is None:
        batch = _batch_size(n, limit, block, device)
    for start in range(0, f, batch):
        rows = slice(start, min(f, start + batch))
        part = _block_lanczos(torch.as_tensor(h[rows], dtype=torch.float64).to(device), k,
                              rtol, block, limit)
        for key, value in part.items():
            out[key][rows] = value
    return out


def _batch_size(n: int, limit: int, block: int, device: torch.device) -> int:
    """Filters per batch: the basis, the FFT buffers and the filters' spectra within
    `MEMORY_SHARE` of the device's free memory (no limit on a CPU)."""
    if device.type != "cuda":
        return 1 << 30
    free, _ = torch.cuda.mem_get_info(device)
    m = _fft_size(n)
    per_filter = 8 * n * (limit + 8 * block) + 16 * (m // 2 + 1) * (3 * block + 1) \
        + 8 * m * 2 * block
    return max(1, int(MEMORY_SHARE * free // per_filter))


def hankel_spectrum(h: torch.Tensor) -> torch.Tensor:
    """``rfft(h[:, 1:], M)`` as ``(F, 1, M/2 + 1)``: what `hankel_product` multiplies by."""
    return torch.fft.rfft(h[:, 1:], n=_fft_size(h.shape[1] - 1))[:, None, :]


def hankel_product(spectrum: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``H x`` for blocks of rows ``x`` ``(F, b, n)``: ``(H x)_i = sum_j g_{i+j} x_j``, by
    one real FFT pair of length ``M`` per vector."""
    n = x.shape[-1]
    m = 2 * (spectrum.shape[-1] - 1)
    return torch.fft.irfft(spectrum * torch.fft.rfft(x, n=m).conj(), n=m)[..., :n]


def _fft_size(n: int) -> int:
    return 1 << max(1, math.ceil(math.log2(max(2 * n - 1, 2))))


def _block_lanczos(h: torch.Tensor, k: int, rtol: float, block: int, limit: int):
    f, n = h.shape[0], h.shape[1] - 1
    spectrum = hankel_spectrum(h)

    def product(x):
        return hankel_product(spectrum, x)

    basis = torch.empty((f, limit, n), dtype=torch.float64, device=h.device)
    generator = torch.Generator(device=h.device).manual_seed(0)
    start = torch.randn((f, block, n), generator=generator, dtype=torch.float64,
                        device=h.device)
    q, _ = _orthonormal(start, basis[:, :0])
    diagonal, coupling = [], []  # A_j and B_{j+1} of T's blocks
    used = 0
    while True:
        basis[:, used:used + block] = q
        w = product(q)
        a = q @ w.transpose(1, 2)
        a = (a + a.transpose(1, 2)) / 2
        used += block
        q, b = _orthonormal(w, basis[:, :used])
        diagonal.append(a)
        coupling.append(b)
        full = used + block > limit
        if used >= k + block and (len(diagonal) % CHECK_EVERY == 0 or full or used == n):
            theta, vectors, residual = _ritz(diagonal, coupling, k)
            top = theta.abs()[:, :1]
            done = residual <= rtol * top
            if bool(done.all()) or used == n:
                break
            if full:
                worst = float((residual / top).max())
                raise RuntimeError(
                    f"the GPU Hankel solver reached its basis limit ({limit} vectors) with "
                    f"relative residual {worst:.1e} > rtol = {rtol:.1e}; use a larger rtol")
    ritz = vectors.transpose(1, 2) @ basis[:, :used]  # (F, k, n): the Ritz vectors
    sign = torch.where(theta < 0, -1.0, 1.0).to(torch.float64)
    top = theta.abs()[:, :1].clamp_min(torch.finfo(torch.float64).tiny)
    return {"sigma": theta.abs().cpu().numpy(),
            "u0": (ritz[:, :, 0] * sign).cpu().numpy(),
            "v0": ritz[:, :, 0].cpu().numpy(),
            "shifted_gram": (ritz[:, :, 1:] @ ritz[:, :, :-1].transpose(1, 2)).cpu().numpy(),
            "residual": (residual / top).cpu().numpy(),
            "basis": np.full(f, used)}


def _orthonormal(w: torch.Tensor, basis: torch.Tensor):
    """``(q, B)``: the rows of ``w`` (F, b, n) made orthonormal and orthogonal to the rows of
    ``basis`` (F, m, n), with ``W - P W = Q B`` in columns (``W = w^T``, ``Q = q^T``, ``P``
    the projector onto the basis): two Gram-Schmidt passes and a QR, twice, so that a block
    whose norm cancelled (an invariant subspace met) continues from directions orthogonal to
    the basis."""
    q, r = _project_and_factor(w, basis)
    q2, r2 = _project_and_factor(q, basis)
    return q2, r2 @ r


def _project_and_factor(w: torch.Tensor, basis: torch.Tensor):
    for _ in range(2 if basis.shape[1] else 0):
        w = w - (w @ basis.transpose(1, 2)) @ basis
    return _qr(w)


def _qr(w: torch.Tensor):
    """``(q, r)`` with ``w^T = q^T r``, ``q`` orthonormal rows: by Cholesky QR (one Gram
    product and a triangular solve, memory-bound) where the block is well conditioned
    (``CHOLESKY_MIN_RATIO``), else by Householder QR (a block that lost its norm to
    cancellation, or a zero filter's)."""
    gram = w @ w.transpose(1, 2)
    r, info = torch.linalg.cholesky_ex(gram, upper=True)
    diagonal = torch.diagonal(r, dim1=1, dim2=2)
    ratio = diagonal.min(dim=1).values / diagonal.max(dim=1).values.clamp_min(1e-300)
    if bool((info == 0).all() & (ratio > CHOLESKY_MIN_RATIO).all()):
        return torch.linalg.solve_triangular(r.transpose(1, 2), w, upper=False), r
    q, r = torch.linalg.qr(w.transpose(1, 2))
    return q.transpose(1, 2), r


def _ritz(diagonal: list, coupling: list, k: int):
    """The top-``k`` Ritz values by modulus, their eigenvectors of ``T`` and residual norms
    ``||B_{m+1} s_last||``."""
    f, b = diagonal[0].shape[0], diagonal[0].shape[1]
    steps = len(diagonal)
    t = torch.zeros((f, steps * b, steps * b), dtype=torch.float64,
                    device=diagonal[0].device)
    for j, a in enumerate(diagonal):
        t[:, j * b:(j + 1) * b, j * b:(j + 1) * b] = a
        if j + 1 < steps:
            t[:, (j + 1) * b:(j + 2) * b, j * b:(j + 1) * b] = coupling[j]
            t[:, j * b:(j + 1) * b, (j + 1) * b:(j + 2) * b] = coupling[j].transpose(1, 2)
    theta, s = torch.linalg.eigh(t)
    order = theta.abs().argsort(dim=1, descending=True)[:, :k]
    theta = theta.gather(1, order)
    s = s.gather(2, order[:, None, :].expand(-1, s.shape[1], -1))
    residual = torch.linalg.vector_norm(coupling[-1] @ s[:, -b:, :], dim=1)
    return theta, s, residual
