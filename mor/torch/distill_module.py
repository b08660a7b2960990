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
    """Distill every long-convolution layer of ``model`` in place; returns the model and reports.

    A layer is a module mapping ``u`` of shape ``(B, C, L)`` to ``y = h * u`` with filters ``h``
    of shape ``(C, L)``. It is found by ``filter_fn(name, module)``, which returns ``h`` (a
    tensor or array) or ``None``; by default, by the protocol method ``long_filter()`` (which
    `LongConv` has). Each layer's filters go through `mor.distill` (``order``, ``modes`` or
    ``tol`` and ``distill_options``) and the layer is replaced by a `ModalRecurrence` with the
    same input and output shapes, or by a `HeadwiseModalRecurrence` where the layer says
    ``headwise = True`` (MultiHyena's form, one filter per head; e.g. `HeadwiseLongConv`).
    Filters that fail (see the reports) keep their direct term only: look at
    ``report.columns["failed"]`` before using the model.
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
        layer = kind.from_ssm(result.bank)
        device = next((t.device for t in chain(module.parameters(), module.buffers())), None)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.to(device) if device is not None else layer)
        reports[name] = result.report
    return model, reports
