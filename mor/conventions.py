"""The conventions of mor, written once and used everywhere.

Filters and systems
-------------------
* An FIR filter is a real array ``h[0..L-1]``; it acts by ``y[t] = sum_k h[k] u[t-k]`` and has
  transfer function ``H(z) = sum_k h[k] z^{-k}``.
* A discrete-time state-space model ``x[t+1] = A x[t] + B u[t]``, ``y[t] = C x[t] + D u[t]`` has
  impulse response ``h[0] = D`` and ``h[k] = C A^{k-1} B`` for ``k >= 1``.
* Modal form: ``A = diag(lambda)``, ``h[k] = sum_n R_n lambda_n^{k-1}`` and
  ``H(z) = D + sum_n R_n / (z - lambda_n)``. A real system has real poles or conjugate pairs with
  conjugate residues. The *compact* form keeps one mode per pair with residue ``2 R`` (real poles
  as they are), so that ``h[k] = Re sum_n R'_n lambda_n^{k-1}``.
* The *order* of a system is its McMillan degree (a conjugate pair counts 2); its number of
  *modes* is the number of compact modes (a pair counts 1), the state size of a GPU recurrence.
* The Hankel matrix of a filter is ``H[i, j] = h[i + j + 1]``, symmetric of size
  ``(L - 1) x (L - 1)``; its singular values ``sigma_1 >= sigma_2 >= ...`` are the Hankel singular
  values (HSV).
* Every public function takes filters of shape ``(..., L)`` and returns results with the same
  leading (batch) shape. One 1-D filter is a batch of one with an empty batch shape.

Errors (relative to the filter's own norm; absolute for a zero filter)
----------------------------------------------------------------------
* ``l2``: ``||h - h_hat||_2`` over the ``L`` taps, relative to ``||h||_2``.
* ``tail``: ``||h_hat[L:]||_2`` (what the model emits after lag ``L``), relative to ``||h||_2``.
* ``hinf``: ``max_w |H(e^{iw}) - H_hat(e^{iw})|`` with ``H_hat`` the model's full response,
  relative to ``max_w |H(e^{iw})|``.

AAK theory: a model of order ``d`` has absolute H-infinity error ``>= sigma_{d+1}``; balanced
truncation has absolute H-infinity error ``<= 2 sum_{i>d} sigma_i``. Relative figures divide both
bounds by ``max |H|``. ``sigma_{d+1}`` bounds ``hinf`` from below, never ``l2``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

NORMS: tuple[str, ...] = ("l2", "hinf")
Norm = Literal["l2", "hinf"]

#: A model whose modal form lost more than this (``conversion_error``: relative, on its Markov
#: parameters) fails: near-defective poles, whose residues cancel.
CONVERSION_RTOL = 1e-6

#: The entries of ``ModalSSM.info`` that `mor.reduce` writes, defined once: per-filter arrays of
#: the batch shape unless marked *(batch)*. `mor.distill`'s report columns use the same names.
INFO: dict[str, str] = {
    "order": "McMillan degree of the model returned (a conjugate pair counts 2)",
    "l2": "relative l2 error over the L taps",
    "tail": "relative energy the model emits after lag L",
    "hinf": "relative peak error on the unit circle, the model's full response",
    "f32_deviation": "max |h32 - h| / max |h| over L taps: the model run in float32 as engines do",
    "peak": "max |H| of the filter (absolute): the reference of hinf, aak and bt_bound",
    "aak": "AAK lower bound sigma_{d+1} / max |H| at the model's order",
    "bt_bound": "balanced-truncation upper bound 2 sum_{i>d} sigma_i / max |H|",
    "truncation_tail": "'hankel': 2 sum_{i>r} sigma_i / max |H| of its intermediate model, a "
                       "bound on the Hankel error's distance above sigma_{d+1} (0 where "
                       "aak_exact)",
    "glover_bound": "'hankel': sum_{i>d} sigma_i / max |H| + truncation_tail",
    "aak_exact": "'hankel' on FIR filters: the approximant is the exact AAK construction on the "
                 "filter itself (Hankel error sigma_{d+1}, no truncation tail)",
    "met_tol": "with tol: whether the model meets the tolerance",
    "search_start": "with tol: the proven lower bound the order scan started from",
    "rank_capped": "with order/modes: the model's order is below the one asked for (the "
                   "filter's Hankel rank, or the method built fewer poles)",
    "failed": "the filter failed (order 0 with on_fail='flag')",
    "reason": "why it failed, or why it missed the tolerance ('' otherwise)",
    "conversion_error": "what the modal form lost on the Markov parameters (relative)",
    "poles_touched": "poles on or outside the unit circle reflected or dropped",
    "iterations": "iterative methods ('modal', 'irka'): iterations (trial points) run",
    "converged": "iterative methods: stopped by the convergence test, not the iteration cap",
    "homotopy_extra": "'modal' with init='homotopy': the extra modes of the fit kept (2 or 4: "
                      "fitted wider and pruned; 0: the fit from balanced truncation)",
    "poles_rounded": "pole methods: the poles were rounded to complex64 and the residues "
                     "refitted on them (the float32 deviation of least squares exceeded F32_RTOL)",
    "method": "(batch) the method's name",
    "method_options": "(batch) the options given to the method",
    "search": "(batch) how the order was chosen",
}


def as_filters(h, name: str = "h") -> np.ndarray:
    """Validate FIR filters and return them as a float64 array of shape ``(..., L)``.

    Integer and float inputs are accepted; complex, empty, 0-d and non-finite inputs raise a
    ``ValueError`` that says what is wrong (for non-finite taps, the index of the first bad
    filter in the batch).
    """
    arr = np.asarray(h)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real: mor works on real filters, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{name} must have shape (..., L) with L >= 1, got a 0-d array")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}): need at least one tap per filter")
    arr = arr.astype(np.float64, copy=False)
    finite = np.isfinite(arr).all(axis=-1)
    if not finite.all():
        bad = tuple(int(i) for i in np.argwhere(~finite)[0])
        label = f"filter {bad}" if bad else "the filter"
        raise ValueError(f"{name} has NaN or Inf taps in {label}")
    return arr


class Scale:
    """Exact power-of-two scaling of a batch of filters or systems, one factor per member.

    A filter's scale is arbitrary, so every result must be homogeneous in it: each member is
    divided by ``2^e`` (``e`` from the ``frexp`` exponent of its largest magnitude, so that it
    lies in ``[1/2, 1)``; ``e = 0`` for a zero member) before any arithmetic, and every
    result that carries the scale (residues, direct terms, singular values, bounds, absolute
    errors) is multiplied back by ``2^(p e)`` for its degree ``p``. Multiplying by a power of
    two is exact between normal numbers, so ``reduce(c h)`` equals ``c reduce(h)`` bit for bit
    for every power of two ``c`` that keeps inputs and outputs normal; a result that overflows
    when scaled back is a ``ValueError`` naming the member.

    Parameters
    ----------
    exponents : ndarray of int, shape ``batch``
        ``e`` per member.
    what : str
        What a member is called in error messages (``"filter"``, ``"system"``).
    """

    def __init__(self, exponents: np.ndarray, what: str = "filter"):
        self.exponents = np.asarray(exponents, dtype=np.int64)
        self.what = what

    @classmethod
    def of(cls, magnitudes: np.ndarray, what: str = "filter") -> "Scale":
        """The scale of members whose largest magnitudes are ``magnitudes`` (batch-shaped)."""
        _, exponents = np.frexp(np.asarray(magnitudes, dtype=np.float64))
        return cls(exponents, what)

    @classmethod
    def of_filters(cls, h: np.ndarray) -> "Scale":
        """The scale of validated (real, finite) filters ``(..., L)``: of ``max |h|`` per
        filter, as ``max(max h, -min h)`` (no array of magnitudes: for 64 filters of 2^20 taps
        1.5 s of fresh memory's page faults -> 0.04 s)."""
        return cls.of(np.maximum(h.max(axis=-1, initial=0.0), -h.min(axis=-1, initial=0.0)))

    def down(self, x: np.ndarray, degree: int = 1) -> np.ndarray:
        """``x 2^(-degree e)``: arrays whose leading axes are the batch's."""
        return _times_power_of_two(x, -degree * self.exponents)

    def up(self, x: np.ndarray, degree: int = 1, name: str = "result") -> np.ndarray:
        """``x 2^(degree e)``, a ``ValueError`` naming the first member whose ``name`` overflows
        the float64 range."""
        out = _times_power_of_two(x, degree * self.exponents)
        finite_before = np.isfinite(x)
        overflow = ~np.isfinite(out) & finite_before
        if overflow.any():
            where = np.argwhere(overflow)[0][: self.exponents.ndim]
            member = f"{self.what} {tuple(int(i) for i in where)}" if where.size else \
                f"the {self.what}"
            raise ValueError(f"{name} of {member} would overflow float64 at the input's scale "
                             f"(2^{int(self.exponents[tuple(where)])}); scale the input down")
        return out


def _times_power_of_two(x: np.ndarray, exponents: np.ndarray) -> np.ndarray:
    """``x * 2^exponents`` exactly (``ldexp``; complex parts apart), the exponents broadcast
    over the trailing axes of ``x``."""
    x = np.asarray(x)
    e = exponents.reshape(exponents.shape + (1,) * (x.ndim - exponents.ndim))
    with np.errstate(over="ignore", under="ignore"):  # overflow: checked by `Scale.up`
        if np.iscomplexobj(x):
            out = np.empty(np.broadcast_shapes(x.shape, e.shape), dtype=x.dtype)
            out.real = np.ldexp(x.real, e)
            out.imag = np.ldexp(x.imag, e)
            return out
        return np.ldexp(np.asarray(x, dtype=np.float64), e)


def check_order(order, length: int, name: str = "order") -> np.ndarray:
    """Validate orders (an int or an integer array) against a filter length ``L``.

    Valid orders are ``0 <= order <= L - 1``.
    """
    arr = np.asarray(order)
    if not (np.issubdtype(arr.dtype, np.integer) or
            (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)))):
        raise ValueError(f"{name} must be an integer, got {order!r}")
    arr = arr.astype(np.int64)
    if np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0, got {arr.min()}")
    if np.any(arr > length - 1):
        raise ValueError(f"{name} must be <= L - 1 = {length - 1} for filters of length {length}, "
                         f"got {arr.max()}")
    return arr


def check_tol(tol: float) -> float:
    """Validate a relative error tolerance (a positive finite number)."""
    tol = float(tol)
    if not np.isfinite(tol) or tol <= 0:
        raise ValueError(f"tol must be a positive finite number, got {tol}")
    return tol


def check_norm(norm: str) -> str:
    """Validate the name of an error norm (``"l2"`` or ``"hinf"``)."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


def relative(err: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``err / ref`` where ``ref > 0`` and ``err`` itself (absolute) where ``ref == 0``."""
    err = np.asarray(err, dtype=np.float64)
    ref = np.broadcast_to(np.asarray(ref, dtype=np.float64), err.shape)
    out = err.copy()
    np.divide(err, ref, out=out, where=ref > 0)
    return out
