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
3. Glover's all-pass construction (`glover`): with the states of ``sigma = sigma_{d+1}``
   moved last, ``Sigma = diag(Sigma_1, sigma I)``, ``Gamma = Sigma_1^2 - sigma^2 I`` and the
   sign ``u`` with ``B_2 = -C_2^T u``,

   .. math::

       \hat A = \Gamma^{-1}(\sigma^2 A_{11}^T + \Sigma_1 A_{11} \Sigma_1
                - \sigma C_1^T u B_1^T), \quad
       \hat B = \Gamma^{-1}(\Sigma_1 B_1 + \sigma C_1^T u), \quad
       \hat C = C_1 \Sigma_1 + \sigma u B_1^T,

   so that ``G - G_hat`` is ``sigma_{d+1}`` times an all-pass function, and ``A_hat`` has
   as many stable eigenvalues as ``Sigma_1`` has values above ``sigma`` (Glover's inertia
   theorem; ``d`` for ``sigma_d > sigma_{d+1}``). A value of multiplicity ``k`` is removed
   with all its ``k`` states (Glover 1984 allows it; ``u`` then solves ``B_2 = -C_2^T u`` by
   least squares, as in SLICOT's AB09CX); values within `CLUSTER_RTOL` of ``sigma_{d+1}``
   count as multiple (``Gamma`` would divide by their difference, and rounding amplified by
   it moves eigenvalues of ``A_hat`` across the imaginary axis). Where the cluster reaches
   above ``sigma_{d+1}`` (``sigma_d ~ sigma_{d+1}``: order ``d`` is ill-posed) the
   approximant has the order below the cluster and is optimal up to the cluster's spread,
   as SLICOT's AB09CX lowers its order; `mor.reduce` reports that order and
   ``rank_capped``;
4. the stable part, split off in continuous time (ordered real Schur form and a Sylvester
   equation, as SLICOT's TB01KD), then mapped back to discrete time: the optimal Hankel-norm
   approximant. Where the stable poles do not number what the inertia theorem says, the
   filter fails with a reason naming the nearly equal singular values that caused it;
5. the direct term that minimises the H-infinity error, ``D = argmin_D ||G - G_d - D||_inf``
   (a convex problem in one real variable: the real centre of the smallest disk holding the
   error's values on an exact frequency grid, `mor._numerics.centre`). Glover's theorem
   guarantees a ``D`` with ``||G - G_d - D||_inf <= sum_{i>d} sigma_i`` (each distinct value
   once), so the minimiser meets that bound, up to the truncation tail.

For FIR filters the truncation of step 1 is avoided (``construction="auto"``, the default):
the poles of steps 1-4 on a small intermediate model start Newton's iteration for the ``d``
zeros inside the unit disk of the Schmidt polynomial of ``sigma_{d+1}`` of the filter's own
Hankel matrix, whose stable partial fractions are the optimal approximant of the filter
itself (`mor.methods._fir_aak`): its Hankel-norm error is ``sigma_{d+1}`` to rounding, with
no truncation tail. On float32-stored trained filters, whose spectra flatten near ``1e-5
sigma_1``, the truncated construction misses ``sigma_{d+1}`` by up to 64% at order 32. The
Schmidt vectors come from the decomposition the intermediate model is built from (certified
to `EXACT_RTOL`), so the exact construction adds Newton's sweeps, ``O(L d)`` each, to the
truncated one on a model of order ``1.5 d``; a ``tol=`` search costs no more than with the
truncated construction (32 trained filters at ``tol=1e-3``: 1.3 s against 2.0 s in
``hinf``, 8.1 s each in ``l2``). Where ``sigma_{d+1}`` is clustered (values within
`CLUSTER_RTOL` of it, as in step 3) the exact construction takes an eigenvector of the
cluster's top value and the order of the values above the cluster (``d`` where the cluster
lies below ``sigma_{d+1}``; lower where it reaches above, as step 3 does): its Hankel-norm
error is that value, within the cluster's spread of ``sigma_{d+1}``. Where the zeros do not
converge inside the disk, or are so nearly multiple that the modal form of the approximant
is inaccurate (`mor.methods._fir_aak._modal_form_error` above
`mor.conventions.CONVERSION_RTOL`), the truncated model of the default intermediate order
is kept, its truncation tail reported, and ``info["aak_exact"]`` says so;
``construction="exact"`` fails such a filter instead, with the reason.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from mor._numerics import freq
from mor._numerics.centre import real_centre
from mor.analysis.bounds import bounds_from_hsv, hankel_frobenius_sq
from mor.analysis.spectrum import (DENSE_MAX_SIZE, auto_method, hankel_singular_values,
                                   hankel_svd)
from mor.conventions import relative
from mor.methods._fir_aak import fir_aak
from mor.methods.balanced import BT_CHUNK_BYTES, BT_RTOL, BalancedFamily
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


#: Hankel singular values within this (relative) of ``sigma_{d+1}`` count as one multiple value
#: in `glover`. SLICOT's AB09CX takes ``sqrt(r eps)`` (``r`` the order); measured here on 104
#: Hankel-norm reductions of classical designs (``remez`` and ``firwin`` filters of 63 to 255
#: taps at orders 1 to 32, many with clusters of values equal to ``1e-9``), ``sqrt(r eps)``
#: left one whose stable poles did not number what Glover's inertia theorem says, ``1e-6``
#: none; the approximant's Hankel-norm error is then within ``1e-6`` of ``sigma_{d+1}``.
CLUSTER_RTOL = 1e-6
#: Certified accuracy (relative to ``sigma_1``) of the Krylov eigenvector behind the exact FIR
#: construction (`mor.methods._fir_aak`): its residual norm is at most ``1e3`` times this, and
#: the construction is exact up to that residual over the spectral gap at ``sigma_{d+1}``.
EXACT_RTOL = 1e-13
#: Constructions of FIR approximants: the exact one on the filter itself where it succeeds
#: (``"auto"``), only that one, or the truncated one (an intermediate balanced model).
CONSTRUCTIONS = ("auto", "exact", "truncated")
#: Where the zeros do not converge from the family's truncation (intermediate order 1.5 times
#: the largest order), the exact construction starts again from the default truncation
#: (`_truncation_order`) and from ones this many times larger, up to `RETRIES` times: with
#: ``construction="exact"`` always, with ``"auto"`` while the wider model is cut from a
#: Krylov decomposition (`_krylov_sized`), not from a dense SVD of the whole Hankel matrix
#: (in an ``l2`` search to ``tol=1e-3`` on 32 trained filters, ``L = 1024``, dense retries at
#: orders near 50 took 9 s of 23 s). On the 1024 trained filters at order 32, ``L = 1024``:
#: 5 filters need a retry beyond the default truncation, 0.34 s for the five.
RETRY_GROWTH = 2
RETRIES = 2


def _truncation_order(order: int, size: int) -> int:
    """The truncated construction's default intermediate order for approximants of ``order``
    of filters of ``size + 1`` taps: ``min(size, max(2 d, d + 32))``."""
    return min(size, max(2 * order, order + 32))


def _krylov_sized(order: int, size: int) -> bool:
    """Whether a balanced model of ``order`` states of filters of ``size + 1`` taps is cut
    from a Krylov decomposition, or from a dense one that is cheap (``size`` at most
    `DENSE_MAX_SIZE`), by the rule of ``method="auto"`` (`auto_method`)."""
    return size <= DENSE_MAX_SIZE or auto_method(size, order + 1) == "krylov"


def _splits_cluster(hsv: np.ndarray, r: int, rtol: float) -> bool:
    """Whether truncating after ``r`` states splits a cluster of Hankel singular values
    ``sigma_r ~ sigma_{r+1}`` (within `CLUSTER_RTOL`, and ``sigma_{r+1}`` above the
    accuracy of the spectrum, ``10 rtol sigma_1``) of any filter: balanced truncation's bound,
    and Glover's after it, hold only when the truncation leaves whole clusters."""
    s = hsv[:, r - 1: r + 1]
    live = s[:, 1] > 10 * max(rtol, hsv.shape[1] * np.finfo(float).eps) * hsv[:, 0]
    return bool((live & (s[:, 1] >= s[:, 0] * (1 - CLUSTER_RTOL))).any())


def glover(a, b, c, sigma, order: int, rtol: float = CLUSTER_RTOL):
    r"""Glover's all-pass construction and its stable part, for one balanced continuous-time
    SISO system.

    ``a`` ``(r, r)``, ``b`` and ``c`` ``(r,)``, ``sigma`` ``(r,)`` descending. The value
    ``sigma = sigma_{d+1}`` is removed with its multiplicity: every state whose value lies
    within ``rtol sigma`` of it. For a multiple value Glover's construction needs
    ``B_2 = -C_2^T u``; ``u`` is its least-squares solution (``+-1`` for an exact multiple
    value, as in SLICOT's AB09CX). Nearly equal values are merged because the construction
    divides by ``sigma_i^2 - sigma^2``: rounding, amplified by it, moves eigenvalues of
    ``A_hat`` across the imaginary axis. By Glover's inertia theorem ``A_hat`` has exactly as
    many stable eigenvalues as there are values above the cluster: ``d``, or fewer where the
    cluster reaches above ``sigma_{d+1}`` (``sigma_d ~ sigma_{d+1}``: order ``d`` is
    ill-posed, and the approximant of the order below the cluster is optimal up to its
    spread; SLICOT's AB09CX lowers its order the same way).

    Returns ``(A_s, B_s, C_s, m)``: the stable part of order ``m`` (an ordered real Schur form
    and a Sylvester equation split it from the antistable part, as SLICOT's TB01KD), or a
    string saying why the construction failed (the stable eigenvalues do not number what the
    inertia theorem says).
    """
    ref = sigma[order]
    merged = np.abs(sigma - ref) <= rtol * ref
    kept = ~merged
    expected = int((kept & (sigma > ref)).sum())
    s1 = sigma[kept]
    if s1.size == 0:
        return np.zeros((0, 0)), np.zeros(0), np.zeros(0), 0
    gamma = s1**2 - ref**2
    bb = float(b[merged] @ b[merged])
    u = -float(b[merged] @ c[merged]) / bb if bb > 0 else 1.0
    a11 = a[np.ix_(kept, kept)]
    b1, c1 = b[kept], c[kept]
    a_hat = (ref**2 * a11.T + s1[:, None] * a11 * s1[None, :]
             - ref * u * np.outer(c1, b1)) / gamma[:, None]
    b_hat = (s1 * b1 + ref * u * c1) / gamma
    c_hat = c1 * s1 + ref * u * b1
    if not (np.isfinite(a_hat).all() and np.isfinite(b_hat).all()):
        return _glover_failure(sigma, order, "the all-pass dilation is not finite")
    try:
        t, z, sdim = scipy.linalg.schur(a_hat, output="real", sort="lhp")
    except (np.linalg.LinAlgError, ValueError):  # reordering failed: eigenvalues on the axis
        sdim, t = int((np.linalg.eigvals(a_hat).real < 0).sum()), None
    if sdim != expected or t is None:
        return _glover_failure(sigma, order, f"Glover's all-pass step gave {sdim} stable "
                                              f"poles where its inertia theorem says {expected}")
    if sdim == 0:
        return np.zeros((0, 0)), np.zeros(0), np.zeros(0), 0
    bz, cz = z.T @ b_hat, c_hat @ z
    b_s = bz[:sdim]
    if sdim < t.shape[0]:  # T11 X - X T22 = -T12 decouples the stable part
        x = scipy.linalg.solve_sylvester(t[:sdim, :sdim], -t[sdim:, sdim:], -t[:sdim, sdim:])
        b_s = b_s - x @ bz[sdim:]
    return t[:sdim, :sdim], b_s, cz[:sdim], expected


def _glover_failure(sigma, order: int, what: str) -> str:
    """The reason a Glover step failed, naming the closest pair of singular values around
    ``sigma_{d+1}`` (the usual cause: the construction divides by their difference)."""
    ref = sigma[order]
    pairs = [(order, order + 1)] if order > 0 else []
    if order + 1 < sigma.size:
        pairs.append((order + 1, order + 2))
    if not pairs:
        return f"{what} at order {order}"
    i, j = min(pairs, key=lambda p: abs(sigma[p[0] - 1] - sigma[p[1] - 1]))
    gap = abs(sigma[i - 1] - sigma[j - 1]) / ref
    return (f"{what} at order {order}: sigma_{i} and sigma_{j} agree to {gap:.1e} relative, "
            f"so the Hankel-norm approximant of order {order} is ill-conditioned")


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
                 direct: str = "hinf", construction: str = "auto",
                 h: np.ndarray | None = None):
        if direct not in ("hinf", "keep"):
            raise ValueError(f"direct must be 'hinf' or 'keep', got {direct!r}")
        if construction not in CONSTRUCTIONS:
            raise ValueError(f"construction must be one of {CONSTRUCTIONS}, got "
                             f"{construction!r}")
        self.direct_rule, self.construction = direct, construction
        self.h = h  # FIR taps: the exact construction works on the filter itself
        self._grid = None
        self.balanced = balanced
        self.reference = reference  # a freq response of the systems being approximated
        self.hsv, self.rank, self.d, self.tail = balanced.hsv, balanced.rank, balanced.d, tail

    @classmethod
    def from_fir(cls, h: np.ndarray, max_order: int, *, intermediate_order: int | None = None,
                 direct: str = "hinf", hankel_method: str = "auto", rtol: float = BT_RTOL,
                 construction: str = "auto") -> "HankelNormFamily":
        """Families for flat FIR filters ``(F, L)``.

        Parameters
        ----------
        intermediate_order : int, optional
            Order ``r`` of the balanced model approximated (step 1), in ``[max_order, L - 1]``;
            default ``min(L - 1, max(2 d, d + 32))`` for the truncated construction and
            ``min(L - 1, max(d + 4, 1.5 d))`` for the exact one's starts, doubled (up to
            ``L - 1``) while it would split a cluster of singular values
            (`_splits_cluster`). Its truncation tail is reported.
        construction : {"auto", "exact", "truncated"}
            ``"auto"`` (default): per filter the exact approximant of the FIR filter itself
            (`mor.methods._fir_aak`: the zeros of its Schmidt polynomial, found from the
            truncated construction's poles), whose Hankel-norm error is ``sigma_{d+1}`` (up
            to the spread of its cluster, module notes) with no truncation tail, where the
            zeros converge inside the disk to a well-conditioned modal form; elsewhere the truncated
            construction (steps 1-4) of the default intermediate order, within its reported
            truncation tail of the optimum. ``"exact"``: the exact one only, started again
            from larger truncations where the zeros do not converge (`RETRIES`), and a
            filter where it still fails fails, with the reason. ``"truncated"``: steps 1-4.
            ``info["aak_exact"]`` says which model each filter got.
        direct : {"hinf", "keep"}
            ``"hinf"``: the direct term minimising the H-infinity error (step 5); ``"keep"``:
            the filter's own ``h[0]``, better for the ``l2`` error over the taps.
        hankel_method : {"auto", "dense", "krylov"}
            How the Hankel SVD is computed (`mor.hankel_singular_values`).
        rtol : float
            Certified accuracy of the Krylov singular values, relative to ``sigma_1`` (at
            most `EXACT_RTOL` for the exact construction, whose Schmidt vectors come from
            the same decomposition).

        Notes
        -----
        ``info`` adds ``truncation_tail`` and ``glover_bound`` (`bounds`), and
        ``aak_exact``.
        """
        size = h.shape[-1] - 1
        if intermediate_order is not None:
            r = int(intermediate_order)
        elif construction == "truncated":
            r = _truncation_order(max_order, size)
        else:  # only the exact construction's starts: the retries widen it where needed
            r = min(size, max(max_order + 4, (3 * max_order) // 2))
        if not max_order <= r <= size:
            raise ValueError(f"intermediate_order must lie in [{max_order}, {size}], got {r}")
        columns = None
        if construction != "truncated":  # the Schmidt vectors from the same decomposition
            rtol = min(rtol, EXACT_RTOL)
            every = h.shape[0] * size * (max_order + 1) * 8 <= BT_CHUNK_BYTES
            columns = range(max_order + 1) if every else range(max_order, max_order + 1)
        # values to rtol sigma_1 (no kth_rtol): the cluster test below and Glover's
        # construction need sigma_{r+1} to the spectrum's accuracy
        balanced = BalancedFamily.with_vectors(h, r, columns, hankel_method=hankel_method,
                                               rtol=rtol, kth_rtol=0.0)
        if intermediate_order is None:
            # doubled while it splits a cluster, judged on the values alone (computed ahead
            # of the doubling): one decomposition with vectors at the end, not one per
            # doubling (the classical designs' clusters of values near 1, up to 193 long at
            # L = 1024, took five dense SVDs with vectors of 1.2 s each)
            values, first = balanced.hsv, r
            while r < size and _splits_cluster(values, r, rtol):
                r = min(size, 2 * r)
                if r < size and values.shape[1] < r + 1:
                    values = hankel_singular_values(h, min(size, 8 * r),
                                                    method=hankel_method, rtol=rtol)
            if r != first:
                balanced = BalancedFamily.with_vectors(h, r, columns,
                                                       hankel_method=hankel_method, rtol=rtol,
                                                       kth_rtol=0.0)
        bt = bounds_from_hsv(balanced.hsv, hankel_frobenius_sq(h), size).bt
        bt = np.concatenate([bt, np.zeros((h.shape[0], 1))], axis=1)  # no tail at order L - 1
        tail = np.take_along_axis(bt, np.minimum(balanced.rank, r)[:, None], axis=1)[:, 0]
        return cls(balanced, freq.FirResponse(h), tail, direct, construction, h)

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
        reason = np.full(f, "", dtype=object)
        on_fir = self.construction != "truncated" and self.h is not None
        aak_exact = np.zeros(f, dtype=bool)
        for key in {(int(o), int(n)) for o, n in zip(orders[~exact], sizes[~exact])}:
            idx = np.flatnonzero(~exact & (orders == key[0]) & (sizes == key[1]))
            p, r, e, why = self._approximant(which[idx], *key)
            if on_fir:
                p, r, e, why, aak_exact[idx] = self._exact(which[idx], key[0], p, r, e, why)
            k = min(p.shape[1], width)  # Glover's order never exceeds the one asked for
            poles[idx, :k], residues[idx, :k], lost[idx], reason[idx] = p[:, :k], r[:, :k], e, why
        if (~exact).any() and self.direct_rule == "hinf":
            idx = np.flatnonzero(~exact)
            direct[idx] = self._best_direct(which[idx], poles[idx], residues[idx])
        return Models(poles, residues, direct, lost, np.zeros(f, dtype=np.int64),
                      {"aak_exact": aak_exact} if self.h is not None else {},
                      reason=reason if (reason != "").any() else None)

    def response(self, rows: np.ndarray):
        """The response of the systems approximated (for `_best_direct`), rows ``rows``."""
        return self.reference.take(rows)

    def bounds(self, errors: dict[str, np.ndarray], rows: np.ndarray, models: Models
               ) -> dict[str, np.ndarray]:
        """Glover's bound ``||G - G_d - D||_inf <= sum_{i>d} sigma_i``, plus the truncation tail
        of the intermediate balanced model (none for an exact FIR approximant):
        ``truncation_tail`` and ``glover_bound`` (relative to ``max |H|``), where the errors
        hold ``peak`` and ``bt_bound``."""
        if "peak" not in errors:
            return {}
        exact = models.diagnostics.get("aak_exact", np.zeros(rows.size, dtype=bool))
        tail = relative(np.where(exact, 0.0, self.tail[rows]), errors["peak"])
        return {"truncation_tail": tail, "glover_bound": errors["bt_bound"] / 2 + tail}

    def _approximant(self, which, order: int, size: int):
        """The stable parts of Glover's construction (`glover`) for the filters ``which``:
        compact poles and residues, the conversion error and the reason of each failure."""
        bal = self.balanced
        f = len(which)
        a, b, c = bal.a[which, :size, :size], bal.b[which, :size], bal.c[which, :size]
        sigma = bal.hsv[which, :size]
        ac, bc, cc, _ = to_continuous(a, b, c, bal.d[which])
        poles = np.zeros((f, order), dtype=np.complex128)
        residues = np.zeros_like(poles)
        lost = np.zeros(f)
        reason = np.full(f, "", dtype=object)
        parts: dict[int, list] = {}
        for j in range(f):
            out = glover(ac[j], bc[j], cc[j], sigma[j], order)
            if isinstance(out, str):
                reason[j] = out
            else:
                parts.setdefault(out[3], []).append((j, out))
        for m, group in parts.items():  # the stable parts, batched by their order
            rows = np.array([j for j, _ in group])
            if m == 0:
                continue
            a_s, b_s, c_s = (np.stack([out[i] for _, out in group]) for i in range(3))
            ad, bd, cd, dd = to_discrete(a_s, b_s, c_s, np.zeros(rows.size))
            stable = ModalSSM.from_dense(ad, bd, cd, dd)
            pc, rc, _ = stable.compact()
            poles[rows, : pc.shape[1]], residues[rows, : pc.shape[1]] = pc, rc
            lost[rows] = np.asarray(stable.info["conversion_error"], dtype=float).reshape(-1)
            # the continuous-time Schur split is exact; a pole that left the disk on the way
            # back to discrete time lies within rounding of the circle
            outside = (np.abs(pc) >= 1.0) & (rc != 0)
            for i in np.flatnonzero(outside.any(axis=1)):
                reason[rows[i]] = _glover_failure(
                    sigma[rows[i]], order, "a stable pole of Glover's all-pass step rounds "
                    "onto the unit circle in discrete time")
        return poles, residues, lost, reason

    def _exact(self, which, order: int, poles, residues, lost, reason):
        """The exact FIR construction (`mor.methods._fir_aak`) for the filters ``which`` at
        ``order``, started from the truncated construction's poles.

        The starts come from the family's intermediate order first; where the zeros do not
        converge from them, from truncations of the default intermediate order
        `_truncation_order` and, with ``construction="exact"``, `RETRIES` times larger ones.
        With ``"auto"`` a filter the exact construction does not cover keeps the truncated
        model of at least the default intermediate order (its tail reported); with
        ``"exact"`` it fails with the reason. Returns the models and where the exact one
        holds."""
        f = len(which)
        done = np.zeros(f, dtype=bool)
        sigma = np.concatenate([self.hsv[which], np.zeros((f, 1))], axis=1)
        ref = sigma[:, order: order + 1]
        # sigma_{d+1} with its cluster (as in `glover`): the approximant has the order of the
        # values above it, ``d`` for a simple value
        top = ((sigma > ref) & (np.abs(sigma - ref) > CLUSTER_RTOL * ref)).sum(axis=1)
        live = ref[:, 0] > 0
        why = np.full(f, "", dtype=object)
        why[~live] = f"sigma_{order + 1} is zero"
        h = self.h[which]
        n = h.shape[1] - 1
        # a Schmidt vector of the cluster's value, certified to EXACT_RTOL: kept by the
        # family's decomposition where it has it, else computed
        kept = self.balanced.vectors or {}
        vectors = np.zeros((f, n))
        for k in np.unique(top[live]):
            rows = np.flatnonzero(live & (top == k))
            if k in kept:
                vectors[rows] = kept[k][which[rows]]
                continue
            chunk = max(1, BT_CHUNK_BYTES // (16 * max(n, 1) * (k + 1)))
            for begin in range(0, rows.size, chunk):
                part = rows[begin:begin + chunk]
                vectors[part] = hankel_svd(h[part], k + 1, rtol=EXACT_RTOL)[2][:, :, k]
        out_p, out_r, out_lost = np.zeros_like(poles), np.zeros_like(residues), np.zeros(f)
        poles, residues, lost, reason = poles.copy(), residues.copy(), lost.copy(), reason.copy()
        # intermediate orders of the starts; None: the truncated construction's own default
        first = self.balanced.a.shape[-1]
        sizes: list[int | None] = [first]
        if _truncation_order(order, n) > first:
            sizes.append(None)
        size = max(first, _truncation_order(order, n))
        for _ in range(RETRIES):
            wider = min(n, RETRY_GROWTH * size)
            if size == n or (self.construction == "auto" and not _krylov_sized(wider, n)):
                break
            size = wider
            sizes.append(size)
        for step, size in enumerate(sizes):
            if step:  # truncated models of a larger intermediate order, for what is left
                keep_truncated = self.construction == "auto" and size is None
                rows = np.flatnonzero(~done & (live | keep_truncated))
                if not rows.size:
                    break
                wider = HankelNormFamily.from_fir(h[rows], order, intermediate_order=size,
                                                  direct="keep", construction="truncated")
                got = wider.model(np.full(rows.size, order))
                k = min(got.width, poles.shape[1])
                poles[rows], residues[rows] = 0, 0
                poles[rows, :k], residues[rows, :k] = got.poles[:, :k], got.residues[:, :k]
                lost[rows] = got.conversion_error
                reason[rows] = got.reasons
            starts_order = np.where(np.abs(poles.imag) > 0, 2, 1) * (residues != 0)
            built = (reason == "") & (starts_order.sum(axis=1) == top)
            why[live & ~done & ~built] = ("the truncated construction gave no starting poles "
                                          "of the order below the cluster of "
                                          f"sigma_{order + 1}")
            for i in np.flatnonzero(live & ~done & built):
                got = fir_aak(h[i, 1:], vectors[i], poles[i, residues[i] != 0])
                if isinstance(got, str):
                    why[i] = got
                else:
                    out_p[i], out_r[i] = 0, 0
                    out_p[i, : got[0].size], out_r[i, : got[0].size], out_lost[i] = got
                    done[i] = True
        poles = np.where(done[:, None], out_p, poles)
        residues = np.where(done[:, None], out_r, residues)
        lost = np.where(done, out_lost, lost)
        if self.construction == "exact":
            failed = ~done & (reason == "")
            reason[failed] = [f"the exact Hankel-norm construction failed at order {order}: "
                              f"{w}" for w in why[failed]]
        return poles, residues, lost, reason, done

    def _best_direct(self, which, poles, residues) -> np.ndarray:
        """``argmin_D max_w |G - G_d - D|`` per system on the exact grid of
        `mor._numerics.freq`: the real centre of the smallest disk holding the error's
        values (`mor._numerics.centre`)."""
        m = freq.grid_size(self.reference.size)
        if self._grid is None:  # the reference's exact grid, once for every search step
            self._grid = self.reference.grid(m)
        ref = self._grid[which]
        err = ref - freq.modal_grid_response(poles, residues, np.zeros(len(which)), m)
        return real_centre(err)
