"""``ModalSSM``: a batch of real discrete-time SISO systems in modal (pole-residue) form."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import scipy.optimize
from numpy.typing import ArrayLike

from mor._numerics import freq, kernels
from mor._numerics.gramians import hankel_values_from_factors, stein_factor
from mor._numerics.linalg import eig_batched
from mor.conventions import Scale
from mor.systems.schema import read_bank, write_bank
from mor.systems.statespace import StateSpace

_PAIR_RTOL = 1e-8


class ModalSSM:
    r"""A batch of real discrete-time SISO systems in modal form.

    .. math::

        H(z) = D + \sum_n \frac{R_n}{z - \lambda_n}, \qquad
        h[0] = D, \quad h[k] = \sum_n R_n \lambda_n^{k-1} \ (k \ge 1).

    Poles are real or come in conjugate pairs with conjugate residues, so that the impulse
    response is real. ``poles`` and ``residues`` (shape ``(..., n)``) list every pole of the
    real system (both members of a pair); ``n`` is the largest order in the batch and systems of
    lower order are padded with zero residues at the end. ``order`` is the McMillan degree of
    each system (a pair counts 2, for distinct poles), ``modes`` its number of compact modes
    (a pair counts 1).

    Parameters
    ----------
    poles, residues : array_like, complex, shape (..., n)
        Conjugate-closed poles and residues (checked to a relative ``1e-8``; the pairs are then
        made exactly conjugate). Modes with a zero residue are padding.
    direct : array_like, real, shape (...)
        Direct term ``D = h[0]``.
    info : dict, optional
        What produced the model (method, flags, achieved errors); arrays of the batch shape are
        indexed with the batch.

    Raises
    ------
    ValueError
        If the shapes do not match, an entry is NaN or Inf, ``direct`` is complex, or the
        poles and residues are not closed under conjugation (the impulse response would be
        complex).

    See Also
    --------
    ModalSSM.from_compact : Build from the compact form (one mode per conjugate pair).

    ModalSSM.from_dense : Diagonalise dense systems ``(A, B, C, D)``.

    mor.reduce : Models of FIR filters.

    mor.load : Read a batch written by `save`.

    StateSpace : Dense systems.

    Notes
    -----
    Internally the batch is kept in compact form, one mode per pair (residue ``2 R``) or real
    pole, sorted by decreasing H2 weight ``|R| / sqrt(1 - |lambda|^2)``; see `compact`. That
    is the form a GPU recurrence runs: ``x_n[t+1] = lambda_n x_n[t] + u[t]``,
    ``y[t] = Re sum_n R'_n x_n[t] + D u[t]``, one complex state per mode
    (`mor.torch.ModalRecurrence`).

    Gramians of the diagonal realisation ``(Lambda, 1, R)`` (for `h2_norm`, `tail_norm` and
    `hankel_singular_values`) are computed in square-root form, by a squared Smith iteration
    [1] with QR compression in the manner of Hammarling [2], so Hankel singular values keep
    their accuracy down to ``eps * sigma_1``.

    References
    ----------
    .. [1] R. A. Smith, "Matrix equation XA + BX = C," *SIAM Journal on Applied Mathematics*,
       vol. 16, no. 1, pp. 198-201, 1968.

    .. [2] S. J. Hammarling, "Numerical solution of the stable, non-negative definite
       Lyapunov equation," *IMA Journal of Numerical Analysis*, vol. 2, no. 3, pp. 303-323,
       1982.

    Examples
    --------
    One real pole, ``H(z) = 1 / (z - 0.5)``, so ``h[k] = 0.5^(k-1)`` for ``k >= 1``:

    >>> import numpy as np
    >>> import mor
    >>> ssm = mor.ModalSSM([0.5], [1.0], 0.0)
    >>> print(ssm.impulse(5))
    [0.    1.    0.5   0.25  0.125]
    >>> print(f"{ssm.h2_norm():.6f}")  # sqrt(1 / (1 - 0.5^2))
    1.154701
    >>> print(f"{ssm.hinf_norm():.6f}")  # |H| peaks at z = 1
    2.000000
    >>> print(np.round(ssm.freqresp([0.0, np.pi]).real, 6))
    [ 2.       -0.666667]

    A conjugate pair: ``h[k] = 0.5^k cos(0.3 k)``, of order 2 and one compact mode.

    >>> lam = 0.5 * np.exp(0.3j)
    >>> pair = mor.ModalSSM([lam, np.conj(lam)], [lam / 2, np.conj(lam) / 2], 1.0)
    >>> k = np.arange(8)
    >>> print(np.allclose(pair.impulse(8), 0.5**k * np.cos(0.3 * k)))
    True
    >>> int(pair.order), int(pair.modes)
    (2, 1)
    >>> poles, residues, direct = pair.compact()  # one mode per pair, residue doubled
    >>> print(np.round(poles, 6), np.round(residues, 6), direct)
    [0.477668+0.14776j] [0.477668+0.14776j] 1.0

    Batches index like arrays, with their ``info``:

    >>> from mor.demo import hyena_like_filters
    >>> bank = mor.reduce(hyena_like_filters(3, 256), 8)
    >>> bank.shape, bank[1:].shape
    ((3,), (2,))
    >>> bank.order, bank.modes
    (array([8, 8, 8]), array([4, 4, 4]))
    >>> print(bool(bank[0].info["l2"] == bank.info["l2"][0]))
    True
    """

    def __init__(self, poles, residues, direct, *, info: dict[str, Any] | None = None):
        poles = np.asarray(poles, dtype=np.complex128)
        residues = np.asarray(residues, dtype=np.complex128)
        direct = np.asarray(direct)
        if np.iscomplexobj(direct):
            raise ValueError("direct must be real")
        direct = direct.astype(np.float64)
        if poles.ndim == 0 or poles.shape != residues.shape:
            raise ValueError(f"poles and residues must have the same shape (..., n), got "
                             f"{poles.shape} and {residues.shape}")
        if direct.shape != poles.shape[:-1]:
            raise ValueError(f"direct must have the batch shape {poles.shape[:-1]}, got "
                             f"{direct.shape}")
        for name, arr in (("poles", poles), ("residues", residues), ("direct", direct)):
            if not np.isfinite(arr).all():
                raise ValueError(f"{name} has NaN or Inf entries")
        pc, rc = _compact_from_full(poles.reshape(-1, poles.shape[-1]),
                                    residues.reshape(-1, poles.shape[-1]))
        self._set(pc.reshape(poles.shape[:-1] + pc.shape[-1:]),
                  rc.reshape(poles.shape[:-1] + pc.shape[-1:]), direct, info)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_compact(cls, poles, residues, direct, *, info: dict[str, Any] | None = None
                     ) -> "ModalSSM":
        r"""Build from the compact form ``h[k] = Re \sum_n R'_n \lambda_n^{k-1}`` (``k >= 1``).

        A mode with a non-real pole stands for the pair ``(lambda, conj(lambda))`` with residues
        ``(R'/2, conj(R')/2)``; a real pole keeps the real part of its residue.
        """
        poles = np.asarray(poles, dtype=np.complex128)
        residues = np.asarray(residues, dtype=np.complex128)
        direct = np.asarray(direct, dtype=np.float64)
        if poles.ndim == 0 or poles.shape != residues.shape or direct.shape != poles.shape[:-1]:
            raise ValueError(f"need poles, residues of shape (..., m) and direct of shape (...), "
                             f"got {poles.shape}, {residues.shape}, {direct.shape}")
        for name, arr in (("poles", poles), ("residues", residues), ("direct", direct)):
            if not np.isfinite(arr).all():
                raise ValueError(f"{name} has NaN or Inf entries")
        residues = np.where(poles.imag == 0, residues.real, residues)
        obj = cls.__new__(cls)
        obj._set(poles, residues, direct, info)
        return obj

    @classmethod
    def from_dense(cls, a, b, c, d, *, info: dict[str, Any] | None = None) -> "ModalSSM":
        r"""Diagonalise real dense systems ``(A, B, C, D)`` (batched: ``A`` of shape ``(..., n, n)``).

        ``A = T \Lambda T^{-1}`` gives residues ``R = (C T) \odot (T^{-1} B)``. The modal form is
        as accurate as the eigenvector matrix ``T`` is well conditioned: ``info`` receives
        ``conversion_error``, the relative difference of the Markov parameters ``C A^k B``
        (``k < 2n``) of the two forms. An exactly defective ``A`` (singular ``T``, e.g. a pure
        delay's nilpotent shift) gets least-squares residues ``T^+ B``: its modal form is then
        inaccurate, and ``conversion_error`` says by how much (one such system does not stop
        the batch).
        """
        a = np.asarray(a, dtype=np.float64)
        if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
            raise ValueError(f"A must have shape (..., n, n), got {a.shape}")
        n = a.shape[-1]
        b = np.asarray(b, dtype=np.float64).reshape(a.shape[:-1])
        c = np.asarray(c, dtype=np.float64).reshape(a.shape[:-1])
        d = np.asarray(d, dtype=np.float64).reshape(a.shape[:-2])
        if n == 0:
            empty = np.zeros(a.shape[:-2] + (0,), dtype=np.complex128)
            ssm = cls.from_compact(empty, empty, d, info=info)
            ssm.info.setdefault("conversion_error", np.zeros(a.shape[:-2]))
            return ssm
        for name, arr in (("A", a), ("B", b), ("C", c), ("D", d)):
            if not np.isfinite(arr).all():
                raise ValueError(f"{name} has NaN or Inf entries")
        lam, t = eig_batched(a)  # np.linalg.eig's result, on the worker threads
        rhs = b[..., None].astype(np.complex128)
        try:
            tb = np.linalg.solve(t, rhs)[..., 0]
        except np.linalg.LinAlgError:  # some T exactly singular: those systems by least squares
            tb = np.stack([_solve_or_least_squares(ti, ri) for ti, ri in
                           zip(t.reshape(-1, n, n), rhs.reshape(-1, n, 1))]).reshape(b.shape)
        with np.errstate(over="ignore", invalid="ignore"):
            res = np.einsum("...i,...ij->...j", c, t) * tb
        wild = ~np.isfinite(res).all(axis=-1)
        if wild.any():  # T nearly singular: residues beyond float64, least squares instead
            for i in np.argwhere(wild):
                i = tuple(i)
                tb[i] = np.linalg.lstsq(t[i], rhs[i], rcond=None)[0][:, 0]
                res[i] = (c[i] @ t[i]) * tb[i]
        # LAPACK returns conjugate pairs of a real matrix consecutively, positive imaginary part
        # first: keep that member with the residue doubled, and the real poles as they are.
        keep = lam.imag >= 0
        res = np.where(lam.imag > 0, 2 * res, res.real)
        res = np.where(keep, res, 0)
        lam = np.where(keep, lam, 0)
        ssm = cls.from_compact(lam, res, d, info=info)
        # Near-defective A (clustered poles; an FIR filter's own realisation is nilpotent) makes
        # the eigenvector matrix ill-conditioned: measure what the conversion lost on the
        # Markov parameters C (A/rho)^k B, k < 2n, which determine an order-n system (rho
        # scales unstable systems so that the powers stay bounded).
        rho = np.maximum(np.abs(lam).max(axis=-1), 1.0)
        scaled = a / rho[..., None, None]
        markov = kernels.markov_parameters(scaled.reshape(-1, n, n), b.reshape(-1, n),
                                            c.reshape(-1, n), 2 * n
                                            ).reshape(a.shape[:-2] + (2 * n,))
        pc, rc, _ = ssm.compact()
        modal = ModalSSM.from_compact(pc / rho[..., None], rc, d).impulse(2 * n + 1)[..., 1:]
        with np.errstate(over="ignore", invalid="ignore"):  # huge residues: inf lost
            scale = np.linalg.norm(markov, axis=-1)
            lost = np.linalg.norm(modal - markov, axis=-1)
        ssm.info.setdefault("conversion_error", np.divide(
            lost, scale, out=np.where(lost > 0, np.inf, 0.0), where=scale > 0))
        return ssm

    def _set(self, poles_c, residues_c, direct, info):
        live = residues_c != 0
        weight = np.zeros(poles_c.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            weight[live] = np.abs(residues_c[live]) / np.sqrt(
                np.maximum(1.0 - np.abs(poles_c[live]) ** 2, 0.0))
        weight[live & np.isnan(weight)] = np.inf
        weight[~live] = -1.0
        perm = np.argsort(-weight, axis=-1, kind="stable")
        poles_c = np.take_along_axis(np.where(live, poles_c, 0), perm, axis=-1)
        residues_c = np.take_along_axis(residues_c, perm, axis=-1)
        m = int(live.sum(axis=-1).max(initial=0))
        self._poles_c = np.ascontiguousarray(poles_c[..., :m])
        self._residues_c = np.ascontiguousarray(residues_c[..., :m])
        self._direct = direct
        self.info: dict[str, Any] = dict(info or {})

    # ------------------------------------------------------------------ shape and forms
    @property
    def shape(self) -> tuple[int, ...]:
        """Batch shape."""
        return self._direct.shape

    @property
    def direct(self) -> np.ndarray:
        """Direct term ``D = h[0]``, shape ``(...)``."""
        return self._direct

    @property
    def modes(self) -> np.ndarray:
        """Number of compact modes of each system (a conjugate pair counts 1)."""
        return (self._residues_c != 0).sum(axis=-1)

    @property
    def order(self) -> np.ndarray:
        """McMillan degree of each real system (a conjugate pair counts 2)."""
        live = self._residues_c != 0
        return (live * np.where(self._poles_c.imag != 0, 2, 1)).sum(axis=-1)

    def compact(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r"""``(poles, residues, direct)`` with ``h[k] = Re \sum_n R'_n \lambda_n^{k-1}``.

        One mode per conjugate pair (residue doubled) or real pole: the form GPU recurrences
        run. Shape ``(..., m)`` with ``m`` the largest number of modes in the batch; padded modes
        have zero pole and residue.
        """
        return self._poles_c.copy(), self._residues_c.copy(), self._direct.copy()

    @property
    def poles(self) -> np.ndarray:
        """All poles of each real system (both members of a pair), shape ``(..., n)``."""
        return self._full()[0]

    @property
    def residues(self) -> np.ndarray:
        """Residues matching `poles`, shape ``(..., n)``."""
        return self._full()[1]

    def _full(self) -> tuple[np.ndarray, np.ndarray]:
        pc, rc = self._poles_c, self._residues_c
        pair = pc.imag != 0
        first_r = np.where(pair, rc / 2, rc)
        second_p = np.where(pair, np.conj(pc), 0)
        second_r = np.where(pair, np.conj(rc) / 2, 0)
        p = np.stack([pc, second_p], axis=-1).reshape(pc.shape[:-1] + (2 * pc.shape[-1],))
        r = np.stack([first_r, second_r], axis=-1).reshape(p.shape)
        perm = np.argsort(r == 0, axis=-1, kind="stable")
        n = int(self.order.max(initial=0))
        return (np.take_along_axis(p, perm, axis=-1)[..., :n],
                np.take_along_axis(r, perm, axis=-1)[..., :n])

    def _flat_compact(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f, m = int(np.prod(self.shape, dtype=np.int64)), self._poles_c.shape[-1]
        return (self._poles_c.reshape(f, m), self._residues_c.reshape(f, m),
                self._direct.reshape(f))

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a single system (empty batch shape)")
        return self.shape[0]

    def __getitem__(self, key) -> "ModalSSM":
        if not self.shape:
            raise IndexError("a single system cannot be indexed")
        size = int(np.prod(self.shape, dtype=np.int64))
        sel = np.arange(size).reshape(self.shape)[key]
        flat = sel.reshape(-1)
        pc, rc, d = self._flat_compact()
        info = {}
        for k, v in self.info.items():
            if isinstance(v, np.ndarray) and v.shape[: len(self.shape)] == self.shape:
                v = v.reshape((size,) + v.shape[len(self.shape):])[flat]
                v = v.reshape(sel.shape + v.shape[1:])
            info[k] = v
        m = pc.shape[-1]  # explicit: an empty selection cannot infer it
        return ModalSSM.from_compact(pc[flat].reshape(sel.shape + (m,)),
                                     rc[flat].reshape(sel.shape + (m,)),
                                     d[flat].reshape(sel.shape), info=info)

    def __repr__(self) -> str:
        """The batch shape, the orders and the modes: one value where every system has the
        same (a single system included), else their range."""
        if self.order.size == 0:
            return f"ModalSSM(shape={self.shape}, empty)"

        def span(values: np.ndarray) -> str:
            low, high = int(values.min()), int(values.max())
            return f"{low}" if low == high else f"{low}..{high}"

        return f"ModalSSM(shape={self.shape}, order {span(self.order)}, modes {span(self.modes)})"

    # ------------------------------------------------------------------ responses and norms
    def impulse(self, length: int, *, kernel: str = "numba") -> np.ndarray:
        r"""Impulse response ``h[0..L-1]``, shape ``(..., L)``.

        ``kernel="numba"`` accumulates powers in a compiled loop (``O(m L)`` per system);
        ``kernel="numpy"`` is the reference with explicit powers (``O(m L)`` memory).
        """
        length = int(length)
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        fn = {"numba": kernels.impulse_compact,
              "numpy": kernels.impulse_compact_reference}.get(kernel)
        if fn is None:
            raise ValueError(f"kernel must be 'numba' or 'numpy', got {kernel!r}")
        return fn(*self._flat_compact(), length).reshape(self.shape + (length,))

    def float32_deviation(self, length: int, reference: ArrayLike | None = None) -> np.ndarray:
        r"""What running the system as inference engines do costs, relative, over ``L`` taps.

        .. math::

            \delta = \max_{k < L} |\tilde h[k] - h[k]| \,/\, \max_{k < L} |h[k]|,

        with ``h`` the response in float64 (or ``reference``) and ``\tilde h`` the same system
        with its poles and residues rounded to complex64, its direct term to float32 and the
        recurrence ``z <- lambda z`` run in single precision
        (`mor._numerics.kernels.impulse_compact`). Both are computed at a power-of-two scale
        that puts the peak of ``h`` in ``[1/2, 1)``, so ``delta`` is scale-free. It grows like
        ``eps_32 sum |R| / (1 - |lambda|)`` over ``max |h|``: residues that cancel and poles
        near the circle cost precision. ``0`` for a zero response (against zero ``reference``
        taps: ``0`` for a zero system, else ``inf``), ``inf`` where the float64 response does
        not stay finite (unstable systems).

        Parameters
        ----------
        length : int
            Taps ``L >= 1``.
        reference : array_like, shape ``(..., L)``, optional
            Taps to measure against instead of the system's own float64 response (e.g. the
            filters a bank approximates: ``delta`` is then the error as engines run it).
        """
        length = int(length)
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        pc, rc, d = self._flat_compact()
        if reference is None:
            exact = kernels.impulse_compact(pc, rc, d, length)
        else:
            exact = np.asarray(reference, dtype=np.float64)
            if exact.shape != self.shape + (length,):
                raise ValueError(f"reference must have shape {self.shape + (length,)}, got "
                                 f"{exact.shape}")
            exact = exact.reshape(-1, length)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            peak = np.abs(exact).max(axis=-1)
            scale = Scale.of(np.where(np.isfinite(peak), peak, 0.0), "system")
            rounded = kernels.impulse_compact(pc, scale.down(rc), scale.down(d), length,
                                              dtype=np.float32)
            gap = np.abs(rounded - scale.down(exact)).max(axis=-1)
            deviation = np.where(peak > 0, gap / scale.down(peak),
                                 np.where(gap > 0, np.inf, 0.0))
        deviation[~np.isfinite(peak) | ~np.isfinite(deviation)] = np.inf
        return deviation.reshape(self.shape)

    def freqresp(self, w) -> np.ndarray:
        r"""Frequency response ``H(e^{i w}) = D + \sum_n R_n / (e^{iw} - \lambda_n)``.

        ``w`` (radians per sample) has shape ``(K,)``; the result has shape ``(..., K)``.
        """
        w = np.asarray(w, dtype=np.float64)
        if w.ndim != 1:
            raise ValueError(f"w must be 1-D, got shape {w.shape}")
        pc, rc, d = self._flat_compact()
        ww = np.broadcast_to(w, (pc.shape[0], w.size))
        return freq.modal_response_at(pc, rc, d, ww).reshape(self.shape + (w.size,))

    def is_stable(self, margin: float = 0.0) -> np.ndarray:
        """``True`` where every live pole has ``|lambda| < 1 - margin``."""
        live = self._residues_c != 0
        return ~((np.abs(self._poles_c) >= 1.0 - margin) & live).any(axis=-1)

    def _require_stable(self, what: str) -> None:
        if not np.all(self.is_stable()):
            bad = tuple(int(i) for i in np.argwhere(~np.atleast_1d(self.is_stable()))[0])
            raise ValueError(f"{what} is defined for stable systems only; system {bad} has a "
                             f"pole with |lambda| >= 1")

    def _scaled_full(self) -> tuple[np.ndarray, np.ndarray, Scale]:
        """The full form with each system's residues divided by a power of two (their largest
        in ``[1/2, 1)``, `mor.conventions.Scale`): norms are computed scale-free, without
        overflow or underflow of the squared residues, and scaled back exactly."""
        p, r = self._full()
        scale = Scale.of(np.abs(r).max(axis=-1, initial=0.0), "system")
        return p, scale.down(r), scale

    def _factors(self) -> tuple[np.ndarray, np.ndarray, Scale]:
        """Gramian factors ``(L_c, L_o)`` of the diagonal realisation ``(Lambda, 1, R)``, the
        residues scaled down by the returned `Scale`."""
        p, r, scale = self._scaled_full()
        lc = stein_factor(p, np.ones(p.shape + (1,), dtype=np.complex128))
        lo = stein_factor(np.conj(p), np.conj(r)[..., None])
        return lc, lo, scale

    def h2_norm(self) -> np.ndarray:
        r"""``||h||_2 = (D^2 + \sum_{k \ge 1} h[k]^2)^{1/2}`` over the infinite response."""
        self._require_stable("the H2 norm")
        return np.hypot(self._direct, self._response_energy(0))

    def tail_norm(self, length: int) -> np.ndarray:
        r"""``||h[L:]||_2``: what the system emits after lag ``L`` (``L >= 1``)."""
        self._require_stable("the tail norm")
        length = int(length)
        if length < 1:
            return self.h2_norm()
        return self._response_energy(length - 1)

    def _response_energy(self, shift: int) -> np.ndarray:
        r"""``(\sum_{k > shift} h[k]^2)^{1/2}`` for stable systems.

        With ``x_n = R_n \lambda_n^{shift}`` the sum is the quadratic form
        ``x^H G x`` of the Gramian ``G_mn = 1 / (1 - conj(lambda_m) lambda_n)``, evaluated
        directly (``O(n^2)``). Where that sum cancels by more than a factor ``1e8`` (clustered
        poles with opposing residues) it is recomputed in square-root form,
        ``||L^H x||`` with ``G = L L^H`` from `mor._numerics.gramians.stein_factor`, which has
        no cancellation.
        """
        p, r, scale = self._scaled_full()
        x = r * p**shift
        gap = 1.0 - np.conj(p)[..., :, None] * p[..., None, :]
        # 1 - |lambda|^2 as (1 - |lambda|)(1 + |lambda|): a pole within an ulp or two of the
        # circle (stable: |lambda| < 1) has conj(lambda) lambda round to 1 and the gap to 0
        modulus = np.abs(p)
        diagonal = np.arange(p.shape[-1])
        gap[..., diagonal, diagonal] = (1.0 - modulus) * (1.0 + modulus)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.conj(x)[..., :, None] * x[..., None, :] / gap
        terms = np.where((x[..., :, None] == 0) | (x[..., None, :] == 0), 0, terms)
        energy = np.asarray(terms.sum(axis=(-2, -1)).real)  # an array also for one system
        cancelled = ~(energy > 1e-8 * np.abs(terms).sum(axis=(-2, -1)))
        cancelled &= np.any(x != 0, axis=-1)
        if cancelled.any():
            pc, xc = p[cancelled], x[cancelled]
            lc = stein_factor(pc, np.ones(pc.shape + (1,), dtype=np.complex128))
            energy[cancelled] = np.linalg.norm(np.einsum("...i,...ij->...j", xc, lc),
                                               axis=-1) ** 2
        return scale.up(np.sqrt(np.maximum(energy, 0.0)), name="the response's norm")

    def hinf_norm(self) -> np.ndarray:
        r"""``max_w |H(e^{iw})|``: exact dense grid, refined by golden section near the peaks.

        ``inf`` for a system with a pole on or outside the unit circle.
        """
        pc, rc, d = self._flat_compact()
        # each system divided by a power of two: the peak search is scale-free
        scale = Scale.of(np.maximum(np.abs(rc).max(axis=-1, initial=0.0), np.abs(d)), "system")
        peak, _ = freq.peak_magnitude(freq.ModalResponse(pc, scale.down(rc), scale.down(d)))
        return scale.up(peak, name="the peak |H|").reshape(self.shape)

    def hankel_singular_values(self) -> np.ndarray:
        r"""Hankel singular values ``sigma(L_o^H L_c)`` from the modal Gramians, ``(..., n)``.

        ``P = L_c L_c^H`` and ``Q = L_o L_o^H`` solve the Stein equations of the diagonal
        realisation; see `mor._numerics.gramians` for the square-root accuracy.
        """
        self._require_stable("Hankel singular values")
        lc, lo, scale = self._factors()
        return scale.up(hankel_values_from_factors(lc, lo), name="the Hankel singular values")

    # ------------------------------------------------------------------ conversions
    def to_dense(self):
        r"""Real block-diagonal `mor.StateSpace` ``(A, B, C, D)``.

        A pair ``(\lambda = a + ib, R'/2)`` becomes the block ``[[a, -b], [b, a]]`` with
        ``B = (1, 0)`` and ``C = (Re R', -Im R')``; a real pole the scalar ``\lambda`` with
        ``B = 1``, ``C = R'``. Padding gives zero blocks.
        """
        pc, rc, d = self._flat_compact()
        n = int(self.order.max(initial=0))
        f = pc.shape[0]
        a = np.zeros((f, n, n))
        b = np.zeros((f, n))
        c = np.zeros((f, n))
        for i in range(f):
            j = 0
            for lam, res in zip(pc[i], rc[i]):
                if res == 0:
                    continue
                if lam.imag != 0:
                    a[i, j:j + 2, j:j + 2] = [[lam.real, -lam.imag], [lam.imag, lam.real]]
                    b[i, j] = 1.0
                    c[i, j:j + 2] = [res.real, -res.imag]
                    j += 2
                else:
                    a[i, j, j] = lam.real
                    b[i, j] = 1.0
                    c[i, j] = res.real
                    j += 1
        return StateSpace(a.reshape(self.shape + (n, n)), b.reshape(self.shape + (n,)),
                          c.reshape(self.shape + (n,)), d.reshape(self.shape))

    def save(self, path: str | os.PathLike) -> None:
        """Write the batch to a versioned ``.npz`` file; see `mor.load`."""
        write_bank(path, *self.compact(), self.info)


def load(path: str | os.PathLike) -> ModalSSM:
    """Read a batch of modal systems written by `ModalSSM.save`.

    The file is a versioned ``.npz`` archive of plain arrays (schema and versions:
    `mor.systems.schema`): the compact poles, residues and direct terms, and the ``info``
    arrays of the batch shape (method, achieved errors, flags). Nothing is unpickled.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by `ModalSSM.save` (or ``mor distill --out``).

    Returns
    -------
    ModalSSM
        The batch, with the same compact form and ``info``.

    Raises
    ------
    ValueError
        If ``path`` is not a mor ``ModalSSM`` file of a version this mor reads, or is corrupt.

    See Also
    --------
    ModalSSM.save : Writes the file.

    mor.export : The same banks in the conventions of inference engines.

    Examples
    --------
    >>> import pathlib
    >>> import tempfile
    >>> import numpy as np
    >>> import mor
    >>> from mor.demo import hyena_like_filters
    >>> bank = mor.reduce(hyena_like_filters(3, 256), 8)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder) / "bank.npz"
    ...     bank.save(path)
    ...     loaded = mor.load(path)
    >>> print(np.array_equal(loaded.impulse(256), bank.impulse(256)))
    True
    >>> loaded.info["method"], loaded.order
    ('balanced', array([8, 8, 8]))
    """
    poles, residues, direct, info = read_bank(path)
    return ModalSSM.from_compact(poles, residues, direct, info=info)


def _solve_or_least_squares(t: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``T^-1 rhs`` for one eigenvector matrix, ``T^+ rhs`` where ``T`` is singular."""
    try:
        return np.linalg.solve(t, rhs)[:, 0]
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(t, rhs, rcond=None)[0][:, 0]


def _compact_from_full(poles: np.ndarray, residues: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compact form of a flat batch ``(F, n)`` of conjugate-closed modes (validated)."""
    f, n = poles.shape
    pc = np.zeros((f, n), dtype=np.complex128)
    rc = np.zeros((f, n), dtype=np.complex128)
    for i in range(f):
        live = residues[i] != 0
        p, r = poles[i, live], residues[i, live]
        rscale = np.abs(r).max(initial=0.0)
        pscale = max(1.0, np.abs(p).max(initial=0.0))
        real = p.imag == 0
        if np.any(np.abs(r[real].imag) > _PAIR_RTOL * rscale):
            raise ValueError(f"system {i}: a real pole has a complex residue (the impulse "
                             f"response would be complex)")
        up, down = p.imag > 0, p.imag < 0
        pu, ru, pd, rd = p[up], r[up], np.conj(p[down]), np.conj(r[down])
        if pu.size != pd.size:
            raise ValueError(f"system {i}: poles are not closed under conjugation")
        if pu.size:
            rows, cols = scipy.optimize.linear_sum_assignment(np.abs(pu[:, None] - pd[None, :]))
            pd, rd = pd[cols], rd[cols]
            if (np.abs(pu - pd).max() > _PAIR_RTOL * pscale
                    or np.abs(ru - rd).max() > _PAIR_RTOL * rscale):
                raise ValueError(f"system {i}: poles or residues are not closed under "
                                 f"conjugation (the impulse response would be complex)")
        k = pu.size
        pc[i, :k] = (pu + pd) / 2
        rc[i, :k] = ru + rd
        pc[i, k:k + real.sum()] = p[real].real
        rc[i, k:k + real.sum()] = r[real].real
    return pc, rc
