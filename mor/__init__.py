"""mor: long FIR filters to compact state-space models.

``mor`` reduces long convolution filters ``h[0..L-1]`` (Hyena-style layers or any FIR design;
batches of shape ``(..., L)``) to small, stable, real discrete-time state-space models in modal
form, ``h[0] = D``, ``h[k] = Re sum_n R'_n lambda_n^(k-1)``, and sets every achieved error
beside the Adamjan-Arov-Krein lower bound ``sigma_{d+1}`` (the Hankel singular values of the
filter). Conventions (errors, orders, modes): `mor.conventions`.

Hankel spectrum and bounds
--------------------------
hankel_singular_values -- Hankel singular values of FIR filters (or of a system object).
error_bounds           -- AAK lower and balanced-truncation upper H-infinity bounds per order.
ErrorBounds            -- The bounds per order, as returned by `error_bounds`.

Reduction
---------
reduce                 -- FIR filters to stable real `ModalSSM` models (BT, Hankel-norm, ...).
select_order           -- The smallest order per filter whose achieved error meets a tolerance.
OrderSelection         -- Orders, errors and histograms, as returned by `select_order`.
refit                  -- Minimax (H-infinity) residues on a model's poles (convex, cvxpy).
refit_residues         -- Least-squares residues in a quadratic metric, the tail held.

Whole models
------------
distill                -- Every filter of a model: a bank and a report (parallel, resumable).
Distillation           -- The bank and the report, as returned by `distill`.
Report                 -- Per-filter and per-layer figures of a distillation (JSON-ready).
read_filters           -- Filters from .npy, .npz, .safetensors or torch state-dict files.
export                 -- Banks as inference engines' state dicts (StripedHyena, Vortex), and back.

Errors
------
compare                -- Achieved l2, tail and hinf errors of models, beside the AAK bound.
Comparison             -- The errors per filter, as returned by `compare` (prints a table).

Systems and files
-----------------
ModalSSM               -- A batch of real modal (pole-residue) systems.
StateSpace             -- A batch of dense real systems ``(A, B, C, D)``.
load                   -- Read a `ModalSSM` bank written by `ModalSSM.save`.

Not imported by ``import mor``: `mor.plot` (figures, matplotlib), `mor.torch` (GPU layers,
the ``torch`` extra) and `mor.demo` (Hyena-like test filters).

Examples
--------
>>> import numpy as np
>>> import mor
>>> k = np.arange(64)
>>> h = 0.5**k * np.cos(0.3 * k)  # a filter of order 2
>>> print(np.round(mor.hankel_singular_values(h, k=3), 6))
[0.57717  0.025872 0.      ]
>>> ssm = mor.reduce(h, 2)
>>> print(float(mor.compare(h, ssm).l2) < 1e-12)
True
"""

from mor import export
from mor.analysis.bounds import ErrorBounds, error_bounds
from mor.drivers.distillation import Distillation, Report, distill
from mor.files import read_filters
from mor.analysis.spectrum import hankel_singular_values
from mor.systems.modal import load
from mor.analysis.compare import Comparison, compare
from mor.drivers.reduction import reduce
from mor.fitting.minimax import refit
from mor.fitting.constrained import refit_residues
from mor.drivers.selection import OrderSelection, select_order
from mor.systems.modal import ModalSSM
from mor.systems.statespace import StateSpace

__all__ = ["Comparison", "Distillation", "ErrorBounds", "ModalSSM", "OrderSelection", "Report",
           "StateSpace", "compare", "distill", "error_bounds", "export", "hankel_singular_values",
           "load", "read_filters", "reduce", "refit", "refit_residues",
           "select_order"]
__version__ = "0.1.0"
