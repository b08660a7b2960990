r"""The variable-projection residual of modal fits, batched over filters of one structure.

A batch of ``B`` filters is fitted by ``m = p + q`` compact modes each: ``p`` conjugate pairs
(first) and ``q`` real poles, parameterised so that every pole lies strictly inside the disk of
radius ``RADIUS``:

.. math::

    \lambda = \rho\, \sigma(a)\, e^{i b} \ (\text{pairs}), \qquad
    \lambda = \rho \tanh(c) \ (\text{real}), \qquad \rho = 1 - 10^{-9};

with ``positive`` the real poles are ``lambda = a + (rho - a) sigma(c)`` instead, in
``(a, rho)`` whatever the iterate, ``a = POSITIVE_FLOOR`` (the real-pole models Vortex runs,
`mor.methods.modal`).

For the ``n = 2p + q`` parameters ``x`` the real design ``Phi(x)`` has the columns
``Re lambda^k`` (every mode) and ``-Im lambda^k`` (pairs), ``k = 0..L-2``; it and ``y = h[1:]``
are filtered by an optional weight (FIR taps, causal, cut to the window). With the column-scaled
thin QR ``Phi = Q R S`` the least-squares coefficients are ``c = S^{-1} R^{-1} Q^T y`` (the
residues: ``Re R' = c[:m]``, ``Im R' = c[m:]`` for pairs) and the projected residual is
``r = (I - Q Q^T) y``, both by Cholesky QR twice (`_least_squares`: level-3 products only; these
designs are well conditioned once their columns are scaled). The objective is

.. math::

    f(x) = \|r(x)\|^2 + t\, T(x)^2, \qquad
    T^2 = \|\hat h[L:]\|^2 = \tfrac12 \mathrm{Re}\, a^T \mathcal{S} a + \tfrac12 a^H K a,

with ``a = R' lambda^{L-1}``, ``S_nm = 1 / (1 - lambda_n lambda_m)`` and
``K_nm = 1 / (1 - conj(lambda_n) lambda_m)`` (the tail energy beyond the window, from the
geometric sums of ``(Re sum_n a_n lambda_n^j)^2``).

Golub and Pereyra's Jacobian of the window residual is ``J = -(I - Q Q^T) D - Q E`` with
``D_j = (d Phi / d x_j) c`` and ``E = R^{-T} S^{-1} (d Phi / d x)^T r``; the two parts are
orthogonal, so the Gauss-Newton matrices need no explicit ``J``:

.. math::

    J^T J = D^T D - (Q^T D)^T (Q^T D) + E^T E, \qquad J^T r = -D^T r

(``Q^T r = 0``, ``Q^T D = R^{-T} S^{-1} Phi^T D``; the difference loses digits only where ``D``
lies almost in the span of ``Phi``, which the damping absorbs). The tail adds the rank-one
``t\, \nabla T \nabla T^T`` and ``t T \nabla T``, with ``nabla T^2`` exact: Wirtinger
derivatives of the quadratic form with respect to ``a`` and ``lambda``, and
``dc/dx = S^{-1} R^{-1} (E - Q^T D)``.

Everything above needs only ``R`` and the products ``Phi^T Phi``, ``Phi^T y``, ``Phi^T D``,
``D^T D``, ``D^T r`` and ``(d Phi / dx)^T r``. Without a weight the columns of ``Phi`` and ``D``
are exponentials, so the Gram-type products are geometric sums in closed form (``O(m^2)`` per
filter, `mor.fitting._varpro_kernels`) and ``R`` is the Cholesky factor of the scaled Gram matrix; only
``Phi^T y`` and the residual with its moments pass over the taps (``O(L m)``). A row whose
scaled Gram matrix is conditioned beyond `GRAM_MAX_COND`, and every row with a weight, takes the
explicit design (``O(L n^2)``), which is also the closed forms' reference in the tests. On the
shared trained filters at 32 modes a trial point of the Levenberg-Marquardt loop (evaluation,
normal equations and the loop's own work) went from about 4.6 ms to about 1.2 ms per filter.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.signal

from mor.fitting import _varpro_kernels as kernels

#: Every pole stays within this radius (strictly stable, whatever the iterate).
RADIUS = 1.0 - 1e-9
#: The smallest real pole of the ``positive`` parameterisation: Vortex holds the residue
#: ``R / lambda`` of a pole (its response starts at ``t = 0``), and `mor.export` drops poles
#: below ``1 / MAX_GAIN = 1e-2`` whose residue would cost float32 accuracy there; a pole below
#: it responds at lag 1 alone within 1%. Without a floor, 16-pole fits of Evo 2-style filters
#: put spare poles near 1e-6 in pairs with opposite residues.
POSITIVE_FLOOR = 1e-2
#: A design whose column-scaled ``R`` has a diagonal entry below this fraction of its largest
#: entry is numerically rank deficient: such a point is inadmissible.
RANK_RTOL = 1e-13
#: Cholesky QR (two passes) serves designs up to this condition number (the column-scaled
#: exponential designs of the shared trained filters stay below about 1e4 up to 32 modes).
CHOLESKY_QR_MAX_COND = 1e6
#: The closed-form Gram matrix serves a row while the condition number of its column-scaled
#: Cholesky factor (estimated as ``||R||_F ||R^-1||_F``) is at most this: the residues and the
#: tail then keep about 6 digits and the window residual, stationary in them, all of them.
#: Other rows take the explicit design.
GRAM_MAX_COND = 1e5


class ModalProjection:
    """Variable-projection objective of ``B`` filters with ``pairs`` pairs and ``reals`` real
    poles each (see the module notes); a problem for `mor._numerics.lm.levenberg_marquardt`.

    Parameters
    ----------
    h : ndarray ``(B, L)``
        The taps (the direct term ``h[0]`` is matched apart).
    pairs, reals : int
        The structure shared by the batch.
    tail_weight : float or ndarray ``(B,)``
        ``t`` per filter.
    weight : ndarray ``(K,)``, optional
        FIR taps of the frequency weight.
    positive : bool
        Real poles ``a + (rho - a) sigma(c)`` in ``(a, rho)``, ``a = POSITIVE_FLOOR``,
        instead of ``rho tanh(c)``.
    """

    def __init__(self, h: np.ndarray, pairs: int, reals: int, tail_weight,
                 weight: np.ndarray | None = None, positive: bool = False):
        self.weight, self.pairs, self.modes = weight, pairs, pairs + reals
        self.positive = bool(positive)
        self.y, self.length = self._filtered(h[:, 1:]), h.shape[1]
        self.tail_weight = np.broadcast_to(np.asarray(tail_weight, dtype=np.float64),
                                           h.shape[:1]).copy()
        self.k = np.arange(h.shape[1] - 1, dtype=np.float64)
        # parameter j moves mode param_mode[j]: a (pairs), b (pairs), c (reals)
        self.param_mode = np.concatenate([np.arange(pairs), np.arange(pairs),
                                          np.arange(pairs, self.modes)])
        # design column i is Re(alpha_i lambda^k) of mode column_mode[i]: Re, then -Im = Re(i .)
        self.column_mode = np.concatenate([np.arange(self.modes), np.arange(pairs)])
        self.column_factor = np.concatenate([np.ones(self.modes), np.full(pairs, 1j)])
        self.table = kernels.moment_table(self.k.size) if weight is None else None

    def _filtered(self, a: np.ndarray) -> np.ndarray:
        """``w * a`` along the taps axis (1), cut to its length; ``a`` without a weight."""
        if self.weight is None or a.size == 0:
            return a
        return scipy.signal.lfilter(self.weight, [1.0], a, axis=1)

    def parameters(self, poles: np.ndarray) -> np.ndarray:
        """The parameters ``x`` ``(B, n)`` of compact poles ``(B, m)`` (pairs first, stable)."""
        p = self.pairs
        modulus = np.clip(np.abs(poles[:, :p]) / RADIUS, 1e-6, 1 - 1e-12)
        if self.positive:  # (a start's pole below the floor is moved into (a, rho))
            floor = POSITIVE_FLOOR
            real = np.clip((poles[:, p:].real - floor) / (RADIUS - floor), 1e-12, 1 - 1e-12)
            return np.concatenate([np.log(modulus / (1 - modulus)), np.angle(poles[:, :p]),
                                   np.log(real / (1 - real))], axis=1)
        real = np.clip(poles[:, p:].real / RADIUS, -1 + 1e-12, 1 - 1e-12)
        return np.concatenate([np.log(modulus / (1 - modulus)), np.angle(poles[:, :p]),
                               np.arctanh(real)], axis=1)

    def poles(self, x: np.ndarray) -> np.ndarray:
        """Compact poles ``(B', m)`` of parameters ``x`` ``(B', n)``."""
        p = self.pairs
        with np.errstate(over="ignore"):
            pair = RADIUS / (1 + np.exp(-x[:, :p])) * np.exp(1j * x[:, p:2 * p])
            real = POSITIVE_FLOOR + (RADIUS - POSITIVE_FLOOR) / (1 + np.exp(-x[:, 2 * p:])) \
                if self.positive else RADIUS * np.tanh(x[:, 2 * p:])
        return np.concatenate([pair, real + 0j], axis=1)

    def log_poles(self, x: np.ndarray) -> np.ndarray:
        """``log lambda`` of the compact poles of ``x``, to full relative accuracy near the
        circle (``-inf`` for a real pole at zero, ``+ i pi`` for a negative one)."""
        p = self.pairs
        pair = np.log(RADIUS) - np.logaddexp(0.0, -x[:, :p]) + 1j * x[:, p:2 * p]
        if self.positive:  # lambda = rho - (rho - a) sigma(-c): exact near 1
            rest = np.exp(-np.logaddexp(0.0, x[:, 2 * p:]))  # sigma(-c)
            real = np.log(RADIUS) + np.log1p(-(1 - POSITIVE_FLOOR / RADIUS) * rest) + 0j
            return np.concatenate([pair, real], axis=1)
        c = np.abs(x[:, 2 * p:])
        with np.errstate(divide="ignore"):
            small = np.exp(-2 * c)  # log tanh c = log1p(-2 e^(-2c) / (1 + e^(-2c)))
            modulus = np.where(c < 1, np.log(np.tanh(c)), np.log1p(-2 * small / (1 + small)))
        real = np.log(RADIUS) + modulus + 1j * np.pi * (x[:, 2 * p:] < 0)
        return np.concatenate([pair, real], axis=1)

    def evaluate(self, x: np.ndarray, rows: np.ndarray, *, dense: bool = False) -> "_Point":
        """The projection at ``x`` for the filters ``rows``: from the closed-form Gram matrix
        (`mor.fitting._varpro_kernels`) without a weight, else (or with ``dense``) from the explicit
        design. Rows whose scaled Gram matrix is too ill-conditioned for its Cholesky factor
        (beyond `GRAM_MAX_COND`) take the explicit design too."""
        lam, y = self.poles(x), self.y[rows]
        logs = self.log_poles(x)
        if dense or self.weight is not None:
            r, rinv, cond, coef, scale, res, detail = self._solve_dense(lam, y)
        else:
            r, rinv, cond, coef, scale, res, detail = self._solve_sums(lam, logs, y)
        diag = np.abs(np.diagonal(r, axis1=1, axis2=2))
        ok = np.all(diag > RANK_RTOL * np.abs(r).max(axis=(1, 2), initial=0.0)[:, None], axis=1)
        ok &= np.isfinite(r).all(axis=(1, 2)) & np.isfinite(res).all(axis=1)
        rinv[~ok] = np.eye(r.shape[1])  # inadmissible rows: keep the products defined
        cond[~ok] = np.inf
        residues = coef[:, :self.modes] + 0j
        residues[:, :self.pairs] += 1j * coef[:, self.modes:]
        tail = _TailEnergy(lam, residues, self.length)
        cost = np.einsum("bk,bk->b", res, res) + self.tail_weight[rows] * tail.value
        return _Point(rows=rows, lam=lam, logs=logs, rinv=rinv, scale=scale, residues=residues,
                      res=res, tail=tail, cost=cost, ok=ok, cond=cond, **detail)

    def _solve_dense(self, lam: np.ndarray, y: np.ndarray):
        """``(R, R^-1, cond, c, scale, r, detail)`` of the explicit (weighted) design: ``detail``
        holds its powers and the column-scaled design."""
        powers = _powers(lam, self.k.size)  # (B', L-1, m)
        design = self._filtered(np.concatenate([powers.real, -powers[..., :self.pairs].imag],
                                               axis=2))
        scale = np.linalg.norm(design, axis=1)
        scale[scale == 0] = 1.0
        design /= scale[:, None, :]
        r, coef, res = _least_squares(design, y)
        singular = ~np.isfinite(coef).all(axis=1)  # inadmissible: no residues, no residual
        coef[singular], res[singular] = 0.0, np.nan
        rinv = _upper_inverse(r)
        return r, rinv, _condition(r, rinv), coef / scale, scale, res, {"powers": powers,
                                                                         "design": design}

    def _solve_sums(self, lam: np.ndarray, logs: np.ndarray, y: np.ndarray):
        """``(R, R^-1, cond, c, scale, r, detail)`` from the closed-form sums: ``detail`` holds the
        sums ``(B', 2, 3, m, m)`` and the moments ``w = sum_k r_k k lambda^(k-1)`` ``(B', m)``."""
        batch, m = lam.shape
        sums = np.empty((batch, 2, 3, m, m), dtype=np.complex128)
        kernels.design_sums(lam, logs, self.k.size, self.table, sums)
        mode, alpha = self.column_mode, self.column_factor
        gram = _real_products(sums[:, :, 0], alpha, alpha, mode, mode)
        scale = np.sqrt(np.diagonal(gram, axis1=1, axis2=2))
        scale[~(scale > 0)] = 1.0
        r = np.empty_like(gram)
        factored = kernels.cholesky_rows(gram / scale[:, :, None] / scale[:, None, :], r)
        r[~factored] = np.eye(r.shape[1])
        rinv = _upper_inverse(r)
        cond = _condition(r, rinv)
        poor = np.flatnonzero(~factored | ~(cond <= GRAM_MAX_COND))  # solved densely below
        moments = np.empty((batch, m), dtype=np.complex128)
        kernels.tap_moments(lam, logs, y, moments)
        rhs = np.real(alpha * moments[:, mode]) / scale  # (Phi S^-1)^T y
        coef = np.matmul(rinv, np.matmul(rhs[:, None, :], rinv).transpose(0, 2, 1))[..., 0] \
            / scale
        res = np.empty_like(y)
        if poor.size:
            r[poor], rinv[poor], cond[poor], coef[poor], scale[poor], res[poor], _ = \
                self._solve_dense(lam[poor], y[poor])
        residues = coef[:, :m] + 0j
        residues[:, :self.pairs] += 1j * coef[:, m:]
        solve = np.ones(batch, dtype=np.bool_)
        solve[poor] = False
        w = np.empty((batch, m), dtype=np.complex128)
        kernels.residual_moments(lam, logs, residues, y, solve, res, w)
        return r, rinv, cond, coef, scale, res, {"sums": sums, "w": w}

    def normal_equations(self, point: "_Point") -> tuple[np.ndarray, np.ndarray]:
        """``(J^T J, J^T r)`` of the objective at ``point`` (module notes)."""
        mode = self.param_mode
        dlam = self.pole_derivatives(point.lam)
        atd, dd, g, dr = self.products(point, dlam)
        rinv_t = point.rinv.transpose(0, 2, 1)
        e = np.matmul(rinv_t, g / point.scale[:, :, None])
        # Q^T D = R^-T (Phi S^-1)^T D; (P D)^T (P D) = D^T D - (Q^T D)^T Q^T D
        qtd = np.matmul(rinv_t, atd)
        gram = dd - np.matmul(qtd.transpose(0, 2, 1), qtd) + np.matmul(e.transpose(0, 2, 1), e)
        grad = -dr
        t = self.tail_weight[point.rows]
        if np.any(t > 0):
            dcoef = np.matmul(point.rinv, e - qtd) / point.scale[:, :, None]
            by_poles, by_coef = point.tail.gradients(self.pairs)
            tail_grad = np.real(by_poles[:, mode] * dlam) \
                + np.einsum("bd,bdn->bn", by_coef, dcoef)  # d T^2 / dx
            with np.errstate(divide="ignore", invalid="ignore"):
                row = np.where(point.tail.value[:, None] > 0, tail_grad
                               / (2 * np.sqrt(point.tail.value[:, None])), 0.0)
            gram += t[:, None, None] * row[:, :, None] * row[:, None, :]
            grad += 0.5 * t[:, None] * tail_grad
        return gram, grad

    def pole_derivatives(self, lam: np.ndarray) -> np.ndarray:
        """``d lambda_n / d x_j`` ``(B', n)`` for each parameter ``j`` and its mode ``n``."""
        p = self.pairs
        sig = np.abs(lam[:, :p]) / RADIUS
        real = lam[:, p:].real
        d_real = (real - POSITIVE_FLOOR) * (RADIUS - real) / (RADIUS - POSITIVE_FLOOR) \
            if self.positive else RADIUS * (1 - (real / RADIUS) ** 2)
        return np.concatenate([lam[:, :p] * (1 - sig), 1j * lam[:, :p], d_real], axis=1)

    def products(self, point: "_Point", dlam: np.ndarray):
        """``(A^T D, D^T D, (dPhi/dx)^T r, D^T r)`` at ``point``, with ``A = Phi S^-1`` the
        column-scaled design and ``D_j = (dPhi/dx_j) c``: from the closed-form sums or, for a
        point evaluated densely, from its explicit design."""
        if "design" in vars(point):
            return self._products_dense(point, dlam)
        return self._products_sums(point, dlam)

    def _products_sums(self, point: "_Point", dlam: np.ndarray):
        """`products` from the closed-form sums: the columns of
        ``D = (dPhi/dx_j) c`` are ``Re beta_j k lambda^(k-1)``, ``beta_j = R'_n dlambda_n/dx_j``;
        ``(dPhi/dx_j)^T r`` is nonzero in mode ``n``'s columns only: ``Re alpha dlambda w_n``."""
        mode, alpha, pmode = self.column_mode, self.column_factor, self.param_mode
        beta = point.residues[:, pmode] * dlam
        lam_col = point.lam[:, mode]
        atd = _real_products(point.sums[:, :, 1], alpha * lam_col, beta, mode, pmode) \
            / point.scale[:, :, None]
        dd = _real_products(point.sums[:, :, 2], beta, beta, pmode, pmode)
        w = point.w[:, pmode]
        g = np.where(mode[:, None] == pmode[None, :],
                     np.real(alpha[None, :, None] * (dlam * w)[:, None, :]), 0.0)
        return atd, dd, g, np.real(beta * w)

    def _products_dense(self, point: "_Point", dlam: np.ndarray):
        """`_products_sums` from the explicit (weighted) design."""
        lam, p, m = point.lam, self.pairs, self.modes
        sig = np.abs(lam[:, :p]) / RADIUS
        # d(lambda^k)/dx_j = k lambda^(k-1) dlam_j: k lambda^k times (1 - sigma) and i for a
        # pair's (a, b); the powers shifted by one, times k and dlam, for a real pole
        k = self.k[None, :, None]
        kp = self._filtered(k * point.powers[..., :p])  # (B', L-1, p)
        shifted = np.concatenate([np.zeros_like(point.powers[:, :1, p:].real),
                                  k[:, 1:] * point.powers[:, :-1, p:].real], axis=1)
        kr = self._filtered(shifted) * dlam[:, None, 2 * p:].real  # (B', L-1, q)
        z = point.residues[:, None, :p] * kp
        d = np.concatenate([(1 - sig)[:, None, :] * z.real, -z.imag,
                            point.residues[:, None, p:].real * kr], axis=2)  # (dPhi/dx_j) c
        # (dPhi/dx_j)^T r, in mode j's columns only (Re lambda^k, and -Im lambda^k for a pair)
        res = point.res[:, None, :]
        pr = np.matmul(res, kp)[:, 0]  # r^T k lambda^k per pair
        n = np.arange(p)
        g = np.zeros((lam.shape[0], point.rinv.shape[1], self.param_mode.size))
        g[:, n, n] = (1 - sig) * pr.real
        g[:, m + n, n] = -(1 - sig) * pr.imag
        g[:, n, p + n] = -pr.imag
        g[:, m + n, p + n] = -pr.real
        g[:, np.arange(p, m), np.arange(2 * p, self.param_mode.size)] = np.matmul(res, kr)[:, 0]
        atd = np.matmul(point.design.transpose(0, 2, 1), d)
        return atd, np.matmul(d.transpose(0, 2, 1), d), g, np.matmul(res, d)[:, 0]


def _real_products(sums: np.ndarray, a: np.ndarray, b: np.ndarray, mode_a: np.ndarray,
                   mode_b: np.ndarray) -> np.ndarray:
    """``<Re a_i f_i, Re b_j g_j>`` ``(B, I, J)`` from the complex sums over modes
    ``(B, 2, m, m)`` (`mor.fitting._varpro_kernels.real_products`); ``a``, ``b`` are broadcast to
    ``(B, I)``, ``(B, J)`` and column ``i`` belongs to mode ``mode_a[i]``."""
    batch = sums.shape[0]
    a = np.ascontiguousarray(np.broadcast_to(a, (batch,) + mode_a.shape), dtype=np.complex128)
    b = np.ascontiguousarray(np.broadcast_to(b, (batch,) + mode_b.shape), dtype=np.complex128)
    out = np.empty((batch, mode_a.size, mode_b.size))
    kernels.real_products(np.ascontiguousarray(sums), a, b, mode_a, mode_b, out)
    return out


def _upper_inverse(r: np.ndarray) -> np.ndarray:
    """Inverses of the upper triangular ``r`` ``(B, n, n)`` (a zero pivot gives ``inf``)."""
    out = np.empty_like(r)
    with np.errstate(divide="ignore", invalid="ignore"):
        kernels.upper_inverse_rows(r, out)
    return out


def _condition(r: np.ndarray, rinv: np.ndarray) -> np.ndarray:
    """``||R||_F ||R^-1||_F`` per row: an estimate (from above) of the condition number of the
    column-scaled design (``inf`` for a singular one)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.linalg.norm(r, axis=(1, 2)) * np.linalg.norm(rinv, axis=(1, 2))


def _least_squares(a: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``R`` of ``a = Q R`` (``(B, L, d)``, columns of unit norm), ``c = R^{-1} Q^T y`` and the
    residual ``y - a c``, by Cholesky QR twice (``R_1^T R_1 = a^T a``, ``Q_1 = a R_1^{-1}``,
    ``R_2^T R_2 = Q_1^T Q_1``, ``R = R_2 R_1``): level-3 products only, as accurate as
    Householder while ``cond(a) < CHOLESKY_QR_MAX_COND`` (the second pass restores orthogonality;
    Yamamoto et al. 2015). Batches whose first factor fails or suggests a larger condition number
    take LAPACK's Householder QR instead.
    """
    try:
        r1 = np.linalg.cholesky(np.matmul(a.transpose(0, 2, 1), a), upper=True)
        diag = np.abs(np.diagonal(r1, axis1=1, axis2=2))
        if not np.all(diag.max(axis=1) < CHOLESKY_QR_MAX_COND * diag.min(axis=1)):
            raise np.linalg.LinAlgError("too ill-conditioned for Cholesky QR")
        inv1 = np.linalg.inv(r1)
        q1 = np.matmul(a, inv1)
        r2 = np.linalg.cholesky(np.matmul(q1.transpose(0, 2, 1), q1), upper=True)
    except np.linalg.LinAlgError:
        d = a.shape[2]
        r_aug = np.linalg.qr(np.concatenate([a, y[:, :, None]], axis=2), mode="r")
        r = r_aug[:, :d, :d].copy()
        singular = ~(np.isfinite(r).all(axis=(1, 2))
                     & (np.abs(np.diagonal(r, axis1=1, axis2=2)) > 0).all(axis=1))
        coef = np.linalg.solve(np.where(singular[:, None, None], np.eye(d), r),
                               r_aug[:, :d, d:])[..., 0]
    else:
        qty = np.linalg.solve(r2.transpose(0, 2, 1), np.matmul(y[:, None, :], q1)[:, 0, :, None])
        coef = np.matmul(inv1, np.linalg.solve(r2, qty))[..., 0]
        r = np.matmul(r2, r1)
    with np.errstate(invalid="ignore", over="ignore"):  # singular rows: inadmissible points
        res = y - np.matmul(a, coef[..., None])[..., 0]
    return r, coef, res


def _powers(lam: np.ndarray, count: int) -> np.ndarray:
    """``lambda^k`` for ``k < count``, ``(B, count, m)``: ``lambda^(j + s i) = lambda^j
    (lambda^s)^i`` with ``s ~ sqrt(count)``, both factors by ``exp(k log lambda)`` (relative
    error a few ulps; ``0^0 = 1``)."""
    step = max(1, int(np.ceil(np.sqrt(count))))
    with np.errstate(divide="ignore", under="ignore", invalid="ignore"):
        logs = np.log(np.where(lam == 0, 1e-300, lam))[:, None, :]
        low = np.exp(np.arange(step)[None, :, None] * logs)
        high = np.exp(step * np.arange(-(-count // step))[None, :, None] * logs)
    out = high[:, :, None, :] * low[:, None, :, :]
    return out.reshape(lam.shape[0], -1, lam.shape[1])[:, :count]


class _Point:
    """One evaluation of `ModalProjection` for some of its filters: arrays (and the tail
    energy) with the filters along the first axis, by name."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def take(self, mask: np.ndarray) -> "_Point":
        """The evaluation restricted to the rows where ``mask``."""
        return _Point(**{name: value[mask] for name, value in vars(self).items()})


class _TailEnergy:
    r"""``T^2 = ||h_hat[L:]||^2`` of compact modes and its Wirtinger derivatives.

    ``value`` is ``1/2 Re a^T S a + 1/2 a^H K a`` (module notes), ``a = R' lambda^{L-1}``.
    """

    def __init__(self, lam: np.ndarray, residues: np.ndarray, length: int):
        self.lam, self.residues = lam, residues
        with np.errstate(under="ignore"):
            self.before = lam ** (length - 2)  # lambda^(L-2)
        self.length = length
        self.a = residues * self.before * lam
        self.s = 1.0 / (1.0 - lam[:, :, None] * lam[:, None, :])
        self.k = 1.0 / (1.0 - np.conj(lam)[:, :, None] * lam[:, None, :])
        sa = np.einsum("bnm,bm->bn", self.s, self.a)
        ka = np.einsum("bnm,bm->bn", self.k, self.a)
        raw = 0.5 * np.real(np.einsum("bn,bn->b", self.a, sa)) \
            + 0.5 * np.real(np.einsum("bn,bn->b", np.conj(self.a), ka))
        self.value = np.maximum(raw, 0.0)
        # the form cancels (clustered poles, huge opposing residues): value is rounding
        magnitude = np.abs(self.a)
        terms = np.einsum("bn,bnm,bm->b", magnitude, np.abs(self.s) + np.abs(self.k), magnitude)
        self.cancelled = ~(raw > 1e-8 * 0.5 * terms) & (terms > 0)
        self.w = 0.5 * sa + 0.5 * np.conj(ka)  # dT^2 / da

    def __getitem__(self, mask: np.ndarray) -> "_TailEnergy":
        out = object.__new__(_TailEnergy)
        for name in ("lam", "residues", "before", "a", "s", "k", "value", "cancelled", "w"):
            setattr(out, name, getattr(self, name)[mask])
        out.length = self.length
        return out

    def gradients(self, pairs: int) -> tuple[np.ndarray, np.ndarray]:
        """``v`` with ``dT^2 = 2 Re sum_n v_n d lambda_n`` (residues fixed), and ``dT^2 / dc``
        for the real coefficients ``c`` (``Re R'``, then ``Im R'`` of the pairs)."""
        lam_a = self.lam * self.a
        explicit = 0.5 * self.a * (np.einsum("bnm,bm->bn", self.s ** 2, lam_a)
                                   + np.einsum("bnm,bn->bm", self.k ** 2, np.conj(lam_a)))
        v = self.w * self.residues * (self.length - 1) * self.before + explicit
        wl = self.w * self.before * self.lam
        return 2 * v, np.concatenate([2 * wl.real, -2 * wl[:, :pairs].imag], axis=1)
