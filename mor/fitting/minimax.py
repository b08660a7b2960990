r"""Minimax refit: the residues and direct term that minimise the worst frequency error, with the
poles fixed, by convex optimisation (cvxpy).

For compact poles ``lambda_n`` (conventions in `mor.conventions`) the model's response on the
unit circle is linear in the real unknowns ``x = (D, Re R'_n, Im R'_n)``:

.. math::

    \hat H(e^{i\omega}) = D + \sum_{\text{pairs}} \Big(\frac{R'_n / 2}{e^{i\omega} - \lambda_n}
    + \frac{\overline{R'_n} / 2}{e^{i\omega} - \bar\lambda_n}\Big)
    + \sum_{\text{real}} \frac{R_n}{e^{i\omega} - \lambda_n},

so ``min_x max_j |H_hat(e^{i w_j}) - H(e^{i w_j})|`` over a grid ``w_j`` of ``[0, pi]`` (a real
filter's response is conjugate-symmetric) is a second-order cone program. ``H`` is the FIR
filter's own response (its DTFT, exact at the grid points), ``H_hat`` the model's infinite
response. Options: the DC gain held exactly (``H_hat(1) = sum h``), and a bound on every
``|R'_n|`` (residues a low-precision recurrence can carry). Without them the optimum's grid
error is at most that of any other residues on the same poles, least squares included.
"""

from __future__ import annotations

import time

import numpy as np

from mor.conventions import Scale, as_filters
from mor.systems.modal import ModalSSM

#: Statuses of cvxpy accepted as solved.
SOLVED = ("optimal", "optimal_inaccurate")


def refit(h, bank: ModalSSM, *, grid: int | None = None, dc_gain: bool = False,
          max_residue: float | None = None, solver: str = "CLARABEL") -> ModalSSM:
    r"""Minimax (H-infinity) residues and direct terms for the poles of ``bank``.

    Per filter, with the compact poles ``lambda_n`` of ``bank`` kept, the model's response is
    linear in the real unknowns ``x = (D, Re R'_n, Im R'_n)``, and the refit solves

    .. math::

        \min_x \max_j \big|\hat H_x(e^{i\omega_j}) - H(e^{i\omega_j})\big|
        \quad \text{subject to} \quad
        \hat H_x(1) = \sum_k h[k] \ (\texttt{dc\_gain}), \quad
        |R'_n| \le \rho \ (\texttt{max\_residue}),

    over a grid ``omega_j`` of ``[0, pi]``: a second-order cone program [1], solved by cvxpy
    [2] (Clarabel [3] by default). ``H`` is the filter's own response (its DTFT, exact at the
    grid points) and ``H_hat_x`` the model's infinite response. Use it for the worst
    frequency error; `mor.refit_residues` solves for least squares on the taps or in any
    quadratic metric (e.g. a layer's output error), with the tail held.

    Parameters
    ----------
    h : array_like, shape (..., L)
        The FIR filters ``bank`` approximates (same batch shape).
    bank : ModalSSM
        Models whose poles are kept (e.g. from `mor.reduce`).
    grid : int, optional
        Uniform frequencies ``w_j = pi j / (grid - 1)``, default ``max(L, 256)``; each filter's
        grid also holds its poles' angles and the points ``1 - |lambda|`` beside them,
        where sharp poles peak between uniform points.
    dc_gain : bool, optional
        Hold ``H_hat(1) = sum_k h[k]`` exactly (default ``False``).
    max_residue : float, optional
        Bound ``rho >= 0`` on every compact residue's modulus ``|R'_n|`` (residues a
        low-precision recurrence can carry).
    solver : str, optional
        A cvxpy solver that handles second-order cones (default ``"CLARABEL"``).

    Returns
    -------
    ModalSSM
        Same poles, refitted residues and direct terms. ``info`` per filter:
        ``grid_hinf_before`` and ``grid_hinf`` (the largest absolute error on the grid with
        the bank's and the refitted coefficients), ``seconds``, the solver's ``status``,
        ``failed`` and ``reason``. A filter whose solve fails keeps the bank's coefficients
        and says why: nothing is swallowed.

    Raises
    ------
    ValueError
        If ``h`` is not a real finite array of shape ``(..., L)``, its batch shape differs from
        ``bank``'s, ``max_residue < 0`` or ``grid < 2``.

    See Also
    --------
    mor.refit_residues : Least-squares residues in a quadratic metric, the tail held.

    mor.reduce : The models whose poles are kept.

    mor.compare : The achieved ``hinf`` on the whole circle, beside the AAK bound.

    Notes
    -----
    Without constraints the optimum's grid error is at most that of any other residues and
    direct term on the same poles, least squares included (so ``grid_hinf <=
    grid_hinf_before`` up to the solver's tolerance). The problem is solved on the scale of
    ``max |H|``. Between grid points the error can exceed ``grid_hinf``; `mor.compare`
    measures it on the whole circle. cvxpy is imported on the first call only.

    References
    ----------
    .. [1] M. S. Lobo, L. Vandenberghe, S. Boyd and H. Lebret, "Applications of second-order
       cone programming," *Linear Algebra and its Applications*, vol. 284, no. 1-3,
       pp. 193-228, 1998.

    .. [2] S. Diamond and S. Boyd, "CVXPY: A Python-embedded modeling language for convex
       optimization," *Journal of Machine Learning Research*, vol. 17, no. 83, pp. 1-5, 2016.

    .. [3] P. J. Goulart and Y. Chen, "Clarabel: An interior-point solver for conic programs
       with quadratic objectives," arXiv:2405.12762, 2024.

    Examples
    --------
    Balanced truncation to order 8, then the minimax residues on its poles:

    >>> import numpy as np
    >>> import mor
    >>> from mor.demo import hyena_like_filters
    >>> filters = hyena_like_filters(2, 256)
    >>> bank = mor.reduce(filters, 8)
    >>> refitted = mor.refit(filters, bank)
    >>> refitted.info["failed"]
    array([False, False])
    >>> print(bool(np.all(refitted.info["grid_hinf"] < refitted.info["grid_hinf_before"])))
    True
    >>> before, after = mor.compare(filters, bank).hinf, mor.compare(filters, refitted).hinf
    >>> print(bool(np.all(after < before)))
    True

    The DC gain held exactly and every residue bounded:

    >>> held = mor.refit(filters, bank, dc_gain=True, max_residue=1.0)
    >>> print(np.allclose(held.freqresp([0.0])[:, 0].real, filters.sum(axis=-1)))
    True
    >>> print(bool(np.abs(held.compact()[1]).max() <= 1.0 + 1e-6))
    True
    """
    import cvxpy as cp  # imported here: ``import mor`` stays light (and works without it)

    taps = as_filters(h, "h")
    if taps.shape[:-1] != bank.shape:
        raise ValueError(f"h has batch shape {taps.shape[:-1]} but bank has {bank.shape}")
    if max_residue is not None and not max_residue >= 0:
        raise ValueError(f"max_residue must be >= 0, got {max_residue}")
    size = max(taps.shape[-1], 256) if grid is None else int(grid)
    if size < 2:
        raise ValueError(f"grid must be >= 2, got {grid}")
    poles, residues, direct = (np.asarray(a).copy() for a in bank.compact())
    flat_h = taps.reshape(-1, taps.shape[-1])
    # filters and models divided by the filter's power of two; scaled back at the end
    power = Scale.of_filters(flat_h)
    flat_h = power.down(flat_h)
    flat = [poles.reshape(len(flat_h), -1), power.down(residues.reshape(len(flat_h), -1))]
    flat_d = power.down(direct.reshape(-1))
    bound = None if max_residue is None else np.ldexp(float(max_residue), -power.exponents)
    uniform = np.fft.rfft(flat_h, n=2 * (size - 1), axis=-1)  # H at w_j = pi j / (size - 1)
    k = np.arange(taps.shape[-1])
    columns = ("grid_hinf_before", "grid_hinf", "seconds")
    info = {c: np.zeros(len(flat_h)) for c in columns}
    info |= {"status": np.empty(len(flat_h), dtype=object),
             "failed": np.zeros(len(flat_h), dtype=bool),
             "reason": np.full(len(flat_h), "", dtype=object)}
    for i in range(len(flat_h)):
        live = live_modes(flat[0][i], flat[1][i])
        lam = flat[0][i, live]
        w = frequencies(size, lam)
        extra = w[size:]
        target = np.concatenate([uniform[i], np.exp(-1j * extra[:, None] * k) @ flat_h[i]])
        basis = _basis(np.exp(1j * w), lam)
        before = np.concatenate([[flat_d[i]], flat[1][i, live].real,
                                 flat[1][i, live][lam.imag != 0].imag])
        info["grid_hinf_before"][i] = np.abs(basis @ before - target).max()
        start = time.perf_counter()
        try:
            x, status = _solve(basis, target, lam, dc_gain,
                               None if bound is None else bound[i], solver)
        except cp.SolverError as exc:
            x, status = None, f"solver error: {exc}"
        info["seconds"][i] = time.perf_counter() - start
        info["status"][i] = status
        if x is None:
            info["failed"][i], info["reason"][i] = True, str(status)
            info["grid_hinf"][i] = info["grid_hinf_before"][i]
            continue
        info["grid_hinf"][i] = np.abs(basis @ x - target).max()
        pair = lam.imag != 0
        value = x[1:1 + lam.size].astype(np.complex128)
        value[pair] += 1j * x[1 + lam.size:]
        flat[1][i, live] = value
        flat_d[i] = x[0]
    for key in ("grid_hinf_before", "grid_hinf"):  # absolute errors
        info[key] = power.up(info[key], name=f"the {key}")
    shaped = {k: v.reshape(bank.shape) for k, v in info.items()}
    return ModalSSM.from_compact(flat[0].reshape(poles.shape),
                                 power.up(flat[1], name="a residue").reshape(poles.shape),
                                 power.up(flat_d, name="the direct term").reshape(direct.shape),
                                 info=shaped)


def live_modes(poles: np.ndarray, residues: np.ndarray) -> np.ndarray:
    """The modes a compact model uses: all but the padding (zero pole and residue)."""
    return ~((poles == 0) & (residues == 0))


def frequencies(size: int, lam: np.ndarray) -> np.ndarray:
    """The refit's grid: ``size`` uniform points of ``[0, pi]``, then each pole's angle and the
    points ``1 - |lambda|`` to either side (where a sharp pole's response peaks)."""
    angle, width = np.abs(np.angle(lam)), 1.0 - np.abs(lam)
    extra = np.clip(np.concatenate([angle, angle - width, angle + width]), 0.0, np.pi)
    return np.concatenate([np.linspace(0.0, np.pi, size), extra])


def _basis(z: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Columns of ``H_hat`` per real unknown: ``D``, ``Re R'`` of every mode, ``Im R'`` of
    every pair, at the points ``z`` of the circle."""
    a = 1.0 / (z[:, None] - lam[None, :])
    pair = lam.imag != 0
    b = 1.0 / (z[:, None] - np.conj(lam[None, pair]))
    re = a.astype(np.complex128)
    re[:, pair] = 0.5 * (a[:, pair] + b)
    im = 0.5j * (a[:, pair] - b)
    return np.concatenate([np.ones((z.size, 1)), re, im], axis=1)


def _solve(basis, target, lam, dc_gain, max_residue, solver):
    """The SOCP for one filter, on the scale of ``max |H|``; ``(x or None, status)``."""
    import cvxpy as cp  # heavy to import: only refit needs it (see refit)

    scale = max(np.abs(target).max(), 1e-300)
    x = cp.Variable(basis.shape[1])
    error = basis @ x - target / scale
    constraints = []
    if dc_gain:
        constraints.append(cp.real(basis[0] @ x) == target[0].real / scale)
    if max_residue is not None:
        pair_index = np.cumsum(lam.imag != 0) - 1
        for n in range(lam.size):
            parts = [x[1 + n]] + ([x[1 + lam.size + pair_index[n]]] if lam[n].imag else [])
            constraints.append(cp.norm(cp.hstack(parts)) <= max_residue / scale)
    problem = cp.Problem(cp.Minimize(cp.max(cp.abs(error))), constraints)
    problem.solve(solver=solver)
    if problem.status not in SOLVED or x.value is None:
        return None, problem.status
    return x.value * scale, problem.status
