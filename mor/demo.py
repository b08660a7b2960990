"""The embedded default: Hyena-like filters generated deterministically, and the demo run."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from mor.analysis.bounds import error_bounds
from mor.drivers.distillation import distill
from mor.systems.modal import load
from mor.analysis.compare import compare
from mor.drivers.reduction import reduce
from mor.warmup import warmup


def hyena_like_filters(n_filters: int = 32, length: int = 1024, seed: int = 0) -> np.ndarray:
    r"""Filters shaped like Hyena's implicit long convolutions, shape ``(n_filters, L)``.

    As in Hyena, each filter is a small MLP with sine activations over positional features
    ``z(t) = (t/L, cos(2 pi j t/L), sin(2 pi j t/L))_{j=1..8}``, multiplied by an exponential
    decay window ``exp(-alpha t / L)`` with ``alpha`` spread over ``[0.5, 8]`` across filters:

    .. math::

        h[t] = \left(w_2^T \sin(\omega W_1 z(t) + b_1)\right) e^{-\alpha t / L}.

    Deterministic for a given ``seed``; a stand-in for trained filters in demos, tests and the
    docstrings' examples.

    Parameters
    ----------
    n_filters : int, optional
        Number of filters (default 32); the decay rate grows with the index.
    length : int, optional
        Taps per filter ``L`` (default 1024).
    seed : int, optional
        Seed of the random MLP weights (default 0).

    Returns
    -------
    ndarray, shape (n_filters, length)
        The filters, float64.

    Raises
    ------
    ValueError
        If ``n_filters < 1`` or ``length < 1``.

    References
    ----------
    .. [1] M. Poli, S. Massaroli, E. Nguyen, D. Y. Fu, T. Dao, S. Baccus, Y. Bengio, S. Ermon
       and C. Re, "Hyena Hierarchy: Towards larger convolutional language models," in
       *Proc. 40th International Conference on Machine Learning (ICML)*, PMLR vol. 202, 2023.

    Examples
    --------
    >>> import numpy as np
    >>> import mor
    >>> from mor.demo import hyena_like_filters
    >>> filters = hyena_like_filters(4, 256)
    >>> filters.shape
    (4, 256)
    >>> print(bool(np.array_equal(filters, hyena_like_filters(4, 256))))  # deterministic
    True
    >>> s = mor.hankel_singular_values(filters, k=16)  # sigma_16 / sigma_1: slower decay first
    >>> print(np.round(s[:, 15] / s[:, 0], 3))
    [0.329 0.199 0.022 0.001]
    """
    if n_filters < 1 or length < 1:
        raise ValueError(f"need n_filters >= 1 and length >= 1, got {n_filters}, {length}")
    rng = np.random.default_rng(seed)
    t = np.arange(length) / max(length, 1)
    j = np.arange(1, 9)[:, None]
    feats = np.concatenate([t[None], np.cos(2 * np.pi * j * t), np.sin(2 * np.pi * j * t)])
    width, omega = 32, 4.0
    w1 = rng.standard_normal((n_filters, width, feats.shape[0])) / np.sqrt(feats.shape[0])
    b1 = rng.uniform(-np.pi, np.pi, (n_filters, width, 1))
    w2 = rng.standard_normal((n_filters, 1, width)) / np.sqrt(width)
    hidden = np.sin(omega * (w1 @ feats) + b1)
    alpha = np.geomspace(0.5, 8.0, n_filters)[:, None]
    return (w2 @ hidden)[:, 0, :] * np.exp(-alpha * np.arange(length) / length * 4)


def run_demo(n_filters: int = 32, length: int = 512, orders=(4, 8, 16, 32),
             out=print) -> None:
    """Spectrum, balanced truncation at several orders and errors beside the bounds, then the
    whole-model path: distillation at a tolerance (a filter that needs more than the largest
    order keeps its most accurate model, listed by index), a bank saved and reloaded, and how
    to read the figures (`READING`).

    Needs ``length >= 3`` and every order in ``1 .. length - 2`` (the spectrum has
    ``length - 1`` values); the filters are distilled as 2 layers when their number is even.
    """
    if length < 3:
        raise ValueError(f"the demo needs filters of length >= 3, got {length}")
    wrong = [d for d in orders if not 1 <= int(d) <= length - 2]
    if not orders or wrong:
        raise ValueError(f"orders must lie in 1 .. length - 2 = {length - 2}, got "
                         f"{list(orders)}")
    h = hyena_like_filters(n_filters, length)
    out(f"mor demo: {n_filters} Hyena-like filters of length {length} (mor.demo.hyena_like_filters)")
    ready = warmup()  # compiled once per install (`mor warmup`); loading the cache is quick
    out(f"Numba kernels ready in {ready.seconds:.1f} s ("
        + (f"{ready.compiled} compiled now, once: later runs load them from the cache"
           if ready.compiled else "loaded from the cache") + "); the times below exclude "
        "compilation")
    start = time.perf_counter()
    bounds = error_bounds(h)
    out(f"full Hankel spectrum in {time.perf_counter() - start:.2f} s; "
        f"median sigma_(d+1)/sigma_1:")
    rel = bounds.hsv / bounds.hsv[:, :1]
    out("  " + "  ".join(f"d={d}: {np.median(rel[:, d]):.2e}" for d in orders))
    out("")
    out("balanced truncation, medians over filters (relative errors; aak = sigma_(d+1)/max|H| "
        "<= hinf <= bt_bound = 2 sum_(i>d) sigma_i/max|H|)")
    header = f"{'order':>5} {'modes':>5} {'l2':>10} {'tail':>10} {'aak':>10} {'hinf':>10} " \
             f"{'bt_bound':>10} {'hinf/aak':>8} {'time':>7}"
    out(header)
    for d in orders:
        start = time.perf_counter()
        ssm = reduce(h, d, on_fail="flag")  # high orders of short filters can fail: said below
        elapsed = time.perf_counter() - start
        ok = ~np.asarray(ssm.info["failed"], dtype=bool)
        failed = f"  ({int((~ok).sum())} of {ok.size} failed)" if not ok.all() else ""
        if not ok.any():
            out(f"{d:>5} {'-':>5} {'-':>10} {'-':>10} {'-':>10} {'-':>10} {'-':>10} {'-':>8} "
                f"{elapsed:>6.2f}s{failed}")
            continue
        cmp = compare(h[ok], ssm[ok])
        if np.any(cmp.hinf < cmp.aak * (1 - 1e-6)):
            raise RuntimeError(f"order {d}: an error below the AAK bound; please report")
        out(f"{d:>5} {int(np.median(ssm.modes[ok])):>5} {np.median(cmp.l2):>10.3e} "
            f"{np.median(cmp.tail):>10.3e} {np.median(cmp.aak):>10.3e} "
            f"{np.median(cmp.hinf):>10.3e} {np.median(bounds.bt[ok, d] / cmp.peak):>10.3e} "
            f"{np.median(cmp.hinf / np.maximum(cmp.aak, 1e-300)):>8.2f} {elapsed:>6.2f}s"
            f"{failed}")
    out("")
    start = time.perf_counter()
    layers = 2 if n_filters % 2 == 0 else 1
    taps = h.reshape(layers, -1, length)
    result = distill(taps, tol=1e-2, norm="l2", method="auto")
    out(f"whole-model path: mor.distill(tol=1e-2, l2, method='auto') on the filters as "
        f"{layers} layer{'s' if layers > 1 else ''} in {time.perf_counter() - start:.2f} s:")
    out(str(result.report))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bank.npz"
        result.bank.save(path)
        bank = load(path)
    ok = ~result.report.columns["failed"]
    l2 = np.linalg.norm(bank.impulse(length) - taps, axis=-1) / np.linalg.norm(taps, axis=-1)
    out(f"bank saved and reloaded: its l2 errors match the report to "
        f"{np.abs(l2[ok] - result.report.columns['l2'][ok]).max(initial=0.0):.1e}")
    for line in _flags(result.report, min(64, length - 1)):
        out(line)
    out("")
    for line in READING:
        out(line)
    out("")
    missed = len(result.report.missed())
    out(f"mor demo finished: {int(ok.sum())} of {n_filters} filters distilled to stable modal "
        "models" + (f", {missed} of them flagged as missing the tolerance" if missed else "")
        + (f"; {int((~ok).sum())} failed" if not ok.all() else "")
        + (" (listed above)" if missed or not ok.all() else "") + ".")


#: What the demo's columns and flags mean, printed at its end.
READING = (
    "how to read it (errors relative to the filter; hinf relative to max |H|):",
    "  aak       sigma_(d+1)/max|H|: no model of order d, of any method, has a smaller hinf",
    "  hinf/aak  how far the model is from that optimum",
    "  bt_bound  2 sum_(i>d) sigma_i/max|H|: the hinf balanced truncation guarantees; above 1",
    "            (low orders) it guarantees less than the zero model's hinf of 1, while the",
    "            hinf reached stays close to aak",
    "  tail      what the model emits after lag L, where the filter has ended: the part of its",
    "            error the l2 over the L taps does not see",
    "  missed    filters whose tolerance needs an order above max_order: they keep their most",
    "            accurate model, met_tol false and its error in the report; a larger max_order",
    "            or a looser tol can meet it",
    "  failed    filters with no usable model (NaN taps, unstable poles): order 0, the reason",
    "            in the report",
)


def _flags(report, max_order: int) -> list[str]:
    """The filters of a distillation at ``l2 <= 1e-2`` that missed it or failed, by index."""
    lines = []
    missed = report.missed()
    if missed:
        l2 = np.array([report.columns["l2"][i] for i in missed])
        reached = f"{l2[0]:.1e}" if l2.size == 1 else f"{l2.min():.1e} to {l2.max():.1e}"
        lines.append(f"{len(missed)} filter(s) need an order above {max_order} for l2 <= 1e-2: "
                     f"each keeps its most accurate model up to it (l2 {reached}), flagged "
                     f"met_tol false: {', '.join(map(str, missed))}")
    failures = report.failures()
    if failures:
        lines.append(f"{len(failures)} filter(s) failed (order 0, the reason in the report): "
                     f"{', '.join(map(str, failures))}")
    return lines
