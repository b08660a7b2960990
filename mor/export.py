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

Each conversion has its inverse (``from_striped_hyena``, ``from_log_poles``), and
``striped_hyena_kernel`` evaluates the StripedHyena form as a reference.

References
----------
.. [1] M. Poli, J. Wang, S. Massaroli, et al., "StripedHyena: Moving beyond Transformers with
   hybrid signal processing models," Together AI, 2023,
   https://github.com/togethercomputer/stripedhyena.

.. [2] S. Massaroli, M. Poli, D. Y. Fu, et al., "Laughing Hyena Distillery: Extracting compact
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

import numpy as np

from mor.systems.modal import ModalSSM


def to_striped_hyena(bank: ModalSSM) -> dict[str, np.ndarray]:
    r"""A bank in the StripedHyena convention: a kernel from ``t = 0`` and a separate skip term.

    .. math::

        y = k * u + D^s u, \qquad k[t] = \mathrm{Re} \sum_n R^s_n \lambda_n^t \ (t \ge 0),
        \qquad R^s = R' / \lambda, \quad D^s = h[0] - \mathrm{Re} \sum_n R^s_n ,

    so that ``k[0] + D^s = h[0]`` and ``k[t] = h[t]`` for ``t >= 1`` (mor's compact form
    ``h[k] = Re sum_n R'_n lambda_n^{k-1}``, `mor.conventions`).

    Parameters
    ----------
    bank : ModalSSM
        Models of batch shape ``(...)`` with at most ``m`` compact modes.

    Returns
    -------
    dict
        ``"poles"`` and ``"residues"`` (complex, ``(..., m)``; padded modes zero) and ``"D"``
        (real, ``(...)``). A layer's own skip term (a bias outside the filter) is added to
        ``D`` by the caller.

    Raises
    ------
    ValueError
        If a live mode has a pole at zero (it cannot be written as ``R lambda^t``).

    See Also
    --------
    from_striped_hyena : The inverse.

    to_log_poles : The same kernel with real arrays only.

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
    poles, residues, direct = bank.compact()
    live = residues != 0
    if np.any(live & (poles == 0)):
        raise ValueError("a live mode has a pole at zero: it cannot be written as "
                         "R lambda^t for t >= 0")
    shifted = np.divide(residues, poles, out=np.zeros_like(residues), where=live)
    return {"poles": poles, "residues": shifted, "D": direct - shifted.real.sum(axis=-1)}


def from_striped_hyena(poles, residues, D) -> ModalSSM:  # noqa: N803 - the engine's name
    """A `mor.ModalSSM` from the StripedHyena form; the inverse of `to_striped_hyena`.

    Parameters
    ----------
    poles, residues : array_like, complex, shape (..., m)
        Compact poles ``lambda`` and kernel residues ``R^s``: ``k[t] = Re sum R^s lambda^t``.
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

    with ``R^s`` and the skip term ``D`` of `to_striped_hyena`.

    Parameters
    ----------
    bank : ModalSSM
        Models of batch shape ``(...)`` with at most ``m`` compact modes.

    Returns
    -------
    dict
        ``"log_poles"`` (``(..., m, 2)``: ``log|lambda|``, ``arg lambda``), ``"residues"``
        (``(..., m, 2)``: ``Re R^s``, ``Im R^s``) and ``"D"`` (``(...)``), all float64.
        Padded modes have ``log|lambda| = -inf`` and zero residue.

    Raises
    ------
    ValueError
        If a live mode has a pole at zero.

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
    live = sh["residues"] != 0
    with np.errstate(divide="ignore"):
        log_abs = np.where(live, np.log(np.abs(sh["poles"])), -np.inf)
    return {"log_poles": np.stack([log_abs, np.where(live, np.angle(sh["poles"]), 0.0)], -1),
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
