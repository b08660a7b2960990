"""``distill_module``: replace the long convolutions of a torch model by recurrences."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import chain

import numpy as np
from torch import nn

from mor.drivers.distillation import Report, distill
from mor.torch._output_fit import fit_outputs

#: Gauss-Newton steps of the poles in the recorded output metric (each one more pass over the
#: calibration data). Chosen by held-out loss on the e2e models (``docs/defaults.md``):
#: MultiHyena at 4 modes +0.037% with the residues alone, -0.016% with 4 steps, -0.039% with 8.
POLE_STEPS = 8
from mor.torch.headwise import HeadwiseModalRecurrence
from mor.torch.recurrence import ModalRecurrence


def distill_module(model: nn.Module, order=None, *, modes: int | None = None,
                   tol: float | None = None,
                   filter_fn: Callable[[str, nn.Module], object] | None = None,
                   calibration: Iterable | None = None,
                   output_weight: Callable[[str, nn.Module], object] | None = None,
                   pole_steps: int = POLE_STEPS,
                   **distill_options) -> tuple[nn.Module, dict[str, Report]]:
    """Distil every long-convolution layer of a torch model into a recurrence, in place.

    A layer is a module mapping ``u`` of shape ``(B, C, L)`` to ``y = h * u`` with filters ``h``
    of shape ``(C, L)``. It is found by ``filter_fn(name, module)``, which returns ``h`` (a
    tensor or array) or ``None``; by default, by the protocol method ``long_filter()`` (which
    `LongConv` has). Each layer's filters go through `mor.distill` (``order``, ``modes`` or
    ``tol`` and ``distill_options``) and the layer is replaced by a `ModalRecurrence` with the
    same input and output shapes (its poles float32-exact: ``from_ssm(bank, length=L)``), on
    the layer's device, or by a `HeadwiseModalRecurrence` where the layer says
    ``headwise = True`` (MultiHyena's form, one filter per head; e.g. `HeadwiseLongConv`). A
    module inside a replaced layer is not searched.

    With ``calibration`` (model inputs, batch by batch), the fit is activation-aware: after every
    layer is distilled, the model (still exact) is run on the calibration batches and each
    layer's output-error metric ``J(e) = e^T M e`` is recorded by forward hooks
    (`mor.torch.calibration.record`): for a per-channel layer ``M[a, b] = sum_{w, t} u_w[t-a]
    u_w[t-b]`` over the windows ``w`` and positions ``t`` of the layer's input ``u``, for a
    head-wise layer ``M[a, b] = sum_{w, t, j} g_t[a]_j g_t[b]_j`` with ``g_t[a]_j = (q[t] .
    k[t-a]) v_j[t-a]``; the error is measured at the convolution's output, before any gate or
    projection outside the layer. Each filter's residues are then re-solved for least ``J``
    with its poles and its tail ``||h_hat[L:]||`` held (`mor.refit_residues`), and its poles
    take up to ``pole_steps`` damped Gauss-Newton steps of the variable projection in that
    metric (`mor.fitting.metric_poles`), each one more pass over the calibration data that
    measures ``J`` at the stepped poles exactly; a step is taken only where ``J`` drops, the
    tail stays held and the float32 figure within ``max(F32_RTOL, its own)``. No filter ends
    with a larger ``J`` than its plain fit: never worse in the layer's output error on the
    calibration data. Failed filters are left as they are. The statistics are exact over every
    position, in ``8 r^2`` bytes per filter (``r <= 2 + 4 modes``; see
    `mor.torch.calibration`), and deterministic for a given calibration set.

    Parameters
    ----------
    model : torch.nn.Module
        The model; its layers are replaced in place.
    order : int or array_like of int, optional
        McMillan degree per filter (see `mor.distill`).
    modes : int, optional
        Cap on compact modes per filter (the recurrence's state size).
    tol : float, optional
        Relative error tolerance per filter (in ``norm``, ``"l2"`` by default).
    filter_fn : callable, optional
        ``filter_fn(name, module)`` returns the filters ``(C, L)`` of a layer to replace, or
        ``None``. Default: ``module.long_filter()`` where the module has it.
    calibration : iterable, optional
        Model inputs, batch by batch (``model(x)``; ``model(*x)`` for a tuple or list,
        ``model(**x)`` for a mapping), e.g. training windows, never held-out data. Iterated
        once per pass (``1 + pole_steps`` at most): a list or another re-iterable collection
        (an iterator is refused when ``pole_steps > 0``). By default the fit is to the taps
        alone.
    output_weight : callable, optional
        With ``calibration``: ``output_weight(name, module)`` returns, for a head-wise layer,
        the linear map ``W`` (``(D, H N)``) its flattened output goes through next (e.g.
        MultiHyena's ``out_proj.weight``), or ``None``; the output error is then measured
        after it (`mor.torch.calibration`).
    pole_steps : int, optional
        With ``calibration``: the most Gauss-Newton steps of each filter's poles in its output
        metric (`POLE_STEPS`; 0 re-solves the residues only). Filters whose predicted decrease
        falls below ``1e-6 J`` stop early.
    **distill_options
        Passed to `mor.distill` (``method``, ``norm``, ``on_fail``, ``workers``, ...);
        ``progress=True`` also shows a bar over the calibration passes.

    Returns
    -------
    model : torch.nn.Module
        The same model, its long convolutions replaced.
    reports : dict of str to Report
        `mor.Report` per replaced layer, by its qualified name in the model. With
        ``calibration``, its columns describe the model put in place (``l2``, ``tail``,
        ``hinf``, ``f32_deviation`` after the re-solve) and add, per filter,
        ``output_error_plain`` and ``output_error`` (``sqrt(J(h - h_hat) / J(h))``: the
        output error relative to the layer's output on the calibration data, before and after),
        ``l2_plain`` (the plain fit's), ``calibrated`` (the plain fit was replaced) and
        ``pole_steps`` (the steps taken); and ``request["calibration"]`` the layer's totals
        (``output_error_plain`` and ``output_error``: ``sqrt(sum J(e) / sum J(h))`` over its
        filters, ``positions``, ``pole_steps_taken``) and the whole model's ``passes`` over
        the calibration data and their ``recording_seconds``.

    Raises
    ------
    ValueError
        If no long-convolution layer is found, `mor.distill` rejects the filters or the
        options, ``calibration`` is empty or an iterator (with ``pole_steps > 0``), a layer
        does not run on it or gets inputs of the wrong shape, or ``pole_steps`` is not an
        integer ``>= 0``.

    See Also
    --------
    mor.distill : The distillation of each layer's filters.

    ModalRecurrence : The layer put in place.

    Notes
    -----
    Filters that fail (see the reports) keep their direct term only: look at
    ``report.columns["failed"]`` before using the model.

    References
    ----------
    .. [1] S. Massaroli, M. Poli, D. Y. Fu, et al., "Laughing Hyena Distillery: Extracting
       compact recurrences from convolutions," in *Advances in Neural Information Processing
       Systems 36 (NeurIPS 2023)*, 2023.

    Examples
    --------
    >>> import torch
    >>> import mor.torch as mt
    >>> from mor.demo import hyena_like_filters
    >>> conv = mt.LongConv(torch.from_numpy(hyena_like_filters(4, 256)))
    >>> model = torch.nn.Sequential(conv, torch.nn.GELU())
    >>> u = torch.randn(2, 4, 256, generator=torch.Generator().manual_seed(0))
    >>> y = model(u)
    >>> model, reports = mt.distill_module(model, 32)
    >>> type(model[0]).__name__, list(reports)
    ('ModalRecurrence', ['0'])
    >>> reports["0"].columns["failed"]
    array([False, False, False, False])
    >>> print(bool((model(u) - y).abs().max() < 0.25 * y.abs().max()))  # order 32 of 256 taps
    True

    Activation-aware: residues re-solved for each filter's output error on calibration inputs
    (here low-pass noise), never worse there than the plain fit:

    >>> g = torch.Generator().manual_seed(1)
    >>> windows = [torch.randn(2, 4, 256, generator=g).cumsum(-1) for _ in range(2)]
    >>> model = torch.nn.Sequential(mt.LongConv(torch.from_numpy(hyena_like_filters(4, 256))))
    >>> model, reports = mt.distill_module(model, modes=2, calibration=windows)
    >>> columns = reports["0"].columns
    >>> print(bool(np.all(columns["output_error"] <= columns["output_error_plain"])))
    True
    """
    def accessor(name, module):
        if filter_fn is not None:
            return filter_fn(name, module)
        getter = getattr(module, "long_filter", None)
        return getter() if callable(getter) else None

    if isinstance(pole_steps, (bool, np.bool_)) or not isinstance(pole_steps, (int, np.integer)) \
            or pole_steps < 0:
        raise ValueError(f"pole_steps must be an integer >= 0, got {pole_steps!r}")
    if calibration is not None and pole_steps > 0 and iter(calibration) is calibration:
        raise ValueError("calibration is read once per pole step: give a list (or another "
                         "re-iterable collection) of batches, not an iterator, or pole_steps=0")
    if output_weight is not None and calibration is None:
        raise ValueError("output_weight weighs the output error measured on calibration data: "
                         "give calibration too")
    found = []
    for name, module in model.named_modules():
        if name and not any(name.startswith(done + ".") for done, _ in found):
            h = accessor(name, module)
            if h is not None:
                found.append((name, h))
    if not found:
        raise ValueError("no long-convolution layer found (give filter_fn, or layers with a "
                         "long_filter() method)")
    fitted = {}
    for name, h in found:
        taps = h.detach().cpu().double().numpy() if hasattr(h, "detach") else np.asarray(h)
        result = distill(taps, order, modes=modes, tol=tol, **distill_options)
        fitted[name] = (taps, result.bank, result.report)
    if calibration is not None:
        weights = {} if output_weight is None else {
            name: w for name in fitted
            if (w := output_weight(name, model.get_submodule(name))) is not None}
        banks = fit_outputs(model, calibration, fitted, weights, pole_steps,
                            bool(distill_options.get("progress", False)))
        fitted = {name: (taps, banks[name], report) for name, (taps, _, report) in fitted.items()}
    reports = {}
    for name, (taps, bank, report) in fitted.items():
        module = model.get_submodule(name)
        kind = HeadwiseModalRecurrence if getattr(module, "headwise", False) else ModalRecurrence
        layer = kind.from_ssm(bank, length=taps.shape[-1])
        device = next((t.device for t in chain(module.parameters(), module.buffers())), None)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.to(device) if device is not None else layer)
        reports[name] = report
    return model, reports
