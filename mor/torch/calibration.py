r"""The output error of each long-convolution filter, recorded on calibration data.

A per-channel layer computes ``y[t] = sum_{a <= t} h[a] u[t-a]`` (`LongConv`); a filter error
``e = h - h_hat`` changes its output by ``e * u``, whose squared norm over the calibration
windows ``w`` and positions ``t`` is the quadratic form

.. math::

    J(e) = \sum_w \sum_t \Big(\sum_a e[a]\, u_w[t-a]\Big)^2 = e^T M e, \qquad
    M[a, b] = \sum_w \sum_{t \ge \max(a, b)} u_w[t-a]\, u_w[t-b] .

A head-wise layer (`HeadwiseLongConv`, MultiHyena) computes
``y[t]_j = sum_s h[t-s] S[t,s] v_j[s]`` with ``S[t,s] = q[t] . k[s]``: the error is
``sum_a e[a] g_t[a]_j`` with ``g_t[a]_j = S[t, t-a] v_j[t-a]``, and
``M[a, b] = sum_{w, t, j} g_t[a]_j g_t[b]_j``. The error is measured where the convolution's
output leaves the module (before any gate or projection outside it), or, for a head-wise layer
given the linear map ``W`` (``(D, H N)``) its flattened output goes through next (MultiHyena's
``out_proj``), after that map: ``M[a, b] = sum_{w, t} g_t[a]^T P_h g_t[b]`` with
``P_h = W_h^T W_h``, ``W_h`` head ``h``'s ``N`` columns (the blocks of ``W^T W`` between heads,
which couple their filters, are left out: each filter is fitted on its own).

What is stored. ``M`` is ``L x L`` per filter (32 MB at ``L = 2048``; 32 GB for Hyena's 1024
filters) and has no smaller exact form (it holds one partial autocorrelation per lag and
position). But the fit that uses it (`mor.refit_residues`, the poles kept) only ever compares
errors in the span of the unit impulse ``delta_0``, the filter ``h`` and the model's modes
``Re lambda^{k-1}``, ``Im lambda^{k-1}`` (``k >= 1``): every ``h - h_hat`` it can produce lies
there, and every first-order change of it when the poles move lies in the span of the
derivatives ``(k-1) lambda^{k-2}`` too. So the recorder takes an orthonormal basis ``Q``
(``L x r``, ``r <= 2 + 2 m`` for ``m`` compact modes, ``2 + 4 m`` with the derivatives) of that
span per filter (`output_basis`) and accumulates, exactly over every position of every
window,

.. math::

    G = Q^T M Q = \sum_{w, t, j} z_t z_t^T, \qquad z_t[i] = (\text{the layer run with filter }
    Q_{:, i})[t] ,

and ``F = W Q^T`` with ``W^T W = G`` (`OutputMetric.factor`) satisfies ``||F e||^2 = e^T M e``
for every ``e`` in the span. Memory: ``8 r^2`` bytes per filter accumulated (2.6 kB at 8
modes, 9.2 kB with the derivatives) plus the basis, ``8 L r`` bytes per filter while recording
(295 kB at ``L = 2048``, 8 modes; 557 kB with the derivatives), and a transient bounded by
`CHUNK_BYTES` per layer and window. The sums are in
float64, window by window in the calibration order: deterministic for a given calibration
set, and one batch holding the same windows as several gives the same ``G`` (up to the
rounding of a sum). The price of exactness: the statistics are specific to the poles they were
recorded for; moving the poles (`mor.fitting.metric_poles`, exact to first order with the
derivatives) needs a new recording at the moved poles to measure ``J`` there, one pass over
the calibration data per step (`distill_module`'s ``pole_steps``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mor.fitting.metric_poles import mode_columns
from mor.fitting.minimax import live_modes
from mor.systems.modal import ModalSSM
from mor.torch._conv import _flipped_toeplitz

#: Bound on the transient memory of one layer's convolutions per window (bytes).
CHUNK_BYTES = 1 << 26
#: Basis directions below this fraction of the largest singular value are dropped.
BASIS_RTOL = 1e-12


@dataclass
class OutputMetric:
    r"""The output-error metric of one layer's filters on the span of `output_basis`.

    Attributes
    ----------
    basis : numpy.ndarray, shape (F, L, r)
        Orthonormal columns per filter (zero columns where the span has rank below ``r``).
    gram : numpy.ndarray, shape (F, r, r)
        ``G = Q^T M Q`` per filter, float64, summed over every calibration position.
    headwise : bool
        Whether the layer is head-wise (``q, k, v`` inputs) or per-channel (``u``).
    positions : int
        Output positions summed (windows times their lengths).
    """

    basis: np.ndarray
    gram: np.ndarray
    headwise: bool
    positions: int

    def factor(self, index: np.ndarray | None = None) -> np.ndarray:
        r"""``F = W Q^T`` per filter, ``(F, r, L)`` (or one per filter of ``index``), with
        ``W^T W = G`` (an eigen factor: ``G`` is only semidefinite), so that ``||F e||^2 =
        e^T M e`` for ``e`` in the span."""
        basis, gram = self._rows(index)
        w, u = np.linalg.eigh(gram)
        half = np.swapaxes(u * np.sqrt(np.maximum(w, 0.0))[:, None, :], 1, 2)  # W = sqrt(w) U^T
        return half @ np.swapaxes(basis, 1, 2)

    def energy(self, e: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
        r"""``J(e) = e^T M e`` per filter for ``e`` (``(F, L)``, or one row per filter of
        ``index``) in the span: the squared norm of the output error summed over the
        calibration data."""
        basis, gram = self._rows(index)
        c = np.einsum("fli,fl->fi", basis, np.asarray(e, dtype=np.float64))
        return np.einsum("fi,fij,fj->f", c, gram, c)

    def _rows(self, index: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The bases and Gram matrices of the filters ``index`` (all without)."""
        return (self.basis, self.gram) if index is None else (self.basis[index], self.gram[index])


def output_basis(h: np.ndarray, bank: ModalSSM, derivatives: bool = False) -> np.ndarray:
    r"""Orthonormal basis ``(F, L, r)`` of the span of ``delta_0``, ``h`` and ``bank``'s modes.

    Per filter, the columns ``delta_0`` (the direct term), ``h`` and, for each live compact
    mode ``lambda``, ``Re lambda^{k-1}`` and (for a pair) ``Im lambda^{k-1}`` at ``k >= 1``
    (zero at ``k = 0``); with ``derivatives``, also ``Re`` and ``Im`` of ``(k-1)
    lambda^{k-2}``, the taps' derivatives with respect to the poles
    (`mor.fitting.metric_poles.mode_columns`). The columns are scaled to unit norm and
    orthonormalised by an SVD; directions below ``BASIS_RTOL`` of the largest singular value
    are dropped (zero columns pad to the batch's largest rank ``r``). Every error
    ``h - h_hat`` of a model with ``bank``'s poles lies in this span, and with
    ``derivatives`` every first-order change of it when the poles move.

    Parameters
    ----------
    h : numpy.ndarray, shape (F, L)
        The filters.
    bank : ModalSSM
        Their models, batch shape ``(F,)``.
    derivatives : bool, optional
        Add the poles' derivative sequences (``r <= 2 + 4 m`` for ``m`` compact modes;
        ``2 + 2 m`` without).

    Returns
    -------
    numpy.ndarray, shape (F, L, r)
        Float64.
    """
    h = np.asarray(h, dtype=np.float64)
    poles, residues, _ = bank.compact()
    count, length = h.shape
    bases = []
    for i in range(count):
        lam = poles[i][live_modes(poles[i], residues[i])]
        modes = mode_columns(lam, length, derivatives)
        cols = np.zeros((length, 2 + modes.shape[1]))
        cols[0, 0] = 1.0
        cols[:, 1] = h[i]
        cols[:, 2:] = modes
        norms = np.linalg.norm(cols, axis=0)
        u, s, _ = np.linalg.svd(cols / np.where(norms > 0, norms, 1.0), full_matrices=False)
        rank = int(np.count_nonzero(s > BASIS_RTOL * s[0])) if s.size and s[0] > 0 else 0
        bases.append(u[:, :rank])
    width = max(b.shape[1] for b in bases)
    out = np.zeros((count, length, width))
    for i, b in enumerate(bases):
        out[i, :, :b.shape[1]] = b
    return out


class _Recorder:
    """Accumulates ``G`` for one layer from its forward inputs (a forward hook)."""

    def __init__(self, name: str, basis: np.ndarray, headwise: bool,
                 weight: torch.Tensor | None = None):
        self.name, self.basis, self.headwise = name, basis, headwise
        self.weight = weight  # (H, N, N): P_h = W_h^T W_h, or None
        self.gram = np.zeros((basis.shape[0], basis.shape[2], basis.shape[2]))
        self.positions = 0
        self._cache: dict = {}

    def _columns(self, length: int, device: torch.device) -> torch.Tensor:
        """The basis cut to ``length`` taps, ``(F, r, length)`` float64 on ``device``."""
        key = (length, str(device))
        if key not in self._cache:
            cut = np.swapaxes(self.basis[:, :length], 1, 2)
            self._cache = {key: torch.from_numpy(np.ascontiguousarray(cut)).to(device)}
        return self._cache[key]

    def __call__(self, module, args, kwargs, output) -> None:
        names = ("q", "k", "v") if self.headwise else ("u",)
        given = list(args) + [kwargs[n] for n in names[len(args):] if n in kwargs]
        if len(given) < len(names) or not all(isinstance(t, torch.Tensor)
                                              for t in given[:len(names)]):
            raise ValueError(f"layer {self.name!r}: expected the inputs {', '.join(names)} as "
                             f"tensors, got {len(given)} argument(s)")
        filters = self.basis.shape[0]
        with torch.no_grad():
            if self.headwise:
                q, k, v = (t.detach() for t in given[:3])
                if q.ndim != 4 or q.shape[1] != filters or k.shape != q.shape \
                        or v.shape != q.shape:
                    raise ValueError(f"layer {self.name!r}: q, k, v must share the shape "
                                     f"(B, {filters}, N, T), got {tuple(q.shape)}, "
                                     f"{tuple(k.shape)}, {tuple(v.shape)}")
                self._headwise(q, k, v)
            else:
                u = given[0].detach()
                if u.ndim != 3 or u.shape[1] != filters:
                    raise ValueError(f"layer {self.name!r}: u must have shape "
                                     f"(B, {filters}, T), got {tuple(u.shape)}")
                self._channels(u)

    def _channels(self, u: torch.Tensor) -> None:
        batch, filters, length = u.shape
        if length == 0:
            return
        cols = self._columns(length, u.device)  # (F, r, T)
        r, n = cols.shape[1], 2 * length
        spectra = torch.fft.rfft(cols, n=n)
        chunk = max(1, CHUNK_BYTES // max(1, 3 * r * n * 8))
        for b in range(batch):  # window by window: the same sums however batches split
            signal = torch.fft.rfft(u[b].double(), n=n)  # (F, T + 1)
            for c in range(0, filters, chunk):
                z = torch.fft.irfft(signal[c:c + chunk, None] * spectra[c:c + chunk], n=n)
                z = z[..., :length]
                self.gram[c:c + chunk] += torch.einsum("cit,cjt->cij", z, z).cpu().numpy()
        self.positions += batch * length

    def _headwise(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        batch, heads, dim, length = q.shape
        if length == 0:
            return
        cols = self._columns(length, q.device)  # (H, r, T)
        chunk = max(1, CHUNK_BYTES // (3 * length * length * 8))  # S[t,s] Q[t-s, i] per chunk
        for b in range(batch):
            for h in range(heads):
                # the rows t in reverse order (the Gram sums over t): the Toeplitz factor is a
                # strided view, and the scores are flipped once for every column
                scores = torch.einsum("nt,ns->ts", q[b, h].double(), k[b, h].double()).flip(0)
                z = torch.cat([torch.einsum("its,ns->itn",
                                            scores[None] * _flipped_toeplitz(cols[h, i:i + chunk]),
                                            v[b, h].double())
                               for i in range(0, cols.shape[1], chunk)])  # (r, T, N)
                pz = z if self.weight is None else torch.einsum(
                    "nm,jtm->jtn", self.weight[h].to(z.device), z)
                self.gram[h] += torch.einsum("itn,jtn->ij", z, pz).cpu().numpy()
        self.positions += batch * length


def record(model: nn.Module, calibration: Iterable, bases: Mapping[str, np.ndarray],
           weights: Mapping[str, torch.Tensor] | None = None) -> dict[str, OutputMetric]:
    r"""Run ``model`` on ``calibration`` and record each named layer's output-error metric.

    For each layer ``name`` of ``bases`` (qualified module names of ``model``), a forward
    hook reads the layer's inputs at every call: ``u`` (``(B, F, T)``) for a per-channel layer,
    ``q, k, v`` (``(B, F, N, T)``) where the module says ``headwise = True``, and adds
    ``G = Q^T M Q`` of every window (module notes) for the basis ``Q = bases[name]``
    (``(F, L, r)``, from `output_basis`). The model runs under ``torch.no_grad()`` in eval
    mode (restored afterwards); each batch is called as ``model(*x)`` for a tuple or list,
    ``model(**x)`` for a mapping, ``model(x)`` otherwise.

    Parameters
    ----------
    model : torch.nn.Module
        The model whose layers are measured (not modified).
    calibration : iterable
        Model inputs, batch by batch (e.g. training windows; never held-out data).
    bases : mapping of str to numpy.ndarray
        Per layer name, the orthonormal basis ``(F, L, r)`` of its filters' error span.
    weights : mapping of str to torch.Tensor, optional
        Per head-wise layer name, the linear map ``W`` (``(D, H N)``) applied next to its
        flattened output ``(H N)``: the error is measured after it (module notes).

    Returns
    -------
    dict of str to OutputMetric
        Per layer name.

    Raises
    ------
    ValueError
        If ``calibration`` holds no batch, a layer never runs or sees no position, a layer's
        inputs have the wrong shape, a name is not a module of ``model``, or a weight is given
        for a per-channel layer or does not have ``H N`` columns.
    """
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(bases))
    if unknown:
        raise ValueError(f"weights given for layers that are not recorded: {unknown}")
    recorders = {}
    for name, basis in bases.items():
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"{name!r} is not a module of the model") from None
        basis = np.asarray(basis, dtype=np.float64)
        if basis.ndim != 3:
            raise ValueError(f"bases[{name!r}] must have shape (F, L, r), got {basis.shape}")
        headwise = bool(getattr(module, "headwise", False))
        recorders[name] = (module, _Recorder(name, basis, headwise,
                                             _head_weights(name, weights.get(name), headwise,
                                                           basis.shape[0])))
    modes = {m: m.training for m in model.modules()}
    handles = [module.register_forward_hook(rec, with_kwargs=True)
               for module, rec in recorders.values()]
    batches = 0
    try:
        model.eval()
        with torch.no_grad():
            for x in calibration:
                if isinstance(x, Mapping):
                    model(**x)
                elif isinstance(x, (tuple, list)):
                    model(*x)
                else:
                    model(x)
                batches += 1
    finally:
        for handle in handles:
            handle.remove()
        for m, training in modes.items():
            m.training = training
    if batches == 0:
        raise ValueError("calibration is empty: give at least one batch of model inputs")
    out = {}
    for name, (_, rec) in recorders.items():
        if rec.positions == 0:
            raise ValueError(f"layer {name!r} saw no calibration position (it did not run, or "
                             f"only on empty sequences)")
        out[name] = OutputMetric(rec.basis, rec.gram, rec.headwise, rec.positions)
    return out


def _head_weights(name: str, weight, headwise: bool, heads: int) -> torch.Tensor | None:
    """``P_h = W_h^T W_h`` (``(H, N, N)``, float64) of the map ``W`` (``(D, H N)``), or None."""
    if weight is None:
        return None
    if not headwise:
        raise ValueError(f"layer {name!r}: a weight after the convolution is taken for "
                         f"head-wise layers only (per channel it couples the filters, and "
                         f"a per-filter scale does not change the fit)")
    w = torch.as_tensor(weight).detach().double().cpu()
    if w.ndim != 2 or w.shape[1] % heads:
        raise ValueError(f"layer {name!r}: the weight must have shape (D, {heads} N), got "
                         f"{tuple(w.shape)}")
    blocks = w.reshape(w.shape[0], heads, -1).permute(1, 0, 2)  # (H, D, N)
    return blocks.transpose(1, 2) @ blocks
