r"""Least-squares residues in a quadratic metric, with the tail beyond the window held.

For the compact poles of a bank (kept exactly) the taps ``h_hat[k] = Re sum_n R'_n
lambda_n^{k-1}`` (``k >= 1``) are ``V c``, linear in the real coefficients ``c`` (``Re R'_n``
of every mode, ``Im R'_n`` of every pair); the direct term is ``h[0]``. Given a factor ``F``
(``K x L``) of a positive semidefinite metric ``M = F^T F`` the error ``e = h - h_hat`` costs
``J(e) = e^T M e = ||F e||^2``, and the model's tail beyond the window is a quadratic form in
the same coefficients (`mor.fitting.least_squares.tail_gram`, closed form from the poles):

.. math::

    \|\hat h[L:]\|^2 = c^T A c .

The re-solve is

.. math::

    \min_c \|F (h - V c)\|^2 \quad \text{subject to} \quad c^T A c \le \tau^2 ,

a least-squares problem with one quadratic constraint: its solution is that of
``min ||F (h - V c)||^2 + mu c^T A c`` for the smallest ``mu >= 0`` that meets the
constraint (the tail is non-increasing in ``mu`` and ``J`` non-decreasing). Each ``mu`` is a
least-squares solve of the stacked system ``[R; sqrt(mu) A^{1/2}] c = [Q^T F h; 0]`` with
``F V = Q R`` (one thin QR per filter; never the normal equations), and ``mu`` is found by
bracketing and bisection in ``log mu``.

The window metric (``metric="window"``) is what a causal convolution's output feels over a
window of ``L`` positions when its input is stationary, white noise of power ``sigma^2`` plus
a mean ``mu_u`` (the long convolutions of trained language models see inputs with a mean):
the error at position ``t`` is ``sum_{k <= t} e[k] u[t-k]``, whose expected square summed
over ``t < L`` is ``sigma^2 sum_k (L - k) e[k]^2 + mu_u^2 sum_t S_t^2`` with the partial sums
``S_t = sum_{k <= t} e[k]``. Divided by ``L sigma^2``,

.. math::

    \|F e\|^2 = \sum_k \frac{L - k}{L} e[k]^2 + \frac{\rho}{L} \sum_{t < L} S_t^2,
    \qquad \rho = \mu_u^2 / \sigma^2 = `WINDOW_MEAN_POWER` ,

so ``F`` (``2L x L``: a diagonal over a scaled running sum) is applied in ``O(L)`` per
column, never formed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
from numpy.typing import ArrayLike

from mor._numerics.parallel import map_chunks
from mor.conventions import Scale, as_filters, relative
from mor.fitting.varpro import _powers
from mor.fitting.least_squares import tail_gram
from mor.analysis.compare import compare, model_errors
from mor.fitting.minimax import live_modes
from mor.systems.modal import ModalSSM

#: Bisection on ``log mu`` stops once the bracket is this narrow (relative in ``mu``).
MU_RTOL = 1e-10
#: The bracket is searched over this many factors of 100 on either side of the natural scale.
MU_DECADES = 15
#: Filters per task of the worker threads.
SOLVE_CHUNK = 32
#: ``rho``, the input's squared mean over its white-noise power, of the window metric (module
#: notes). Chosen by held-out quality on the e2e language models (``docs/defaults.md``):
#: with the residues of 8-mode modal fits re-solved for it, Hyena's loss went from +0.023% to
#: +0.003% (``rho = 0.1``) and +0.005% (``rho = 1``).
WINDOW_MEAN_POWER = 0.1


def refit_residues(h: ArrayLike, bank: ModalSSM, *, metric: ArrayLike | str | None = None,
                   hold_tail: bool | ArrayLike = True) -> ModalSSM:
    r"""Residues of least ``||F (h - h_hat)||`` for the poles of ``bank``, tail held.

    Per filter, with the poles kept exactly, the direct term ``h_hat[0] = h[0]`` and
    ``h_hat[k] = Re sum_n R'_n lambda_n^{k-1} = (V c)[k]`` (``k >= 1``; ``c`` holds ``Re R'``
    and, for pairs, ``Im R'``):

    .. math::

        \min_c \|F (h - V c)\|^2 \quad \text{subject to} \quad
        \|\hat h[L:]\|^2 = c^T A c \le \tau^2 ,

    with ``A`` the tail's Gram matrix (closed form from the poles). The solution is that of
    ``min_c ||F (h - V c)||^2 + mu c^T A c`` for the smallest ``mu >= 0`` meeting the bound
    (``mu = 0`` where the unconstrained optimum does), each ``mu`` a QR least-squares solve
    (never the normal equations), ``mu`` found by bisection in ``log mu``. Use it for an
    ``l2``-type criterion: the taps (``metric=None``), or what a layer's output feels (``M``
    measured from activations); use `mor.refit` for the worst frequency error (minimax).

    Parameters
    ----------
    h : array_like, shape (..., L)
        The FIR filters ``bank`` approximates (same batch shape).
    bank : ModalSSM
        Models whose poles are kept; their residues are the fallback.
    metric : array_like, shape (..., K, L), or "window", optional
        A factor ``F`` of the metric ``M = F^T F`` per filter (any ``K``: a Cholesky or eigen
        factor of ``M``, or data rows); its batch dimensions broadcast against ``h``'s.
        ``"window"``: the output error of the convolution over a window of ``L`` positions
        for a stationary input with a mean (module notes). By default ``F = I``: plain least
        squares on the taps.
    hold_tail : bool or array_like, optional
        ``True`` (default) holds each model's tail ``||h_hat[L:]||`` to at most ``bank``'s own;
        ``False`` leaves it free; a number (or an array broadcasting to the batch shape) holds
        the relative tail (`mor.conventions`) to at most that value.

    Returns
    -------
    ModalSSM
        Same poles, re-solved residues, direct terms ``h[0]``. ``info`` per filter:
        ``metric_before`` and ``metric`` (``||F (h - h_hat)|| / ||F h||`` with the bank's and
        the returned coefficients; equal to ``l2`` when ``F = I``), ``tail_before`` and
        ``tail`` (relative), ``tail_allowed`` (relative; ``inf`` where free), ``mu`` (the
        multiplier of ``||F e||^2 + mu ||h_hat[L:]||^2``: ``0`` where the hold is not active,
        ``inf`` where only zero residues meet it), ``kept`` (the constrained optimum
        was not better than ``bank``, whose coefficients are returned), and ``l2``, ``hinf``,
        ``aak``, ``bt_bound``, ``f32_deviation`` as in `mor.compare`. ``metric`` never exceeds
        ``metric_before`` where ``bank`` meets the hold (always with ``hold_tail=True`` or
        ``False``), and ``tail`` never exceeds ``tail_allowed`` (up to rounding).

    Raises
    ------
    ValueError
        Mismatched batch shapes, a metric of the wrong shape, NaN or Inf in ``h`` or the
        metric, a negative or NaN tail bound, or a finite tail bound on a model with poles on
        or outside the unit circle (its tail is infinite).

    See Also
    --------
    mor.refit : Minimax (H-infinity) residues and direct term on a frequency grid.

    mor.reduce : The models whose poles are kept (``method="modal"`` optimises the poles too).

    mor.compare : The achieved errors, beside the AAK bound.

    Notes
    -----
    The tail's Gram matrix ``A`` is in closed form from the poles: its entries combine the
    geometric series ``sum_{k >= L} q^{k-1} = q^{L-1} / (1 - q)`` at ``q = lambda_m lambda_n``
    and ``q = lambda_m conj(lambda_n)``.
    Least squares with a quadratic constraint is treated by Gander [1] and Golub & Van Loan
    [2]. A filter whose bank model has no live mode, or of length 1, gets zero residues.

    References
    ----------
    .. [1] W. Gander, "Least squares with a quadratic constraint," *Numerische Mathematik*,
       vol. 36, no. 3, pp. 291-307, 1981.

    .. [2] G. H. Golub and C. F. Van Loan, *Matrix Computations*, 4th ed. Baltimore: Johns
       Hopkins University Press, 2013, sec. 6.2 (constrained least squares).

    Examples
    --------
    Least squares on the taps, with each model's tail held to balanced truncation's:

    >>> import numpy as np
    >>> import mor
    >>> from mor.demo import hyena_like_filters
    >>> filters = hyena_like_filters(2, 256)
    >>> bank = mor.reduce(filters, 8)
    >>> refitted = mor.refit_residues(filters, bank)
    >>> info = refitted.info
    >>> print(bool(np.all(info["metric"] <= info["metric_before"])))
    True
    >>> print(bool(np.all(info["tail"] <= info["tail_allowed"] * (1 + 1e-6))))
    True

    The output error on one input signal ``u``: ``F`` is the causal convolution by ``u``
    (a Toeplitz matrix), so that ``||F e||`` is the norm of ``u * e`` over ``L`` samples:

    >>> from scipy.linalg import toeplitz
    >>> u = np.random.default_rng(0).standard_normal(256)
    >>> F = toeplitz(u, np.zeros(256))
    >>> output = mor.refit_residues(filters, bank, metric=F, hold_tail=False)
    >>> error = [np.convolve(u, e)[:256] for e in filters - output.impulse(256)]
    >>> reference = [np.convolve(u, f)[:256] for f in filters]
    >>> relative = np.linalg.norm(error, axis=1) / np.linalg.norm(reference, axis=1)
    >>> print(np.allclose(relative, output.info["metric"]))
    True
    >>> print(bool(np.all(output.info["metric"] <= output.info["metric_before"])))
    True
    """
    taps = as_filters(h, "h")
    out = residues_in_metric(taps, bank, metric, hold_tail)
    errors = compare(taps, out)
    out.info.update({k: getattr(errors, k) for k in ("l2", "tail", "hinf", "aak", "bt_bound",
                                                     "f32_deviation")})
    return out


def residues_in_metric(taps: np.ndarray, bank: ModalSSM, metric, hold_tail) -> ModalSSM:
    """`refit_residues` (validated ``taps``, ``(..., L)`` float) without the error report:
    ``info`` holds ``metric_before``, ``metric``, ``tail_before``, ``tail_allowed``, ``mu`` and
    ``kept`` only."""
    batch, length = taps.shape[:-1], taps.shape[-1]
    if batch != bank.shape:
        raise ValueError(f"h has batch shape {batch} but bank has {bank.shape}")
    factor = _metric(metric, batch, length)
    flat_h = taps.reshape(-1, length)
    poles, residues, direct = bank._flat_compact()
    # filters and models divided by the filter's power of two; the fit is homogeneous
    power = Scale.of_filters(flat_h)
    flat_h, residues, direct = power.down(flat_h), power.down(residues), power.down(direct)
    norm = np.linalg.norm(flat_h, axis=1)
    scale = np.where(norm > 0, norm, 1.0)  # relative tails, absolute for a zero filter
    tail_before = model_errors(flat_h, poles, residues, direct, bank.order.reshape(-1), None,
                               norms=("tail",))["tail"] * scale
    allowed = _allowed(hold_tail, batch, tail_before, scale)
    new, mu = residues.copy(), np.zeros(len(flat_h))

    def solve(rows: slice) -> None:  # LAPACK releases the GIL: filters on worker threads
        for i in range(len(flat_h))[rows]:
            live = live_modes(poles[i], residues[i])
            apply = None if factor is None else partial(factor, i)
            new[i, live], mu[i] = _solve(flat_h[i], poles[i, live], apply, allowed[i], i)

    map_chunks(solve, len(flat_h), SOLVE_CHUNK)
    before = _metric_error(flat_h, ModalSSM.from_compact(poles, residues, direct), factor)
    after = _metric_error(flat_h, ModalSSM.from_compact(poles, new, flat_h[:, 0]), factor)
    kept = ~(after < before) & (tail_before <= allowed)
    new[kept] = residues[kept]
    fitted = np.where(kept, direct, flat_h[:, 0])
    out = ModalSSM.from_compact(poles.reshape(batch + poles.shape[1:]),
                                power.up(new, name="a residue").reshape(batch + poles.shape[1:]),
                                power.up(fitted, name="the direct term").reshape(batch))
    info = {"metric_before": before, "metric": np.where(kept, before, after),
            "tail_before": tail_before / scale, "tail_allowed": allowed / scale, "mu": mu,
            "kept": kept}
    out.info.update({k: v.reshape(batch) for k, v in info.items()})
    return out


def _metric(metric, batch: tuple, length: int
            ) -> Callable[[int, np.ndarray], np.ndarray] | None:
    """The factor validated, as ``apply(i, x)``: ``F x`` for filter ``i`` (flat index) and
    ``x`` ``(L, c)``; None for the identity."""
    if metric is None:
        return None
    if isinstance(metric, str):
        if metric != "window":
            raise ValueError(f"metric must be an array or 'window', got {metric!r}")
        return lambda i, x: _window_factor(x)
    f = np.asarray(metric)
    if not np.issubdtype(f.dtype, np.number) or np.iscomplexobj(f):
        raise ValueError(f"metric must be a real numeric array, got dtype {f.dtype}")
    if f.ndim < 2 or f.shape[-2] < 1 or f.shape[-1] != length:
        raise ValueError(f"metric must have shape (..., K, L) with K >= 1 and L = {length} (the "
                         f"filters' length), got {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("metric has NaN or Inf entries")
    try:
        f = np.broadcast_to(f.astype(np.float64, copy=False), batch + f.shape[-2:])
    except ValueError:
        raise ValueError(f"metric's batch shape {f.shape[:-2]} does not broadcast to the "
                         f"filters' {batch}") from None
    return lambda i, x: f[np.unravel_index(i, batch)] @ x


def _window_factor(x: np.ndarray) -> np.ndarray:
    """The window metric's ``F x`` (module notes) for ``x`` ``(L, c)``: ``(2L, c)``."""
    length = x.shape[0]
    weight = np.sqrt((length - np.arange(length)) / length)
    return np.concatenate([weight[:, None] * x,
                           np.sqrt(WINDOW_MEAN_POWER / length) * np.cumsum(x, axis=0)])


def _allowed(hold_tail, batch: tuple, own: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Absolute tail bounds per filter (``inf`` where free)."""
    if isinstance(hold_tail, (bool, np.bool_)):
        return own.copy() if hold_tail else np.full(own.shape, np.inf)
    value = np.asarray(hold_tail, dtype=np.float64)
    try:
        value = np.broadcast_to(value, batch).reshape(-1)
    except ValueError:
        raise ValueError(f"hold_tail of shape {value.shape} does not broadcast to the batch "
                         f"shape {batch}") from None
    if not np.all(value >= 0):
        raise ValueError(f"hold_tail must be a bool or relative tails >= 0, got {hold_tail!r}")
    return value * scale


def _solve(h: np.ndarray, lam: np.ndarray, apply, allowed: float,
           index: int) -> tuple[np.ndarray, float]:
    """Compact residues for the poles ``lam`` of one filter, and the multiplier ``mu``."""
    if lam.size == 0 or h.size < 2:
        return np.zeros(lam.size, dtype=np.complex128), 0.0
    held = np.isfinite(allowed)
    if held and np.any(np.abs(lam) >= 1):
        raise ValueError(f"filter {index}: a tail bound on poles on or outside the unit circle "
                         f"(the tail is infinite); use hold_tail=False or True")
    order = np.argsort(lam.imag == 0, kind="stable")  # pairs first: c = (Re R', Im R' of pairs)
    lam = lam[order]
    pairs = int(np.count_nonzero(lam.imag))
    powers = _powers(lam[None], h.size - 1)[0]
    design, target = np.concatenate([powers.real, -powers[:, :pairs].imag], axis=1), h[1:]
    if apply is not None:  # h_hat[0] = h[0]: no error at tap 0
        mapped = apply(np.vstack([np.zeros(design.shape[1] + 1),
                                  np.column_stack([design, target])]))
        design, target = mapped[:, :-1], mapped[:, -1]
    norms = np.linalg.norm(design, axis=0)
    norms[norms == 0] = 1.0
    q, r = np.linalg.qr(design / norms)
    gram = tail_gram(lam, h.size) / np.outer(norms, norms) if held else None
    coef, mu = _constrained(r, q.T @ target, gram, allowed ** 2)
    coef = coef / norms
    value = coef[:lam.size] + 0j
    value[:pairs] += 1j * coef[lam.size:]
    out = np.empty_like(value)
    out[order] = value
    return out, mu


def _constrained(r: np.ndarray, rhs: np.ndarray, gram: np.ndarray | None, allowed2: float
                 ) -> tuple[np.ndarray, float]:
    """``min ||rhs - r c||`` subject to ``c^T gram c <= allowed2`` (no bound without
    ``gram``): the coefficients and the multiplier."""
    coef = np.linalg.lstsq(r, rhs, rcond=None)[0]
    if gram is None or coef @ gram @ coef <= allowed2:
        return coef, 0.0
    size = np.trace(gram)  # tails of fast-decaying modes are tiny: solve on a unit scale
    gram, allowed2 = gram / size, allowed2 / size
    w, u = np.linalg.eigh(gram)
    half = (u * np.sqrt(np.maximum(w, 0.0))).T
    stacked_rhs = np.concatenate([rhs, np.zeros(len(half))])

    def solve(mu):
        return np.linalg.lstsq(np.vstack([r, np.sqrt(mu) * half]), stacked_rhs, rcond=None)[0]

    def feasible(mu):
        c = solve(mu)
        return c @ gram @ c <= allowed2

    mu = _smallest_feasible(feasible, max(np.sum(r * r), 1e-300))
    if mu is None:  # no multiplier in reach meets the bound: no residues at all
        return np.zeros_like(coef), np.inf
    with np.errstate(over="ignore"):
        return solve(mu), mu / size


def _smallest_feasible(feasible, mu0: float) -> float | None:
    """The smallest ``mu > 0`` (to ``MU_RTOL``) where ``feasible``, monotone in ``mu`` and
    false at 0; the search brackets by factors of 100 around ``mu0`` then bisects ``log mu``.
    None where no ``mu`` up to ``mu0 100^MU_DECADES`` is feasible."""
    hi = mu0
    for _ in range(MU_DECADES):
        if feasible(hi):
            break
        hi *= 100.0
    else:
        return None
    lo = hi / 100.0
    for _ in range(MU_DECADES):
        if not feasible(lo):
            break
        hi, lo = lo, lo / 100.0
    else:
        return hi
    while hi - lo > MU_RTOL * hi:
        mid = np.sqrt(lo * hi)
        lo, hi = (lo, mid) if feasible(mid) else (mid, hi)
    return hi


def _metric_error(h: np.ndarray, model: ModalSSM, factor) -> np.ndarray:
    """``||F (h - h_hat)|| / ||F h||`` per filter (absolute where ``F h = 0``)."""
    error = h - model.impulse(h.shape[-1])
    if factor is None:
        return relative(np.linalg.norm(error, axis=1), np.linalg.norm(h, axis=1))
    norms = np.array([np.linalg.norm(factor(i, np.stack([error[i], h[i]], axis=1)), axis=0)
                      for i in range(len(h))])
    return relative(norms[:, 0], norms[:, 1])
