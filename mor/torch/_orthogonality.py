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

The rows ``W_{j,.} = Q_j Q^T`` are kept as ``b x (j+1) b`` matrices beside ``T`` itself (dense,
where the blocks ``A_k``, ``B_{k+1}`` and ``B_{k+1}^T`` are placed as in the Lanczos matrix),
so that the first three terms for every ``k`` are one product, ``W_{j,.} T``: a step is a
handful of batched products on the device, whatever its length, and only the filters'
decisions go to the host, with the step's other tests.
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
        self._block = block
        self._eye = torch.eye(block, dtype=torch.float64, device=device)
        self._steps = 0
        # T of the steps so far, dense, grown by doubling
        self._t = torch.zeros((filters, 16 * block, 16 * block), dtype=torch.float64,
                              device=device)
        # the rows W_{j,.} and W_{j-1,.}: (F, b, (j+1) b) and (F, b, j b)
        self._now = self._eye.expand(filters, block, block).clone()
        self._before = self._now[:, :, :0]
        self._norm = torch.zeros(filters, dtype=torch.float64, device=device)
        self._next: torch.Tensor | None = None
        self._force = torch.zeros(filters, dtype=torch.bool, device=device)
        #: Steps re-orthogonalised so far, per filter.
        self.passes = torch.zeros(filters, dtype=torch.int64, device=device)

    @property
    def steps(self) -> int:
        """Steps taken."""
        return self._steps

    @property
    def loss(self) -> torch.Tensor:
        """Per filter, the largest estimated ``|Q_j Q_k^T|`` of the last block accepted
        against the earlier ones."""
        earlier = self._now[:, :, :-self._block]
        if not earlier.shape[2]:
            return self._norm.new_zeros(self._now.shape[0])
        return earlier.abs().amax(dim=(1, 2))

    def propose(self, diagonal: torch.Tensor, coupling: torch.Tensor) -> torch.Tensor:
        """Per filter (a boolean tensor, not waited for), whether the step with blocks
        ``A_j`` = ``diagonal`` and ``B_{j+1}`` = ``coupling`` must be re-orthogonalised."""
        j, b = self._steps, self._block
        here, after = slice(j * b, (j + 1) * b), slice((j + 1) * b, (j + 2) * b)
        if after.stop > self._t.shape[1]:
            grown = self._t.new_zeros((self._t.shape[0], 2 * self._t.shape[1],
                                       2 * self._t.shape[1]))
            grown[:, :self._t.shape[1], :self._t.shape[1]] = self._t
            self._t = grown
        previous = self._t[:, here, j * b - b:j * b] if j else torch.zeros_like(coupling)
        self._norm = torch.maximum(self._norm, _norm_1(diagonal.transpose(1, 2))
                                   + _norm_1(coupling) + _norm_1(previous))
        self._t[:, here, here] = diagonal
        self._place(j, coupling)
        self._steps += 1
        self._next = self._recurrence(diagonal, coupling, previous)
        lost = self._next[:, :, :-b].abs().amax(dim=(1, 2))
        return self._force | ~(lost <= THRESHOLD)  # NaN (a collapsed block) too

    def accept(self, coupling: torch.Tensor | None = None,
               filters: torch.Tensor | None = None) -> None:
        """Commit the proposed step; ``coupling``: its ``B_{j+1}`` ``(S, b, b)`` after a
        re-orthogonalisation of the ``filters`` (indices, all where None), whose rows of the
        estimate then reset to ``eps``."""
        if coupling is not None:
            filters = slice(None) if filters is None else filters
            self._place(self._steps - 1, coupling, filters)
            self._next[filters, :, :-self._block] = EPS
            self.passes[filters] += 1
            self._force[filters] = ~self._force[filters]
        self._before, self._now = self._now, self._next

    def take(self, keep: torch.Tensor) -> None:
        """Keep the filters ``keep`` (indices into the batch) only."""
        for name in ("_t", "_now", "_before", "_norm", "_force", "passes"):
            setattr(self, name, getattr(self, name)[keep])

    def _place(self, j: int, coupling: torch.Tensor, filters=slice(None)) -> None:
        """``B_{j+1}`` of step ``j`` into ``T``, below and (transposed) right of ``A_j``, for
        the ``filters``."""
        b = self._block
        here, after = slice(j * b, (j + 1) * b), slice((j + 1) * b, (j + 2) * b)
        self._t[filters, after, here] = coupling
        self._t[filters, here, after] = coupling.transpose(1, 2)

    def _recurrence(self, diagonal: torch.Tensor, coupling: torch.Tensor,
                    previous: torch.Tensor) -> torch.Tensor:
        """``W_{j+1,.}`` from ``A_j``, ``B_{j+1}`` and ``B_j`` (``previous``)."""
        j, b = self._steps - 1, self._block
        f = diagonal.shape[0]
        out = torch.empty((f, b, (j + 2) * b), dtype=torch.float64, device=diagonal.device)
        # B_{j+1}^T is lower triangular: its inverse by a triangular solve (inf where singular)
        inverse = torch.linalg.solve_triangular(coupling.transpose(1, 2),
                                                self._eye.expand(f, b, b), upper=False)
        rounding = EPS * self._norm * torch.linalg.matrix_norm(inverse)
        if j > 0:
            # W_{j,k+1} B_{k+1} + W_{j,k} A_k + W_{j,k-1} B_k^T = (W_{j,.} T)_k, k < j
            acc = torch.baddbmm(torch.bmm(self._now, self._t[:, :(j + 1) * b, :j * b]),
                                diagonal, self._now[:, :, :j * b], alpha=-1.0)
            acc = torch.baddbmm(acc, previous, self._before, alpha=-1.0)
            estimate = torch.bmm(inverse, acc)
            out[:, :, :j * b] = estimate + torch.copysign(rounding[:, None, None], estimate)
        out[:, :, j * b:(j + 1) * b] = rounding[:, None, None]
        out[:, :, (j + 1) * b:] = self._eye
        return out


def _norm_1(x: torch.Tensor) -> torch.Tensor:
    """The largest column sum of ``|x|`` per matrix of a stack ``(F, b, b)``."""
    return x.abs().sum(dim=1).amax(dim=1)
