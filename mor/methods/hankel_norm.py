r"""Optimal Hankel-norm approximation (AAK / Glover) in discrete time.

For a stable system ``G`` with Hankel singular values ``sigma_1 >= ... >= sigma_n`` and an
order ``d`` with ``sigma_d > sigma_{d+1} > sigma_{d+2}``, the optimal Hankel-norm
approximant ``G_d`` of order ``d`` has ``||G - G_d||_H = sigma_{d+1}``, the least any order-``d``
system can have (AAK). It is computed as follows (Glover 1984):

1. a balanced realisation ``(A, B, C, D)`` of ``G``: for FIR filters, balanced truncation to an
   intermediate order ``r`` (see `mor.methods.balanced`), which changes ``G`` by at most
   ``2 sum_{i>r} sigma_i`` (the *truncation tail*, reported);
2. the bilinear map ``z = (1 + s) / (1 - s)`` to continuous time,

   .. math::

       A_c = (I + A)^{-1}(A - I), \ B_c = \sqrt2 (I + A)^{-1} B, \
       C_c = \sqrt2 C (I + A)^{-1}, \ D_c = D - C (I + A)^{-1} B,

   which keeps the realisation balanced with the same ``sigma`` and preserves the H-infinity
   and Hankel norms;
3. Glover's all-pass construction: with the ``sigma_{d+1}`` state moved last,
   ``Sigma = diag(Sigma_1, sigma)``, ``Gamma = Sigma_1^2 - sigma^2 I`` and the sign ``u`` with
   ``B_2 = -C_2^T u``,

   .. math::

       \hat A = \Gamma^{-1}(\sigma^2 A_{11}^T + \Sigma_1 A_{11} \Sigma_1
                - \sigma C_1^T u B_1^T), \quad
       \hat B = \Gamma^{-1}(\Sigma_1 B_1 + \sigma C_1^T u), \quad
       \hat C = C_1 \Sigma_1 + \sigma u B_1^T,

   so that ``G - G_hat`` is ``sigma_{d+1}`` times an all-pass function, and ``A_hat`` has
   exactly ``d`` stable eigenvalues;
4. the map back to discrete time and the stable part (the modes with ``|lambda| < 1``): the
   optimal Hankel-norm approximant;
5. the direct term that minimises the H-infinity error, ``D = argmin_D ||G - G_d - D||_inf``
   (a convex problem in one real variable, solved by golden section on an exact frequency
   grid). Glover's theorem guarantees a ``D`` with ``||G - G_d - D||_inf <= sum_{i>d} sigma_i``
   (each distinct value once), so the minimiser meets that bound, up to the truncation tail.
"""

from __future__ import annotations

import numpy as np

from mor._numerics import freq
from mor._numerics.golden import golden_max
from mor.analysis.bounds import bounds_from_hsv, hankel_frobenius_sq
from mor.conventions import relative
from mor.methods.balanced import BT_RTOL, BalancedFamily
from mor.methods.base import Method, Models, register
from mor.systems.modal import ModalSSM



def to_continuous(a, b, c, d):
    """Bilinear map ``z = (1 + s)/(1 - s)`` of batched discrete systems ``(F, n, n)``."""
    eye = np.eye(a.shape[-1])
    inv = np.linalg.inv(eye + a)
    return (inv @ (a - eye), np.sqrt(2) * np.einsum("fij,fj->fi", inv, b),
            np.sqrt(2) * np.einsum("fi,fij->fj", c, inv), d - np.einsum("fi,fij,fj->f", c, inv, b))


def to_discrete(a, b, c, d):
    """Inverse of `to_continuous`."""
    eye = np.eye(a.shape[-1])
    inv = np.linalg.inv(eye - a)
    return ((eye + a) @ inv, np.sqrt(2) * np.einsum("fij,fj->fi", inv, b),
            np.sqrt(2) * np.einsum("fi,fij->fj", c, inv), d + np.einsum("fi,fij,fj->f", c, inv, b))


def glover(a, b, c, sigma, order: int):
    """Glover's all-pass construction on balanced continuous-time SISO systems.

    ``a`` ``(F, r, r)``, ``b`` and ``c`` ``(F, r)``, ``sigma`` ``(F, r)`` (descending); returns
    ``(A_hat, B_hat, C_hat, u)`` of order ``r - 1`` (``u = +-1``: ``D_hat = D - sigma u``).
    """
    r = a.shape[-1]
    keep = np.r_[np.arange(order), np.arange(order + 1, r)]
    s1 = sigma[:, keep]
    s = sigma[:, order]
    a11 = a[:, keep][:, :, keep]
    b1, c1 = b[:, keep], c[:, keep]
    u = -np.sign(b[:, order] * c[:, order])
    u[u == 0] = 1.0
    gamma = s1**2 - s[:, None] ** 2
    cu = (s * u)[:, None] * c1
    num_a = (s[:, None, None] ** 2 * np.swapaxes(a11, 1, 2) + s1[:, :, None] * a11 * s1[:, None, :]
             - cu[:, :, None] * b1[:, None, :])
    a_hat = num_a / gamma[:, :, None]
    b_hat = (s1 * b1 + cu) / gamma
    c_hat = c1 * s1 + (s * u)[:, None] * b1
    return a_hat, b_hat, c_hat, u


@register
class HankelNormFamily(Method):
    """Optimal Hankel-norm approximants of any order, from one balanced realisation.

    Attributes
    ----------
    hsv, rank : as in `mor.methods.balanced.BalancedFamily`
    tail : ndarray ``(F,)``
        The truncation tail ``2 sum_{i>r} sigma_i`` of the intermediate balanced model
        (certified estimate when the spectrum is partial; zero for a ``StateSpace``).
    """

    name = "hankel"
    takes_statespace = True

    def __init__(self, balanced: BalancedFamily, reference, tail: np.ndarray,
                 direct: str = "hinf"):
        if direct not in ("hinf", "keep"):
            raise ValueError(f"direct must be 'hinf' or 'keep', got {direct!r}")
        self.direct_rule = direct
        self._grid = None
        self.balanced = balanced
        self.reference = reference  # a freq response of the systems being approximated
        self.hsv, self.rank, self.d, self.tail = balanced.hsv, balanced.rank, balanced.d, tail

    @classmethod
    def from_fir(cls, h: np.ndarray, max_order: int, *, intermediate_order: int | None = None,
                 direct: str = "hinf", hankel_method: str = "auto", rtol: float = BT_RTOL
                 ) -> "HankelNormFamily":
        """Families for flat FIR filters ``(F, L)``.

        Parameters
        ----------
        intermediate_order : int, optional
            Order ``r`` of the balanced model approximated (step 1), in ``[max_order, L - 1]``;
            default ``min(L - 1, max(2 d, d + 32))``. Its truncation tail is reported.
        direct : {"hinf", "keep"}
            ``"hinf"``: the direct term minimising the H-infinity error (step 5); ``"keep"``:
            the filter's own ``h[0]``, better for the ``l2`` error over the taps.
        hankel_method : {"auto", "dense", "krylov"}
            How the Hankel SVD is computed (`mor.hankel_singular_values`).
        rtol : float
            Certified accuracy of the Krylov singular values, relative to ``sigma_1``.

        Notes
        -----
        ``info`` adds ``truncation_tail`` and ``glover_bound`` (`bounds`).
        """
        size = h.shape[-1] - 1
        r = min(size, max(2 * max_order, max_order + 32)) if intermediate_order is None else (
            int(intermediate_order))
        if not max_order <= r <= size:
            raise ValueError(f"intermediate_order must lie in [{max_order}, {size}], got {r}")
        balanced = BalancedFamily.from_fir(h, r, hankel_method=hankel_method, rtol=rtol)
        bt = bounds_from_hsv(balanced.hsv, hankel_frobenius_sq(h), size).bt
        bt = np.concatenate([bt, np.zeros((h.shape[0], 1))], axis=1)  # no tail at order L - 1
        tail = np.take_along_axis(bt, np.minimum(balanced.rank, r)[:, None], axis=1)[:, 0]
        return cls(balanced, freq.FirResponse(h), tail, direct)

    @classmethod
    def from_statespace(cls, sys, max_order: int, *, direct: str = "hinf"
                        ) -> "HankelNormFamily":
        """Families for a flat `mor.StateSpace` batch (its whole balanced realisation, no
        truncation tail); ``direct`` as for FIR filters."""
        balanced = BalancedFamily.from_statespace(sys, sys.n_states)
        return cls(balanced, freq.DenseResponse(sys.a, sys.b, sys.c, sys.d),
                   np.zeros(sys.d.shape[0]), direct)

    def model(self, orders: np.ndarray, which: np.ndarray | None = None) -> Models:
        """Compact models; see `BalancedFamily.model`. Orders at or above a filter's rank are its balanced
        truncation at the rank (exact up to the truncation tail)."""
        which = np.arange(self.d.shape[0]) if which is None else which
        f = orders.shape[0]
        width = int(orders.max(initial=0))
        poles = np.zeros((f, width), dtype=np.complex128)
        residues = np.zeros_like(poles)
        direct = self.d[which].copy()
        lost = np.zeros(f)
        sizes = self.rank[which]
        exact = orders >= sizes
        if exact.any():
            part = self.balanced.model(sizes[exact], which[exact])
            idx = np.flatnonzero(exact)
            poles[idx, : part.width], residues[idx, : part.width] = part.poles, part.residues
            direct[idx], lost[idx] = part.direct, part.conversion_error
        for key in {(int(o), int(n)) for o, n in zip(orders[~exact], sizes[~exact])}:
            idx = np.flatnonzero(~exact & (orders == key[0]) & (sizes == key[1]))
            p, r, e = self._approximant(which[idx], *key)
            poles[idx, : p.shape[1]], residues[idx, : p.shape[1]], lost[idx] = p, r, e
        if (~exact).any() and self.direct_rule == "hinf":
            idx = np.flatnonzero(~exact)
            direct[idx] = self._best_direct(which[idx], poles[idx], residues[idx])
        return Models(poles, residues, direct, lost, np.zeros(f, dtype=np.int64))

    def bounds(self, errors: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
        """Glover's bound ``||G - G_d - D||_inf <= sum_{i>d} sigma_i``, plus the truncation tail
        of the intermediate balanced model: ``truncation_tail`` and ``glover_bound`` (relative
        to ``max |H|``), where the errors hold ``peak`` and ``bt_bound``."""
        if "peak" not in errors:
            return {}
        tail = relative(self.tail[rows], errors["peak"])
        return {"truncation_tail": tail, "glover_bound": errors["bt_bound"] / 2 + tail}

    def _approximant(self, which, order: int, size: int):
        bal = self.balanced
        a, b, c = bal.a[which, :size, :size], bal.b[which, :size], bal.c[which, :size]
        sigma = bal.hsv[which, :size]
        ac, bc, cc, _ = to_continuous(a, b, c, bal.d[which])
        a_hat, b_hat, c_hat, _ = glover(ac, bc, cc, sigma, order)
        ad, bd, cd, dd = to_discrete(a_hat, b_hat, c_hat, np.zeros(len(which)))
        whole = ModalSSM.from_dense(ad, bd, cd, dd)
        pc, rc, _ = whole.compact()
        stable = np.abs(pc) < 1.0
        pc, rc = np.where(stable, pc, 0), np.where(stable, rc, 0)
        part = ModalSSM.from_compact(pc, rc, np.zeros(len(which)))
        lost = np.asarray(whole.info["conversion_error"], dtype=float).reshape(-1)
        # Glover: exactly `order` stable poles; anything else means a repeated sigma_{d+1}
        wrong = part.order != order
        lost = np.where(wrong, np.inf, lost)
        pc, rc, _ = part.compact()
        return pc, rc, lost

    def _best_direct(self, which, poles, residues) -> np.ndarray:
        """``argmin_D max_w |G - G_d - D|`` per system, on the exact grid of `mor._numerics.freq`."""
        m = freq.grid_size(self.reference.size)
        if self._grid is None:  # the reference's exact grid, once for every search step
            self._grid = self.reference.grid(m)
        ref = self._grid[which]
        err = ref - freq.modal_grid_response(poles, residues, np.zeros(len(which)), m)
        best, _ = golden_max(lambda dval: -np.abs(err - dval[:, None]).max(axis=1),
                             err.real.min(axis=1), err.real.max(axis=1), 60)
        return best
