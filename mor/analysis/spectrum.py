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
  that each value lies within ``rtol * sigma_1`` of a Hankel singular value. A single Krylov
  sequence meets one copy of a multiple singular value per invariant subspace (a pure delay's
  values are all 1, two sparse taps give pairs), which no residual bound detects: filters
  whose sequence met an invariant subspace or whose top values come in pairs are done again
  on the dense path (beyond ``DENSE_FALLBACK_SIZE``, a short Lanczos run on the complement of
  the basis must find no value above the ``k``-th). The values must also account for
  ``||H||_F^2 = sum c_l g_l^2`` (no more than it, and with the other ``N - k`` values at most
  ``sigma_k``, no less): filters that fail are done again with full re-orthogonalisation,
  then densely.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from mor._numerics.lanczos import MISSED, SUSPECT, lanczos_rows
from mor._numerics.linalg import svd_gesvd
from mor._numerics.parallel import map_chunks, worker_threads
from mor.conventions import Scale, as_filters

#: Hankel sizes up to this use the dense path when ``method="auto"``.
DENSE_MAX_SIZE = 160
#: Default certified accuracy of the Krylov path, relative to ``sigma_1``.
KRYLOV_RTOL = 1e-11
#: Filters whose Krylov values miss a multiple singular value are done densely up to this size.
DENSE_FALLBACK_SIZE = 4096
#: Filters whose values fail the checks are done again this many at a time (with vectors).
RERUN_CHUNK = 16
#: The Hankel decomposition on torch devices (`device_blocks`), registered by ``mor.torch``
#: (`register_device_blocks`): the layers below it do not import torch.
_DEVICE_BLOCKS: list = []


def register_device_blocks(decompose) -> None:
    """Register ``decompose(h, k, *, rtol, kth_rtol, device, vectors) -> dict``, the Hankel
    decomposition of flat filters on a torch device (`device_blocks`); ``import mor.torch``
    does."""
    _DEVICE_BLOCKS[:] = [decompose]


def device_blocks(flat: np.ndarray, k: int, *, rtol: float, device, vectors: bool = True,
                  kth_rtol: float = 0.0) -> dict:
    """The top-``k`` Hankel eigenpairs of flat validated filters on a torch ``device``, as
    balanced truncation needs them: ``sigma``, ``bound``, ``basis`` and with ``vectors``
    ``u0``, ``v0`` (first rows of ``U``, ``V``) and ``shifted_gram`` (``V[1:]^T V[:-1]``)
    (`mor.torch._spectrum.hankel_blocks`: block Lanczos, each value certified to
    ``max(rtol sigma_1, kth_rtol sigma_k)`` as on the Krylov path). The values must also pass
    the Krylov path's test against ``||H||_F^2``; a filter that fails it raises (the CPU path
    has no dense fallback at the sizes a device is for: use ``device=None``)."""
    if not _DEVICE_BLOCKS:
        raise ValueError(f"device={device!r} needs the torch adapter: `import mor.torch` "
                         "first (and torch built for that device)")
    _check_rtol(rtol)
    _check_kth_rtol(kth_rtol)
    n = flat.shape[-1] - 1
    blocks = _DEVICE_BLOCKS[0](flat, k, rtol=rtol, kth_rtol=kth_rtol, device=device,
                               vectors=vectors)
    if k:
        wrong = _inconsistent(flat, blocks["sigma"], rtol, kth_rtol, n)
        if wrong.any():
            raise RuntimeError(
                f"the Hankel values of filter {int(np.flatnonzero(wrong)[0])} computed on "
                f"{device} fail the test against ||H||_F^2 (a multiple singular value "
                "missed); use device=None")
    return blocks


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
                           rtol: float = KRYLOV_RTOL, device=None) -> np.ndarray:
    r"""Hankel singular values of FIR filters, or of a system object.

    The Hankel matrix of a filter ``h[0..L-1]`` is the ``N x N`` matrix (``N = L - 1``)

    .. math::

        H_{ij} = h[i + j + 1], \qquad 0 \le i, j < N,

    zero past the last tap: symmetric, and zero below the main anti-diagonal. Its singular values
    ``sigma_1 >= sigma_2 >= ... >= sigma_N >= 0`` are the Hankel singular values of the filter
    (those of its shift-register realisation, whose controllability Gramian is the identity).
    They measure how many states the filter needs: every model of order ``d`` has
    ``||H - H_hat||_inf >= sigma_{d+1}`` (Adamjan, Arov & Krein [1]), and balanced truncation to
    order ``d`` reaches ``<= 2 sum_{i>d} sigma_i`` (see `error_bounds`).

    Parameters
    ----------
    h : array_like, shape (..., L), or ModalSSM or StateSpace
        Real FIR filters (taps ``h[0..L-1]``; leading axes are a batch). A system object
        returns its own ``hankel_singular_values()`` (from square-root Gramians), cut to ``k``.
    k : int, optional
        Number of values, ``0 <= k <= L - 1``; all ``L - 1`` when omitted.
    method : {"auto", "dense", "krylov"}, optional
        ``"dense"``: the Hankel matrix and LAPACK ``gesvd`` (all values, small ones to full
        accuracy; ``O(L^3)`` time, ``O(L^2)`` memory). ``"krylov"``: matrix-free Lanczos on
        ``H`` for the ``k`` largest (FFT products, ``O(L log L)`` per iteration). ``"auto"``
        (default) takes the dense path for ``L - 1 <= 160`` or ``k > (L - 1) / 4`` and the
        Krylov path otherwise.
    rtol : float, optional
        Krylov path: certified accuracy of every value, relative to ``sigma_1``
        (default ``1e-11``; a positive finite number, checked on either path).
    device : str or torch.device, optional
        A torch device (``"cuda"``) to compute the ``k`` values on (``k`` required), by
        block Lanczos in float64 with the Krylov path's certificate and checks, the filters
        batched by the device's free memory; for long filters (issue 22 measured it from
        ``L = 2^16``). Needs ``import mor.torch``; ``method`` must be ``"auto"``. ``None``
        (default): the CPU paths.

    Returns
    -------
    ndarray, shape (..., k)
        ``sigma_1 >= ... >= sigma_k`` per filter (zeros for a zero filter; an empty last axis
        for ``L = 1``).

    Raises
    ------
    ValueError
        If ``h`` is not a real finite array of shape ``(..., L)``, ``k`` is not an integer in
        range, ``method`` is unknown or ``rtol`` is not a positive finite number.
    RuntimeError
        If the Krylov path cannot certify ``rtol`` within its basis limit (use
        ``method="dense"`` or a larger ``rtol``), or its values miss a multiple singular
        value of a Hankel matrix larger than ``DENSE_FALLBACK_SIZE`` (use ``method="dense"``).

    See Also
    --------
    error_bounds : The AAK lower and balanced-truncation upper bounds per order.

    mor.reduce : Balanced truncation and the other reductions, built on these values.

    ModalSSM.hankel_singular_values : The values of a modal system, from its Gramians.

    Notes
    -----
    The Krylov path runs Lanczos on the symmetric ``H`` itself, not on ``H^T H`` (which would
    square the spectrum and halve the attainable accuracy): ``H = Q diag(theta) Q^T`` and
    ``sigma = |theta|``. ``H x`` is a correlation, ``(H x)[i] = sum_j h[i + j + 1] x[j]``,
    computed by real FFTs of length ``>= 2N - 1`` (no wrap-around). The basis is kept
    semi-orthogonal by partial re-orthogonalisation [3], and the iteration stops once every one
    of the top ``k`` Ritz values has a Kato-Temple bound (from its residual norm and its gap to
    the other Ritz values) ``<= rtol * sigma_1`` [2], [5]: each returned value then lies within
    ``rtol * sigma_1`` of a Hankel singular value. That value is ``sigma_k`` itself except
    inside a cluster narrower than the iteration resolved: there the ``k``-th value returned
    may be another singular value of the cluster or a Ritz value between them, below
    ``sigma_k`` (seen: ``sigma_12`` returned for ``sigma_11``, ``1.2e-9 sigma_1`` above it, at
    a noise-floor plateau; a value ``1.3e-7 sigma_1`` below ``sigma_2`` where ``sigma_2..4``
    agree to ``4e-8``; the completeness test below counts a miss from ``1e-7 sigma_1``). The
    AAK figure built on it then stays a lower bound. ``method="dense"`` has no such caveat. Filters of a batch are spread over Numba's
    worker threads.

    The truncated SVD of this Hankel matrix is also the first step of Kung's realisation
    algorithm [4], which `mor.reduce` uses for balanced truncation of FIR filters.

    References
    ----------
    .. [1] V. M. Adamjan, D. Z. Arov and M. G. Krein, "Analytic properties of Schmidt pairs for
       a Hankel operator and the generalized Schur-Takagi problem," *Math. USSR-Sbornik*,
       vol. 15, no. 1, pp. 31-73, 1971.

    .. [2] G. H. Golub and C. F. Van Loan, *Matrix Computations*, 4th ed. Baltimore: Johns
       Hopkins University Press, 2013, ch. 10 (the Lanczos process).

    .. [3] H. D. Simon, "The Lanczos algorithm with partial reorthogonalization," *Mathematics
       of Computation*, vol. 42, no. 165, pp. 115-142, 1984.

    .. [4] S. Y. Kung, "A new identification and model reduction algorithm via singular value
       decomposition," in *Proc. 12th Asilomar Conference on Circuits, Systems and Computers*,
       1978, pp. 705-714.

    .. [5] B. N. Parlett, *The Symmetric Eigenvalue Problem*. Philadelphia: SIAM, 1998
       (Classics in Applied Mathematics 20).

    Examples
    --------
    A decaying cosine, ``h[k] = 0.5^k cos(0.3 k)``, is of order 2: its Hankel matrix has two
    non-zero singular values (the rest are below ``0.5^64``).

    >>> import numpy as np
    >>> import mor
    >>> k = np.arange(64)
    >>> h = 0.5**k * np.cos(0.3 * k)
    >>> s = mor.hankel_singular_values(h)
    >>> s.shape
    (63,)
    >>> print(np.round(s[:4], 6))
    [0.57717  0.025872 0.       0.      ]

    A batch of Hyena-like filters of length 512: the top 8 values of each filter, by the
    matrix-free Krylov path, agree with the dense SVD to the certified ``1e-11 sigma_1``.

    >>> from mor.demo import hyena_like_filters
    >>> filters = hyena_like_filters(4, 512)
    >>> s = mor.hankel_singular_values(filters, k=8)
    >>> s.shape
    (4, 8)
    >>> dense = mor.hankel_singular_values(filters, k=8, method="dense")
    >>> print(bool(np.all(np.abs(s - dense) <= 1e-11 * dense[:, :1])))
    True
    """
    if hasattr(h, "hankel_singular_values") and not isinstance(h, np.ndarray):
        values = h.hankel_singular_values()
        return values if k is None else values[..., :k]
    h = as_filters(h)
    scale = Scale.of_filters(h)  # computed on [1/2, 1)-scaled filters, scaled back exactly
    if device is None:
        values = hankel_svd(scale.down(h), k, method=method, rtol=rtol, vectors=False)[0]
    else:
        if k is None or method != "auto":
            raise ValueError("device= computes the k largest values: give k, and leave "
                             "method='auto'")
        k = _check_k(k, h.shape[-1] - 1)
        flat = scale.down(h).reshape(-1, h.shape[-1])
        values = device_blocks(flat, k, rtol=rtol, device=device, vectors=False)["sigma"]
        values = values.reshape(h.shape[:-1] + (k,))
    return scale.up(values, name="the Hankel singular values")


def auto_method(size: int, k: int) -> str:
    """The path ``method="auto"`` takes for ``k`` values of a ``size x size`` Hankel matrix:
    ``"dense"`` for ``size <= DENSE_MAX_SIZE`` or ``k > size / 4``, else ``"krylov"``."""
    return "dense" if (size <= DENSE_MAX_SIZE or 4 * k > size) else "krylov"


def hankel_svd(h: np.ndarray, k: int | None, *, method: str = "auto",
               rtol: float = KRYLOV_RTOL, vectors: bool = True, size: int | None = None,
               left_rows: int | None = None, kth_rtol: float = 0.0):
    r"""Leading singular triplets of the Hankel matrices of validated filters ``(..., L)``.

    Returns ``(sigma, u, v)`` with ``H ~ u diag(sigma) v^T``, ``u`` and ``v`` of shape
    ``(..., N, k)`` (``None`` when ``vectors`` is false), ``N = L - 1`` or the given ``size``
    (see :func:`hankel_matrix`). With ``left_rows``, ``u`` holds only its first ``left_rows``
    rows, ``(..., left_rows, k)``, the same values (the others are not formed: balanced
    truncation of an FIR filter needs only the first). The Krylov path certifies each value
    to ``max(rtol sigma_1, kth_rtol sigma_k)`` (`mor._numerics.lanczos`) and each vector to a
    residual norm of ``VECTOR_RESIDUAL rtol sigma_1``.
    """
    n = h.shape[-1] - 1 if size is None else int(size)
    if not 0 <= n <= h.shape[-1] - 1:
        raise ValueError(f"size must lie in [0, L - 1], got {n}")
    if k is None:
        k = n
    k = _check_k(k, n)
    _check_rtol(rtol)  # on every path (the dense one does not use it): a wrong value is a mistake
    _check_kth_rtol(kth_rtol)
    if method == "auto":
        method = auto_method(n, k)
    if method not in ("dense", "krylov"):
        raise ValueError(f"method must be 'auto', 'dense' or 'krylov', got {method!r}")
    batch = h.shape[:-1]
    flat = h.reshape(-1, h.shape[-1])
    rows = n if left_rows is None else min(int(left_rows), n)
    if k == 0 or flat.shape[0] == 0:
        empty = np.zeros(batch + (k,))
        vec = np.zeros(batch + (n, k)) if vectors else None
        return empty, None if vec is None else vec[..., :rows, :], vec
    if method == "dense":
        s, u, v = _dense(flat, k, vectors, n)
        u = None if u is None else u[:, :rows]
    else:
        s, u, v = _krylov(flat, k, rtol, kth_rtol, vectors, n, rows)
    s = s.reshape(batch + (k,))
    if vectors:
        u, v = u.reshape(batch + (rows, k)), v.reshape(batch + (n, k))
    return s, u, v


def _check_k(k, n: int) -> int:
    kind = np.asarray(k).dtype.kind
    if np.ndim(k) or not (kind in "iu" or (kind == "f" and float(k).is_integer())):
        raise ValueError(f"k must be an integer, got {k!r}")
    if not 0 <= int(k) <= n:
        raise ValueError(f"k must satisfy 0 <= k <= L - 1 = {n}, got {k}")
    return int(k)


def _is_real_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) \
        and not isinstance(x, (bool, np.bool_))


def _check_rtol(rtol) -> None:
    if not (_is_real_number(rtol) and np.isfinite(rtol) and rtol > 0):
        raise ValueError(f"rtol must be a positive finite number, got {rtol!r}")


def _check_kth_rtol(kth_rtol) -> None:
    if not (_is_real_number(kth_rtol) and 0 <= kth_rtol < 1):
        raise ValueError(f"kth_rtol must be a number in [0, 1), got {kth_rtol!r}")


def _dense(flat: np.ndarray, k: int, vectors: bool, size: int):
    hm = hankel_matrix(flat, size)
    if not vectors:
        return svd_gesvd(hm, compute_uv=False)[:, :k], None, None
    u, s, vh = svd_gesvd(hm)
    return s[:, :k], u[:, :, :k], np.swapaxes(vh[:, :k, :], 1, 2)


def _krylov(flat: np.ndarray, k: int, rtol: float, kth_rtol: float, vectors: bool, n: int,
            rows: int | None = None):
    """Top-``k`` Hankel singular triplets of each row by `mor._numerics.lanczos`, on worker
    threads, checked (`_lanczos`): rows whose values fail the checks are done again with full
    re-orthogonalisation (values alone), then densely. ``u`` holds its first ``rows`` rows
    (all by default)."""
    rows_u = n if rows is None else rows
    s, u, v, inconsistent, status = _lanczos(flat, k, rtol, kth_rtol, vectors, n, rows_u)
    rerun = inconsistent & (status != MISSED)
    if rerun.any() and not vectors:  # partial re-orthogonalisation let rounding through
        for part in np.array_split(np.flatnonzero(rerun), -(-rerun.sum() // RERUN_CHUNK)):
            s[part], _, _, inconsistent[part], status[part] = _lanczos(
                flat[part], k, rtol, kth_rtol, True, n)
    # a suspected missed copy is settled densely where that is affordable
    wrong = inconsistent | (status == MISSED) | ((status == SUSPECT) &
                                                 (n <= DENSE_FALLBACK_SIZE))
    if wrong.any():
        if n > DENSE_FALLBACK_SIZE:
            raise RuntimeError(
                f"the Krylov Hankel solver's values of filter {int(np.flatnonzero(wrong)[0])} "
                f"fail its checks (a multiple singular value missed); use method='dense'")
        rows = np.flatnonzero(wrong)
        ds, du, dv = _dense(flat[rows], k, vectors, n)
        s[rows] = ds
        if vectors:
            u[rows], v[rows] = du[:, :rows_u], dv
    return s, u, v


def _lanczos(flat: np.ndarray, k: int, rtol: float, kth_rtol: float, vectors: bool, n: int,
             rows: int | None = None):
    """`lanczos_rows` on worker threads: ``(s, u, v, inconsistent, status)``: where the values
    fail the Frobenius test, and the kernel's `mor._numerics.lanczos.CLEAR`, ``SUSPECT`` or
    ``MISSED`` (see the module notes)."""
    f = flat.shape[0]
    m = scipy.fft.next_fast_len(2 * n - 1, real=True)
    spectra = scipy.fft.rfft(flat[:, 1:2 * n], n=m, axis=-1)
    max_dim = min(n, max(8 * k, 512))
    theta = np.empty((f, k))
    q = np.empty((f, n, k)) if vectors else np.empty((f, 0, 0))
    dims = np.empty(f)
    status = np.zeros(f, dtype=np.int64)

    def run(sl):
        lanczos_rows(spectra[sl], n, m, k, rtol, kth_rtol, max_dim, theta[sl], q[sl], vectors,
                     dims[sl], status[sl])

    map_chunks(run, f, max(1, -(-f // (4 * worker_threads()))))
    if (dims < 0).any():
        raise RuntimeError(
            f"Krylov Hankel solver reached its basis limit ({max_dim} vectors) with relative "
            f"error bound {-dims.min():.1e} > rtol = {rtol:.1e}; use method='dense' or a "
            f"larger rtol")
    s = np.abs(theta)
    u = v = None
    if vectors:
        u, v = q[:, :rows] * np.where(theta < 0, -1.0, 1.0)[:, None, :], q
    # Single-vector Lanczos certifies each value's accuracy, not that no value above the k-th
    # was missed: a multiple singular value (a pure delay's are all 1) has one copy per
    # invariant subspace met (`status`). And rounding can leave spurious values: the values
    # must account for ||H||_F^2.
    # a full basis leaves no residual to certify by: with partial re-orthogonalisation its
    # values are only as good as the basis is orthogonal (3e-10 sigma_1 off was seen)
    full = (dims == n) & (not vectors)
    return s, u, v, _inconsistent(flat, s, rtol, kth_rtol, n) | full, status


def _inconsistent(flat: np.ndarray, s: np.ndarray, rtol: float, kth_rtol: float,
                  n: int) -> np.ndarray:
    """Rows whose top-``k`` values ``s`` (each within ``max(rtol s_1, kth_rtol s_k)`` of a
    singular value) cannot be those of their ``n x n`` Hankel matrix: their squares exceed
    ``||H||_F^2``, or with the ``n - k`` others at most ``s_k`` they fall short of it."""
    k = s.shape[1]
    g = flat[:, 1:2 * n]
    lags = np.arange(g.shape[1])
    weighted = np.square(g)
    weighted *= np.minimum(lags + 1, 2 * n - 1 - lags)  # entries of H holding g[lag]
    frob = weighted.sum(axis=1)
    top = s[:, 0]
    tol = np.maximum(rtol * top, kth_rtol * s[:, -1])
    slack = 2 * k * tol * top + 4 * n * np.finfo(float).eps * (top**2 + frob)
    found = (s**2).sum(axis=1)
    rest = (n - k) * (s[:, -1] + tol) ** 2
    return (found > frob + slack) | (found + rest < frob - slack)
