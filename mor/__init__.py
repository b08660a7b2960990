"""mor: long FIR filters to compact state-space models.

Public API: `hankel_singular_values`, `error_bounds`, `reduce`,
`select_order`, `compare`, `ModalSSM`, `StateSpace`, `load`.
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
