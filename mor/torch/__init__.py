"""GPU recurrence layers for distilled banks (optional: needs the ``torch`` extra).

`ModalRecurrence` (whole sequences, prompts and single tokens), `HeadwiseModalRecurrence`
(MultiHyena's outer-product form), `LongConv` and `HeadwiseLongConv` (the exact layers they
replace) and
`distill_module` (swap a model's long convolutions for recurrences). ``import mor`` never
imports torch; ``import mor.torch`` does.
"""

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("mor.torch needs torch: pip install 'mor[torch]'") from exc

from mor.analysis.spectrum import register_device_blocks
from mor.torch._spectrum import hankel_blocks
from mor.torch.distill_module import distill_module
from mor.torch.headwise import HeadwiseModalRecurrence
from mor.torch.longconv import HeadwiseLongConv, LongConv
from mor.torch.recurrence import ModalRecurrence

register_device_blocks(hankel_blocks)  # device= of the Hankel spectrum and BT (issue 22)

__all__ = ["HeadwiseLongConv", "HeadwiseModalRecurrence", "LongConv", "ModalRecurrence",
           "distill_module"]
