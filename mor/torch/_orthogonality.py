r"""The loss of orthogonality of a block Lanczos basis, estimated without reading it.

Partial re-orthogonalisation (Simon; Grimes, Lewis and Simon for blocks) keeps the basis
semi-orthogonal, ``|Q_i Q_k^T| <= sqrt(eps)``, which leaves the Ritz values as accurate as full
re-orthogonalisation would, at the cost of a pass over the basis only where the estimate
crosses that level. With rows ``w_{j+1}^T = Q_{j+1}^T B_{j+1}`` after
``w = H q_j - A_j q_j - B_j q_{j-1}`` (the row convention of `mor.torch._spectrum`), the
blocks ``W_{j,k} = Q_j Q_k^T`` follow the recurrence

``B_{j+1}^T W_{j+1,k} = W_{j,k+1} B_{k+1} + W_{j,k} A_k + W_{j,k-1} B_k^T - A_j W_{j,k}
- B_j W_{j-1,k}``

(``H`` symmetric), each step adding a rounding term ``eps ||H|| ||B_{j+1}^{-1}||`` of the
estimate's own sign (``||.||_F`` for the 2-norm: at most ``sqrt(b)`` times larger); ``W_{j+1,j}``
is rounding-sized and ``W_{j+1,j+1} = I``. A step whose estimate exceeds `THRESHOLD` is
re-orthogonalised against the whole basis, and so is the step after it (its components along
the old basis came from the same loss); their rows are then reset to ``eps``.

The blocks are ``b x b`` per filter and step, kept where the Lanczos step computes them (on the
device: an update is a few batched products, and only the filters' decisions go to the host,
with the step's other tests).
"""

from __future__ import annotations

import math

import torch

EPS = float(torch.finfo(torch.float64).eps)
#: Semi-orthogonality: the largest estimated ``|Q_i Q_k^T|`` a step may keep.
THRESHOLD = math.sqrt(EPS)


class LossEstimate:
    """The estimated ``|Q_{j+1} Q_k^T|`` of the filters of a batch in lockstep.

    `propose` takes a step's ``A_j`` and ``B_{j+1}`` ``(F, b, b)`` (``B_{j+1}`` upper
    triangular, from a QR) and says which filters must re-orthogonalise it; `accept` commits
    it (with the new ``B_{j+1}`` of those that did)."""

    def __init__(self, filters: int, block: int, device: torch.device | str = "cpu"):
        self._eye = torch.eye(block, dtype=torch.float64, device=device)
        # A_j and B_{j+1} of the steps so far, (F, steps, b, b), grown by doubling
        self._steps = 0
        self._diagonal = torch.zeros((filters, 16, block, block), dtype=torch.float64,
                                     device=device)
        self._coupling = torch.zeros_like(self._diagonal)
        self._now = self._eye.expand(filters, 1, block, block).clone()
        self._before = self._now[:, :0]
        self._norm = torch.zeros(filters, dtype=torch.float64, device=device)
        self._next: torch.Tensor | None = None
        self._force = torch.zeros(filters, dtype=torch.bool, device=device)
        #: Steps re-orthogonalised so far, per filter.
        self.passes = torch.zeros(filters, dtype=torch.int64, device=device)

    @property
    def steps(self) -> int:
        """Steps taken."""
        return self._steps

    def propose(self, diagonal: torch.Tensor, coupling: torch.Tensor) -> torch.Tensor:
        """Per filter (a boolean tensor, not waited for), whether the step with blocks
        ``A_j`` = ``diagonal`` and ``B_{j+1}`` = ``coupling`` must be re-orthogonalised."""
        j = self._steps
        previous = self._coupling[:, j - 1] if j else torch.zeros_like(coupling)
        self._norm = torch.maximum(self._norm, _norm_1(diagonal.transpose(1, 2))
                                   + _norm_1(coupling) + _norm_1(previous))
        if j == self._diagonal.shape[1]:
            self._diagonal, self._coupling = (torch.cat([x, torch.zeros_like(x)], dim=1)
                                              for x in (self._diagonal, self._coupling))
        self._diagonal[:, j], self._coupling[:, j] = diagonal, coupling
        self._steps += 1
        self._next = self._recurrence()
        lost = self._next[:, :-1].abs().amax(dim=(1, 2, 3))
        return self._force | ~(lost <= THRESHOLD)  # NaN (a collapsed block) too

    def accept(self, coupling: torch.Tensor | None = None,
               filters: torch.Tensor | None = None) -> None:
        """Commit the proposed step; ``coupling``: its ``B_{j+1}`` ``(S, b, b)`` after a
        re-orthogonalisation of the ``filters`` (indices, all where None), whose rows of the
        estimate then reset to ``eps``."""
        if coupling is not None:
            filters = slice(None) if filters is None else filters
            self._coupling[filters, self._steps - 1] = coupling
            self._next[filters, :-1] = EPS
            self.passes[filters] += 1
            self._force[filters] = ~self._force[filters]
        self._before, self._now = self._now, self._next

    def take(self, keep: torch.Tensor) -> None:
        """Keep the filters ``keep`` (indices into the batch) only."""
        for name in ("_diagonal", "_coupling", "_now", "_before", "_norm", "_force",
                     "passes"):
            setattr(self, name, getattr(self, name)[keep])

    def _recurrence(self) -> torch.Tensor:
        j = self._steps - 1
        a, r = self._diagonal[:, :j + 1], self._coupling[:, :j + 1]
        f, b = a.shape[0], a.shape[2]
        now, before = self._now, self._before
        out = torch.empty((f, j + 2, b, b), dtype=torch.float64, device=a.device)
        # B_{j+1}^T is lower triangular: its inverse by a triangular solve (inf where singular)
        inverse = torch.linalg.solve_triangular(r[:, j].transpose(1, 2),
                                                self._eye.expand(f, b, b), upper=False)
        rounding = EPS * self._norm * torch.linalg.matrix_norm(inverse)
        if j > 0:
            acc = (now[:, 1:j + 1] @ r[:, :j] + now[:, :j] @ a[:, :j]
                   - a[:, j:j + 1] @ now[:, :j] - r[:, j - 1:j] @ before[:, :j])
            acc[:, 1:] += now[:, :j - 1] @ r[:, :j - 1].transpose(2, 3)
            estimate = inverse[:, None] @ acc
            out[:, :j] = estimate + torch.copysign(rounding[:, None, None, None].expand_as(
                estimate), estimate)
        out[:, j] = rounding[:, None, None]
        out[:, j + 1] = self._eye
        return out


def _norm_1(x: torch.Tensor) -> torch.Tensor:
    """The largest column sum of ``|x|`` per matrix of a stack ``(F, b, b)``."""
    return x.abs().sum(dim=1).amax(dim=1)
