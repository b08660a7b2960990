r"""The method interface: what `mor.reduce` asks of a reduction method, its result type and the
registry.

A method is a class deriving from `Method`. `mor.reduce` builds one instance per batch of
filters with ``from_fir(h, max_order, **options)`` (or ``from_statespace`` for a dense system,
where the class sets ``takes_statespace``): a *family* holding whatever it shares between orders
(a Hankel factorisation, balanced realisations, samples), from which `Method.model` cuts the
models of any orders up to ``max_order`` as `Models`. The family also exposes the leading Hankel
singular values (`Method.hsv`, for the AAK and BT figures and the ``tol`` search), the largest
usable order per filter (`Method.rank`) and the direct terms (`Method.d`). A method fitted from
another's models names that family in `Method.start`: `mor.reduce` then searches orders on the
start first and fits where they are found. Guarantees beyond the AAK and BT figures that every
method reports (e.g. Glover's bound for Hankel-norm approximation) come from `Method.bounds`;
a family that has the frequency response of the dense systems it reduces hands it to the error
report through `Method.response`.

A new method is one module and one line::

    from mor.methods.base import Method, Models, register

    @register
    class MyMethod(Method):
        name = "mine"

        @classmethod
        def from_fir(cls, h, max_order, *, my_option=1.0): ...

        def model(self, orders, which=None) -> Models: ...

after which ``mor.reduce(h, 8, method="mine", my_option=2.0)`` and ``mor.distill`` (worker
processes included: they import the module that registered it) run it. `PoleMethod` is the base
of the methods that find poles per order and fit residues by least squares.
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from mor.analysis.spectrum import hankel_svd
from mor.fitting.least_squares import complex64_poles, fit_residues
from mor.systems.modal import ModalSSM

#: What a pole-based method may do with poles on or outside the unit circle.
UNSTABLE = ("reflect", "drop", "keep")
#: Float32 deviation (`ModalSSM.float32_deviation`: the response run as engines run it, with
#: complex64 parameters and a float32 recurrence) a fitted model may reach. Beyond it,
#: `PoleMethod` refits the residues on the poles rounded to complex64 (`_float32_safe`);
#: `mor.methods.modal` also keeps no stage beyond it.
F32_RTOL = 2e-5
#: How much larger (relative) the ``l2`` error of the refit on rounded poles may be than least
#: squares' for `PoleMethod` to keep it.
ROUNDED_L2_RTOL = 1e-3


@dataclass
class Models:
    """Compact modal models of ``F`` filters, as a method builds them.

    Attributes
    ----------
    poles, residues : ndarray ``(F, m)`` complex
        Compact modes (one per conjugate pair or real pole; padding has residue 0):
        ``h[k] = Re sum_n R_n lambda_n^(k-1)`` for ``k >= 1``.
    direct : ndarray ``(F,)``
        Direct terms ``h[0]``.
    conversion_error : ndarray ``(F,)``
        What the modal form lost on the Markov parameters (relative; see
        `mor.ModalSSM.from_dense`), 0 where the method builds modes directly.
    poles_touched : ndarray ``(F,)`` int
        Poles on or outside the unit circle that were reflected or dropped.
    diagnostics : dict of ndarray ``(F,)``
        Per-filter facts of iterative methods (``iterations``, ``converged``), reported in
        ``info`` under the same keys.
    reason : ndarray ``(F,)`` of str, or None
        Why the method could not build a filter's model (``""`` where it could; ``None``: it
        built every one). Such a filter fails in `mor.reduce` with this reason; its model
        here is the direct term alone.
    """

    poles: np.ndarray
    residues: np.ndarray
    direct: np.ndarray
    conversion_error: np.ndarray
    poles_touched: np.ndarray
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)
    reason: np.ndarray | None = None

    @classmethod
    def empty(cls, count: int, width: int, direct: np.ndarray,
              diagnostics: dict[str, np.ndarray] | None = None) -> "Models":
        """``count`` direct-term-only models of ``width`` modes; ``diagnostics`` gives the
        keys (and dtypes) to hold, zero-filled."""
        return cls(np.zeros((count, width), dtype=np.complex128),
                   np.zeros((count, width), dtype=np.complex128),
                   np.array(direct, dtype=np.float64, copy=True), np.zeros(count),
                   np.zeros(count, dtype=np.int64),
                   {k: np.zeros(count, dtype=v.dtype) for k, v in (diagnostics or {}).items()})

    @property
    def width(self) -> int:
        return self.poles.shape[1]

    @property
    def reasons(self) -> np.ndarray:
        """`reason` as an array of the batch (``""`` everywhere when it is ``None``)."""
        if self.reason is None:
            return np.full(self.direct.shape[0], "", dtype=object)
        return self.reason

    def take(self, rows) -> "Models":
        """The models of ``rows`` (indices or a mask)."""
        return Models(self.poles[rows], self.residues[rows], self.direct[rows],
                      self.conversion_error[rows], self.poles_touched[rows],
                      {k: v[rows] for k, v in self.diagnostics.items()},
                      None if self.reason is None else self.reason[rows])

    def put(self, rows, other: "Models") -> None:
        """Write ``other``'s models into ``rows`` (its width at most this one's)."""
        k = other.width
        self.poles[rows] = 0
        self.residues[rows] = 0
        self.poles[rows, :k], self.residues[rows, :k] = other.poles, other.residues
        self.direct[rows] = other.direct
        self.conversion_error[rows] = other.conversion_error
        self.poles_touched[rows] = other.poles_touched
        for key, value in other.diagnostics.items():
            self.diagnostics.setdefault(key, np.zeros(self.direct.shape[0], dtype=value.dtype))
            self.diagnostics[key][rows] = value
        if other.reason is not None or self.reason is not None:
            self.reason = self.reasons
            self.reason[rows] = other.reasons

    @classmethod
    def stack(cls, count: int, parts: list[tuple[np.ndarray, "Models"]]) -> "Models":
        """``count`` models assembled from ``(rows, models)`` parts."""
        width = max((m.width for _, m in parts), default=0)
        out = cls.empty(count, width, np.zeros(count))
        for rows, models in parts:
            out.put(rows, models)
        return out


class Method(ABC):
    """Base of the reduction methods (see the module notes for the protocol).

    Attributes
    ----------
    name : str
        The name `mor.reduce` knows the method by (``method=name``).
    takes_statespace : bool
        Whether `from_statespace` builds families of dense systems.
    hsv : ndarray ``(F, k)``
        Leading Hankel singular values of the filters (AAK and BT figures, ``tol`` search).
    rank : ndarray ``(F,)``
        Largest order the family can build per filter.
    d : ndarray ``(F,)``
        Direct terms of the systems being reduced.
    start : Method or None
        The family this one fits from, whose order search `mor.reduce` runs first.
    """

    name: ClassVar[str] = ""
    takes_statespace: ClassVar[bool] = False
    hsv: np.ndarray
    rank: np.ndarray
    d: np.ndarray
    start: "Method | None" = None

    @classmethod
    @abstractmethod
    def from_fir(cls, h: np.ndarray, max_order: int, **options: Any) -> "Method":
        """The family of flat FIR filters ``h`` ``(F, L)`` for orders up to ``max_order``."""

    @classmethod
    def from_statespace(cls, sys, max_order: int, **options: Any) -> "Method":
        """The family of a flat `mor.StateSpace` batch (where `takes_statespace`)."""
        raise ValueError(f"method {cls.name!r} takes FIR filters only")

    @abstractmethod
    def model(self, orders: np.ndarray, which: np.ndarray | None = None) -> Models:
        """Models of the given ``orders`` ``(F',)`` for the filters ``which`` (all by
        default)."""

    def response(self, rows: np.ndarray):
        """The frequency response (`mor._numerics.freq`) of the systems ``rows`` of the batch,
        where the family has one already (the error report then reuses it); ``None`` by
        default."""
        return None

    def bounds(self, errors: dict[str, np.ndarray], rows: np.ndarray, models: Models
               ) -> dict[str, np.ndarray]:
        """Method-specific figures for the filters ``rows``, given their ``models`` and the
        errors just computed for them (``peak``, ``bt_bound``, ...); none by default."""
        return {}

    @classmethod
    def options(cls, statespace: bool = False) -> tuple[str, ...]:
        """The options (keyword arguments) the method takes, from its constructor's
        signature."""
        build = cls.from_statespace if statespace else cls.from_fir
        params = inspect.signature(build).parameters.values()
        return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)

    @classmethod
    def check_options(cls, options: dict[str, Any], statespace: bool = False) -> None:
        """Raise ``ValueError`` for an option the method does not take."""
        known = cls.options(statespace)
        unknown = sorted(set(options) - set(known))
        if unknown:
            takes = ", ".join(known) if known else "no options"
            raise ValueError(f"method {cls.name!r} does not take {', '.join(map(repr, unknown))}"
                             f"; it takes: {takes}")


_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Make a `Method` subclass available to `mor.reduce` and `mor.distill` as
    ``method=cls.name`` (usable as a class decorator). Registering a name again replaces it."""
    if not (isinstance(cls, type) and issubclass(cls, Method)) or not cls.name:
        raise TypeError(f"register takes a Method subclass with a name, got {cls!r}")
    if cls.name == "auto":
        raise ValueError("'auto' is reserved for mor.distill's choice between methods")
    _REGISTRY[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    """The registered method ``name`` (``ValueError`` naming the available ones otherwise)."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown method {name!r}; available: {available_methods()}") from None


def available_methods() -> list[str]:
    """The names of the registered methods, sorted."""
    return sorted(_REGISTRY)


FoundPoles = Callable[[int, np.ndarray], tuple[np.ndarray, dict[str, np.ndarray]]]


class PoleMethod(Method):
    """Models of any order from poles found per order, with least-squares residues
    (`mor.fitting.least_squares.fit_residues`, direct term ``h[0]``).

    ``find_poles(order, rows)`` returns the full (conjugate-closed) poles ``(F', order)`` of the
    filters ``rows`` (NaN where a method found fewer) and a dict of per-row diagnostics
    (``iterations``, ``converged``; empty for direct methods). Poles on or outside the unit
    circle are reflected (``lambda -> 1 / conj(lambda)``), dropped or kept, per ``unstable``;
    the count is ``poles_touched``.
    """

    def __init__(self, h: np.ndarray, max_order: int, unstable: str, find_poles: FoundPoles,
                 hsv: np.ndarray | None = None, weight_filter: np.ndarray | None = None,
                 tail_weight: float = 0.0):
        if unstable not in UNSTABLE:
            raise ValueError(f"unstable must be one of {UNSTABLE}, got {unstable!r}")
        if not 0 <= tail_weight < np.inf:
            raise ValueError(f"tail_weight must be a finite number >= 0, got {tail_weight!r}")
        size = h.shape[-1] - 1
        self.h, self.unstable, self._find_poles = h, unstable, find_poles
        self._given_hsv, self._hsv_count = hsv, min(size, max_order + 1)
        self.rank = np.full(h.shape[0], max_order)
        self.d = h[:, 0].copy()
        self.weight_filter = weight_filter  # residues fit the filtered error (modal's weight)
        self.tail_weight = float(tail_weight)  # the tail's energy in the residue fit

    @functools.cached_property
    def hsv(self) -> np.ndarray:
        """The leading Hankel singular values ``(F, k)``, computed when a figure or a tolerance
        search first asks (given ones are reused)."""
        if self._given_hsv is not None:
            return self._given_hsv[:, :self._hsv_count]
        return hankel_svd(self.h, self._hsv_count, vectors=False)[0]

    def model(self, orders: np.ndarray, which: np.ndarray | None = None) -> Models:
        which = np.arange(self.d.shape[0]) if which is None else which
        f = orders.shape[0]
        width = int(orders.max(initial=0))
        poles = np.zeros((f, width), dtype=np.complex128)
        live = np.zeros((f, width), dtype=bool)
        touched = np.zeros(f, dtype=np.int64)
        diagnostics: dict[str, np.ndarray] = {}
        for order in np.unique(orders):
            idx = np.flatnonzero(orders == order)
            if order == 0:
                continue
            full, found_info = self._find_poles(int(order), which[idx])  # NaN: fewer poles
            for key, value in found_info.items():
                diagnostics.setdefault(key, _diagnostic_default(value, f))[idx] = value
            found = np.isfinite(full)
            outside = found & (np.abs(np.where(found, full, 0)) >= 1.0)
            touched[idx] = outside.sum(axis=1)
            if self.unstable == "reflect":
                full = full.copy()
                full[outside] = 1.0 / np.conj(full[outside])
            keep = ~outside if self.unstable == "drop" else np.ones_like(outside)
            # compact form: one member of each pair (positive imaginary part) and real poles
            rep = keep & found & (full.imag >= 0)
            for row, i in enumerate(idx):
                chosen = full[row][rep[row]]
                poles[i, : chosen.size] = chosen
                live[i, : chosen.size] = True
        residues, direct = fit_residues(self.h[which], poles, live,
                                        weight_filter=self.weight_filter,
                                        tail_weight=self.tail_weight)
        diagnostics["poles_rounded"] = self._float32_safe(which, poles, live, residues)
        return Models(poles, residues, direct, np.zeros(f), touched, diagnostics)

    def _float32_safe(self, which: np.ndarray, poles: np.ndarray, live: np.ndarray,
                      residues: np.ndarray) -> np.ndarray:
        """Where a model's float32 deviation exceeds `F32_RTOL`, its poles rounded to
        complex64 and the residues refitted on them, in place, if that lowers the deviation
        at an ``l2`` error within `ROUNDED_L2_RTOL` of least squares'; returns which filters.

        Rounding the parameters is what costs most: a pole ``1 - |lambda| ~ 4e-3`` from the
        circle moves by ``6e-8 |lambda|``, which the response over ``1 / (1 - |lambda|)`` lags
        amplifies, and least squares puts large residues on clustered poles. On poles that
        engines store exactly, only the residues' rounding and the recurrence remain (``aaa``
        at 32 modes on trained filter 64: ``1.9e-4`` to ``1.5e-5``, ``l2`` unchanged to
        ``5e-6`` relative). Poles on or outside the circle are left as they are, and so is a
        pole whose rounding would change its kind (a pair to a real pole) or reach the circle.
        """
        h = self.h[which]
        length = h.shape[-1]
        rounded = np.zeros(which.size, dtype=bool)
        before = ModalSSM.from_compact(poles, residues, h[:, 0])
        deviation = before.float32_deviation(length)
        bad = np.flatnonzero((deviation > F32_RTOL) & np.isfinite(deviation))
        if bad.size == 0:
            return rounded
        near = complex64_poles(poles[bad])
        trial, _ = fit_residues(h[bad], near, live[bad], weight_filter=self.weight_filter,
                                tail_weight=self.tail_weight)
        after = ModalSSM.from_compact(near, trial, h[bad, 0])
        l2_before = np.linalg.norm(h[bad] - before[bad].impulse(length), axis=1)
        l2_after = np.linalg.norm(h[bad] - after.impulse(length), axis=1)
        keep = ((after.float32_deviation(length) < deviation[bad])
                & (l2_after <= l2_before * (1 + ROUNDED_L2_RTOL)))
        poles[bad[keep]], residues[bad[keep]] = near[keep], trial[keep]
        rounded[bad[keep]] = True
        return rounded


def _diagnostic_default(value: np.ndarray, count: int) -> np.ndarray:
    """The value of a diagnostic for a filter that needed no fit (order 0): no iterations,
    converged."""
    if value.dtype == bool:
        return np.ones(count, dtype=bool)
    return np.zeros(count, dtype=value.dtype)
