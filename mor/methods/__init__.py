"""Reduction methods: the interface and registry (`mor.methods.base`) and one module per method,
each registering itself on import:

* `mor.methods.balanced` — square-root balanced truncation (``"balanced"``);
* `mor.methods.hankel_norm` — optimal Hankel-norm approximation (``"hankel"``);
* `mor.methods.prony` — matrix pencil, Prony and robust Padé (``"pencil"``, ``"prony"``,
  ``"pade"``);
* `mor.methods.aaa` — AAA on the unit circle (``"aaa"``), with its Numba kernels;
* `mor.methods.modal` — modal fitting by variable projection (``"modal"``);
* `mor.methods.irka` — discrete-time TF-IRKA (``"irka"``).

Imports only the layers below (`mor.fitting`, `mor.analysis`, `mor.systems`, `mor._numerics`,
`mor.conventions`).
"""

from mor.methods import aaa, balanced, hankel_norm, irka, modal, prony  # noqa: F401 (register)
from mor.methods.base import Method, Models, PoleMethod, available_methods, get_method, register

__all__ = ["Method", "Models", "PoleMethod", "available_methods", "get_method", "register"]
