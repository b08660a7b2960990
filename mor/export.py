r"""Banks in the layouts inference engines load: StripedHyena and Vortex (Evo 2).

mor (see `mor.conventions`)
    ``h[0] = D``, ``h[k] = Re sum_n R'_n lambda_n^{k-1}`` for ``k >= 1`` (compact form).

Engine form (both engines)
    The kernel ``k[t] = Re sum_n R^s_n lambda_n^t`` for ``t >= 0`` plus a separate skip term
    ``D^s`` (``y = k * u + D^s u``): ``R^s = R' / lambda`` and ``D^s = h[0] - Re sum_n R^s_n``,
    so that ``k[0] + D^s = h[0]`` and ``k[t] = h[t]`` for ``t >= 1``. In a Hyena layer the skip
    sits inside the gate: ``y = x2 * (k * (x1 v) + D^s (x1 v))``. A layer's own skip term (a
    bias outside the filter) is added to ``D`` by the caller.

StripedHyena (``stripedhyena`` 0.2.2, `to_striped_hyena_state_dict`)
    Per block ``i`` with a Hyena filter, float32 parameters ``blocks.{i}.filter.poles`` and
    ``blocks.{i}.filter.residues`` of shape ``(H, S, 1, 2)`` (real and imaginary parts of
    ``lambda`` and ``R^s``; ``H`` channels, ``S = state_size`` slots) and
    ``blocks.{i}.filter.D`` ``(H,)``. The engine evaluates
    ``k[t] = Re sum_s R_s exp(t log lambda_s)``; one filter per channel needs
    ``hyena_filter_groups: 1`` in its config. Its ``load_poles_residues(path)`` reads
    ``approx_poles_{i+1}.pt`` and ``approx_residues_{i+1}.pt``, complex ``(S, H)``, for block
    ``i`` and ignores ``D`` (`EngineExport.save_poles_residues` writes ``approx_D_{i+1}.pt``
    beside them).

Vortex (``vtx`` 1.1.0, the StripedHyena 2 / Evo 2 engine, `to_vortex_state_dict`)
    Per Hyena-LI block ``i`` (``hcl_layer_idxs``), float32 ``blocks.{i}.filter.log_poles``
    ``(H, S, 1)``, ``blocks.{i}.filter.residues`` ``(H, S)`` and ``blocks.{i}.filter.D``
    ``(H,)``, with ``k[t] = sum_s R_s exp(t log_pole_s)``: real poles in ``(0, 1)`` only.

Every slot of an engine's state is used: filters with fewer modes than ``S`` are padded with
the harmless stable pole ``PAD_POLE`` and a zero residue, never with a pole at zero (the engines
compute ``log(0) * 0 = NaN``). A mode whose pole is so small that ``R' / lambda`` would amplify
float32 rounding (``MAX_GAIN``) is dropped and the filter's remaining residues refitted on its
taps (`mor.refit_residues`); the writers report what they padded, dropped and changed.

References
----------
.. [1] M. Poli, J. Wang, S. Massaroli, et al., "StripedHyena: Moving beyond Transformers with
   hybrid signal processing models," Together AI, 2023,
   https://github.com/togethercomputer/stripedhyena.

.. [2] G. Brixi, M. G. Durrant, J. Ku, et al., "Genome modeling and design across all domains
   of life with Evo 2," bioRxiv, 2025 (the Vortex inference engine,
   https://github.com/Zymrael/vortex).

.. [3] S. Massaroli, M. Poli, D. Y. Fu, et al., "Laughing Hyena Distillery: Extracting compact
   recurrences from convolutions," in *Advances in Neural Information Processing Systems 36
   (NeurIPS 2023)*, 2023.

Examples
--------
>>> import numpy as np
>>> import mor
>>> from mor.export import striped_hyena_kernel, to_striped_hyena
>>> from mor.demo import hyena_like_filters
>>> bank = mor.reduce(hyena_like_filters(3, 256), 8)
>>> engine = to_striped_hyena(bank)
>>> sorted(engine), engine["poles"].shape
(['D', 'poles', 'residues'], (3, 4))
>>> print(np.allclose(striped_hyena_kernel(**engine, length=256), bank.impulse(256)))
True
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mor.fitting.constrained import refit_residues
from mor.fitting.least_squares import fit_residues
from mor.systems.modal import ModalSSM

#: The pole of padded slots (with a zero residue): stable, real, positive and far from zero,
#: so that ``log(lambda)``, ``lambda^t`` and the engines' FFT prefill stay finite; its state
#: never reaches the output.
PAD_POLE = 0.5

#: A mode is dropped (and the filter refitted) where its engine residue ``|R' / lambda|``
#: exceeds ``MAX_GAIN`` times the larger of the filter's H2 norm and ``|R'|``: float32 rounding
#: of the kernel's first tap and of ``D`` would then cost more than ``MAX_GAIN * 6e-8`` of the
#: filter. Never a pole with ``|lambda| >= 1 / MAX_GAIN``.
MAX_GAIN = 100.0

ENGINES = ("striped-hyena", "vortex")

_KEYS = {"striped-hyena": ("poles", "residues", "D"), "vortex": ("log_poles", "residues", "D")}
_LAYER_FIELD = {"striped-hyena": "hyena_layer_idxs", "vortex": "hcl_layer_idxs"}
_KEY = re.compile(r"^blocks\.(\d+)\.filter\.(\w+)$")


# ---------------------------------------------------------------------------- array forms
def to_striped_hyena(bank: ModalSSM, *, modes: int | None = None,
                     max_gain: float = MAX_GAIN) -> dict[str, np.ndarray]:
    r"""A bank in the StripedHyena convention: a kernel from ``t = 0`` and a separate skip term.

    .. math::

        y = k * u + D^s u, \qquad k[t] = \mathrm{Re} \sum_n R^s_n \lambda_n^t \ (t \ge 0),
        \qquad R^s = R' / \lambda, \quad D^s = h[0] - \mathrm{Re} \sum_n R^s_n ,

    so that ``k[0] + D^s = h[0]`` and ``k[t] = h[t]`` for ``t >= 1`` (mor's compact form
    ``h[k] = Re sum_n R'_n lambda_n^{k-1}``, `mor.conventions`).

    Parameters
    ----------
    bank : ModalSSM
        Models of batch shape ``(...)``.
    modes : int, optional
        Slots per filter (an engine's ``state_size``); by default the bank's largest number
        of modes.
    max_gain : float, optional
        The tiny-pole threshold (`MAX_GAIN`).

    Returns
    -------
    dict
        ``"poles"`` and ``"residues"`` (complex, ``(..., modes)``; padded slots have pole
        `PAD_POLE` and residue zero) and ``"D"`` (real, ``(...)``).

    Raises
    ------
    ValueError
        If a mode has a pole at zero or one so small that ``R' / lambda`` would exceed
        ``max_gain`` (the state-dict writers drop such modes and refit the filter), if a
        filter has more than ``modes`` modes, or if the bank is unstable.

    See Also
    --------
    to_striped_hyena_state_dict : The same in the engine's layout, for a whole model.

    from_striped_hyena : The inverse.

    striped_hyena_kernel : The taps of this form.

    Examples
    --------
    ``h[k] = 0.5^(k-1)`` for ``k >= 1``, ``h[0] = 0``: the kernel ``2 * 0.5^t`` with skip
    ``-2``.

    >>> import mor
    >>> from mor.export import striped_hyena_kernel, to_striped_hyena
    >>> engine = to_striped_hyena(mor.ModalSSM([0.5], [1.0], 0.0))
    >>> print(engine["poles"], engine["residues"], float(engine["D"]))
    [0.5+0.j] [2.+0.j] -2.0
    >>> print(striped_hyena_kernel(**engine, length=5))
    [0.    1.    0.5   0.25  0.125]
    """
    prepared = _prepare(bank, length=None, max_gain=max_gain, real=False, what="bank")
    return _engine_arrays(prepared, _slots(prepared, modes))


def from_striped_hyena(poles, residues, D) -> ModalSSM:  # noqa: N803 - the engine's name
    """A `mor.ModalSSM` from the StripedHyena form; the inverse of `to_striped_hyena`.

    Parameters
    ----------
    poles, residues : array_like, complex, shape (..., m)
        Compact poles ``lambda`` and kernel residues ``R^s``: ``k[t] = Re sum R^s lambda^t``.
        Slots with a zero residue are padding.
    D : array_like, real, shape (...)
        The skip term.

    Returns
    -------
    ModalSSM
        With compact residues ``R' = R^s lambda`` and direct term ``D + Re sum R^s``.

    Examples
    --------
    >>> from mor.export import from_striped_hyena
    >>> bank = from_striped_hyena([0.5], [2.0], -2.0)
    >>> print(bank.impulse(5))
    [0.    1.    0.5   0.25  0.125]
    """
    poles = np.asarray(poles, dtype=np.complex128)
    residues = np.asarray(residues, dtype=np.complex128)
    return ModalSSM.from_compact(poles, residues * poles,
                                 np.asarray(D, dtype=np.float64) + residues.real.sum(axis=-1))


def to_log_poles(bank: ModalSSM) -> dict[str, np.ndarray]:
    r"""A bank in real log-pole form: the StripedHyena kernel with every array real.

    .. math::

        k[t] = \mathrm{Re} \sum_n R^s_n \exp\big(t (\log|\lambda_n| + i \arg\lambda_n)\big),

    with ``R^s`` and the skip term ``D`` of `to_striped_hyena`. No engine reads this layout
    (Vortex's ``log_poles`` are real poles only: `to_vortex_state_dict`); it is a real-array
    encoding of the StripedHyena form for one's own code.

    Parameters
    ----------
    bank : ModalSSM
        Models of batch shape ``(...)`` with at most ``m`` compact modes.

    Returns
    -------
    dict
        ``"log_poles"`` (``(..., m, 2)``: ``log|lambda|``, ``arg lambda``), ``"residues"``
        (``(..., m, 2)``: ``Re R^s``, ``Im R^s``) and ``"D"`` (``(...)``), all float64.
        Padded modes have the pole `PAD_POLE` and zero residue.

    Raises
    ------
    ValueError
        As `to_striped_hyena`.

    See Also
    --------
    from_log_poles : The inverse.

    to_striped_hyena : The complex form.

    Examples
    --------
    >>> import numpy as np
    >>> import mor
    >>> from mor.export import to_log_poles
    >>> engine = to_log_poles(mor.ModalSSM([0.5], [1.0], 0.0))
    >>> print(np.round(engine["log_poles"], 6), engine["residues"], float(engine["D"]))
    [[-0.693147  0.      ]] [[2. 0.]] -2.0
    """
    sh = to_striped_hyena(bank)
    return {"log_poles": np.stack([np.log(np.abs(sh["poles"])), np.angle(sh["poles"])], -1),
            "residues": np.stack([sh["residues"].real, sh["residues"].imag], -1),
            "D": sh["D"]}


def from_log_poles(log_poles, residues, D) -> ModalSSM:  # noqa: N803
    """A `mor.ModalSSM` from the real log-pole form; the inverse of `to_log_poles`.

    Parameters
    ----------
    log_poles : array_like, shape (..., m, 2)
        ``log|lambda|`` and ``arg lambda`` per mode.
    residues : array_like, shape (..., m, 2)
        ``Re R^s`` and ``Im R^s`` per mode.
    D : array_like, shape (...)
        The skip term.

    Returns
    -------
    ModalSSM

    Examples
    --------
    >>> import numpy as np
    >>> import mor
    >>> from mor.export import from_log_poles, to_log_poles
    >>> from mor.demo import hyena_like_filters
    >>> bank = mor.reduce(hyena_like_filters(3, 256), 8)
    >>> engine = to_log_poles(bank)
    >>> engine["log_poles"].shape, engine["residues"].dtype
    ((3, 4, 2), dtype('float64'))
    >>> print(np.allclose(from_log_poles(**engine).impulse(256), bank.impulse(256)))
    True
    """
    log_poles = np.asarray(log_poles, dtype=np.float64)
    residues = np.asarray(residues, dtype=np.float64)
    poles = np.exp(log_poles[..., 0] + 1j * log_poles[..., 1])
    return from_striped_hyena(poles, residues[..., 0] + 1j * residues[..., 1], D)


def striped_hyena_kernel(poles, residues, D, length: int) -> np.ndarray:  # noqa: N803
    """The filter taps ``k[t] + D [t = 0]`` of the StripedHyena form (reference evaluation).

    Parameters
    ----------
    poles, residues : array_like, complex, shape (..., m)
        As returned by `to_striped_hyena`.
    D : array_like, shape (...)
        The skip term.
    length : int
        Number of taps ``L >= 0``.

    Returns
    -------
    ndarray, shape (..., L)
        ``k[t] = Re sum_n R^s_n lambda_n^t``, plus ``D`` at ``t = 0``: the filter ``h``.

    Raises
    ------
    ValueError
        If ``length`` is negative.

    Examples
    --------
    >>> from mor.export import striped_hyena_kernel
    >>> print(striped_hyena_kernel([0.5], [2.0], -2.0, 5))
    [0.    1.    0.5   0.25  0.125]
    """
    length = int(length)
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    t = np.arange(length)
    kernel = np.real(np.einsum("...n,...nt->...t", np.asarray(residues),
                               np.asarray(poles)[..., None] ** t))
    if length:  # no tap t = 0 to hold the skip term in an empty kernel
        kernel[..., 0] += D
    return kernel


# ---------------------------------------------------------------------------- engine banks
@dataclass
class _Prepared:
    """A bank's compact modes after the tiny-pole rule: live modes first in each row."""

    poles: np.ndarray      # (..., m) complex
    residues: np.ndarray   # (..., m) complex, compact R'
    direct: np.ndarray     # (...)
    modes: np.ndarray      # (...) live modes
    dropped: np.ndarray    # (...) modes dropped by the tiny-pole rule
    change: np.ndarray     # (...) relative l2 change over `length` taps (0 where none dropped)


def _where(index: tuple[int, ...]) -> str:
    return f"filter {index}" if index else "the filter"


def _prepare(bank, *, length: int | None, max_gain: float, real: bool,
             what: str) -> _Prepared:
    """Apply the tiny-pole rule to ``bank`` (dropping and refitting on ``length`` taps), and
    check what the engine form needs: stability, and for Vortex real poles in (0, 1)."""
    if not isinstance(bank, ModalSSM):
        raise TypeError(f"{what} must be a mor.ModalSSM, got {type(bank).__name__}")
    max_gain = float(max_gain)
    if not max_gain > 1:
        raise ValueError(f"max_gain must be a number > 1, got {max_gain}")
    stable = np.atleast_1d(bank.is_stable())
    if not stable.all():
        bad = tuple(int(i) for i in np.argwhere(~stable)[0]) if bank.shape else ()
        raise ValueError(f"{what}: {_where(bad)} has a pole on or outside the unit circle: the "
                         "engines' kernels exp(t log lambda) would grow without bound")
    poles, residues, direct = bank.compact()
    live = residues != 0
    size = np.abs(residues)
    norm = np.asarray(bank.h2_norm())[..., None]
    with np.errstate(invalid="ignore"):  # 0 / 0 on the dead slots, masked by live
        drop = live & (size / np.maximum(norm, size) > max_gain * np.abs(poles))
    keep = live & ~drop
    if real:
        _check_real(poles, keep, what)
    dropped = drop.sum(axis=-1)
    change = np.zeros(int(np.prod(bank.shape, dtype=np.int64)))
    if drop.any():
        if length is None:
            first = tuple(int(i) for i in np.argwhere(drop)[0])
            lam = poles[first]
            raise ValueError(
                f"{what}: {_where(first[:-1])} has a mode with a pole at zero or too small to "
                f"write as R lambda^t (|lambda| = {abs(lam):.3g}, engine residue "
                f"|R/lambda| > {max_gain:g} x the filter's norm): give length= (the filters' "
                "taps) so that such modes are dropped and the residues refitted, or use "
                "to_striped_hyena_state_dict / to_vortex_state_dict, which do and report it")
        length = int(length)
        if length < 2:
            raise ValueError(f"length must be >= 2 to refit residues, got {length}")
        rows = np.argwhere(drop.any(axis=-1).reshape(-1))[:, 0]
        flat_p = poles.reshape(-1, poles.shape[-1]).copy()
        flat_r = residues.reshape(-1, poles.shape[-1]).copy()
        flat_d = direct.reshape(-1).copy()
        flat_keep = keep.reshape(-1, poles.shape[-1])
        taps = ModalSSM.from_compact(flat_p[rows], flat_r[rows], flat_d[rows]).impulse(length)
        kept = ModalSSM.from_compact(flat_p[rows], np.where(flat_keep[rows], flat_r[rows], 0),
                                     flat_d[rows])
        refit = refit_residues(taps, kept)
        p2, r2, d2 = refit.compact()
        flat_p[rows], flat_r[rows] = 0, 0
        flat_p[rows, : p2.shape[-1]], flat_r[rows, : p2.shape[-1]] = p2, r2
        flat_d[rows] = d2
        err = np.linalg.norm(refit.impulse(length) - taps, axis=-1)
        ref = np.linalg.norm(taps, axis=-1)
        change[rows] = np.divide(err, ref, out=err.copy(), where=ref > 0)
        poles, residues = flat_p.reshape(poles.shape), flat_r.reshape(residues.shape)
        direct = flat_d.reshape(direct.shape)
        live = residues != 0
    order = np.argsort(~live, axis=-1, kind="stable")  # live modes first
    poles = np.take_along_axis(np.where(live, poles, 0), order, axis=-1)
    residues = np.take_along_axis(residues, order, axis=-1)
    return _Prepared(poles, residues, direct, live.sum(axis=-1), dropped,
                     change.reshape(bank.shape))


def _check_real(poles: np.ndarray, keep: np.ndarray, what: str) -> None:
    """Vortex holds real poles in (0, 1): a complex or non-positive live pole is an error."""
    for bad, kind in ((keep & (poles.imag != 0), "complex"),
                      (keep & (poles.imag == 0) & (poles.real <= 0), "negative")):
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            count = int(bad.any(axis=-1).sum())
            raise ValueError(
                f"{what}: {_where(first[:-1])} has a {kind} pole (lambda = "
                f"{complex(poles[first]):.6g}; {count} filter(s) have {kind} poles): Vortex's "
                "Hyena-LI layer holds real poles in (0, 1) only (h[t] = sum R exp(t log_pole)"
                "); reduce with real poles, or export to StripedHyena, which takes complex "
                "ones")


def _slots(prepared: _Prepared, slots: int | None) -> int:
    most = int(prepared.modes.max(initial=0))
    if slots is None:
        return max(most, 1)
    slots = int(slots)
    if most > slots:
        first = tuple(int(i) for i in np.argwhere(prepared.modes > slots)[0])
        raise ValueError(f"{_where(first)} has {most} modes, more than the {slots} slots "
                         "(state_size) of the engine: reduce with modes <= state_size")
    return slots


def _engine_arrays(prepared: _Prepared, slots: int) -> dict[str, np.ndarray]:
    """Poles and engine residues ``R' / lambda`` of ``slots`` slots each (padding: `PAD_POLE`,
    residue 0), and ``D = h[0] - Re sum R^s``."""
    shape = prepared.direct.shape + (slots,)
    poles = np.full(shape, PAD_POLE, dtype=np.complex128)
    shifted = np.zeros(shape, dtype=np.complex128)
    m = min(slots, prepared.poles.shape[-1])
    live = prepared.residues[..., :m] != 0
    poles[..., :m] = np.where(live, prepared.poles[..., :m], PAD_POLE)
    shifted[..., :m] = np.divide(prepared.residues[..., :m], prepared.poles[..., :m],
                                 out=np.zeros(live.shape, np.complex128), where=live)
    return {"poles": poles, "residues": shifted, "D": prepared.direct - shifted.real.sum(-1)}


# ---------------------------------------------------------------------------- model layouts
@dataclass
class _Spec:
    """What a model says about where banks go: its modal layers, channels and state size."""

    layers: list[int] | None = None
    channels: int | None = None
    state_size: int | None = None
    source: str = "the model"


def _spec(engine: str, model) -> _Spec:
    if model is None:
        return _Spec()
    if hasattr(model, "state_dict") and callable(model.state_dict):
        model = model.state_dict()
    if not isinstance(model, Mapping):
        raise TypeError("model must be the engine's config (a mapping with hidden_size, "
                        "state_size and the layer indices), its state dict or the model, got "
                        f"{type(model).__name__}")
    if any(isinstance(k, str) and k.startswith("blocks.") for k in model):
        found = _read_layers(engine, _plain(model), what="the model's state dict")
        first = next(iter(found.values()), None)
        if first is None:
            return _Spec([], None, None, "the model's state dict")
        return _Spec(sorted(found), first[2].shape[-1], first[0].shape[1],
                     "the model's state dict")
    field_ = _LAYER_FIELD[engine]
    missing = [f for f in ("hidden_size", "state_size", field_) if f not in model]
    if missing:
        raise ValueError(f"the model's config has no {', '.join(missing)}: a {engine} config "
                         f"names hidden_size, state_size and {field_} (or pass the model's "
                         "state dict)")
    if engine == "striped-hyena":
        groups = model.get("hyena_filter_groups", model["hidden_size"])
        if int(groups) != 1:
            raise ValueError(f"the model's config has hyena_filter_groups: {groups}: "
                             "StripedHyena runs one filter per channel (and steps) only with "
                             "hyena_filter_groups: 1")
    return _Spec(sorted(int(i) for i in model[field_]), int(model["hidden_size"]),
                 int(model["state_size"]), "the model's config")


def _layer_banks(banks, layers, spec: _Spec) -> list[tuple[int, ModalSSM]]:
    """``(block index, bank of shape (H,))`` per layer written, checked against the model."""
    if isinstance(banks, Mapping):
        if layers is not None:
            raise ValueError("give layers= only with a stacked bank: a mapping's keys are "
                             "the block indices")
        pairs = [(int(i), b) for i, b in sorted(banks.items())]
    elif isinstance(banks, ModalSSM):
        if len(banks.shape) not in (1, 2):
            raise ValueError(f"the bank must have shape (H,) (one layer) or (layers, H), or be "
                             f"a mapping of block index to bank, got shape {banks.shape}")
        stack = banks[None] if len(banks.shape) == 1 else banks
        n = stack.shape[0]
        if layers is None:
            if spec.layers is None:
                layers = list(range(n))
            elif n > len(spec.layers):
                raise ValueError(f"the bank has {n} layers, more than the {len(spec.layers)} "
                                 f"modal layers of {spec.source} (blocks {spec.layers})")
            elif n < len(spec.layers):
                raise ValueError(f"the bank has {n} layer(s), {spec.source} "
                                 f"{len(spec.layers)} modal layers (blocks {spec.layers}): "
                                 "pass layers= to say which blocks the bank's layers are")
            else:
                layers = spec.layers
        layers = [int(i) for i in np.atleast_1d(layers)]
        if len(layers) != n:
            raise ValueError(f"layers names {len(layers)} blocks for a bank of {n} layers")
        pairs = [(i, stack[j]) for j, i in enumerate(layers)]
    else:
        raise TypeError(f"banks must be a mor.ModalSSM or a mapping of block index to "
                        f"ModalSSM, got {type(banks).__name__}")
    indices = [i for i, _ in pairs]
    if len(set(indices)) != len(indices):
        raise ValueError(f"a block is given twice: {indices}")
    if spec.layers is not None:
        if len(pairs) > len(spec.layers):
            raise ValueError(f"{len(pairs)} layers given, more than the {len(spec.layers)} "
                             f"modal layers of {spec.source} (blocks {spec.layers})")
        extra = [i for i in indices if i not in spec.layers]
        if extra:
            raise ValueError(f"block(s) {extra} are not modal layers of {spec.source} (its "
                             f"modal layers are blocks {spec.layers})")
    if not pairs:
        raise ValueError("no layer to write")
    for i, b in pairs:
        if not isinstance(b, ModalSSM):
            raise TypeError(f"the bank of block {i} must be a mor.ModalSSM, got "
                            f"{type(b).__name__}")
        if len(b.shape) != 1:
            raise ValueError(f"the bank of block {i} must have shape (H,) (one filter per "
                             f"channel), got {b.shape}")
    channels = {b.shape[0] for _, b in pairs}
    if len(channels) > 1:
        raise ValueError(f"the layers have different channel counts: "
                         f"{[(i, b.shape[0]) for i, b in pairs]}")
    if spec.channels is not None and channels != {spec.channels}:
        raise ValueError(f"the banks have {channels.pop()} channels per layer, {spec.source} "
                         f"{spec.channels} (one filter per channel)")
    return pairs


@dataclass(eq=False)
class EngineExport:
    """Banks in an engine's layout, with what the export did to them.

    Attributes
    ----------
    engine : str
        ``"striped-hyena"`` or ``"vortex"``.
    state_dict : dict
        The parameters, named as in the engine (``blocks.{i}.filter.*``), float32 torch
        tensors (or NumPy arrays with ``tensors="numpy"``): ``model.load_state_dict(
        export.state_dict, strict=False)`` sets the filters and leaves the rest.
    layers : tuple of int
        The block indices written.
    state_size : int
        Slots per filter ``S`` (the engine config's ``state_size``).
    modes : ndarray of int, shape (layers, H)
        Modes per filter, after any drop.
    padded : ndarray of int, shape (layers, H)
        Slots per filter padded with pole `PAD_POLE` and a zero residue.
    dropped : ndarray of int, shape (layers, H)
        Modes dropped by the tiny-pole rule (`MAX_GAIN`).
    change : ndarray, shape (layers, H)
        Relative ``l2`` change of the filters over ``length`` taps that dropping and refitting
        made (0 where nothing was dropped).
    layout_error : ndarray, shape (layers, H)
        ``max_t |k~[t] - h[t]| / max_t |h[t]|`` over ``length`` taps: what storing the
        parameters in float32 costs the filter (``k~`` the stored parameters evaluated in
        float64, ``h`` the bank's response); the residues were re-solved for the stored poles
        where that lowered it. NaN without ``length``.
    """

    engine: str
    state_dict: dict[str, Any]
    layers: tuple[int, ...]
    state_size: int
    modes: np.ndarray
    padded: np.ndarray
    dropped: np.ndarray
    change: np.ndarray
    layout_error: np.ndarray
    _arrays: dict[int, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        n, h = self.modes.shape
        lines = [f"{self.engine} state dict: {n} layer(s) (blocks "
                 f"{', '.join(map(str, self.layers))}) x {h} channels, state_size "
                 f"{self.state_size}"]
        slots = n * h * self.state_size
        pads = int(self.padded.sum())
        lines.append(f"  padded {pads} of {slots} slots (pole {PAD_POLE}, residue 0) in "
                     f"{int((self.padded > 0).sum())} filters with fewer than "
                     f"{self.state_size} modes" if pads else "  no slot padded")
        if self.dropped.any():
            for j, i in enumerate(self.layers):
                d = self.dropped[j]
                if d.any():
                    lines.append(f"  block {i}: dropped {int(d.sum())} tiny-pole mode(s) in "
                                 f"{int((d > 0).sum())} filter(s) and refitted their residues "
                                 f"(largest l2 change {self.change[j].max():.2e})")
        else:
            lines.append("  no mode dropped (no tiny pole)")
        if np.isfinite(self.layout_error).any():
            lines.append(f"  float32 layout: filters within {np.nanmax(self.layout_error):.1e} "
                         "(max-relative) of the bank's taps")
        config = ("state_size: {}, hyena_filter_groups: 1" if self.engine == "striped-hyena"
                  else "state_size: {}").format(self.state_size)
        lines.append(f"  the engine's config needs {config}")
        return "\n".join(lines)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the state dict to ``path``: ``.safetensors`` (read it with
        ``safetensors.torch.load_file``) or ``.pt`` (``torch.load``). Returns the path."""
        path = Path(path)
        arrays = {k: _numpy(v).astype(np.float32) for k, v in self.state_dict.items()}
        if path.suffix == ".safetensors":
            from safetensors.numpy import save_file  # safetensors: only when writing one

            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path),
                      metadata={"format": "pt", "engine": self.engine,
                                "state_size": str(self.state_size),
                                "written_by": "mor.export"})
        elif path.suffix == ".pt":
            import torch  # the torch extra: only for .pt files

            torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in
                        arrays.items()}, path)
        else:
            raise ValueError(f"write a .safetensors or .pt file, got {path.name!r}")
        return path

    def save_poles_residues(self, folder: str | os.PathLike) -> list[Path]:
        """StripedHyena only: the files of its ``load_poles_residues(folder)``, per block
        ``i`` ``approx_poles_{i+1}.pt`` and ``approx_residues_{i+1}.pt`` (complex64,
        ``(S, H)``), and ``approx_D_{i+1}.pt`` (float32, ``(H,)``), which that function
        ignores: load it with ``model.load_state_dict({f"blocks.{i}.filter.D": ...},
        strict=False)``. The engine reads files for every Hyena block it has."""
        if self.engine != "striped-hyena":
            raise ValueError("Vortex's load_poles_residues sets attributes its Hyena-LI layer "
                             "does not read: load the state dict instead (save, "
                             "load_state_dict)")
        import torch  # the torch extra: the engine reads torch files

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for i in self.layers:
            a = self._arrays[i]
            for name, value in (("poles", a["poles"].T), ("residues", a["residues"].T)):
                target = folder / f"approx_{name}_{i + 1}.pt"
                torch.save(torch.from_numpy(np.ascontiguousarray(value.astype(np.complex64))),
                           target)
                written.append(target)
            target = folder / f"approx_D_{i + 1}.pt"
            torch.save(torch.from_numpy(a["D"].astype(np.float32)), target)
            written.append(target)
        return written


def to_striped_hyena_state_dict(banks, *, model=None, layers=None, length: int | None = None,
                                max_gain: float = MAX_GAIN,
                                tensors: str = "torch") -> EngineExport:
    r"""Banks as a StripedHyena state dict: ``blocks.{i}.filter.poles|residues|D``.

    Each layer's filters go to one block, in the engine's form (`mor.export`): ``poles`` and
    ``residues`` float32 ``(H, S, 1, 2)`` (real, imaginary), ``D`` float32 ``(H,)``, with
    ``S`` slots per filter (the config's ``state_size``). Filters with fewer modes are padded
    with the pole `PAD_POLE` and residue zero; tiny-pole modes are dropped and the filter
    refitted (`MAX_GAIN`); both are reported.

    Parameters
    ----------
    banks : ModalSSM or mapping of int to ModalSSM
        One layer ``(H,)``, layers ``(n, H)`` (block indices from ``layers``, else the model's
        Hyena layers in order, else ``0..n-1``), or ``{block index: bank (H,)}``.
    model : mapping or torch.nn.Module, optional
        The engine model the banks go into: its config (``hidden_size``, ``state_size``,
        ``hyena_layer_idxs``, ``hyena_filter_groups: 1``), its state dict, or the model.
        Checked: channels, slots, layer count and indices. Without it ``S`` is the largest
        number of modes.
    layers : sequence of int, optional
        Block indices of a stacked bank's layers.
    length : int, optional
        Taps the filters stand for (``L``): with it the residues are re-solved for the poles
        as the float32 layout stores them (`EngineExport.layout_error`); needed where a
        tiny-pole mode is dropped and the residues are refitted on the bank's own ``L`` taps.
    max_gain : float, optional
        The tiny-pole threshold (`MAX_GAIN`).
    tensors : {"torch", "numpy"}, optional
        What the state dict holds.

    Returns
    -------
    EngineExport
        ``state_dict`` for ``model.load_state_dict(..., strict=False)``; ``save(path)``,
        ``save_poles_residues(folder)``; what was padded and dropped.

    Raises
    ------
    ValueError
        If the banks do not fit the model (more layers than it has, other blocks, other
        channel counts, more modes than ``state_size``), the config asks for grouped filters,
        a bank is unstable, or a tiny-pole mode must be dropped without ``length``.

    See Also
    --------
    from_striped_hyena_state_dict : The inverse.

    to_vortex_state_dict : Vortex's layout (real poles).

    Examples
    --------
    >>> import mor
    >>> from mor.export import to_striped_hyena_state_dict
    >>> from mor.demo import hyena_like_filters
    >>> bank = mor.reduce(hyena_like_filters(8, 256).reshape(2, 4, 256), tol=1e-2,
    ...                   max_order=32, on_fail="best")
    >>> config = {"hidden_size": 4, "state_size": 32, "hyena_layer_idxs": [0, 2],
    ...           "hyena_filter_groups": 1}
    >>> out = to_striped_hyena_state_dict(bank, model=config, tensors="numpy")
    >>> sorted(out.state_dict)[:3]
    ['blocks.0.filter.D', 'blocks.0.filter.poles', 'blocks.0.filter.residues']
    >>> out.state_dict["blocks.2.filter.poles"].shape
    (4, 32, 1, 2)
    >>> bool((out.padded == 32 - bank.modes).all())
    True
    """
    return _export("striped-hyena", banks, model, layers, length, max_gain, tensors)


def to_vortex_state_dict(banks, *, model=None, layers=None, length: int | None = None,
                         max_gain: float = MAX_GAIN, tensors: str = "torch") -> EngineExport:
    r"""Banks with real poles as Vortex Hyena-LI parameters: ``blocks.{i}.filter.log_poles|
    residues|D``.

    Vortex (StripedHyena 2, Evo 2) runs ``k[t] = sum_s R_s exp(t log_pole_s)`` with real
    float32 ``log_poles`` ``(H, S, 1)``, ``residues`` ``(H, S)`` and ``D`` ``(H,)``: only
    real poles in ``(0, 1)``. Padding and tiny poles as `to_striped_hyena_state_dict`.

    Parameters
    ----------
    banks, model, layers, length, max_gain, tensors
        As `to_striped_hyena_state_dict`; the config names ``hidden_size``, ``state_size`` and
        ``hcl_layer_idxs`` (the Hyena-LI blocks).

    Returns
    -------
    EngineExport

    Raises
    ------
    ValueError
        If a kept mode has a complex or negative pole (never cast), and as
        `to_striped_hyena_state_dict`.

    See Also
    --------
    from_vortex_state_dict : The inverse.

    Examples
    --------
    An Evo 2-style layer: 16 real modes per channel.

    >>> import numpy as np
    >>> import mor
    >>> from mor.export import to_vortex_state_dict
    >>> rng = np.random.default_rng(0)
    >>> poles = np.exp(-np.exp(rng.uniform(np.log(1e-3), 0, (4, 16))))
    >>> bank = mor.ModalSSM.from_compact(poles, rng.standard_normal((4, 16)), np.zeros(4))
    >>> out = to_vortex_state_dict(bank, tensors="numpy")
    >>> for name, value in out.state_dict.items():
    ...     print(name, value.shape, value.dtype)
    blocks.0.filter.log_poles (4, 16, 1) float32
    blocks.0.filter.residues (4, 16) float32
    blocks.0.filter.D (4,) float32
    """
    return _export("vortex", banks, model, layers, length, max_gain, tensors)


def _export(engine, banks, model, layers, length, max_gain, tensors) -> EngineExport:
    if tensors not in ("torch", "numpy"):
        raise ValueError(f"tensors must be 'torch' or 'numpy', got {tensors!r}")
    spec = _spec(engine, model)
    pairs = _layer_banks(banks, layers, spec)
    prepared = {i: _prepare(b, length=length, max_gain=max_gain, real=engine == "vortex",
                            what=f"the bank of block {i}") for i, b in pairs}
    if spec.state_size is not None:
        slots = spec.state_size
        for i, p in prepared.items():
            if p.modes.max(initial=0) > slots:
                c = int(np.argmax(p.modes))
                raise ValueError(f"the bank of block {i}: filter {c} has {int(p.modes[c])} "
                                 f"modes, more than the state_size {slots} of {spec.source}: "
                                 "reduce with modes <= state_size")
    else:
        slots = max(max(int(p.modes.max(initial=0)) for p in prepared.values()), 1)
    arrays = {i: _engine_arrays(p, slots) for i, p in prepared.items()}
    layout_error = {}
    for i, p in prepared.items():
        arrays[i], layout_error[i] = _fit_to_the_layout(engine, arrays[i], p, length)
    state: dict[str, np.ndarray] = {}
    for i, a in arrays.items():
        prefix = f"blocks.{i}.filter."
        if engine == "striped-hyena":
            state[prefix + "poles"] = np.stack([a["poles"].real, a["poles"].imag], -1)[:, :, None]
            state[prefix + "residues"] = np.stack([a["residues"].real, a["residues"].imag],
                                                  -1)[:, :, None]
        else:
            state[prefix + "log_poles"] = np.log(a["poles"].real)[..., None]
            state[prefix + "residues"] = a["residues"].real
        state[prefix + "D"] = a["D"]
    state = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}
    if tensors == "torch":
        import torch  # the torch extra: the engines load torch tensors

        state = {k: torch.from_numpy(v) for k, v in state.items()}
    order = list(prepared)
    modes = np.stack([prepared[i].modes for i in order])
    return EngineExport(engine, state, tuple(order), slots, modes, slots - modes,
                        np.stack([prepared[i].dropped for i in order]),
                        np.stack([prepared[i].change for i in order]),
                        np.stack([layout_error[i] for i in order]), arrays)


def _as_stored(engine: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The engine form as the float32 layout holds it, back in float64: StripedHyena rounds
    ``lambda`` and ``R^s`` to complex64, Vortex stores ``log lambda`` and the real ``R^s``."""
    if engine == "striped-hyena":
        poles = arrays["poles"].astype(np.complex64).astype(np.complex128)
        residues = arrays["residues"].astype(np.complex64).astype(np.complex128)
    else:
        poles = np.exp(np.log(arrays["poles"].real).astype(np.float32).astype(np.float64))
        residues = arrays["residues"].real.astype(np.float32).astype(np.float64)
    return {"poles": poles + 0j, "residues": residues + 0j,
            "D": arrays["D"].astype(np.float32).astype(np.float64)}


def _layout_deviation(engine: str, arrays: dict[str, np.ndarray], taps: np.ndarray
                      ) -> np.ndarray:
    """``max_t |k~[t] - h[t]| / max_t |h[t]|`` per filter over the taps ``h`` ``(F, L)``,
    ``k~`` the filter of the stored float32 parameters evaluated in float64."""
    stored = _as_stored(engine, arrays)
    rows = taps.shape[0]
    kernel = from_striped_hyena(stored["poles"].reshape(rows, -1),
                                stored["residues"].reshape(rows, -1),
                                stored["D"].reshape(rows)).impulse(taps.shape[-1])
    peak = np.abs(taps).max(axis=-1)
    gap = np.abs(kernel - taps).max(axis=-1)
    return np.divide(gap, peak, out=np.where(gap > 0, np.inf, 0.0), where=peak > 0)


def _fit_to_the_layout(engine: str, arrays: dict[str, np.ndarray], prepared: _Prepared,
                       length: int | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Residues re-solved for the poles the layout stores, and the layout's deviation.

    The float32 layout moves each pole by up to ``6e-8 |lambda|`` (StripedHyena's complex64
    ``lambda``; Vortex's ``log lambda``), which a pole near the circle turns into an error
    growing like ``t |R| |lambda|^t``. With ``length`` the residues are fitted anew by least
    squares to the bank's own ``L`` taps with the stored poles (`fit_residues`, compact form,
    then ``R^s = R' / lambda``) and ``D`` set from the rounded residues, and each filter keeps
    whichever residues the layout carries closer to its taps (`_layout_deviation`). On the
    shared trained filters this cuts the worst layout error of default banks from 4e-5 to
    about 1e-6. Without ``length`` the arrays are kept and the deviation is NaN.
    """
    shape = arrays["D"].shape
    if length is None:
        return arrays, np.full(shape, np.nan)
    flat = {k: v.reshape((-1,) + v.shape[len(shape):]) for k, v in arrays.items()}
    taps = ModalSSM.from_compact(prepared.poles.reshape(flat["D"].size, -1),
                                 prepared.residues.reshape(flat["D"].size, -1),
                                 prepared.direct.reshape(-1)).impulse(int(length))
    before = _layout_deviation(engine, flat, taps)
    if taps.shape[-1] < 2:
        return arrays, before.reshape(shape)
    poles = _as_stored(engine, flat)["poles"]
    live = flat["residues"] != 0
    compact, _ = fit_residues(taps, poles, live)
    shifted = np.divide(compact, poles, out=np.zeros_like(compact), where=live)
    if engine == "vortex":
        shifted = shifted.real + 0j
    stored = _as_stored(engine, {"poles": flat["poles"], "residues": shifted,
                                 "D": flat["D"]})["residues"]
    refit = {"poles": flat["poles"], "residues": shifted,
             "D": taps[:, 0] - stored.real.sum(axis=-1)}
    with np.errstate(all="ignore"):
        after = _layout_deviation(engine, refit, taps)
    better = after < before
    out = {k: np.where(better.reshape((-1,) + (1,) * (v.ndim - 1)), refit[k], v)
           for k, v in flat.items()}
    return ({k: v.reshape(arrays[k].shape) for k, v in out.items()},
            np.where(better, after, before).reshape(shape))


# ---------------------------------------------------------------------------- readers
def from_striped_hyena_state_dict(state_dict) -> dict[int, ModalSSM]:
    """Banks from a StripedHyena state dict: ``{block index: ModalSSM (H,)}``.

    Reads ``blocks.{i}.filter.poles``, ``.residues`` (``(H, S, 1, 2)``) and ``.D`` (``(H,)``)
    of every Hyena block (other keys are ignored); slots with a zero residue are padding.

    Parameters
    ----------
    state_dict : mapping or str or path
        The model's state dict (tensors or arrays, any float dtype), or a ``.pt`` /
        ``.safetensors`` file holding one.

    Returns
    -------
    dict of int to ModalSSM

    Raises
    ------
    ValueError
        If no block has these keys (a Vortex state dict is named as such), a block lacks one
        of them, or a shape is not the engine's (named with what was expected).

    See Also
    --------
    to_striped_hyena_state_dict : The inverse.

    Examples
    --------
    >>> import numpy as np
    >>> import mor
    >>> from mor.export import from_striped_hyena_state_dict, to_striped_hyena_state_dict
    >>> from mor.demo import hyena_like_filters
    >>> bank = mor.reduce(hyena_like_filters(4, 256), 8)
    >>> state = to_striped_hyena_state_dict(bank, layers=[3], tensors="numpy").state_dict
    >>> back = from_striped_hyena_state_dict(state)
    >>> list(back), back[3].shape
    ([3], (4,))
    >>> print(np.abs(back[3].impulse(256) - bank.impulse(256)).max() < 1e-6)
    True
    """
    return _banks("striped-hyena", state_dict)


def from_vortex_state_dict(state_dict) -> dict[int, ModalSSM]:
    """Banks from a Vortex state dict: ``{block index: ModalSSM (H,)}`` of every Hyena-LI block.

    Reads ``blocks.{i}.filter.log_poles`` (``(H, S, 1)``), ``.residues`` (``(H, S)``) and
    ``.D`` (``(H,)``); an Evo 2 layer gives ``S = 16`` real modes per channel, which
    `mor.reduce` can reduce (``mor.reduce(bank.impulse(L), modes=8)``, or
    ``mor.reduce(bank.to_dense(), modes=8)``).

    Parameters
    ----------
    state_dict : mapping or str or path
        As `from_striped_hyena_state_dict`.

    Returns
    -------
    dict of int to ModalSSM

    Raises
    ------
    ValueError
        As `from_striped_hyena_state_dict`.

    See Also
    --------
    to_vortex_state_dict : The inverse.

    Examples
    --------
    >>> import numpy as np
    >>> from mor.export import from_vortex_state_dict
    >>> state = {"blocks.1.filter.log_poles": np.log([[[0.5]], [[0.9]]]),
    ...          "blocks.1.filter.residues": np.array([[2.0], [1.0]]),
    ...          "blocks.1.filter.D": np.array([-2.0, 0.0])}
    >>> bank = from_vortex_state_dict(state)[1]
    >>> print(bank.impulse(4))
    [[0.    1.    0.5   0.25 ]
     [1.    0.9   0.81  0.729]]
    """
    return _banks("vortex", state_dict)


def read_striped_hyena_poles_residues(folder: str | os.PathLike) -> dict[int, ModalSSM]:
    """Banks from the files of StripedHyena's ``load_poles_residues``: ``{block index: bank}``.

    Reads ``approx_poles_{n}.pt`` and ``approx_residues_{n}.pt`` (complex ``(S, H)``) and
    ``approx_D_{n}.pt`` (``(H,)``, written by `EngineExport.save_poles_residues`) for block
    ``n - 1``.

    Raises
    ------
    ValueError
        If the folder holds no such files, a block lacks one (``D`` included: the engine's
        loader ignores it, so a folder without it does not say the filters), or shapes differ.
    """
    import torch  # the torch extra: the files are torch pickles of tensors

    folder = Path(folder)
    found = sorted(int(m.group(1)) for p in folder.glob("approx_poles_*.pt")
                   if (m := re.fullmatch(r"approx_poles_(\d+)\.pt", p.name)))
    if not found:
        raise ValueError(f"{folder} holds no approx_poles_{{n}}.pt: not a folder of "
                         "StripedHyena's load_poles_residues")
    out = {}
    for n in found:
        parts = {}
        for name in ("poles", "residues", "D"):
            path = folder / f"approx_{name}_{n}.pt"
            if not path.exists():
                hint = (" (StripedHyena's loader ignores D; mor writes it beside the poles)"
                        if name == "D" else "")
                raise ValueError(f"{folder} has approx_poles_{n}.pt but no {path.name}{hint}")
            parts[name] = torch.load(path, map_location="cpu", weights_only=True)
        poles, residues = (np.asarray(parts[k].resolve_conj().numpy(), np.complex128).T
                           for k in ("poles", "residues"))
        d = np.asarray(parts["D"].float().numpy(), np.float64)
        if poles.ndim != 2 or residues.shape != poles.shape or d.shape != poles.shape[:1]:
            raise ValueError(f"block {n - 1}: approx_poles_{n}.pt and approx_residues_{n}.pt "
                             f"must be (S, H) and approx_D_{n}.pt (H,), got "
                             f"{poles.T.shape}, {residues.T.shape}, {d.shape}")
        out[n - 1] = from_striped_hyena(poles, residues, d)
    return out


def _numpy(value) -> np.ndarray:
    """A tensor (any dtype, any device) or array as a NumPy array."""
    if hasattr(value, "detach"):  # a torch tensor: NumPy has no bfloat16
        value = value.detach().cpu()
        if value.is_complex():
            return value.resolve_conj().numpy()
        return (value.double() if value.is_floating_point() else value).numpy()
    return np.asarray(value)


def _plain(state_dict) -> dict[str, np.ndarray]:
    """Filter entries of a state dict (mapping or file) as float64 arrays."""
    if isinstance(state_dict, (str, os.PathLike)):
        state_dict = _load_file(Path(state_dict))
    elif hasattr(state_dict, "state_dict") and callable(state_dict.state_dict):
        state_dict = state_dict.state_dict()
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of names to tensors or a path, got "
                        f"{type(state_dict).__name__}")
    out = {}
    for k, v in state_dict.items():
        if isinstance(k, str) and _KEY.match(k):
            arr = _numpy(v)
            if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
                raise ValueError(f"{k} must be a numeric tensor, got dtype {arr.dtype}")
            out[k] = arr
    return out


def _load_file(path: Path) -> Mapping:
    if not path.exists():
        raise FileNotFoundError(path)
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file  # safetensors: only when reading one

        return load_file(str(path))
    if path.suffix in (".pt", ".pth", ".bin", ".ckpt"):
        import torch  # the torch extra: a torch state dict

        loaded = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model", "module"):
            if isinstance(loaded, Mapping) and key in loaded and isinstance(loaded[key],
                                                                            Mapping):
                loaded = loaded[key]
        return loaded
    raise ValueError(f"read a .safetensors or .pt state dict, got {path.name!r}")


def _read_layers(engine: str, plain: dict[str, np.ndarray], what: str
                 ) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``{block: (poles key, residues key, D)}`` arrays of every modal block, shapes checked."""
    names = _KEYS[engine]
    blocks: dict[int, dict[str, np.ndarray]] = {}
    for k, v in plain.items():
        m = _KEY.match(k)
        blocks.setdefault(int(m.group(1)), {})[m.group(2)] = v
    other = "vortex" if engine == "striped-hyena" else "striped-hyena"
    theirs = _KEYS[other][0]  # the other engine's pole key: poles / log_poles
    foreign = sorted(i for i, b in blocks.items() if theirs in b)
    if foreign:
        raise ValueError(f"{what} has blocks.{foreign[0]}.filter.{theirs}: a {other} model; "
                         f"use from_{other.replace('-', '_')}_state_dict")
    modal = sorted(i for i, b in blocks.items() if names[0] in b or names[1] in b)
    if not modal:
        raise ValueError(f"{what} has no blocks.{{i}}.filter.{names[0]} or .{names[1]}: not a "
                         f"{engine} model with modal filters")
    out = {}
    for i in modal:
        b = blocks[i]
        missing = [n for n in names if n not in b]
        if missing:
            raise ValueError(f"{what} has no " + ", ".join(f"blocks.{i}.filter.{n}"
                                                           for n in missing) +
                             f" (block {i} has {', '.join(sorted(b))})")
        p, r, d = (b[n] for n in names)
        key = f"blocks.{i}.filter."
        if engine == "striped-hyena":
            if p.ndim != 4 or p.shape[2:] != (1, 2):
                raise ValueError(f"{key}poles must have shape (H, S, 1, 2) (real and imaginary "
                                 f"parts), got {p.shape}")
            if r.shape != p.shape:
                raise ValueError(f"{key}residues must have the shape of poles {p.shape}, got "
                                 f"{r.shape}")
        else:
            if p.ndim != 3 or p.shape[2] != 1:
                raise ValueError(f"{key}log_poles must have shape (H, S, 1), got {p.shape}")
            if r.shape != p.shape[:2]:
                raise ValueError(f"{key}residues must have shape (H, S) = {p.shape[:2]}, got "
                                 f"{r.shape}")
        if d.ndim == 1 and d.shape[0] != p.shape[0] and d.shape[0] % p.shape[0] == 0:
            raise ValueError(f"{key}: {p.shape[0]} filters for {d.shape[0]} channels (grouped "
                             "filters): mor reads and writes one filter per channel only")
        if d.shape != p.shape[:1]:
            raise ValueError(f"{key}D must have shape (H,) = {p.shape[:1]} (one filter per "
                             f"channel), got {d.shape}")
        for n, a in zip(names, (p, r, d)):
            if np.iscomplexobj(a) or not np.isfinite(a).all():
                raise ValueError(f"{key}{n} must be real and finite")
        out[i] = (p.astype(np.float64), r.astype(np.float64), d.astype(np.float64))
    return out


def _banks(engine: str, state_dict) -> dict[int, ModalSSM]:
    plain = _plain(state_dict)
    out = {}
    for i, (p, r, d) in _read_layers(engine, plain, what="the state dict").items():
        if engine == "striped-hyena":
            poles = p[:, :, 0, 0] + 1j * p[:, :, 0, 1]
            residues = r[:, :, 0, 0] + 1j * r[:, :, 0, 1]
        else:
            poles = np.exp(p[:, :, 0]).astype(np.complex128)
            residues = r.astype(np.complex128)
        out[i] = from_striped_hyena(poles, residues, d)
    return out

