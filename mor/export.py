r"""Conversions between mor's modal banks and the conventions inference engines load.

mor (see `mor.conventions`)
    ``h[0] = D``, ``h[k] = Re sum_n R'_n lambda_n^{k-1}`` for ``k >= 1`` (compact form).

StripedHyena-style (``to_striped_hyena``)
    The kernel ``k[t] = Re sum_n R^s_n lambda_n^t`` for ``t >= 0`` plus a separate skip term
    ``D^s`` (``y = k * u + D^s u``): ``R^s = R' / lambda`` and ``D^s = h[0] - Re sum_n R^s_n``,
    so that ``k[0] + D^s = h[0]`` and ``k[t] = h[t]`` for ``t >= 1``. A live mode with a pole
    at zero cannot be written this way (``ValueError``). Arrays: ``poles`` and ``residues``
    complex ``(..., m)``, ``D`` real ``(...)``. A layer's own skip term (a bias outside the
    filter) is added to ``D`` by the caller.

Real log-pole form (``to_log_poles``)
    The same kernel with every array real: ``log_poles[..., n, :] = (log|lambda_n|,
    arg lambda_n)`` and ``residues[..., n, :] = (Re R^s_n, Im R^s_n)``, so that
    ``k[t] = Re sum_n (R^s_n) exp(t (log|lambda_n| + i arg lambda_n))``; plus ``D``. Padded
    modes have ``log|lambda| = -inf`` and zero residue.
"""

from __future__ import annotations

import numpy as np

from mor.systems.modal import ModalSSM


def to_striped_hyena(bank: ModalSSM) -> dict[str, np.ndarray]:
    """``{"poles", "residues", "D"}`` with ``k[t] = Re sum R^s lambda^t`` (``t >= 0``) + skip ``D``."""
    poles, residues, direct = bank.compact()
    live = residues != 0
    if np.any(live & (poles == 0)):
        raise ValueError("a live mode has a pole at zero: it cannot be written as "
                         "R lambda^t for t >= 0")
    shifted = np.divide(residues, poles, out=np.zeros_like(residues), where=live)
    return {"poles": poles, "residues": shifted, "D": direct - shifted.real.sum(axis=-1)}


def from_striped_hyena(poles, residues, D) -> ModalSSM:  # noqa: N803 - the engine's name
    """Inverse of :func:`to_striped_hyena`."""
    poles = np.asarray(poles, dtype=np.complex128)
    residues = np.asarray(residues, dtype=np.complex128)
    return ModalSSM.from_compact(poles, residues * poles,
                                 np.asarray(D, dtype=np.float64) + residues.real.sum(axis=-1))


def to_log_poles(bank: ModalSSM) -> dict[str, np.ndarray]:
    """``{"log_poles", "residues", "D"}``, all real; see the module notes."""
    sh = to_striped_hyena(bank)
    live = sh["residues"] != 0
    with np.errstate(divide="ignore"):
        log_abs = np.where(live, np.log(np.abs(sh["poles"])), -np.inf)
    return {"log_poles": np.stack([log_abs, np.where(live, np.angle(sh["poles"]), 0.0)], -1),
            "residues": np.stack([sh["residues"].real, sh["residues"].imag], -1),
            "D": sh["D"]}


def from_log_poles(log_poles, residues, D) -> ModalSSM:  # noqa: N803
    """Inverse of :func:`to_log_poles`."""
    log_poles = np.asarray(log_poles, dtype=np.float64)
    residues = np.asarray(residues, dtype=np.float64)
    poles = np.exp(log_poles[..., 0] + 1j * log_poles[..., 1])
    return from_striped_hyena(poles, residues[..., 0] + 1j * residues[..., 1], D)


def striped_hyena_kernel(poles, residues, D, length: int) -> np.ndarray:  # noqa: N803
    """The filter taps ``k[t] + D [t = 0]`` of the StripedHyena form (reference evaluation)."""
    t = np.arange(length)
    kernel = np.real(np.einsum("...n,...nt->...t", np.asarray(residues),
                               np.asarray(poles)[..., None] ** t))
    kernel[..., 0] += D
    return kernel
