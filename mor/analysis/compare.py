"""Achieved errors of models against FIR filters, set beside the AAK lower bound."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mor._numerics import freq
from mor._numerics.kernels import (POWER_BLOCK, impulse_compact,
                                   impulse_error_compensated)
from mor._numerics.parallel import map_filters, worker_threads
from mor.analysis.bounds import bounds_from_hsv, hankel_frobenius_sq
from mor.conventions import Scale, as_filters, relative
from mor.analysis.spectrum import hankel_svd
from mor.systems.modal import ModalSSM


#: Filters per chunk when errors of a large batch are computed.
ERROR_CHUNK = 64
#: ``l2`` is recomputed in double-double arithmetic where the rounding of the plain impulse
#: response (bounded by `rounding_bound`) could move it by more than this (relative).
L2_RTOL = 1e-7


@dataclass(frozen=True)
class Comparison:
    r"""Per-filter errors of models against their filters, beside the bounds at their order.

    Returned by `compare` (and found in ``mor.reduce(...).info``); every array has the batch
    shape of the filters. ``print`` shows a table (all filters up to 20, else the first 10,
    the last 5, the median and the maximum); `to_dict` gives JSON-ready lists.

    Attributes
    ----------
    order : ndarray of int
        McMillan degree ``d`` of each model.
    l2 : ndarray
        ``||h - h_hat||_2 / ||h||_2`` over the ``L`` taps.
    tail : ndarray
        ``||h_hat[L:]||_2 / ||h||_2``: what the model emits after the filter has ended
        (``inf`` for an unstable model).
    hinf : ndarray
        ``max_w |H(e^{iw}) - H_hat(e^{iw})| / max_w |H(e^{iw})|`` with the model's full
        (infinite) response.
    aak : ndarray
        ``sigma_{d+1} / max |H|``: the least ``hinf`` any model of order ``d`` can have
        (``0`` for ``d >= L - 1``).
    bt_bound : ndarray
        ``2 sum_{i>d} sigma_i / max |H|``: what balanced truncation of order ``d`` guarantees
        (certified from the leading values when the spectrum was not computed in full).
    f32_deviation : ndarray
        ``max_k |h32[k] - h_hat[k]| / max_k |h_hat[k]|`` over the ``L`` taps: what the model
        loses when run as inference engines run it (poles and residues rounded to complex64,
        the direct term to float32, the recurrence in float32) against itself in float64
        (`ModalSSM.float32_deviation`): set beside ``l2``, it says whether the float64
        accuracy survives where the model runs.
    peak : ndarray
        ``max |H|``, the scale of the relative ``hinf``, ``aak`` and ``bt_bound`` figures.

    See Also
    --------
    compare : Computes it.

    error_bounds : The bounds for every order.

    Notes
    -----
    Relative figures are absolute for a zero filter (`mor.conventions`). ``hinf`` never lies
    below ``aak`` (up to the accuracy of the frequency search): a model reported below it
    would be a bug.

    Examples
    --------
    >>> import numpy as np
    >>> import mor
    >>> k = np.arange(64)
    >>> h = 0.5**k * np.cos(0.3 * k)
    >>> errors = mor.compare(h, mor.reduce(h, 1))  # an order-2 filter at order 1
    >>> print(errors.columns)
    ('order', 'l2', 'tail', 'hinf', 'aak', 'bt_bound', 'f32_deviation')
    >>> print(f"aak {errors.aak:.4f} <= hinf {errors.hinf:.4f} <= bt {errors.bt_bound:.4f}")
    aak 0.0146 <= hinf 0.0219 <= bt 0.0292
    >>> sorted(errors.to_dict())
    ['aak', 'bt_bound', 'f32_deviation', 'hinf', 'l2', 'order', 'peak', 'tail']
    """

    order: np.ndarray
    l2: np.ndarray
    tail: np.ndarray
    hinf: np.ndarray
    aak: np.ndarray
    bt_bound: np.ndarray
    f32_deviation: np.ndarray
    peak: np.ndarray
    columns: tuple[str, ...] = field(default=("order", "l2", "tail", "hinf", "aak", "bt_bound",
                                              "f32_deviation"), repr=False)

    def to_dict(self) -> dict[str, list]:
        """Plain lists per column (JSON-ready)."""
        return {c: getattr(self, c).tolist() for c in self.columns + ("peak",)}

    def __str__(self) -> str:
        rows = [("filter",) + self.columns]
        shape = self.order.shape
        flat = {c: np.asarray(getattr(self, c)).reshape(-1) for c in self.columns}
        count = flat["order"].size
        shown = range(count) if count <= 20 else list(range(10)) + list(range(count - 5, count))
        for i in shown:
            index = np.unravel_index(i, shape) if shape else ()
            rows.append((str(tuple(int(j) for j in index)) if shape else "-",
                         str(flat["order"][i]))
                        + tuple(f"{flat[c][i]:.3e}" for c in self.columns[1:]))
        if count > 20:
            rows.insert(11, ("...",) + ("",) * len(self.columns))
            for label, fn in (("median", np.median), ("max", np.max)):
                rows.append((label, "") + tuple(f"{fn(flat[c]):.3e}" for c in self.columns[1:]))
        widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
        return "\n".join("  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows)


def compare(h, ssm: ModalSSM) -> Comparison:
    r"""Achieved errors of models against FIR filters, beside the AAK bound at their order.

    For a filter ``h[0..L-1]`` (transfer function ``H(z) = sum_k h[k] z^{-k}``) and a model
    ``H_hat`` of order ``d`` (impulse response ``h_hat``, infinite), with ``sigma_i`` the
    Hankel singular values of ``h``:

    .. math::

        \mathrm{l2} = \frac{\|h - \hat h\|_{2,[0,L)}}{\|h\|_2}, \quad
        \mathrm{tail} = \frac{\|\hat h\|_{2,[L,\infty)}}{\|h\|_2}, \quad
        \mathrm{hinf} = \frac{\max_\omega |H(e^{i\omega}) - \hat H(e^{i\omega})|}
        {\max_\omega |H(e^{i\omega})|} \;\ge\;
        \mathrm{aak} = \frac{\sigma_{d+1}}{\max_\omega |H(e^{i\omega})|} .

    The last inequality is the AAK theorem [1]: no model of order ``d`` has a smaller
    ``hinf``; ``hinf / aak`` says how far a model is from that floor. Inference engines run
    the model in single precision; with ``\tilde h`` its response with poles and residues
    rounded to complex64, the direct term to float32 and the recurrence
    ``z <- lambda z`` run in float32,

    .. math::

        \mathrm{f32\_deviation} = \frac{\max_{k<L} |\tilde h[k] - \hat h[k]|}
        {\max_{k<L} |\hat h[k]|}
        \;\lesssim\; \epsilon_{32} \, \frac{\max_k \, (k + m) \sum_n |R_n| |\lambda_n|^{k-1}}
        {\max_k |\hat h[k]|},

    over its ``m`` compact modes, relative to the model's own peak (``0`` for a zero model):
    residues that cancel (large ``|R_n|``, small ``hat h``) and poles near the circle cost
    precision, so a model with a small ``l2`` may still be far off the filter where it runs
    in float32.

    Parameters
    ----------
    h : array_like, shape (..., L)
        Real FIR filters.
    ssm : ModalSSM
        Models of the same batch shape ``(...)`` (e.g. from `mor.reduce`).

    Returns
    -------
    Comparison
        ``order``, ``l2``, ``tail``, ``hinf``, ``aak``, ``bt_bound``, ``f32_deviation`` and
        ``peak`` per filter; prints as a table.

    Raises
    ------
    ValueError
        If ``h`` is not a real finite array of shape ``(..., L)`` or the batch shapes of
        ``h`` and ``ssm`` differ.

    See Also
    --------
    mor.reduce : Models with these errors already in their ``info``.

    error_bounds : The AAK and balanced-truncation bounds for every order.

    mor.select_order : The smallest order whose achieved error meets a tolerance.

    Notes
    -----
    ``l2`` and ``tail`` are exact (the tail from the model's Gramian in closed form, see
    `ModalSSM.tail_norm`); where a model's residues cancel on the taps (clustered poles with
    large opposite residues) so that rounding could move ``l2`` by more than ``1e-7``
    (`rounding_bound`), its error is recomputed in double-double arithmetic. ``hinf`` is the
    peak of ``|H - H_hat|`` on the unit circle: an FFT grid exact for the filter, refined by
    golden-section search near the largest samples and around every pole close enough to the
    circle to peak between grid points. ``f32_deviation`` is computed at a power-of-two scale
    of the model (`ModalSSM.float32_deviation`), so it is the same for ``c h`` and ``c`` times
    the model for any power of two ``c``. All relative figures (but ``f32_deviation``, which
    is relative to the model) are absolute for a zero filter.
    Large batches are processed in chunks of 64 filters.

    References
    ----------
    .. [1] V. M. Adamjan, D. Z. Arov and M. G. Krein, "Analytic properties of Schmidt pairs for
       a Hankel operator and the generalized Schur-Takagi problem," *Math. USSR-Sbornik*,
       vol. 15, no. 1, pp. 31-73, 1971.

    Examples
    --------
    Balanced truncation of four Hyena-like filters to order 8 lies between the AAK floor and
    the balanced-truncation bound:

    >>> import numpy as np
    >>> import mor
    >>> from mor.demo import hyena_like_filters
    >>> filters = hyena_like_filters(4, 256)
    >>> errors = mor.compare(filters, mor.reduce(filters, 8))
    >>> errors.order
    array([8, 8, 8, 8])
    >>> print(bool(np.all(errors.aak <= errors.hinf)),
    ...       bool(np.all(errors.hinf <= errors.bt_bound)))
    True True
    >>> print(str(errors).splitlines()[0])
    filter  order         l2       tail       hinf        aak   bt_bound  f32_deviation

    A filter of order 2 is reproduced exactly at order 2:

    >>> k = np.arange(64)
    >>> h = 0.5**k * np.cos(0.3 * k)
    >>> print(float(mor.compare(h, mor.reduce(h, 2)).l2) < 1e-12)
    True
    """
    h = as_filters(h)
    if ssm.shape != h.shape[:-1]:
        raise ValueError(f"filters of batch shape {h.shape[:-1]} and models of batch shape "
                         f"{ssm.shape} do not match")
    # filter and model divided by the filter's power of two: the errors are scale-free
    scale = Scale.of_filters(h.reshape(-1, h.shape[-1]))
    flat = scale.down(h.reshape(-1, h.shape[-1]))
    size = h.shape[-1] - 1
    orders = ssm.order.reshape(-1)
    k = min(size, int(orders.max(initial=0)) + 1)
    hsv = hankel_svd(flat, k, vectors=False)[0]
    pc, rc, d = ssm._flat_compact()
    result = model_errors(flat, pc, scale.down(rc), scale.down(d), orders, hsv)
    result["peak"] = scale.up(result["peak"], name="the peak |H|")
    return Comparison(**{key: v.reshape(h.shape[:-1]) for key, v in result.items()})


def model_errors(h: np.ndarray, poles: np.ndarray, residues: np.ndarray, direct: np.ndarray,
                 orders: np.ndarray, hsv: np.ndarray | None,
                 norms: tuple[str, ...] = ("l2", "tail", "hinf", "f32_deviation"),
                 peak: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Errors of flat compact models ``(F, m)`` against flat filters ``(F, L)``.

    ``hsv`` (``(F, k)``) holds the leading Hankel singular values, ``k > max(orders)`` unless
    ``orders`` reach ``L - 1`` (needed for ``hinf`` only). ``norms`` limits the work to the
    errors asked for among ``l2``, ``tail``, ``hinf`` (which brings ``peak``, ``aak`` and
    ``bt_bound`` along) and ``f32_deviation`` (`ModalSSM.float32_deviation` over ``L`` taps);
    ``peak`` (``max |H|`` per filter) is computed unless given. A batch of at least as many
    filters as worker threads is taken in chunks of at most `ERROR_CHUNK` filters (whose
    frequency grids stay in cache), side by side on the threads (`map_filters`: all of the
    work in parallel, the NumPy passes too; 64 filters of 2^20 taps took 22.3 s on 8 threads
    of an H100 machine with parallel kernels over the whole batch).
    """
    if h.shape[0] > 2 * ERROR_CHUNK or h.shape[0] >= worker_threads() > 1:
        parts = map_filters(lambda i: _model_errors(
            h[i], poles[i], residues[i], direct[i], orders[i], None if hsv is None else hsv[i],
            norms, None if peak is None else peak[i]), h.shape[0], ERROR_CHUNK)
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return _model_errors(h, poles, residues, direct, orders, hsv, norms, peak)


def _model_errors(h: np.ndarray, poles: np.ndarray, residues: np.ndarray, direct: np.ndarray,
                  orders: np.ndarray, hsv: np.ndarray | None, norms: tuple[str, ...],
                  peak: np.ndarray | None) -> dict[str, np.ndarray]:
    """`model_errors` of one chunk of filters."""
    length = h.shape[-1]
    size = length - 1
    out: dict[str, np.ndarray] = {"order": orders.copy()}
    ssm = ModalSSM.from_compact(poles, residues, direct)
    ref_l2 = np.linalg.norm(h, axis=-1)
    impulse = None  # the model's, where l2 computes it: f32_deviation's reference too
    if "l2" in norms:
        impulse = ssm.impulse(length)
        err = h - impulse
        # residues that cancel (clustered poles with large opposite residues) leave rounding
        # far above the error itself: those filters are recomputed in double-double
        norm = _scaled_norm(err)
        doubtful = np.flatnonzero(~(_scaled_norm(rounding_bound(h, poles, residues))
                                    <= L2_RTOL * norm))
        if doubtful.size:
            err[doubtful] = impulse_error_compensated(h, poles, residues, direct, doubtful)
            norm[doubtful] = _scaled_norm(err[doubtful])
        out["l2"] = relative(norm, ref_l2)
    if "tail" in norms:
        tail = np.full(h.shape[0], np.inf)
        stable = ssm.is_stable()
        if stable.any():
            tail[stable] = ssm[stable].tail_norm(length)
        out["tail"] = relative(tail, ref_l2)
    if "f32_deviation" in norms:
        out["f32_deviation"] = ssm.float32_deviation(length, reference=impulse)
    if "hinf" in norms:
        # the direct terms subtracted in the taps, exactly where they are close: H - H_hat
        # as (H - D) - (H_hat - D) keeps an error far below h[0] (an order-0 model of a
        # filter whose other taps are 1e-42 of it had them rounded away on the grid)
        taps = h.copy()
        taps[:, 0] -= direct
        difference = freq.Difference(
            freq.FirResponse(taps), freq.ModalResponse(poles, residues, np.zeros_like(direct)))
        m = freq.grid_size(difference.size)
        with np.errstate(all="ignore"):  # as in `peak_magnitude`: an unstable model's grid
            taps_grid = difference.first.grid(m)
            error_grid = taps_grid - difference.second.grid(m)
        if peak is None:
            peak = freq.peak_magnitude(freq.FirResponse(h), m=m,
                                       grid=_filter_grid(h, direct, ref_l2, taps_grid, m))[0]
        abs_err = freq.peak_magnitude(difference, m=m, grid=error_grid)[0]
        zero = np.zeros((h.shape[0], 1))
        aak = np.concatenate([hsv, zero], axis=1)
        bt = np.concatenate([bounds_from_hsv(hsv, hankel_frobenius_sq(h), size).bt, zero], axis=1)
        idx = np.minimum(orders, hsv.shape[1])[:, None]
        out["peak"] = peak
        out["hinf"] = relative(abs_err, peak)
        out["aak"] = relative(np.take_along_axis(aak, idx, 1)[:, 0], peak)
        out["bt_bound"] = relative(np.take_along_axis(bt, idx, 1)[:, 0], peak)
    return out


#: `model_errors` takes a filter's grid as its taps' less the direct term plus that term, one
#: FFT for both, where ``|D| <= SHARED_GRID_DIRECT_MAX ||h||_2``: the sum's rounding,
#: ``eps (|H| + 2 |D|)``, is then below ``1e-13`` of the peak (``max |H| >= ||h||_2``).
SHARED_GRID_DIRECT_MAX = 100.0


def _filter_grid(h: np.ndarray, direct: np.ndarray, norm: np.ndarray, taps_grid: np.ndarray,
                 m: int) -> np.ndarray:
    """``H`` on the grid of size ``m`` from the grid of ``h - D delta_0`` (its own FFT where
    the direct term is large against the filter's ``norm`` ``||h||_2``:
    `SHARED_GRID_DIRECT_MAX`)."""
    grid = taps_grid + direct[:, None]
    far = np.abs(direct) > SHARED_GRID_DIRECT_MAX * norm
    if far.any():
        grid[far] = freq.FirResponse(h[far]).grid(m)
    return grid


def _scaled_norm(x: np.ndarray) -> np.ndarray:
    """``||x||_2`` along the last axis without overflow in the squares (``inf`` only where
    ``x`` holds one)."""
    top = np.abs(x).max(axis=-1, initial=0.0)
    safe = np.where((top > 0) & np.isfinite(top), top, 1.0)
    return np.where(np.isfinite(top), safe * np.linalg.norm(x / safe[..., None], axis=-1), top)


def rounding_bound(h: np.ndarray, poles: np.ndarray, residues: np.ndarray) -> np.ndarray:
    """Bound ``(F, L)`` on the rounding of ``h[k] - h_hat[k]`` as `ModalSSM.impulse` computes
    it (`impulse_compact`: each power ``lambda^(k-1)`` from ``j`` repeated multiplications and
    one block power in double-double, then summed over ``m`` modes):
    ``eps ((4 j + 8 + m) sum_n |R_n| |lambda_n|^(k-1) + |h[k]|)``, with ``j`` the lag within
    its block of `POWER_BLOCK` taps for a mode on or inside the unit circle and ``k - 1``
    outside it (or where the row is one block). Where residues cancel the sum of moduli lies
    far above ``|h_hat[k]|``, and so does the bound."""
    eps = np.finfo(float).eps
    length = h.shape[-1]
    modes = (residues != 0).sum(axis=-1)[:, None]
    lag = np.maximum(np.arange(length) - 1, 0)
    blocked = np.abs(poles) <= 1.0 if length - 1 > POWER_BLOCK else np.zeros(poles.shape, bool)
    bound = eps * np.abs(h)
    with np.errstate(over="ignore"):  # an infinite bound: the error is recomputed exactly
        for part, within in ((blocked, lag % POWER_BLOCK), (~blocked, lag)):
            if part.any():
                moduli = impulse_compact(np.abs(poles).astype(np.complex128),
                                         np.where(part, np.abs(residues), 0.0).astype(
                                             np.complex128), np.zeros(h.shape[0]), length)
                bound += eps * ((4 * within + 8 + modes) * moduli)
    return bound
