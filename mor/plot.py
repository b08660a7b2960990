"""Figures for spectra, responses, poles and errors (matplotlib, no global state).

Every function draws on the axes it is given, or on a new `matplotlib.figure.Figure`
that it creates without pyplot (so nothing is registered globally), and returns
``(figure, axes)``. Batches are summarised by their median and a 10–90 % band.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mor.analysis.bounds import error_bounds
from mor.conventions import as_filters
from mor.drivers.reduction import reduce
from mor.systems.modal import ModalSSM

_BAND = (10, 90)


def _new_axes(ax: Axes | None, nrows: int = 1, figsize=(6.0, 4.0)):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(nrows, 1, squeeze=True)
    return fig, axes


def _median_band(ax: Axes, x: np.ndarray, values: np.ndarray, label: str, **style):
    """Median over the leading axes of ``values`` (``(..., len(x))``) and a 10–90 % band."""
    flat = values.reshape(-1, values.shape[-1])
    line, = ax.plot(x, np.median(flat, axis=0), label=label, **style)
    if flat.shape[0] > 1:
        lo, hi = np.percentile(flat, _BAND, axis=0)
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    return line


def _index_labels(batch: tuple[int, ...], index) -> list[str]:
    """``"(i, j)"`` per filter of a batch, row-major: its position or the given ``index``."""
    count = int(np.prod(batch, dtype=np.int64))
    if index is not None:
        rows = np.asarray(index, dtype=np.int64).reshape(count, -1)
    elif batch:
        rows = np.stack(np.unravel_index(np.arange(count), batch), axis=-1)
    else:
        rows = np.zeros((1, 0), dtype=np.int64)
    return [str(tuple(int(i) for i in row)) if row.size else "the filter" for row in rows]


def _named(labels: list[str], limit: int = 6) -> str:
    more = len(labels) - limit
    return ", ".join(labels[:limit]) + (f" and {more} more" if more > 0 else "")


def hankel_spectrum(h, *, max_order: int = 64, flagged=None, index=None, ax: Axes | None = None,
                    device=None):
    r"""Hankel spectrum decay with the AAK and balanced-truncation bounds per order.

    For every order ``d``: ``sigma_{d+1} / sigma_1`` (the spectrum itself, which is the AAK
    lower bound on the H-infinity error of any order-``d`` model, here relative to
    ``sigma_1``) and ``2 sum_{i>d} sigma_i / sigma_1`` (what balanced truncation guarantees).
    A batch shows medians and 10–90 % bands.

    Flagged filters (``flagged``, e.g. the ``failed`` column of a distillation report) are
    left out of the medians and bands and drawn one by one in red, named by their index in the
    legend. Filters with NaN or Inf taps have no spectrum: they are always flagged, and named
    in the legend as not drawn. Filters of length 1 have no spectrum either (order 0 is
    exact): the axes say so instead of raising.

    Parameters
    ----------
    h : array_like ``(..., L)``
        FIR filters.
    max_order : int
        Largest order shown (at most ``L - 2``).
    flagged : array_like of bool, optional
        Per filter (broadcast to the batch shape ``h.shape[:-1]``): draw it as flagged.
    index : array_like of int ``(..., k)``, optional
        Per filter, the index it is named by in the legend (e.g. its index in the whole model
        when ``h`` is a sample of it); by default its index in ``h``.
    device : str or torch.device, optional
        A torch device for the values (`mor.error_bounds`), for long filters.
    """
    raw = np.asarray(h)
    if raw.ndim and np.issubdtype(raw.dtype, np.inexact) and not np.iscomplexobj(raw):
        raw = np.where(np.isfinite(raw), raw, 0.0) if raw.size else raw
    as_filters(raw)  # shape and dtype, with NaN and Inf taps set aside
    values = np.asarray(h, dtype=np.float64)
    batch, length = values.shape[:-1], values.shape[-1]
    flat = values.reshape(-1, length)
    finite = np.isfinite(flat).all(axis=-1)
    flag = np.zeros(flat.shape[0], dtype=bool) if flagged is None else \
        np.broadcast_to(np.asarray(flagged, dtype=bool), batch).reshape(-1)
    labels = _index_labels(batch, index)
    plain, marked, missing = finite & ~flag, finite & flag, ~finite
    if int(max_order) < 0:
        raise ValueError(f"max_order must be >= 0, got {max_order}")
    max_order = min(int(max_order), length - 2)
    fig, ax = _new_axes(ax)
    if length >= 2 and finite.any():
        bounds = error_bounds(flat[finite], max_order=max_order, device=device)
        scale = np.where(bounds.hsv[..., :1] > 0, bounds.hsv[..., :1], 1.0)
        aak, bt = bounds.aak / scale, bounds.bt / scale
        orders = np.arange(max_order + 1)
        keep = plain[finite]
        if keep.any():
            _median_band(ax, orders, aak[keep], r"$\sigma_{d+1}/\sigma_1$ (AAK lower bound)")
            _median_band(ax, orders, bt[keep],
                         r"$2\sum_{i>d}\sigma_i/\sigma_1$ (balanced truncation bound)",
                         linestyle="--")
        named = [labels[i] for i in np.flatnonzero(marked)]
        for j, row in enumerate(aak[~keep]):
            ax.plot(orders, row, color="red", linewidth=0.8, alpha=0.8,
                    label=f"flagged: {_named(named)}" if j == 0 else "_flagged")
        ax.set_yscale("log")
    else:
        why = "L = 1: no Hankel spectrum (order 0 is exact)" if length < 2 else \
            "no filter with finite taps to draw"
        ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center")
        if length < 2 and marked.any():
            ax.plot([], [], linestyle="none", marker="x", color="red",
                    label=f"flagged: {_named([labels[i] for i in np.flatnonzero(marked)])}")
    if missing.any():
        ax.plot([], [], linestyle="none", marker="x", color="red",
                label=f"not drawn (NaN or Inf taps): "
                      f"{_named([labels[i] for i in np.flatnonzero(missing)])}")
    ax.set_xlabel("order d")
    ax.set_ylabel(r"relative to $\sigma_1$")
    count = flat.shape[0]
    note = f", {int((marked | missing).sum())} flagged" if (marked | missing).any() else ""
    ax.set_title(f"Hankel spectrum ({count} filter{'s' if count != 1 else ''}, L = {length}"
                 f"{note})")
    ax.grid(True, which="both", alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small" if note else None)
    return fig, ax


def responses(h, models: ModalSSM | Mapping[str, ModalSSM], *, extend: float = 0.25,
              axes: Sequence[Axes] | None = None):
    r"""Impulse and magnitude responses of one filter and its reductions, with the errors.

    Three panels: ``h[k]`` and ``h_hat[k]`` for ``1 <= k < (1 + extend) L`` (past ``L`` the
    model's tail, which the filter does not have; ``h[0]`` is the direct term); ``|H(e^{iw})|`` in dB; ``|H - H_hat|`` in dB with
    each model's AAK bound ``sigma_{d+1}`` as a dotted line.

    Parameters
    ----------
    h : array_like ``(L,)``
        One FIR filter.
    models : ModalSSM or mapping of name to ModalSSM
        Single-system models of ``h``.
    """
    h = as_filters(h)
    if h.ndim != 1:
        raise ValueError(f"responses draws one filter, got shape {h.shape}")
    if isinstance(models, ModalSSM):
        models = {f"order {int(models.order)}": models}
    length = h.size
    span = int(round(length * (1 + extend)))
    k = np.arange(span)
    w = np.linspace(0, np.pi, 2048)
    taps = np.zeros(span)
    taps[:length] = h
    spectrum = np.exp(-1j * np.outer(w, np.arange(length))) @ h
    if axes is None:
        fig = Figure(figsize=(7.0, 8.0), layout="constrained")
        axes = fig.subplots(3, 1)
    fig = axes[0].figure
    axes[0].plot(k[1:], taps[1:], color="black", linewidth=1.0, label="filter")
    axes[1].plot(w / np.pi, 20 * np.log10(np.maximum(np.abs(spectrum), 1e-300)), color="black",
                 linewidth=1.0, label="filter")
    sigma = error_bounds(h, max_order=max(int(m.order) for m in models.values())).hsv
    for name, model in models.items():
        if model.shape != ():
            raise ValueError(f"model {name!r} must be a single system, got shape {model.shape}")
        line, = axes[0].plot(k[1:], model.impulse(span)[1:], linewidth=1.0, label=name)
        hat = model.freqresp(w)
        axes[1].plot(w / np.pi, 20 * np.log10(np.maximum(np.abs(hat), 1e-300)),
                     color=line.get_color(), linewidth=1.0, label=name)
        axes[2].plot(w / np.pi, 20 * np.log10(np.maximum(np.abs(spectrum - hat), 1e-300)),
                     color=line.get_color(), linewidth=1.0, label=name)
        d = int(model.order)
        if d < sigma.size:
            axes[2].axhline(20 * np.log10(sigma[d]), color=line.get_color(), linestyle=":",
                            linewidth=1.0, label=fr"$\sigma_{{{d + 1}}}$ (AAK, order {d})")
    axes[0].axvline(length, color="grey", linestyle=":", linewidth=1.0)
    axes[0].set_xlabel("lag k")
    axes[0].set_ylabel("h[k]")
    axes[0].set_title(f"impulse response, k >= 1 (filter ends at L = {length}, dotted)")
    axes[1].set_xlabel(r"frequency $\omega/\pi$")
    axes[1].set_ylabel("|H| (dB)")
    axes[1].set_title("magnitude response")
    axes[2].set_xlabel(r"frequency $\omega/\pi$")
    axes[2].set_ylabel(r"$|H - \hat H|$ (dB)")
    axes[2].set_title("error, beside the AAK lower bound on its peak")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    return fig, axes


def poles(ssm: ModalSSM, *, axes: Sequence[Axes] | None = None):
    """Poles of a batch of models, coloured by ``log10 |residue|``.

    Two panels: the unit disk, and ``1 - |lambda|`` (log scale) against the pole's angle,
    where poles crowding the circle (trained long filters have many) are told apart.
    """
    p, r = ssm.poles.reshape(-1), ssm.residues.reshape(-1)
    live = r != 0
    p, r = p[live], r[live]
    if axes is None:
        fig = Figure(figsize=(10.0, 4.5), layout="constrained")
        axes = fig.subplots(1, 2, width_ratios=(1, 1.6))
    fig = axes[0].figure
    colour = np.log10(np.abs(r))
    t = np.linspace(0, 2 * np.pi, 512)
    axes[0].plot(np.cos(t), np.sin(t), color="grey", linewidth=0.8)
    axes[0].scatter(p.real, p.imag, c=colour, s=10, cmap="viridis")
    axes[0].set_aspect("equal")
    axes[0].set_xlim(-1.05, 1.05)
    axes[0].set_ylim(-1.05, 1.05)
    axes[0].set_xlabel("Re λ")
    axes[0].set_ylabel("Im λ")
    axes[0].set_title(f"{p.size} poles in the unit disk")
    upper = p.imag >= 0
    points = axes[1].scatter(np.angle(p[upper]) / np.pi, 1.0 - np.abs(p[upper]), c=colour[upper],
                             s=10, cmap="viridis")
    axes[1].set_yscale("log")
    axes[1].set_xlabel(r"angle $\arg\lambda / \pi$")
    axes[1].set_ylabel(r"$1 - |\lambda|$")
    axes[1].set_title(f"distance to the circle (closest: {1 - np.abs(p).max(initial=0):.1e})")
    fig.colorbar(points, ax=axes[1], label="log10 |residue|")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, axes


def error_vs_order(h, orders: Sequence[int], *, methods: Sequence[str] = ("balanced", "hankel"),
                   norm: str = "hinf", ax: Axes | None = None):
    r"""Achieved error against order per method (median and 10–90 % band over the batch).

    For ``norm="hinf"`` the AAK bound ``sigma_{d+1}/max|H|`` is drawn too: no method can go
    below it. Each point is a `mor.reduce` call (models that fail are left out).
    """
    h = as_filters(h)
    orders = np.asarray(orders)
    fig, ax = _new_axes(ax)
    aak = None
    for method in methods:
        values = np.full(h.shape[:-1] + (orders.size,), np.nan)
        for j, d in enumerate(orders):
            red = reduce(h, int(d), method=method, on_fail="flag")
            values[..., j] = np.where(red.info["failed"], np.nan, red.info[norm])
            if norm == "hinf" and aak is None:
                aak = np.full_like(values, np.nan)
            if norm == "hinf":
                aak[..., j] = red.info["aak"]
        flat = values.reshape(-1, orders.size)
        line, = ax.plot(orders, np.nanmedian(flat, axis=0), marker="o", label=method)
        if flat.shape[0] > 1:
            lo, hi = np.nanpercentile(flat, _BAND, axis=0)
            ax.fill_between(orders, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
    if aak is not None:
        ax.plot(orders, np.median(aak.reshape(-1, orders.size), axis=0), color="black",
                linestyle=":", label=r"AAK $\sigma_{d+1}/\max|H|$")
    ax.set_yscale("log")
    ax.set_xlabel("order d")
    ax.set_ylabel(f"relative {norm} error")
    ax.set_title(f"{norm} error against order")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return fig, ax


def layer_heatmap(values, *, label: str = "order", log: bool = False, ax: Axes | None = None):
    """Heat map of per-filter values of a model, ``(layers, channels)``: orders or errors.

    Negative or NaN values (``-1``: an order that no search could find) are drawn in red.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must have shape (layers, channels), got {values.shape}")
    bad = ~(values >= 0)
    with np.errstate(divide="ignore"):
        shown = np.log10(values) if log else values.copy()
    shown = np.ma.masked_array(shown, bad | ~np.isfinite(shown))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="red")
    fig, ax = _new_axes(ax, figsize=(8.0, 0.5 * values.shape[0] + 1.5))
    image = ax.imshow(shown, aspect="auto", interpolation="nearest", cmap=cmap)
    fig.colorbar(image, ax=ax, label=f"log10 {label}" if log else label)
    ax.set_xlabel("channel")
    ax.set_ylabel("layer")
    ax.set_yticks(np.arange(values.shape[0]))
    ax.set_title(f"{label} per filter" + (f" (red: {int(bad.sum())} without a value)"
                                          if bad.any() else ""))
    return fig, ax


def hinf_vs_aak(hinf, aak, *, ax: Axes | None = None):
    r"""Each filter's achieved ``hinf`` against its AAK bound ``sigma_{d+1}/max|H|``.

    No model of order ``d`` lies below the diagonal; the distance above it is what the method
    leaves on the table.
    """
    hinf, aak = np.ravel(hinf).astype(float), np.ravel(aak).astype(float)
    keep = np.isfinite(hinf) & np.isfinite(aak) & (hinf > 0) & (aak > 0)
    fig, ax = _new_axes(ax, figsize=(5.0, 5.0))
    ax.scatter(aak[keep], hinf[keep], s=8, alpha=0.6, label="filters")
    both = np.concatenate([aak[keep], hinf[keep]])
    lo, hi = (both.min(), both.max()) if both.size else (1e-3, 1.0)
    ax.plot([lo, hi], [lo, hi], color="black", linestyle=":", label="hinf = AAK bound")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"AAK bound $\sigma_{d+1}/\max|H|$")
    ax.set_ylabel("achieved hinf (relative)")
    ax.set_title(f"H-infinity error beside the AAK bound ({int(keep.sum())} filters)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return fig, ax
