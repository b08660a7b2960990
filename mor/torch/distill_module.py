"""``distill_module``: replace the long convolutions of a torch model by recurrences."""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain

import numpy as np
from torch import nn

from mor.drivers.distillation import Report, distill
from mor.torch.headwise import HeadwiseModalRecurrence
from mor.torch.recurrence import ModalRecurrence


def distill_module(model: nn.Module, order=None, *, modes: int | None = None,
                   tol: float | None = None,
                   filter_fn: Callable[[str, nn.Module], object] | None = None,
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
    **distill_options
        Passed to `mor.distill` (``method``, ``norm``, ``on_fail``, ``workers``, ...).

    Returns
    -------
    model : torch.nn.Module
        The same model, its long convolutions replaced.
    reports : dict of str to Report
        `mor.Report` per replaced layer, by its qualified name in the model.

    Raises
    ------
    ValueError
        If no long-convolution layer is found, or `mor.distill` rejects the filters or the
        options.

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
    """
    def accessor(name, module):
        if filter_fn is not None:
            return filter_fn(name, module)
        getter = getattr(module, "long_filter", None)
        return getter() if callable(getter) else None

    found = []
    for name, module in model.named_modules():
        if name and not any(name.startswith(done + ".") for done, _ in found):
            h = accessor(name, module)
            if h is not None:
                found.append((name, h))
    if not found:
        raise ValueError("no long-convolution layer found (give filter_fn, or layers with a "
                         "long_filter() method)")
    reports = {}
    for name, h in found:
        taps = h.detach().cpu().double().numpy() if hasattr(h, "detach") else np.asarray(h)
        result = distill(taps, order, modes=modes, tol=tol, **distill_options)
        module = model.get_submodule(name)
        kind = HeadwiseModalRecurrence if getattr(module, "headwise", False) else ModalRecurrence
        layer = kind.from_ssm(result.bank, length=taps.shape[-1])
        device = next((t.device for t in chain(module.parameters(), module.buffers())), None)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.to(device) if device is not None else layer)
        reports[name] = result.report
    return model, reports
