r"""The loss of orthogonality of a block Lanczos basis, estimated without reading it.

Partial re-orthogonalisation (Simon; Grimes, Lewis and Simon for blocks) keeps the basis
semi-orthogonal, ``|Q_i Q_k^T| <= sqrt(eps)``, which leaves the Ritz values as accurate as full
re-orthogonalisation would, at the cost of a pass over the basis only where the estimate
crosses that level. With rows ``w_{j+1}^T = Q_{j+1}^T B_{j+1}`` after
``w = H q_j - A_j q_j - B_j^T q_{j-1}`` (the row convention of `mor.torch._spectrum`), the
blocks ``W_{j,k} = Q_j Q_k^T`` follow the recurrence

``B_{j+1}^T W_{j+1,k} = W_{j,k+1} B_{k+1} + W_{j,k} A_k + W_{j,k-1} B_k^T - A_j W_{j,k}
- B_j W_{j-1,k}``

(``H`` symmetric), each step adding a rounding term ``eps ||H|| ||B_{j+1}^{-1}||`` of the
estimate's own sign; ``W_{j+1,j}`` is rounding-sized and ``W_{j+1,j+1} = I``. A step whose
estimate exceeds `THRESHOLD` is re-orthogonalised against the whole basis, and so is the step
after it (its components along the old basis came from the same loss); their rows are then
reset to ``eps``. Everything here is ``b x b`` blocks on the host, vectorised over the filters
of a batch.
"""

from __future__ import annotations

import numpy as np

EPS = float(np.finfo(np.float64).eps)
#: Semi-orthogonality: the largest estimated ``|Q_i Q_k^T|`` a step may keep.
THRESHOLD = float(np.sqrt(EPS))


class LossEstimate:
    """The estimated ``|Q_{j+1} Q_k^T|`` of the filters of a batch in lockstep.

    `propose` takes a step's ``A_j`` and ``B_{j+1}`` ``(F, b, b)`` and says which filters
    must re-orthogonalise it; `accept` commits it (with the new ``B_{j+1}`` of those that
    did)."""

    def __init__(self, filters: int, block: int):
        self._eye = np.eye(block)
        self._diagonal: list[np.ndarray] = []
        self._coupling: list[np.ndarray] = []
        self._now = np.broadcast_to(self._eye, (filters, 1, block, block)).copy()
        self._before = np.zeros((filters, 0, block, block))
        self._norm = np.zeros(filters)
        self._next: np.ndarray | None = None
        self._force = np.zeros(filters, dtype=bool)
        #: Steps re-orthogonalised so far, per filter.
        self.passes = np.zeros(filters, dtype=np.int64)

    def propose(self, diagonal: np.ndarray, coupling: np.ndarray) -> np.ndarray:
        """Per filter, whether the step with blocks ``A_j`` = ``diagonal`` and ``B_{j+1}`` =
        ``coupling`` must be re-orthogonalised."""
        previous = self._coupling[-1] if self._coupling else np.zeros_like(coupling)
        self._norm = np.maximum(self._norm, _norm_1(diagonal.transpose(0, 2, 1))
                                + _norm_1(coupling) + _norm_1(previous))
        self._diagonal.append(np.array(diagonal))
        self._coupling.append(np.array(coupling))
        self._next = self._recurrence()
        lost = np.abs(self._next[:, :-1]).max(axis=(1, 2, 3))
        return self._force | (lost > THRESHOLD)

    def accept(self, coupling: np.ndarray | None = None, filters: np.ndarray | None = None
               ) -> None:
        """Commit the proposed step; ``coupling``: its ``B_{j+1}`` ``(S, b, b)`` after a
        re-orthogonalisation of the ``filters`` (indices, all where None), whose rows of the
        estimate then reset to ``eps``."""
        if coupling is not None:
            filters = slice(None) if filters is None else filters
            self._coupling[-1][filters] = coupling
            self._next[filters, :-1] = EPS
            self.passes[filters] += 1
            self._force[filters] = ~self._force[filters]
        self._before, self._now = self._now, self._next

    def take(self, keep: np.ndarray) -> None:
        """Keep the filters ``keep`` (indices into the batch) only."""
        self._diagonal = [x[keep] for x in self._diagonal]
        self._coupling = [x[keep] for x in self._coupling]
        self._now, self._before, self._norm = self._now[keep], self._before[keep], \
            self._norm[keep]
        self._force, self.passes = self._force[keep], self.passes[keep]

    def _recurrence(self) -> np.ndarray:
        a, r = np.stack(self._diagonal, axis=1), np.stack(self._coupling, axis=1)
        f, j, b = a.shape[0], a.shape[1] - 1, a.shape[2]
        now, before = self._now, self._before
        out = np.zeros((f, j + 2, b, b))
        inverse = np.linalg.pinv(r[:, j].transpose(0, 2, 1))
        rounding = EPS * self._norm * np.linalg.norm(inverse, 2, axis=(1, 2))
        if j > 0:
            acc = (now[:, 1:j + 1] @ r[:, :j] + now[:, :j] @ a[:, :j]
                   - a[:, j:j + 1] @ now[:, :j] - r[:, j - 1:j] @ before[:, :j])
            acc[:, 1:] += now[:, :j - 1] @ r[:, :j - 1].transpose(0, 1, 3, 2)
            out[:, :j] = inverse[:, None] @ acc
            out[:, :j] += np.where(out[:, :j] >= 0, 1.0, -1.0) * rounding[:, None, None, None]
        out[:, j] = rounding[:, None, None]
        out[:, j + 1] = self._eye
        return out


def _norm_1(x: np.ndarray) -> np.ndarray:
    """The largest column sum of ``|x|`` per matrix of a stack ``(F, b, b)``."""
    return np.abs(x).sum(axis=1).max(axis=1)
