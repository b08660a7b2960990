"""``StateSpace``: a batch of dense real discrete-time SISO systems ``(A, B, C, D)``."""

from __future__ import annotations

import numpy as np

from mor._numerics.gramians import gramian_pair, hankel_values_from_factors
from mor._numerics.linalg import svd_gesvd
from mor.conventions import as_filters


class StateSpace:
    r"""A batch of dense real discrete-time SISO systems ``(A, B, C, D)``.

    .. math::

        x[t+1] = A x[t] + B u[t], \qquad y[t] = C x[t] + D u[t], \qquad
        h[0] = D, \quad h[k] = C A^{k-1} B \ (k \ge 1),

    with ``A`` of shape ``(..., n, n)``, ``B`` and ``C`` of shape ``(..., n)`` and ``D`` of shape
    ``(...)`` (leading axes are a batch). Gramians are computed in square-root form
    (`gramian_factors`), so Hankel singular values and balanced truncation
    (``mor.reduce(sys, order, method="balanced")``) keep their accuracy down to
    ``eps * sigma_1``.

    Parameters
    ----------
    a : array_like, shape (..., n, n)
        State matrices.
    b : array_like, shape (..., n)
        Input vectors.
    c : array_like, shape (..., n)
        Output vectors.
    d : array_like, shape (...)
        Direct terms.

    Attributes
    ----------
    a, b, c, d : ndarray
        The matrices as float64 arrays of the shapes above.

    Raises
    ------
    ValueError
        If ``A`` is not square, a shape does not match, an entry is complex, NaN or Inf.

    See Also
    --------
    StateSpace.from_fir : The shift-register realisation of FIR filters.

    ModalSSM.from_dense : The modal (diagonal) form of dense systems.

    mor.reduce : Balanced truncation or Hankel-norm approximation of a ``StateSpace``
        (``method="balanced"`` or ``"hankel"``, with ``order`` or ``modes``).

    Notes
    -----
    The Gramians ``P = A P A^T + B B^T`` and ``Q = A^T Q A + C^T C`` of a stable system are
    computed as factors ``P = L_c L_c^T``, ``Q = L_o L_o^T`` by a squared Smith iteration [3]
    with QR compression (in the manner of Hammarling [4]); the Hankel singular values are the
    singular values of ``L_o^T L_c``, and `balanced_realization` is the square-root method of
    Laub et al. [2] and Tombs & Postlethwaite [5] for Moore's balanced truncation [1]. Working
    with the factors, not with ``sqrt(eig(P Q))``, keeps small values accurate to
    ``eps * sigma_1`` instead of ``sqrt(eps) * sigma_1``.

    References
    ----------
    .. [1] B. C. Moore, "Principal component analysis in linear systems: controllability,
       observability, and model reduction," *IEEE Transactions on Automatic Control*,
       vol. 26, no. 1, pp. 17-32, 1981.

    .. [2] A. J. Laub, M. T. Heath, C. C. Paige and R. C. Ward, "Computation of system
       balancing transformations and other applications of simultaneous diagonalization
       algorithms," *IEEE Transactions on Automatic Control*, vol. 32, no. 2, pp. 115-122,
       1987.

    .. [3] R. A. Smith, "Matrix equation XA + BX = C," *SIAM Journal on Applied Mathematics*,
       vol. 16, no. 1, pp. 198-201, 1968.

    .. [4] S. J. Hammarling, "Numerical solution of the stable, non-negative definite
       Lyapunov equation," *IMA Journal of Numerical Analysis*, vol. 2, no. 3, pp. 303-323,
       1982.

    .. [5] M. S. Tombs and I. Postlethwaite, "Truncated balanced realization of a stable
       non-minimal state-space system," *International Journal of Control*, vol. 46, no. 4,
       pp. 1319-1330, 1987.

    Examples
    --------
    The shift realisation of a filter of four taps has three states and the filter's Hankel
    singular values:

    >>> import numpy as np
    >>> import mor
    >>> h = np.array([1.0, 0.5, 0.25, 0.125])
    >>> sys = mor.StateSpace.from_fir(h)
    >>> sys.n_states, sys.shape
    (3, ())
    >>> print(sys.impulse(6))
    [1.    0.5   0.25  0.125 0.    0.   ]
    >>> print(np.allclose(sys.hankel_singular_values(), mor.hankel_singular_values(h)))
    True

    Balanced truncation of the realisation of an order-2 filter recovers its two poles
    ``0.5 exp(+-0.3i)``:

    >>> k = np.arange(64)
    >>> g = 0.5**k * np.cos(0.3 * k)
    >>> a, b, c, d, sigma = mor.StateSpace.from_fir(g).balanced_realization(2)
    >>> print(np.round(np.abs(np.linalg.eigvals(a)), 6), np.round(sigma[:3], 6))
    [0.5 0.5] [0.57717  0.025872 0.      ]
    >>> print(np.allclose(mor.reduce(mor.StateSpace.from_fir(g), 2).impulse(64), g))
    True
    """

    def __init__(self, a, b, c, d):
        a = np.asarray(a)
        if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
            raise ValueError(f"A must have shape (..., n, n), got {a.shape}")
        n = a.shape[-1]
        batch = a.shape[:-2]
        arrays = []
        for name, arr, shape in (("A", a, a.shape), ("B", b, batch + (n,)),
                                 ("C", c, batch + (n,)), ("D", d, batch)):
            arr = np.asarray(arr)
            if np.iscomplexobj(arr):
                raise ValueError(f"{name} must be real")
            if arr.size != int(np.prod(shape)):
                raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
            arr = arr.astype(np.float64).reshape(shape)
            if not np.isfinite(arr).all():
                raise ValueError(f"{name} has NaN or Inf entries")
            arrays.append(arr)
        self.a, self.b, self.c, self.d = arrays

    @classmethod
    def from_fir(cls, h) -> "StateSpace":
        r"""The shift-register realisation of FIR filters ``h`` (``(..., L)``), of order ``L - 1``.

        ``A`` is the down-shift, ``B = e_1``, ``C = (h[1], ..., h[L-1])``, ``D = h[0]``; its
        controllability Gramian is the identity and its Hankel singular values are those of the
        Hankel matrix of the taps.
        """
        h = as_filters(h)
        n = h.shape[-1] - 1
        a = np.broadcast_to(np.eye(n, k=-1), h.shape[:-1] + (n, n))
        b = np.zeros(h.shape[:-1] + (n,))
        if n:
            b[..., 0] = 1.0
        return cls(a, b, h[..., 1:], h[..., 0])

    @property
    def shape(self) -> tuple[int, ...]:
        """Batch shape."""
        return self.d.shape

    @property
    def n_states(self) -> int:
        """State dimension ``n``."""
        return self.a.shape[-1]

    def __repr__(self) -> str:
        return f"StateSpace(shape={self.shape}, n_states={self.n_states})"

    def is_stable(self, margin: float = 0.0) -> np.ndarray:
        """``True`` where the spectral radius of ``A`` is below ``1 - margin``."""
        if self.n_states == 0:
            return np.ones(self.shape, dtype=bool)
        return np.abs(np.linalg.eigvals(self.a)).max(axis=-1) < 1.0 - margin

    def impulse(self, length: int) -> np.ndarray:
        """Impulse response ``h[0] = D``, ``h[k] = C A^{k-1} B``, shape ``(..., L)``."""
        out = np.zeros(self.shape + (int(length),))
        if length <= 0:
            return out
        out[..., 0] = self.d
        x = self.b.copy()
        for k in range(1, length):
            out[..., k] = np.einsum("...i,...i->...", self.c, x)
            x = np.einsum("...ij,...j->...i", self.a, x)
        return out

    def gramian_factors(self) -> tuple[np.ndarray, np.ndarray]:
        r"""Square-root factors ``(L_c, L_o)`` of the Gramians, each ``(..., n, k)``.

        ``P = L_c L_c^T`` solves ``P = A P A^T + B B^T`` and ``Q = L_o L_o^T`` solves
        ``Q = A^T Q A + C^T C`` (squared Smith iteration in factored form, the squarings of
        ``A`` shared). ``k <= n``: a factor of low numerical rank keeps only that many columns
        (the largest rank in the batch), see `mor._numerics.gramians`.

        Raises
        ------
        ValueError
            If a system is not stable (spectral radius ``>= 1``).
        """
        return gramian_pair(self.a, self.b[..., None], self.c[..., None])

    def hankel_singular_values(self) -> np.ndarray:
        """Hankel singular values ``sigma(L_o^T L_c)``, sorted descending, shape ``(..., n)``."""
        return hankel_values_from_factors(*self.gramian_factors())

    def balanced_realization(self, order: int) -> tuple[np.ndarray, ...]:
        r"""Square-root balanced truncation to ``order`` states: ``(A_r, B_r, C_r, D, sigma)``.

        With ``L_o^T L_c = U \Sigma V^T``, the projections ``T = L_c V_r \Sigma_r^{-1/2}`` and
        ``W = L_o U_r \Sigma_r^{-1/2}`` give ``A_r = W^T A T``, ``B_r = W^T B``, ``C_r = C T``.
        A system of a smaller minimal order (a zero Hankel singular value, e.g. a zero system in
        a batch) gets zero states beyond it: no dynamics, no input, no output. ``sigma`` holds
        all ``n`` Hankel singular values (zero beyond the factors' numerical rank).
        """
        lc, lo = self.gramian_factors()
        u, s, vh = svd_gesvd(np.swapaxes(lo, -1, -2) @ lc)
        short = max(order, self.n_states) - s.shape[-1]  # zero values beyond the factors' rank
        if short > 0:
            u = np.concatenate([u, np.zeros(u.shape[:-1] + (short,))], axis=-1)
            vh = np.concatenate([vh, np.zeros(vh.shape[:-2] + (short, vh.shape[-1]))], axis=-2)
            s = np.concatenate([s, np.zeros(s.shape[:-1] + (short,))], axis=-1)
        kept = s[..., :order]
        scale = np.divide(1.0, np.sqrt(kept), out=np.zeros_like(kept), where=kept > 0)
        t = lc @ np.swapaxes(vh[..., :order, :], -1, -2) * scale[..., None, :]
        w = lo @ u[..., :order] * scale[..., None, :]
        wt = np.swapaxes(w, -1, -2)
        a_r = wt @ self.a @ t
        b_r = np.einsum("...ij,...j->...i", wt, self.b)
        c_r = np.einsum("...i,...ij->...j", self.c, t)
        return a_r, b_r, c_r, self.d.copy(), s
