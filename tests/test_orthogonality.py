"""The loss-of-orthogonality estimate of the device Lanczos (`mor.torch._orthogonality`)
against the loss measured on a block Lanczos run in NumPy, with the library's row
convention (``w = H q_j - A_j q_j - B_j q_{j-1}``, ``w^T = q_{j+1}^T B_{j+1}``)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
from mor.torch._orthogonality import THRESHOLD, LossEstimate  # noqa: E402

BLOCK = 4


def lanczos_losses(seed: int, reorthogonalise: bool, steps: int = 40):
    """Block Lanczos on a symmetric matrix with a few large eigenvalues over a plateau
    (rounding errors grow by ``||H|| / beta`` a step): per step the measured
    ``max |Q_{j+1} Q_k^T|`` over the earlier blocks and the estimate's; re-orthogonalised
    where the estimate asks, or never."""
    rng = np.random.default_rng(seed)
    n = 600
    values = np.concatenate([np.geomspace(1, 1e-2, 12), 1e-4 * rng.uniform(-1, 1, n - 12)])
    vectors = np.linalg.qr(rng.standard_normal((n, n)))[0]
    h = (vectors * values) @ vectors.T
    estimate = LossEstimate(1, BLOCK)
    q = np.linalg.qr(rng.standard_normal((n, BLOCK)))[0].T
    basis, coupling, losses = [q], [], []
    for _ in range(steps):
        w = q @ h
        a = (q @ w.T + w @ q.T) / 2
        w = w - a @ q - (coupling[-1] @ basis[-2] if coupling else 0.0)
        following, r = np.linalg.qr(w.T)
        if estimate.propose(torch.as_tensor(a[None]), torch.as_tensor(r[None]))[0] \
                and reorthogonalise:
            earlier = np.concatenate(basis)
            for _ in range(2):
                w = w - (w @ earlier.T) @ earlier
            following, r = np.linalg.qr(w.T)
            estimate.accept(torch.as_tensor(r[None]))
        else:
            estimate.accept()
        q = following.T
        losses.append((np.abs(np.concatenate(basis) @ q.T).max(),
                       float(estimate.loss[0])))
        basis.append(q)
        coupling.append(r)
    return np.array(losses), int(estimate.passes[0])


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_the_estimate_keeps_the_basis_semi_orthogonal(seed):
    """Re-orthogonalised where the estimate asks, the basis stays within ``sqrt(eps)`` of
    orthogonal at every step, with passes at a minority of the steps; left alone, it loses
    orthogonality completely, and the estimate is above the measured loss until then."""
    kept, passes = lanczos_losses(seed, reorthogonalise=True)
    assert kept[:, 0].max() <= THRESHOLD
    assert 0 < passes < len(kept)
    lost, none = lanczos_losses(seed, reorthogonalise=False)
    assert none == 0 and lost[:, 0].max() > 0.1
    early = lost[:, 0] < 1e-3
    assert early.sum() >= 3
    assert np.all(lost[early, 1] >= lost[early, 0])


def test_filters_that_leave_keep_nothing_of_the_others():
    """A batch's estimate after filters leave (`LossEstimate.take`) is that of the filters
    kept, run alone from the start."""
    rng = np.random.default_rng(0)
    steps = []
    for _ in range(5):
        a = rng.standard_normal((3, 2, 2))
        steps.append((a + a.transpose(0, 2, 1),
                      np.triu(rng.standard_normal((3, 2, 2))) + 3 * np.eye(2)))
    steps = [(torch.as_tensor(a), torch.as_tensor(r)) for a, r in steps]
    batch, alone = LossEstimate(3, 2), LossEstimate(2, 2)
    keep = torch.tensor([0, 2])
    for i, (a, r) in enumerate(steps):
        if i == 3:
            batch.take(keep)
        if i >= 3:
            a, r = a[keep], r[keep]
        batch.propose(a, r)
        batch.accept()
        alone.propose(a if i >= 3 else a[keep], r if i >= 3 else r[keep])
        alone.accept()
    assert torch.equal(batch._now, alone._now) and torch.equal(batch._before, alone._before)
