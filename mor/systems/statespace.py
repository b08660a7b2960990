"""``StateSpace``: a batch of dense real discrete-time SISO systems ``(A, B, C, D)``."""

from __future__ import annotations

import numpy as np

from mor._numerics.gramians import hankel_values_from_factors, stein_factor
from mor._numerics.linalg import svd_gesvd
from mor.conventions import as_filters


class StateSpace:
    r"""A batch of dense real discrete-time SISO systems.

    .. math::

        x[t+1] = A x[t] + B u[t], \qquad y[t] = C x[t] + D u[t],

    with ``A`` of shape ``(..., n, n)``, ``B`` and ``C`` of shape ``(..., n)`` and ``D`` of shape
    ``(...)``. Gramians are computed in square-root form (`gramian_factors`), so Hankel
    singular values and balanced truncation (``mor.reduce(sys, order, method="balanced")``)
    keep their accuracy down to ``eps * sigma_1``.
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
        r"""Square-root factors ``(L_c, L_o)`` of the Gramians, each ``(..., n, n)``.

        ``P = L_c L_c^T`` solves ``P = A P A^T + B B^T`` and ``Q = L_o L_o^T`` solves
        ``Q = A^T Q A + C^T C`` (squared Smith iteration in factored form).
        """
        if not np.all(self.is_stable()):
            raise ValueError("Gramians exist only for stable systems (spectral radius < 1)")
        lc = stein_factor(self.a, self.b[..., None])
        lo = stein_factor(np.swapaxes(self.a, -1, -2), self.c[..., None])
        return lc, lo

    def hankel_singular_values(self) -> np.ndarray:
        """Hankel singular values ``sigma(L_o^T L_c)``, sorted descending, shape ``(..., n)``."""
        return hankel_values_from_factors(*self.gramian_factors())

    def balanced_realization(self, order: int) -> tuple[np.ndarray, ...]:
        r"""Square-root balanced truncation to ``order`` states: ``(A_r, B_r, C_r, D, sigma)``.

        With ``L_o^T L_c = U \Sigma V^T``, the projections ``T = L_c V_r \Sigma_r^{-1/2}`` and
        ``W = L_o U_r \Sigma_r^{-1/2}`` give ``A_r = W^T A T``, ``B_r = W^T B``, ``C_r = C T``.
        """
        lc, lo = self.gramian_factors()
        u, s, vh = svd_gesvd(np.swapaxes(lo, -1, -2) @ lc)
        if order and np.any(s[..., order - 1] <= 0):
            raise ValueError(f"order {order} exceeds the minimal order of a system in the batch")
        scale = 1.0 / np.sqrt(s[..., :order])
        t = lc @ np.swapaxes(vh[..., :order, :], -1, -2) * scale[..., None, :]
        w = lo @ u[..., :order] * scale[..., None, :]
        wt = np.swapaxes(w, -1, -2)
        a_r = wt @ self.a @ t
        b_r = np.einsum("...ij,...j->...i", wt, self.b)
        c_r = np.einsum("...i,...ij->...j", self.c, t)
        return a_r, b_r, c_r, self.d.copy(), s
