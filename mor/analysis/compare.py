"""Achieved errors of models against FIR filters, set beside the AAK lower bound."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mor._numerics import freq
from mor.analysis.bounds import bounds_from_hsv, hankel_frobenius_sq
from mor.conventions import as_filters, relative
from mor.analysis.spectrum import hankel_svd
from mor.systems.modal import ModalSSM


#: Filters per chunk when errors of a large batch are computed.
ERROR_CHUNK = 64


@dataclass(frozen=True)
class Comparison:
    """Per-filter errors of a model against its filter (arrays of the batch shape).

    Attributes
    ----------
    order : ndarray
        McMillan degree ``d`` of each model.
    l2, tail, hinf : ndarray
        The relative errors of `mor.conventions`.
    aak : ndarray
        ``sigma_{d+1} / max|H|``: the least ``hinf`` any model of order ``d`` can have.
    bt_bound : ndarray
        ``2 sum_{i>d} sigma_i / max|H|``: what balanced truncation of order ``d`` guarantees
        (certified from the leading values when the spectrum was not computed in full).
    peak : ndarray
        ``max |H|``, the scale of the relative ``hinf`` figures.
    """

    order: np.ndarray
    l2: np.ndarray
    tail: np.ndarray
    hinf: np.ndarray
    aak: np.ndarray
    bt_bound: np.ndarray
    peak: np.ndarray
    columns: tuple[str, ...] = field(default=("order", "l2", "tail", "hinf", "aak", "bt_bound"),
                                     repr=False)

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
    """Errors of the models ``ssm`` against the FIR filters ``h`` (same batch shape).

    ``l2`` and ``tail`` follow the filter's ``L`` taps; ``hinf`` is the peak of
    ``|H - H_hat|`` over the unit circle with ``H_hat`` the model's full response (exact grid
    plus refinement near the peaks and the model's sharpest poles), relative to ``max |H|``;
    ``aak`` is ``sigma_{d+1}/max|H|`` at the model's order ``d``. All relative figures are
    absolute for a zero filter.
    """
    h = as_filters(h)
    if ssm.shape != h.shape[:-1]:
        raise ValueError(f"filters of batch shape {h.shape[:-1]} and models of batch shape "
                         f"{ssm.shape} do not match")
    flat = h.reshape(-1, h.shape[-1])
    size = h.shape[-1] - 1
    orders = ssm.order.reshape(-1)
    k = min(size, int(orders.max(initial=0)) + 1)
    hsv = hankel_svd(flat, k, vectors=False)[0]
    pc, rc, d = ssm._flat_compact()
    result = model_errors(flat, pc, rc, d, orders, hsv)
    return Comparison(**{key: v.reshape(h.shape[:-1]) for key, v in result.items()})


def model_errors(h: np.ndarray, poles: np.ndarray, residues: np.ndarray, direct: np.ndarray,
                 orders: np.ndarray, hsv: np.ndarray | None,
                 norms: tuple[str, ...] = ("l2", "tail", "hinf"),
                 peak: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Errors of flat compact models ``(F, m)`` against flat filters ``(F, L)``.

    ``hsv`` (``(F, k)``) holds the leading Hankel singular values, ``k > max(orders)`` unless
    ``orders`` reach ``L - 1`` (needed for ``hinf`` only). ``norms`` limits the work to the
    errors asked for among ``l2``, ``tail`` and ``hinf`` (which brings ``peak``, ``aak`` and
    ``bt_bound`` along);
    ``peak`` (``max |H|`` per filter) is computed unless given. Large batches are taken in
    chunks of ``ERROR_CHUNK`` filters, whose frequency grids stay in cache.
    """
    if h.shape[0] > 2 * ERROR_CHUNK:
        parts = [model_errors(h[i:i + ERROR_CHUNK], poles[i:i + ERROR_CHUNK],
                              residues[i:i + ERROR_CHUNK], direct[i:i + ERROR_CHUNK],
                              orders[i:i + ERROR_CHUNK],
                              None if hsv is None else hsv[i:i + ERROR_CHUNK], norms,
                              None if peak is None else peak[i:i + ERROR_CHUNK])
                 for i in range(0, h.shape[0], ERROR_CHUNK)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    length = h.shape[-1]
    size = length - 1
    out: dict[str, np.ndarray] = {"order": orders.copy()}
    ssm = ModalSSM.from_compact(poles, residues, direct)
    ref_l2 = np.linalg.norm(h, axis=-1)
    if "l2" in norms:
        out["l2"] = relative(np.linalg.norm(h - ssm.impulse(length), axis=-1), ref_l2)
    if "tail" in norms:
        tail = np.full(h.shape[0], np.inf)
        stable = ssm.is_stable()
        if stable.any():
            tail[stable] = ssm[stable].tail_norm(length)
        out["tail"] = relative(tail, ref_l2)
    if "hinf" in norms:
        fir = freq.FirResponse(h)
        if peak is None:
            peak = freq.peak_magnitude(fir)[0]
        model = freq.ModalResponse(poles, residues, direct)
        abs_err = freq.peak_magnitude(freq.Difference(fir, model))[0]
        zero = np.zeros((h.shape[0], 1))
        aak = np.concatenate([hsv, zero], axis=1)
        bt = np.concatenate([bounds_from_hsv(hsv, hankel_frobenius_sq(h), size).bt, zero], axis=1)
        idx = np.minimum(orders, hsv.shape[1])[:, None]
        out["peak"] = peak
        out["hinf"] = relative(abs_err, peak)
        out["aak"] = relative(np.take_along_axis(aak, idx, 1)[:, 0], peak)
        out["bt_bound"] = relative(np.take_along_axis(bt, idx, 1)[:, 0], peak)
    return out
