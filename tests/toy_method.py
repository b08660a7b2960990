"""A reduction method from outside mor, in one module and one ``register`` line: the Hankel
spectrum truncated at ``d`` (poles by shift invariance of the ``d`` leading left singular vectors,
as in Kung's method) and least-squares residues (`mor.methods.base.PoleMethod`).
`tests/test_method_registry.py` runs it through `mor.reduce` and `mor.distill`."""

import numpy as np

from mor.analysis.spectrum import hankel_svd
from mor.methods.base import PoleMethod, register


@register
class TruncatedSpectrum(PoleMethod):
    """Poles of the rank-``d`` truncation of the Hankel matrix."""

    name = "toy-truncate"

    @classmethod
    def from_fir(cls, h: np.ndarray, max_order: int, *, unstable: str = "reflect"
                 ) -> "TruncatedSpectrum":
        hsv, left = hankel_svd(h, max_order + 1)[:2]

        def find_poles(order, rows):
            u = left[rows, :, :order]
            shift = np.linalg.pinv(u[:, :-1]) @ u[:, 1:]
            return np.linalg.eigvals(shift), {}

        return cls(h, max_order, unstable, find_poles, hsv=hsv)
