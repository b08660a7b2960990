r"""Square-root balanced truncation (BT), optionally with singular-perturbation DC matching.

FIR filters
    The shift-register realisation ``(A = shift, B = e_1, C = h[1:], D = h[0])`` has
    controllability Gramian ``I`` and observability Gramian ``H^T H`` with ``H`` the Hankel
    matrix, so square-root BT needs only the Hankel SVD ``H = U Sigma V^T`` (this is Kung's
    method / ERA on the zero-padded Markov parameters). The projections
    ``T = V_r Sigma_r^{-1/2}`` and ``W = H U_r Sigma_r^{-1/2}`` give

    .. math::

        A_r = \Sigma_r^{1/2} V_r[1:]^T V_r[:-1] \Sigma_r^{-1/2}, \quad
        B_r = \Sigma_r^{1/2} V_r[0]^T, \quad C_r = U_r[0] \Sigma_r^{1/2}, \quad D_r = h[0],

    because ``U_r^T H = Sigma_r V_r^T`` and ``A V_r`` shifts the rows of ``V_r`` down by one.
    Balanced realisations are nested: order ``d`` is the leading ``d x d`` block of order ``r``.

Dense systems
    ``StateSpace.balanced_realization`` (square-root Gramian factors).

Guarantees (strict ``sigma_d > sigma_{d+1}``): the reduced model is stable, and
``sigma_{d+1} <= ||H - H_d||_inf <= 2 sum_{i>d} sigma_i``.

Singular perturbation (``dc_match=True``) replaces truncation of the discarded states
``x_2`` by their steady state ``x_2 = (I - A_22)^{-1} (A_21 x_1 + B_2 u)`` (discrete time):

.. math::

    A_d = A_{11} + A_{12} (I - A_{22})^{-1} A_{21}, \quad
    B_d = B_1 + A_{12} (I - A_{22})^{-1} B_2, \\
    C_d = C_1 + C_2 (I - A_{22})^{-1} A_{21}, \quad
    D_d = D + C_2 (I - A_{22})^{-1} B_2,

which matches the DC gain ``H(1)`` of the balanced model it starts from, keeps stability and
the same ``2 sum sigma`` bound, and refits the direct term. For FIR filters on the dense
Hankel path it starts from the whole balanced realisation (all states above the spectrum's
rounding floor), so the filter's own DC gain is matched; on the Krylov path from the balanced
model of an intermediate order ``r = max(2 d, d + 32)``, whose DC gain is within
``2 sum_{i>r} sigma_i`` of the filter's.
"""

from __future__ import annotations

import numpy as np

from mor.analysis.spectrum import DENSE_MAX_SIZE, device_blocks, hankel_svd
from mor.methods.base import Method, Models, register
from mor.systems.modal import ModalSSM

#: Certified accuracy of the Krylov Hankel SVD used by BT, relative to ``sigma_1``: the values
#: to ``BT_RTOL``, the singular vectors to residual norms of ``1e3 BT_RTOL`` (`mor._numerics.lanczos`),
#: so the model is within about ``1e-7 sigma_1`` of exact square-root BT.
BT_RTOL = 1e-10
#: ... the values to ``BT_KTH_RTOL sigma_{d+1}`` where that is larger (``d`` the largest order
#: asked for): the model is built from the Ritz vectors, certified as before, and their
#: Rayleigh quotients; the values themselves give the AAK floor ``sigma_{d+1}`` and the BT
#: bound, here to 0.1% of the floor. On issue 22's filters (plateaus of clustered values
#: near ``1e-5 sigma_1``, where ``1e-10 sigma_1`` took the most vectors) 20% fewer Hankel
#: products (`benchmarks/RESULTS.md`).
BT_KTH_RTOL = 1e-3
#: Singular vectors held at once while building balanced realisations (``16 (L - 1) k`` bytes
#: per filter for ``k`` triplets): 4,096 filters of length 8,192 at order 64 would need 35 GB.
BT_CHUNK_BYTES = 2**28


@register
class BalancedFamily(Method):
    """Balanced realisations of a flat batch, from which models of any order are cut.

    Attributes
    ----------
    hsv : ndarray ``(F, k)``
        Leading Hankel singular values.
    rank : ndarray ``(F,)``
        Largest usable order: the number of singular values above the accuracy floor of the
        spectrum (``sqrt``-scaled states below it would be noise).
    """

    name = "balanced"
    takes_statespace = True

    def __init__(self, a, b, c, d, hsv, rank, *, dc_match: bool = False, vectors=None):
        if not isinstance(dc_match, (bool, np.bool_)):
            raise ValueError(f"dc_match must be True or False, got {dc_match!r}")
        self.a, self.b, self.c, self.d = a, b, c, d
        self.hsv, self.rank, self.dc_match = hsv, rank, dc_match
        self.vectors = vectors

    @classmethod
    def from_fir(cls, h: np.ndarray, max_order: int, *, dc_match: bool = False,
                 hankel_method: str = "auto", rtol: float = BT_RTOL,
                 kth_rtol: float = BT_KTH_RTOL, device=None) -> "BalancedFamily":
        """Balanced realisations of flat FIR filters ``(F, L)`` up to ``max_order`` states,
        computed for `BT_CHUNK_BYTES` worth of singular vectors at a time.

        Parameters
        ----------
        dc_match : bool
            Singular perturbation instead of truncation: the DC gain matched (module notes).
        hankel_method : {"auto", "dense", "krylov"}
            How the Hankel SVD is computed (`mor.hankel_singular_values`).
        rtol : float
            Certified accuracy of the Krylov singular values, relative to ``sigma_1``; the
            singular vectors to residual norms of ``1e3 rtol sigma_1``.
        kth_rtol : float
            ... or of the values relative to the last computed, ``sigma_{max_order+1}``,
            where that is the larger allowance (0: ``rtol`` alone).
        device : str or torch.device, optional
            A torch device (``"cuda"``) to compute the Hankel decomposition on, by block
            Lanczos with the same certificate (`mor.hankel_singular_values`); ``None``
            (default): the CPU paths. Needs ``import mor.torch``.
        """
        return cls.with_vectors(h, max_order, None, dc_match=dc_match,
                                hankel_method=hankel_method, rtol=rtol, kth_rtol=kth_rtol,
                                device=device)

    @classmethod
    def with_vectors(cls, h: np.ndarray, max_order: int, keep_vectors: range | None, *,
                     dc_match: bool = False, hankel_method: str = "auto",
                     rtol: float = BT_RTOL, kth_rtol: float = BT_KTH_RTOL,
                     device=None) -> "BalancedFamily":
        """`from_fir`, keeping the columns ``j`` in ``keep_vectors`` of the right singular
        vectors ``v`` (``H ~ u diag(hsv) v^T``, those of the ``max_order + 1`` computed) in
        the attribute ``vectors``, ``{j: v[:, :, j]}`` of shape ``(F, L - 1)`` each (``None``
        for ``keep_vectors=None``): the exact Hankel-norm construction's Schmidt vectors,
        from the same decomposition (on the CPU only)."""
        if device is not None and keep_vectors is not None:
            raise ValueError("the singular vectors are kept on the CPU paths only (device=None)")
        size = h.shape[-1] - 1
        keep = max_order
        if dc_match:
            whole = device is None and (hankel_method == "dense" or size <= DENSE_MAX_SIZE)
            keep = size if whole else min(size, max(2 * max_order, max_order + 32))
        k = min(size, keep + 1)
        # the device path holds no vectors here: it batches the filters by its own memory
        rows = max(1, BT_CHUNK_BYTES // (16 * max(size, 1) * max(k, 1))) if device is None \
            else max(h.shape[0], 1)
        columns = range(0) if keep_vectors is None else keep_vectors
        parts = [_realizations(h[i:i + rows], keep, k, hankel_method, (rtol, kth_rtol), columns,
                               device)
                 for i in range(0, max(h.shape[0], 1), rows)]
        a, b, c, s, rank, v = (np.concatenate(x) for x in zip(*parts))
        return cls(a, b, c, h[:, 0].copy(), s, rank, dc_match=dc_match,
                   vectors=None if keep_vectors is None else {
                       col: v[:, :, j] for j, col in enumerate(columns) if j < v.shape[-1]})

    @classmethod
    def from_statespace(cls, sys, max_order: int, *, dc_match: bool = False) -> "BalancedFamily":
        """Balanced realisations of a flat `mor.StateSpace` batch (square-root Gramian
        factors); ``dc_match`` as for FIR filters."""
        n = sys.n_states
        # one balanced realisation (the Gramians once), truncated below: the leading block
        # of a balanced truncation is the balanced truncation of that order
        a, b, c, d, s = sys.balanced_realization(n if dc_match else min(max_order, n))
        rank = (s > n * np.finfo(float).eps * 10 * s[:, :1]).sum(axis=1)
        r = int(rank.max(initial=0)) if dc_match else min(max_order, int(rank.max(initial=0)))
        return cls(a[:, :r, :r], b[:, :r], c[:, :r], d, s, np.minimum(rank, n),
                   dc_match=dc_match)

    def model(self, orders: np.ndarray, which: np.ndarray | None = None) -> Models:
        """Compact modal models of given orders.

        ``orders`` (``(F',)``, at most `rank`) for the filters ``which`` (all by default).
        ``conversion_error`` is what diagonalising the balanced realisation lost (see
        `ModalSSM.from_dense`).
        """
        which = np.arange(self.d.shape[0]) if which is None else which
        f = orders.shape[0]
        groups = {int(o): np.flatnonzero(orders == o) for o in np.unique(orders)}
        width = max(groups, default=0)
        poles = np.zeros((f, width), dtype=np.complex128)
        residues = np.zeros((f, width), dtype=np.complex128)
        direct = self.d[which].copy()
        lost = np.zeros(f)
        for order, idx in groups.items():
            a, b, c, d = self._realization(order, which[idx])
            ssm = ModalSSM.from_dense(a, b, c, d)
            pc, rc, dc = ssm.compact()
            poles[idx, : pc.shape[1]] = pc
            residues[idx, : pc.shape[1]] = rc
            direct[idx] = dc
            lost[idx] = ssm.info["conversion_error"]
        return Models(poles, residues, direct, lost, np.zeros(f, dtype=np.int64))

    def _realization(self, order: int, idx: np.ndarray):
        a, b, c, d = self.a[idx], self.b[idx], self.c[idx], self.d[idx]
        if not self.dc_match:
            return a[:, :order, :order], b[:, :order], c[:, :order], d
        a11, a12 = a[:, :order, :order], a[:, :order, order:]
        a21, a22 = a[:, order:, :order], a[:, order:, order:]
        b1, b2, c1, c2 = b[:, :order], b[:, order:], c[:, :order], c[:, order:]
        # the states beyond a filter's rank are zero (from zero singular values): keep them out
        live = np.arange(a.shape[-1] - order)[None, :] < (self.rank[idx] - order)[:, None]
        mask = live[:, :, None] & live[:, None, :]
        ia22 = np.eye(a22.shape[-1]) - np.where(mask, a22, 0.0)
        rhs = np.concatenate([np.where(live[:, :, None], a21, 0.0),
                              np.where(live, b2, 0.0)[:, :, None]], axis=2)
        sol = np.linalg.solve(ia22, rhs)
        c2 = np.where(live, c2, 0.0)
        a_r = a11 + a12 @ sol[:, :, :order]
        b_r = b1 + (a12 @ sol[:, :, order:])[:, :, 0]
        c_r = c1 + np.einsum("fi,fij->fj", c2, sol[:, :, :order])
        d_r = d + np.einsum("fi,fi->f", c2, sol[:, :, order])
        return a_r, b_r, c_r, d_r


def _realizations(h: np.ndarray, keep: int, k: int, hankel_method: str,
                  tolerance: tuple[float, float], columns: range, device=None):
    """``(A, B, C, sigma, rank, v[..., columns])``: the order-``keep`` balanced realisations
    of flat filters ``h`` from their ``k`` leading Hankel singular triplets (module notes),
    and the right singular vectors of ``columns``. They need only ``sigma``, the first rows
    ``u_0``, ``v_0`` and the shifted Gram matrix ``V[1:]^T V[:-1]``, which a device computes
    where the vectors lie (`device_blocks`)."""
    size, f = h.shape[-1] - 1, h.shape[0]
    rtol, kth_rtol = tolerance
    if device is None:
        s, u, v = hankel_svd(h, k, method=hankel_method, rtol=rtol, left_rows=1,
                             kth_rtol=kth_rtol)
        kept = v[:, :, columns.start:columns.stop].copy()  # a slice: fancy indexing is slow
    else:
        blocks = device_blocks(h, k, rtol=rtol, kth_rtol=kth_rtol, device=device)
        s, kept = blocks["sigma"], np.zeros((f, size, 0))
    if keep == 0:
        return np.zeros((f, 0, 0)), np.zeros((f, 0)), np.zeros((f, 0)), s, \
            np.zeros(f, dtype=np.int64), kept
    if device is None:
        vr = v[:, :, :keep]
        u0, v0, gram = u[:, 0, :keep], vr[:, 0], np.swapaxes(vr[:, 1:], 1, 2) @ vr[:, :-1]
    else:
        u0, v0 = blocks["u0"][:, :keep], blocks["v0"][:, :keep]
        gram = blocks["shifted_gram"][:, :keep, :keep]
    floor = 10 * max(rtol, size * np.finfo(float).eps)
    rank = np.minimum((s > floor * s[:, :1]).sum(axis=1), keep)
    sqrt_s = np.sqrt(s[:, :keep])
    inv = np.divide(1.0, sqrt_s, out=np.zeros_like(sqrt_s), where=sqrt_s > 0)
    a = sqrt_s[:, :, None] * gram * inv[:, None, :]
    return a, sqrt_s * v0, u0 * sqrt_s, s, rank, kept
