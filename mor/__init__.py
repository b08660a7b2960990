"""mor: long FIR filters to compact state-space models.

Public API: `hankel_singular_values`, `error_bounds`, `reduce`,
`select_order`, `compare`, `ModalSSM`, `StateSpace`, `load`.
"""

from mor import export
from mor.bounds import ErrorBounds, error_bounds
from mor.distill import Distillation, Report, distill
from mor.files import read_filters
from mor.hankel import hankel_singular_values
from mor.io import load
from mor.metrics import Comparison, compare
from mor.reduction import reduce
from mor.minimax import refit
from mor.residue_fit import refit_residues
from mor.select import OrderSelection, select_order
from mor.ssm import ModalSSM
from mor.statespace import StateSpace

__all__ = ["Comparison", "Distillation", "ErrorBounds", "ModalSSM", "OrderSelection", "Report",
           "StateSpace", "compare", "distill", "error_bounds", "export", "hankel_singular_values",
           "load", "read_filters", "reduce", "refit", "refit_residues",
           "select_order"]
__version__ = "0.1.0"
