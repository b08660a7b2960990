r"""The Hankel decomposition of long FIR filters on a torch device: block Lanczos, batched.

The Hankel matrix ``H[i, j] = g_{i+j}`` (``g = h[1:]``, ``0 <= i, j < n = L - 1``) is
symmetric, ``H = Q diag(theta) Q^T``, ``sigma = |theta|``, as on the CPU path
(`mor.analysis.spectrum`). ``H X`` for a block ``X`` of vectors is a correlation, computed for
every filter and vector of a batch at once by real FFTs of length ``M >= 2 n - 1`` (a power
of two, no wrap-around): ``irfft(rfft(g, M) conj(rfft(x, M)))[:n]``.

Block Lanczos with full re-orthogonalisation (the three-term recurrence, then a classical
Gram-Schmidt pass against the whole basis, a second where the first cancelled, and a QR of the
block, `_next_block`): ``H Q_m = Q_m T_m + Q_{m+1} B_{m+1} E_m^T`` with ``T_m`` block
tridiagonal. A Ritz pair ``(theta, Q_m s)`` has the residual norm ``||B_{m+1} s_last||``
(``s_last`` its last block of components), and with the gap ``delta`` to the rest of the
spectrum it lies within ``min(r, r^2 / delta)`` of an eigenvalue (Kato-Temple); the
iteration stops when each of the top ``k`` values is certified to ``rtol sigma_1`` by that
bound, and for vectors each residual is at most ``VECTOR_RESIDUAL rtol sigma_1``: the CPU
path's certificate (`mor._numerics.lanczos`). A filter leaves its batch at the check that
certifies it (its basis rows moved in place), so the re-orthogonalisation traffic, ``n V^2``
for a basis of ``V`` vectors, is each filter's own, not the batch's slowest. A block of
``b`` vectors meets up to ``b`` copies of a multiple value, where a single sequence meets
one. Everything runs in float64 on the device, the filters in batches sized from its free
memory; only ``O(k^2)`` numbers per filter come back.

The basis is held twice: in float64, and rounded to float32 for the update ``w - C B`` of the
re-orthogonalisation. The coefficients ``C = w B^T`` are taken from the float64 basis (they
must be exact to the working precision: from the rounded basis they carry
``u_32 ||w|| / sqrt(n)``, which left the basis 1e-9 from orthogonal and the values 5e-10
``sigma_1`` off on issue 22's filters at 2^16), but they are rounding-sized (``1e-12`` of
``||w||`` there), so the rounded basis moves ``w`` by ``u_32 |C|``, far below ``eps ||w||``:
the update reads 4 bytes an entry instead of 8 (the values agreed to 3e-16 ``sigma_1`` and
the basis stayed within 2e-14 of orthogonal). With deflation the float32 copy holds only
the rows before the lock (`_rounded_rows`): after it the basis is read at a few steps only, in
float64, and a batch holds a third more filters (at 2^20 on an H100 the time did not change:
`benchmarks/results/issue22_h100_s25.log`). The basis is allocated for the vectors a filter is
expected to need (`EXPECTED_PER_VALUE`) and grown for those that need more.

Deflation. Full re-orthogonalisation reads the whole basis every step, and on long filters it
is needed: once the dominant values (issue 22's damped cosines) are found the coefficients
``B_j`` settle near the plateau below them (``0.4 sigma_25`` there), and rounding errors grow
by ``||H|| / ||B_j|| ~ 1e5`` a step. So a batch whose filters all have a leading run of
converged Ritz pairs followed by a drop (`LOCK_RESIDUAL`, `LOCK_DROP`, `_lockable`) locks
them: their Ritz vectors ``U`` take the basis's first rows, and a new block Lanczos sequence,
started from the next Ritz vectors, runs on ``P H P`` (``P = I - U U^T``, applied after each
product), whose norm is the plateau's, so errors grow by a few a step. A step of it makes the
projection, ``A_j``, the three-term recurrence and Cholesky QR's first Gram matrix from one
product with ``w = H q_j`` and one pass over it (`_projected_recurrence`): about 590 MiB of
row traffic a filter and step at 2^20 with 20 locked vectors instead of 750 (not yet timed
on a device). Each filter
re-orthogonalises it only where the Grimes-Lewis-Simon estimate of its loss of orthogonality
crosses ``sqrt(eps)`` (`mor.torch._orthogonality`, computed on the device; semi-orthogonality
keeps the Ritz values as accurate as full re-orthogonalisation, Simon 1984), the row products
reading those filters' rows in place; the next product is computed while the decisions come
back. With ``H U = U Theta + R``, ``H`` differs from ``U Theta U^T + P H P`` by ``||R||``,
which `_ritz` adds to every bound: the certificate is unchanged in kind. Batches lock only
when every filter in them can (a filter without a drop keeps the batch on full
re-orthogonalisation), and only from `DEFLATE_MIN` columns, where it pays: on an H100 at
2^20 (8 of issue 22's filters, `benchmarks/results/bench_gpu_deflation_h100_s24.log`) the
top 64 values took 0.218 s a filter against 0.335 s, balanced truncation's pairs 0.093
against 0.119 s, with 468-536 products against 492-544 and 8 of 117 block steps
re-orthogonalised; at 2^18 it was slower (1.11x / 1.14x the time).
"""

from __future__ import annotations

import functools
import math
import threading
from collections import defaultdict
from typing import NamedTuple

import numpy as np
import torch

from mor._numerics.lanczos import VECTOR_RESIDUAL
from mor.torch._orthogonality import LossEstimate

try:  # the re-orthogonalisation's products on CUDA (CUDA builds of torch ship Triton)
    from mor.torch import _row_products
except ImportError:  # pragma: no cover - torch without Triton
    _row_products = None

#: Vectors per Lanczos block. Measured on issue 22's filters at L = 2^16 (top 64 values to
#: 1e-11, and 33 with vectors to 1e-10): blocks of 4, 8 and 16 needed 376 / 216, 512 / 320 and
#: 736 / 480 vectors: the same re-orthogonalisation traffic (``n V^2 / b``), the fewest FFT
#: products with 4.
BLOCK = 4
#: Daniel-Gragg-Kaufman-Stewart: a second Gram-Schmidt pass where the first kept less.
DGKS = 0.7071067811865476
#: ... or where a coefficient of the first exceeds this share of the row's norm: the update
#: from the float32 basis leaves ``u_32`` of the coefficients (module notes), below
#: ``eps ||w||`` only for coefficients below about ``1e-8 ||w||`` (after the three-term
#: recurrence they are ``1e-12``; a second pass leaves ``u_32`` of the first's).
ROUNDED_UPDATE_MAX = 1e-8
#: Basis limit, in vectors: ``min(n, max(BASIS_PER_VALUE k, BASIS_MIN))`` (one of 64 filters
#: of issue 22 at 2^16 needed more than 512 for its top 64 values to 1e-11, on an H100).
BASIS_PER_VALUE = 8
BASIS_MIN = 1024
#: Vectors a batch's basis holds at first: ``EXPECTED_PER_VALUE k`` (at least ``k`` and two
#: blocks, at most the limit), the batch sized by it. Issue 22's filters needed 376 / 180 at
#: 2^16 (seed 0) and 492-544 / 312 (seed 0) at 2^20 for the top 64 values / the 33 pairs of
#: balanced truncation to order 32.
EXPECTED_PER_VALUE = 11
#: A batch whose filters need more vectors than its basis holds grows it by this factor (up
#: to the limit), once the certified filters have left; where the device has not the memory
#: for the copy, those filters run again from the start in batches sized for the limit.
BASIS_GROWTH = 1.5
#: The Ritz values are checked (an eigendecomposition of ``T``, ``O(m^3)`` per filter) once
#: the basis holds ``k + BLOCK`` vectors, then where the worst bound's decay since the last
#: check, extrapolated, reaches ``rtol`` (`_next_check`): the basis grows between checks by
#: at least a block and this factor, at most `CHECK_GROWTH_MAX`.
CHECK_GROWTH, CHECK_GROWTH_MAX = 1.1, 1.2
#: Cholesky QR of a block where its factor's diagonal spans less than this ratio (the
#: block's condition number is then below about its inverse, and the orthogonality lost,
#: ``eps`` times its square, is restored by the second pass); Householder QR elsewhere.
CHOLESKY_MIN_RATIO = 1e-5
#: A block whose factor keeps less than this of its norm before the projection is projected
#: and factored again (`_next_block`).
COLLAPSE = 1e-6
#: Deflation (module notes): a filter's leading Ritz pairs are locked where their residuals
#: are at most `LOCK_RESIDUAL` ``sigma_1`` and the next Ritz value is at most `LOCK_DROP`
#: ``sigma_1`` (the rest of the spectrum then grows rounding errors by ``sigma_{l+1} / beta``
#: a step instead of ``sigma_1 / beta``). Measured on issue 22's filters (blocks of 4,
#: `benchmarks/study_deflated_lanczos.py`): 19-24 pairs locked after 28-48 vectors; at
#: 2^20, 4 of 108 steps re-orthogonalised after it.
LOCK_RESIDUAL, LOCK_DROP = 1e-13, 1e-3
#: A batch looks for pairs to lock every `LOCK_EVERY` blocks, while its basis holds at most
#: `LOCK_PER_VALUE` ``k`` vectors; it locks once every filter left has some.
LOCK_EVERY, LOCK_PER_VALUE = 2, 2
#: Deflation by default from this many Hankel columns ``n = L - 1``. On an H100 (8-16 of
#: issue 22's filters, against full re-orthogonalisation in the same process) the top 64
#: values / balanced truncation's pairs took 0.65x / 0.78x the time at 2^20 taps, 1.11x /
#: 1.14x at 2^18 (a batch of 16 re-orthogonalises where any of its filters needs it: 38 of
#: 132 steps there, 8 of 117 at 2^20 in batches of 4).
DEFLATE_MIN = 1 << 19
#: Share of the device's free memory a batch of filters may take.
MEMORY_SHARE = 0.6
#: One decomposition at a time per device: batches are sized from its free memory, so
#: concurrent callers (`mor.distill`'s chunks in flight) wait for each other.
_DEVICE_LOCKS: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)


def hankel_blocks(h: np.ndarray, k: int, *, rtol: float, device, vectors: bool = True,
                  kth_rtol: float = 0.0, block: int = BLOCK, batch: int | None = None,
                  capacity: int | None = None, deflate: bool | None = None
                  ) -> dict[str, np.ndarray]:
    """The top-``k`` Hankel eigenpairs of filters ``h`` ``(F, L)`` on ``device``, reduced to
    what balanced truncation needs, each value certified to ``max(rtol sigma_1, kth_rtol
    sigma_k)``.

    Returns a dict of NumPy arrays: ``sigma`` ``(F, k)`` (descending), ``bound`` ``(F, k)``
    (each value's certified distance to a singular value, relative to ``sigma_1``, `_ritz`),
    ``basis`` ``(F,)`` (vectors used: Hankel products per filter); with ``vectors``, ``u0``
    and ``v0`` ``(F, k)`` (the first rows of ``U`` and ``V`` in ``H ~ U diag(sigma) V^T``)
    and ``shifted_gram`` ``(F, k, k)`` (``V[1:]^T V[:-1]``), each vector's residual at most
    `VECTOR_RESIDUAL` ``rtol sigma_1``.

    ``batch`` (the most filters a batch: the filters are split into as few batches as
    that allows, of even sizes) and ``capacity`` (basis vectors held at first) replace the
    sizes chosen from the device's memory and `EXPECTED_PER_VALUE`; ``deflate`` (module
    notes) true allows deflation, false keeps every filter's basis fully re-orthogonalised,
    None (the default) allows it from `DEFLATE_MIN` columns (it needs ``L - 1`` beyond the
    basis limit).

    Raises
    ------
    RuntimeError
        If a filter's top ``k`` pairs are not certified within the basis limit.
    """
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must name a torch device, got {device!r}") from exc
    if device.type == "cuda" and (not torch.cuda.is_available() or (
            device.index is not None and device.index >= torch.cuda.device_count())):
        raise ValueError(f"device {str(device)!r} is not available here (torch "
                         f"{torch.__version__} sees {torch.cuda.device_count()} CUDA devices)")
    f, length = h.shape
    n = length - 1
    out = {"sigma": np.zeros((f, k)), "bound": np.zeros((f, k)),
           "basis": np.zeros(f, dtype=np.int64)}
    if vectors:
        out.update(u0=np.zeros((f, k)), v0=np.zeros((f, k)), shifted_gram=np.zeros((f, k, k)))
    if f == 0 or k == 0 or n == 0:
        return out
    block = max(1, min(block, n))
    limit = _whole_blocks(min(n, max(BASIS_PER_VALUE * k, BASIS_MIN, k + 2 * block)), block)
    if capacity is None:
        capacity = max(EXPECTED_PER_VALUE * k, k + 2 * block)
    capacity = min(limit, _whole_blocks(max(capacity, block), block))
    # deflation needs columns beyond the basis limit
    deflate = (n >= DEFLATE_MIN if deflate is None else deflate) and n > limit
    todo = np.arange(f)
    with _DEVICE_LOCKS[str(device)]:
        # batches sized for the expected basis; filters whose basis could not grow on the
        # device (out of memory) again in batches sized for the limit
        for size in dict.fromkeys((capacity, limit)):
            most = batch or _batch_size(n, size, _rounded_rows(size, k, block, deflate),
                                        block, device)
            # as many batches as that takes, of even sizes (a batch steps in lockstep)
            rows = -(-todo.size // -(-todo.size // most))
            again = [_block_lanczos(torch.as_tensor(h[todo[i:i + rows]], dtype=torch.float64)
                                    .to(device), out, todo[i:i + rows], k, (rtol, kth_rtol),
                                    block, size, limit, vectors, deflate)
                     for i in range(0, todo.size, rows)]
            todo = np.concatenate(again)
            if not todo.size:
                break
    return out


def _whole_blocks(vectors: int, block: int) -> int:
    return vectors - vectors % block


def _rounded_rows(capacity: int, k: int, block: int, deflate: bool) -> int:
    """Rows of the basis held in float32 too: all, or with ``deflate`` those up to the last
    check for pairs to lock (`LOCK_PER_VALUE`): after a lock the basis is read in passes at
    a few steps only, where float64 costs little, and without the float32 copy of the rest a
    batch holds more filters (where no lock comes, the updates read float64 beyond them)."""
    if not deflate:
        return capacity
    return min(capacity, _whole_blocks(LOCK_PER_VALUE * k, block) + LOCK_EVERY * block)


def _batch_size(n: int, capacity: int, rounded: int, block: int,
                device: torch.device) -> int:
    """Filters per batch: the basis (``capacity`` vectors in float64, ``rounded`` of them
    in float32 too), the FFT buffers and the filters' spectra within `MEMORY_SHARE` of the
    device's free memory (no limit on a CPU). Free memory counts what torch's caching
    allocator holds unused (reserved, not allocated), which the driver's count leaves out."""
    if device.type != "cuda":
        return 1 << 30
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    m = _fft_size(n)
    per_filter = 8 * n * capacity + 4 * n * rounded + 64 * n * block \
        + 16 * (m // 2 + 1) * (3 * block + 1) + 8 * m * 2 * block
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


def _block_lanczos(h: torch.Tensor, out: dict[str, np.ndarray], rows: np.ndarray, k: int,
                   tolerance: tuple[float, float], block: int, capacity: int, limit: int,
                   vectors: bool, deflate: bool) -> np.ndarray:
    """Block Lanczos on the filters ``h`` (a batch on the device), each written into
    ``out`` (`hankel_blocks`) at its row of ``rows`` when certified to ``tolerance``
    (``(rtol, kth_rtol)``, `_ritz`); with ``deflate``, its dominant pairs locked once every
    filter of the batch has them (module notes). The basis holds ``capacity`` vectors, grown
    by `BASIS_GROWTH` (up to ``limit``) for the filters that need more; returns the rows of
    the filters left when the device had no memory to grow it (none otherwise: a filter not
    certified within ``limit`` raises)."""
    f, n = h.shape[0], h.shape[1] - 1
    rtol = tolerance[0]
    spectrum = hankel_spectrum(h)
    basis = torch.empty((f, capacity, n), dtype=torch.float64, device=h.device)
    # with deflation the float32 copy holds the rows up to the last lock check only, beyond
    # which the basis is read in float64 (`_rounded_rows`)
    partial = deflate
    rounded = torch.empty((f, _rounded_rows(capacity, k, block, deflate), n),
                          dtype=torch.float32, device=h.device)
    generator = torch.Generator(device=h.device).manual_seed(0)
    q, _, _ = _qr(torch.randn((f, block, n), generator=generator, dtype=torch.float64,
                              device=h.device))
    diagonal, coupling = [], []  # A_j and B_{j+1} of T's blocks
    # `rows`: the filters still iterating, by their row in `out`; the current Lanczos
    # sequence starts at row `start` of the basis (the locked pairs before it), after
    # `earlier` products
    locked, estimate, start, earlier = None, None, 0, 0
    used, check = 0, (LOCK_EVERY * block if deflate else k + block)
    previous = None  # (basis, worst bound) at the last check
    ahead = None  # H q, where the last step had it computed
    while True:
        if rounded is not basis and used + block > rounded.shape[1]:
            rounded = basis
        basis[:, used:used + block] = q
        if rounded is not basis:
            rounded[:, used:used + block] = q
        w = hankel_product(spectrum, q) if ahead is None else ahead
        # the three-term recurrence (one pass over the last two blocks; after a lock with
        # the projection on the locked vectors), then the whole basis: every step, or after
        # a lock where the loss estimate asks (module notes)
        if start:
            w, a, gram = _projected_recurrence(w, basis, rounded, start, used, block,
                                               coupling[-1] if coupling else None)
        else:
            a = _inner(q, w)
            a = (a + a.transpose(1, 2)) / 2
            if coupling:
                w = _subtract(w, torch.cat([coupling[-1], a], dim=2),
                              basis[:, used - block:used + block])
            else:
                w = _subtract(w, a, q)
        used += block
        if estimate is None:
            q, b = _next_block(w, basis[:, :used], rounded[:, :used])
        else:
            q, b, ahead = _semiorthogonal_block(w, a, gram, basis[:, :used],
                                                rounded[:, :used], estimate, spectrum)
        diagonal.append(a)
        coupling.append(b)
        full = used + block > capacity
        if used < check and not full and used < n:
            continue
        wanted = k - (0 if locked is None else locked.count.cpu().numpy())
        count = np.minimum(wanted, used - start) + np.zeros(len(rows), dtype=np.int64)
        ritz = _ritz(diagonal, coupling, count, vectors, *tolerance, locked)
        done = ((ritz.score <= rtol).cpu().numpy() & (count == wanted)) | (used == n)
        for i in np.flatnonzero(done):  # certified: out of the batch
            _finish(out, rows[i], *_pairs(ritz, i, locked, basis[i], start, used, vectors))
            out["basis"][rows[i]] = earlier + used - start
        if done.all():
            return rows[:0]
        keep = np.flatnonzero(~done)
        worst = float(ritz.score[torch.as_tensor(keep, device=h.device)].max())
        if full and capacity == limit:
            raise RuntimeError(
                f"the GPU Hankel solver reached its basis limit ({limit} vectors) with "
                f"relative residual {worst:.1e} > rtol = {rtol:.1e}; use a larger rtol")
        lock = None
        if deflate:
            lockable = _lockable(ritz)[keep]
            if lockable.all():
                lock = lockable
            deflate = lock is None and used + LOCK_EVERY * block <= LOCK_PER_VALUE * k
        check = (used + LOCK_EVERY * block if deflate
                 else _next_check(used, worst, previous, rtol, block))
        previous = used, worst
        if done.any():
            # in place, each kept filter's rows to its new place (never ahead of it): no
            # second copy of the basis
            single = rounded is basis
            for new, old in enumerate(keep):
                if new != old:
                    basis[new, :used] = basis[old, :used]
                    if not single:
                        rounded[new, :used] = rounded[old, :used]
            basis = basis[:keep.size]
            rounded = basis if single else rounded[:keep.size]
            index = torch.as_tensor(keep, device=h.device)
            spectrum, q, ritz = spectrum[index], q[index], _take(ritz, index)
            ahead = None if ahead is None else ahead[index]
            diagonal = [x[index] for x in diagonal]
            coupling = [x[index] for x in coupling]
            if locked is not None:
                locked = _take(locked, index)
                estimate.take(index)
            rows = rows[keep]
        if lock is not None:  # a new sequence on the complement of the locked pairs
            ahead = None
            locked, start, q = _lock(ritz, lock, basis, rounded, used, block,
                                     generator)
            earlier, used = used, start
            diagonal, coupling, previous = [], [], None
            estimate = LossEstimate(len(rows), block, h.device)
            check = start + int((k - lock).max()) + block
        if full and lock is None:  # the filters left need more vectors than the basis holds
            capacity = min(limit, max(capacity + block,
                                      _whole_blocks(int(BASIS_GROWTH * capacity), block)))
            try:
                grown = _grown(basis, used, capacity)
                if rounded is basis:
                    rounded = grown
                elif not partial:
                    rounded = _grown(rounded, used, capacity)
                basis = grown
            except torch.OutOfMemoryError:
                return rows  # run again, from the start, in a batch sized for the limit


def _orthonormal_complement(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The rows ``x`` ``(F, b, n)`` projected (twice) on the complement of the orthonormal
    ``rows`` ``(F, l, n)`` and made orthonormal."""
    if rows.shape[1]:
        for _ in range(2):
            x = _subtract(x, _inner(x, rows), rows)
    return _qr(x)[0]


class _Locked(NamedTuple):
    """The pairs a batch deflated, per filter: ``count`` values ``theta`` (signed,
    zero-padded to the batch's most), their Ritz vectors (the basis's first rows),
    ``spread`` (the Frobenius norm of their residuals, which bounds ``||R||_2``) and
    ``scale`` (the largest Ritz value's modulus when they were locked)."""
    theta: torch.Tensor
    count: torch.Tensor
    spread: torch.Tensor
    scale: torch.Tensor


def _lockable(ritz: _Ritz) -> np.ndarray:
    """Per filter, the leading Ritz pairs to lock (0 where none): a run, in decreasing
    modulus, whose residuals are at most `LOCK_RESIDUAL` ``sigma_1``, followed by a Ritz
    value at most `LOCK_DROP` ``sigma_1`` and fewer than the values wanted."""
    wanted = ritz.values.shape[1]
    scale = ritz.scale[:, None]
    converged = ritz.residual <= LOCK_RESIDUAL * scale
    run = torch.where(converged.all(dim=1), wanted, (~converged).int().argmax(dim=1))
    after = ritz.values.abs().gather(1, run.clamp_max(wanted - 1)[:, None])[:, 0]
    lockable = (run > 0) & (run < wanted) & (after <= LOCK_DROP * ritz.scale)
    return torch.where(lockable, run, 0).cpu().numpy()


def _lock(ritz: _Ritz, count: np.ndarray, basis: torch.Tensor, rounded: torch.Tensor,
          used: int, block: int, generator: torch.Generator
          ) -> tuple[_Locked, int, torch.Tensor]:
    """Lock each filter's leading ``count`` Ritz pairs: their vectors (zero rows to the
    batch's most) into the first rows of ``basis`` and ``rounded`` (which hold ``used``
    vectors). Returns the locked pairs, the rows they take, and the block to start the next
    sequence from: the next Ritz vectors, orthonormal and orthogonal to the locked ones (a
    random row where there is no next one; the phase-1 information a random block would lose
    cost issue 22's filters up to a third more products for balanced truncation)."""
    rows = int(count.max())
    wanted = ritz.values.shape[1]
    count = torch.as_tensor(count, device=basis.device)
    mask = torch.arange(rows, device=basis.device) < count[:, None]
    following = count[:, None] + torch.arange(block, device=basis.device)
    columns = torch.cat([torch.arange(rows, device=basis.device).expand(len(count), -1),
                         following.clamp_max(wanted - 1)], dim=1)
    weights = ritz.vectors.gather(2, columns[:, None, :].expand(-1, ritz.vectors.shape[1], -1))
    weights[:, :, :rows] *= mask[:, None, :]
    vectors = _product(weights.transpose(1, 2).contiguous(), basis[:, :used])
    basis[:, :rows] = vectors[:, :rows]
    if rounded is not basis:
        rounded[:, :rows] = vectors[:, :rows]
    start = torch.where((following < wanted)[:, :, None], vectors[:, rows:],
                        torch.randn(vectors[:, rows:].shape, generator=generator,
                                    dtype=torch.float64, device=basis.device))
    residual = ritz.residual[:, :rows] * mask
    locked = _Locked(ritz.values[:, :rows] * mask, count,
                     torch.linalg.vector_norm(residual, dim=1), ritz.scale)
    return locked, rows, _orthonormal_complement(start, basis[:, :rows])


def _projected_recurrence(w: torch.Tensor, basis: torch.Tensor, rounded: torch.Tensor,
                          start: int, used: int, block: int, coupling: torch.Tensor | None):
    """``(w, A_j, w w^T)`` of a step of the deflated sequence, ``q_j = basis[:, used:used +
    block]``: ``w = P H q_j - A_j q_j - B_j q_{j-1}`` from ``w = H q_j``, ``P = I - U U^T``
    with ``U = basis[:, :start]`` the locked vectors (module notes), ``B_j = coupling`` (None
    at the sequence's first block). The coefficients along ``U`` and ``A_j = q_j w^T`` are
    one product with ``w`` and the update one pass over ``w`` that also sums its Gram
    matrix: ``w`` is read twice and written once, instead of six reads and three writes
    for the projection, ``A_j``, the recurrence and Cholesky QR's first Gram matrix apart.
    ``A_j`` is taken from ``H q_j`` before the projection, which it differs from by
    ``(q_j U^T)(U w^T)``: rounding times the locked residuals."""
    recent = basis[:, max(start, used - block):used + block]  # [q_{j-1}; q_j]
    c = _inner(w, basis[:, :start], y2=recent)
    a = c[:, :, -block:]
    a = (a + a.transpose(1, 2)) / 2
    c = torch.cat([c[:, :, :start], *([] if coupling is None else [coupling]), a], dim=2)
    w, gram = _subtract(w, c, rounded[:, :start], rows2=recent, gram=True)
    return w, a, gram


def _semiorthogonal_block(w: torch.Tensor, a: torch.Tensor, gram: torch.Tensor,
                          basis: torch.Tensor, rounded: torch.Tensor, estimate: LossEstimate,
                          spectrum: torch.Tensor):
    """``(q, B, H q)`` as `_next_block`, but each filter re-orthogonalised against its
    ``basis`` only where the ``estimate`` of its loss of orthogonality asks (every filter
    where the block's QR needs the careful path); ``gram`` is ``w w^T``. The filters'
    decisions and the QR's tests go to the host while the device computes the next product
    ``H q`` (with ``spectrum``) on the guess that no filter needs a pass; those that do have
    theirs again."""
    before = torch.diagonal(gram, dim1=1, dim2=2).sqrt()
    q, r, conditioned = _cholesky_qr2(w, gram)
    fine = conditioned & ~_collapsed(r, before)
    needed = estimate.propose(a, r)
    decisions = _fetch(torch.cat([needed, fine.reshape(1)]))
    ahead = hankel_product(spectrum, q)
    decisions = decisions()
    if not decisions[-1]:
        q, r = _next_block(w, basis, rounded)
        estimate.accept(r)
        return q, r, hankel_product(spectrum, q)
    which = np.flatnonzero(decisions[:-1])
    if not which.size:
        estimate.accept()
        return q, r, ahead
    index = torch.as_tensor(which, device=w.device)
    again, coupling = _next_block(w[index], basis, rounded, index)
    q[index], r[index] = again, coupling
    ahead[index] = hankel_product(spectrum[index], again)
    estimate.accept(coupling, index)
    return q, r, ahead


def _fetch(x: torch.Tensor):
    """Start copying ``x`` to the host; returns a function that waits for the copy and gives
    it as a NumPy array. On CUDA the copy goes into page-locked memory without waiting, so
    the work queued after it runs while the host waits and computes."""
    if not x.is_cuda:
        return x.numpy
    host = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
    host.copy_(x, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record()

    def wait() -> np.ndarray:
        copied.synchronize()
        return host.numpy()

    return wait


def _grown(basis: torch.Tensor, used: int, capacity: int) -> torch.Tensor:
    """A basis of ``capacity`` vectors holding the first ``used`` of ``basis``."""
    grown = torch.empty((basis.shape[0], capacity, basis.shape[2]), dtype=basis.dtype,
                        device=basis.device)
    grown[:, :used] = basis[:, :used]
    return grown


def _pairs(ritz: _Ritz, i: int, locked: _Locked | None, basis: torch.Tensor, start: int,
           used: int, vectors: bool):
    """Filter ``i``'s certified values, their bounds and (with ``vectors``) their Ritz
    vectors ``(k, n)``, the locked pairs (the first rows of its ``basis``) first."""
    count = int(ritz.count[i])
    values, bound = ritz.values[i, :count], ritz.bound[i, :count]
    found = ritz.vectors[i, :, :count].T @ basis[start:used] if vectors else None
    if locked is None:
        return values, bound, found
    held = int(locked.count[i])
    values = torch.cat([locked.theta[i, :held], values])
    bound = torch.cat([ritz.locked_bound[i].expand(held), bound])
    if vectors:
        found = torch.cat([basis[:held], found])
    return values, bound, found


def _finish(out: dict, row: int, values: torch.Tensor, bound: torch.Tensor,
            ritz: torch.Tensor | None) -> None:
    """One filter's certified pairs into ``out`` at ``row``, in decreasing modulus: the
    values and bounds, and from its Ritz vectors ``ritz`` (``(k, n)``, when vectors are
    wanted) the first rows of ``U`` and ``V`` and ``V[1:]^T V[:-1]``."""
    order = values.abs().argsort(descending=True, stable=True)
    values = values[order]
    out["sigma"][row] = values.abs().cpu().numpy()
    out["bound"][row] = bound[order].cpu().numpy()
    if ritz is None:
        return
    ritz = ritz[order]
    sign = torch.where(values < 0, -1.0, 1.0).to(torch.float64)
    out["u0"][row] = (ritz[:, 0] * sign).cpu().numpy()
    out["v0"][row] = ritz[:, 0].cpu().numpy()
    out["shifted_gram"][row] = (ritz[:, 1:] @ ritz[:, :-1].T).cpu().numpy()


def _next_check(used: int, worst: float, last: tuple[int, float] | None, rtol: float,
                block: int) -> int:
    """The basis size at the next convergence check: where the worst bound, decaying at its
    rate since the ``last`` check (``(basis, bound)``), would reach ``rtol`` (3/4 of the way:
    it converges faster than geometrically), between `CHECK_GROWTH` and `CHECK_GROWTH_MAX`
    times ``used`` and at least a block more; `CHECK_GROWTH` times ``used`` while the bound
    does not decay."""
    low, high = max(used + block, int(CHECK_GROWTH * used)), int(CHECK_GROWTH_MAX * used)
    if last is None or not 0.0 < worst < last[1]:
        return low
    rate = (math.log(last[1]) - math.log(worst)) / (used - last[0])
    ahead = used + int(0.75 * (math.log(worst) - math.log(rtol)) / rate)
    return min(max(low, ahead - ahead % block), max(low, high))


def _next_block(w: torch.Tensor, basis: torch.Tensor, rounded: torch.Tensor,
                filters: torch.Tensor | None = None):
    """``(q, B)``: the rows of ``w`` (F, b, n), the block after the three-term recurrence,
    made orthonormal and orthogonal to the rows of ``basis`` (F, m, n), with ``W = Q B`` in
    columns (``W = w^T``, ``Q = q^T``) up to the rounding-level components removed. One
    classical Gram-Schmidt pass over the basis (its coefficients from ``basis``, the update
    from ``rounded``, the basis in float32: module notes), a second where the first removed
    more than ``1 - 1/sqrt 2`` of a row's norm (Daniel, Gragg, Kaufman and Stewart), then a
    QR (a second pass too where a coefficient exceeds `ROUNDED_UPDATE_MAX` of the row's
    norm); a block that lost its norm to cancellation (an invariant subspace met, a zero filter)
    has its Householder factor's directions projected and factored again, in float64, so
    that it continues orthogonal to the basis.

    The common step (one pass, Cholesky QR) runs without waiting for the device: its three
    tests (a second pass, Cholesky QR's conditioning, a collapse) come back together once,
    and only a step that fails one is done again the careful way. With ``filters``
    (``(S,)``), ``w`` holds the rows of those filters of ``basis`` and ``rounded``."""
    before = torch.linalg.vector_norm(w, dim=2)
    coefficients = _inner(w, basis, filters)
    w, gram = _subtract(w, coefficients, rounded, filters, gram=True)
    second = ((torch.diagonal(gram, dim1=1, dim2=2).sqrt() < DGKS * before)
              | (coefficients.abs().amax(dim=2) > ROUNDED_UPDATE_MAX * before)).any()
    q, r, conditioned = _cholesky_qr2(w, gram)
    if not bool(second | ~conditioned | _collapsed(r, before)):
        return q, r
    if bool(second):
        w = _subtract(w, _inner(w, basis, filters), rounded, filters)
    q, r, conditioned = _qr(w)
    if conditioned and not bool(_collapsed(r, before)):
        return q, r
    # a block that lost most of its norm (an invariant subspace met) is rounding, amplified
    # by the factor: its directions are projected and factored again
    for _ in range(2):
        q = _subtract(q, _inner(q, basis, filters), basis, filters)
    q, r2, _ = _qr(q)
    return q, r2 @ r


def _collapsed(r: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
    """Whether a block's factor ``r`` keeps less than `COLLAPSE` of the block's norm
    ``before`` the projection (in any filter of the batch; on the device)."""
    kept = torch.diagonal(r, dim1=1, dim2=2).abs().min(dim=1).values
    return ~(kept > COLLAPSE * before.max(dim=1).values).all()


def _inner(x: torch.Tensor, y: torch.Tensor, filters: torch.Tensor | None = None,
           y2: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ y^T`` ``(F, a, m)`` for rows ``x`` ``(F, a, n)`` and ``y`` ``(F, m, n)`` (rows
    contiguous), or with ``filters`` (``(S,)``) of ``S`` rows ``x`` against ``y[filters]``,
    or with ``y2`` ``(F, m2, n)``, ``x [y; y2]^T`` ``(F, a, m + m2)``; on CUDA by
    `mor.torch._row_products.inner` (a batched GEMM with a reduction over ``n = 2^20`` runs
    few tiles per filter: on an H100 it read the basis at 1.8 TB/s for 4 filters), which
    reads the selected filters' rows in place, and both ``y`` and ``y2`` in one pass over
    ``x``."""
    if _triton_products(x):
        return _row_products.inner(x, y, filters, y2)
    product = x @ (y if filters is None else y[filters]).transpose(1, 2)
    return product if y2 is None else torch.cat([product, x @ y2.transpose(1, 2)], dim=2)


def _triton_products(x: torch.Tensor) -> bool:
    """Whether the products with ``x`` run as `mor.torch._row_products`' kernels: on CUDA."""
    return x.is_cuda and _row_products is not None


def _subtract(w: torch.Tensor, c: torch.Tensor, rows: torch.Tensor,
              filters: torch.Tensor | None = None, rows2: torch.Tensor | None = None,
              gram: bool = False):
    """``w - c @ rows`` ``(F, a, n)`` for a few coefficients ``c`` ``(F, a, m)`` (with
    ``filters``, ``S`` of them against ``rows[filters]``, as `_inner`; with ``rows2``
    ``(F, m2, n)``, float64, ``w - c [rows; rows2]``): the update of the
    re-orthogonalisation from the float32 basis (`_next_block`), the three-term recurrence
    and the projection on the locked vectors (`_projected_recurrence`). On CUDA in place by
    `mor.torch._row_products.subtract_combination`, the combination summed in float64 (a
    batched GEMM of ``(a, m)`` by ``(m, n = 2^20)`` ran at a fifth of the bandwidth on an
    H100); elsewhere by torch, in the rows' precision. With ``gram``, returns ``(w, w w^T)``
    of the new ``w`` (on CUDA summed in the same pass)."""
    if _triton_products(w):
        square = _row_products.subtract_combination(w, c, rows, filters, rows2, gram)
        return (w, square) if gram else w
    m = rows.shape[1]
    w = w - c[:, :, :m].to(rows.dtype) @ (rows if filters is None else rows[filters])
    if rows2 is not None:
        w = w - c[:, :, m:] @ rows2
    return (w, w @ w.transpose(1, 2)) if gram else w


def _product(c: torch.Tensor, rows: torch.Tensor, gram: bool = False):
    """``c @ rows`` ``(F, a, n)`` for a few coefficients ``c`` ``(F, a, m)`` (Cholesky QR's
    ``R^{-T} Q``): on CUDA by `mor.torch._row_products.combination`, elsewhere torch's
    product. With ``gram``, returns ``(p, p p^T)`` of the product ``p`` (on CUDA summed in
    the same pass)."""
    if _triton_products(rows):
        return _row_products.combination(c, rows, gram)
    product = c @ rows
    return (product, product @ product.transpose(1, 2)) if gram else product


def _cholesky_qr2(w: torch.Tensor, gram: torch.Tensor | None = None):
    """``(q, r, conditioned)`` with ``w^T = q^T r``, ``q`` orthonormal rows, by Cholesky QR
    done twice (CholQR2: the first leaves orthogonality errors of ``eps kappa^2``, the second
    removes them; the products with the inverse factor, memory-bound, give the next Gram
    matrix in the same pass), from ``w``'s Gram matrix ``gram`` where it is known, and
    ``conditioned`` (a boolean on the device, not waited for): whether both factors were
    found and finite, the first (the block's own) with a diagonal spanning at least
    `CHOLESKY_MIN_RATIO` (the block's condition number then below about its inverse; the
    second is near the identity). Where it is false, ``q`` and ``r`` are
    not to be used (`_qr`)."""
    first, status, inverse = _inverse_factor(_inner(w, w) if gram is None else gram)
    q, gram = _product(inverse, w, gram=True)
    second, again, inverse = _inverse_factor(gram)
    q = _product(inverse, q)
    r = second @ first
    # the block's own factor: its diagonal's span tells its conditioning (a NaN or Inf
    # anywhere reaches r)
    diagonal = torch.diagonal(first, dim1=1, dim2=2)
    spans = diagonal.amin(dim=1) > CHOLESKY_MIN_RATIO * diagonal.amax(dim=1)
    conditioned = ((status | again) == 0).all() & spans.all() & torch.isfinite(r).all()
    return q, r, conditioned


def _inverse_factor(gram: torch.Tensor):
    """``(R, info, R^{-T})`` for the Cholesky factor ``R`` (upper) of ``gram`` ``(F, b, b)``
    (``info`` nonzero where it failed): the ``b x b`` factor inverted, for one product
    after it. cuBLAS's batched triangular solve returned wrong values for ``n = 2^20 - 1``
    right-hand sides on an H100 (off by 2.8 against the product; exact at 2^18 - 1), which
    made ``T`` NaN in the first runs."""
    factor, info = torch.linalg.cholesky_ex(gram, upper=True)
    eye = _identity(gram.shape[1], gram.device)
    inverse = torch.linalg.solve_triangular(factor, eye.expand_as(factor), upper=True)
    return factor, info, inverse.transpose(1, 2)


@functools.cache
def _identity(size: int, device: torch.device) -> torch.Tensor:
    """The float64 identity of ``size`` on ``device``, made once."""
    return torch.eye(size, dtype=torch.float64, device=device)


def _qr(w: torch.Tensor):
    """``(q, r, conditioned)`` with ``w^T = q^T r``, ``q`` orthonormal rows: by
    `_cholesky_qr2` where the block is well conditioned, else by Householder QR
    (``conditioned`` false)."""
    q, r, conditioned = _cholesky_qr2(w)
    if bool(conditioned):
        return q, r, True
    q, r = torch.linalg.qr(w.transpose(1, 2))
    return q.transpose(1, 2), r, False


class _Ritz(NamedTuple):
    """Per filter of a batch, its top Ritz pairs by modulus (`_ritz`): ``count`` of them
    wanted (the first columns), their ``values`` (signed), ``vectors`` (eigenvectors of
    ``T``), ``bound`` (each value's certified distance to an eigenvalue of ``H`` relative to
    ``scale``, the largest value's modulus), ``residual`` norms (of ``T``'s sequence alone),
    ``locked_bound`` (the locked values' bound, relative) and the ``score`` that certifies
    them all where it is at most ``rtol``."""
    count: torch.Tensor
    values: torch.Tensor
    vectors: torch.Tensor
    bound: torch.Tensor
    residual: torch.Tensor
    scale: torch.Tensor
    locked_bound: torch.Tensor
    score: torch.Tensor


def _take(group, index: torch.Tensor):
    """The filters ``index`` of a batch's per-filter tensors (a `_Locked` or `_Ritz`)."""
    return type(group)(*(x[index] for x in group))


def _ritz(diagonal: list, coupling: list, count: np.ndarray, vectors: bool, rtol: float,
          kth_rtol: float, locked: _Locked | None = None) -> _Ritz:
    """The top ``count`` (per filter) Ritz values by modulus of ``T``, their eigenvectors,
    the bounds on their distance to an eigenvalue of ``H`` relative to the largest, and per
    filter the score that certifies them, with the ``locked`` pairs, where it is at most
    ``rtol``.

    The bounds are Kato-Temple's ``min(r, r^2 / delta)`` from the residual norm
    ``r = ||B_{m+1} s_last||`` and the gap ``delta`` to the rest of the spectrum, as on the
    CPU path (`mor._numerics.lanczos._certified`: the neighbouring Ritz values, and the
    unexplored middle of the spectrum bounded by the next value and its residual). After a
    lock, ``T`` is that of ``P H P`` (``P = I - U U^T``), and ``H`` differs from
    ``U Theta U^T + P H P`` by the locked residuals ``R`` (``H U = U Theta + R``): each
    eigenvalue of ``H`` lies within ``||R||_2 <= ||R||_F`` of one of theirs (Weyl), which is
    added to every bound and residual, and is the locked values' bound; the locked values must
    stand above the unexplored rest (else the filter is not certified). Each bound may reach
    ``max(rtol |theta_1|, kth_rtol |theta_k|)`` (``|theta_k|``, the smallest value kept, is
    at most ``sigma_k``: interlacing); with ``vectors``, each residual norm at most
    ``VECTOR_RESIDUAL rtol |theta_1|`` as well (a Ritz vector's error is its residual over
    the gap, not its square). The score is the largest of the bounds over their allowance and
    the residuals over theirs, times ``rtol``."""
    f, b = diagonal[0].shape[0], diagonal[0].shape[1]
    steps = len(diagonal)
    m = steps * b
    device = diagonal[0].device
    # T as (F, steps, b, steps, b): its blocks placed by three indexed writes
    t = torch.zeros((f, steps, b, steps, b), dtype=torch.float64, device=device)
    j = torch.arange(steps, device=device)
    t[:, j, :, j, :] = torch.stack(diagonal, dim=1).transpose(0, 1)
    if steps > 1:
        below = torch.stack(coupling[:-1], dim=1).transpose(0, 1)
        t[:, j[1:], :, j[:-1], :] = below
        t[:, j[:-1], :, j[1:], :] = below.transpose(2, 3)
    t = t.reshape(f, m, m)
    lost = ~torch.isfinite(t).all(dim=2).all(dim=1)
    if bool(lost.any()):  # cuBLAS's wrong batched trsm did this at 2^20 (`_qr`): never returned
        raise RuntimeError(
            f"the GPU Hankel solver's recurrence lost its numbers (NaN or Inf in T) after "
            f"{m} vectors")
    theta, s = torch.linalg.eigh(t)  # ascending
    resid = torch.linalg.vector_norm(coupling[-1] @ s[:, -b:, :], dim=1)
    size = theta.abs()
    ranked = size.argsort(dim=1, descending=True)
    wanted = int(count.max())
    count = torch.as_tensor(count, device=device)
    top = ranked[:, :wanted]
    values, r = theta.gather(1, top), resid.gather(1, top)
    valid = torch.arange(wanted, device=device) < count[:, None]
    # the unexplored rest: below the next value and its residual (where T has one)
    rest = ranked.gather(1, count.clamp_max(m - 1)[:, None])
    beyond = torch.where(count[:, None] < m, size.gather(1, rest) + resid.gather(1, rest),
                         torch.inf)
    gap = values.abs() - beyond
    below = values - theta.gather(1, (top - 1).clamp_min(0))
    above = theta.gather(1, (top + 1).clamp_max(m - 1)) - values
    gap = torch.where(top > 0, torch.minimum(gap, below), gap)
    gap = torch.where(top < m - 1, torch.minimum(gap, above), gap)
    gap = gap - r
    bound = torch.where(gap > 0, torch.minimum(r, r * r / gap.clamp_min(1e-300)), r)
    scale = size.max(dim=1).values
    smallest = torch.where(valid, values.abs(), torch.inf).min(dim=1).values
    spread = torch.zeros_like(scale)
    if locked is not None:
        spread = locked.spread
        scale = torch.maximum(scale, locked.scale)
        held = torch.arange(locked.theta.shape[1], device=device) < locked.count[:, None]
        smallest = torch.minimum(smallest, torch.where(held, locked.theta.abs(), torch.inf)
                                 .min(dim=1).values)
    scale = scale.clamp_min(torch.finfo(torch.float64).tiny)
    # the allowance relative to the largest value: at least rtol (nothing underflows)
    allowed = (kth_rtol * smallest / scale).clamp_min(rtol)[:, None]
    bound = (bound + spread[:, None]) / scale[:, None]
    score = bound * (rtol / allowed)
    if vectors:
        score = torch.maximum(score, (r + spread[:, None]) / VECTOR_RESIDUAL / scale[:, None])
    score = torch.where(valid, score, 0.0).max(dim=1).values
    locked_bound = spread / scale
    if locked is not None:
        score = torch.maximum(score, locked_bound * (rtol / allowed[:, 0]))
        if vectors:
            score = torch.maximum(score, locked_bound / VECTOR_RESIDUAL)
        ordered = torch.where(held, locked.theta.abs() > beyond + spread[:, None], True)
        score = torch.where(ordered.all(dim=1), score, torch.inf)
    s = s.gather(2, top[:, None, :].expand(-1, m, -1))
    return _Ritz(count, values, s, bound, r, scale, locked_bound, score)
