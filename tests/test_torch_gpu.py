"""The torch adapter on a CUDA GPU: the fused step, CUDA graphs, prefill (skipped without one)."""

import numpy as np
import pytest

import mor

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)
import mor.torch as mt  # noqa: E402
from mor.torch.recurrence import _triton_step  # noqa: E402


def _bank(filters, modes, seed=0):
    rng = np.random.default_rng(seed)
    mod = np.clip(rng.uniform(0.9, 0.9999, (filters, modes)), None, 0.9999)
    poles = mod * np.exp(1j * rng.uniform(0, 0.2, (filters, modes)))
    residues = (rng.standard_normal((filters, modes)) + 1j * rng.standard_normal(
        (filters, modes))) * (1 - mod)
    return mor.ModalSSM.from_compact(poles, residues, rng.standard_normal(filters))


def _rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@pytest.mark.parametrize("modes", [8, 12, 16, 32])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_step_matches_eager(modes, dtype):
    assert _triton_step is not None
    layer = mt.ModalRecurrence.from_ssm(_bank(64, modes), channel_map=np.arange(200) % 64).cuda()
    state_a = torch.randn(3, 200, layer.modes, 2, device="cuda")
    state_b = state_a.clone()
    for _ in range(5):
        u = torch.randn(3, 200, device="cuda").to(dtype)
        ya, yb = layer.step(u, state_a), layer._step_eager(u, state_b)
        assert ya.dtype == dtype
        assert _rel(ya, yb) < (1e-6 if dtype == torch.float32 else 1e-2)
    assert _rel(state_a, state_b) < 1e-6


def test_step_in_a_cuda_graph():
    layer = mt.ModalRecurrence.from_ssm(_bank(256, 16)).cuda()
    state = layer.init_state(4)
    u = torch.randn(4, 256, device="cuda")
    layer.step(u, state)  # compile the kernel outside the capture
    state.zero_()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = layer.step(u, state)
    reference = layer.init_state(4)
    for _ in range(10):
        u.copy_(torch.randn(4, 256, device="cuda"))
        graph.replay()
        expected = layer._step_eager(u, reference)
        assert _rel(y, expected) < 1e-6
    assert _rel(state, reference) < 1e-6


def test_prefill_modes_on_the_gpu():
    layer = mt.ModalRecurrence.from_ssm(_bank(128, 16)).cuda()
    u = torch.randn(2, 128, 5000, device="cuda")
    y_fft, s_fft = layer.prefill(u, mode="fft")
    y_chunk, s_chunk = layer.prefill(u, mode="chunked")
    assert _rel(y_chunk, y_fft) < 1e-5 and _rel(s_chunk, s_fft) < 1e-5
    y_rec, s_rec = layer.prefill(u[..., :300], mode="recurrent")
    assert _rel(y_rec, y_fft[..., :300]) < 1e-5


def test_step_checks_on_the_gpu():
    """The fused step's checks (metadata only): devices, state dtype and layout, batch."""
    layer = mt.ModalRecurrence.from_ssm(_bank(16, 8)).cuda()
    u, state = torch.randn(2, 16, device="cuda"), layer.init_state(2)
    with pytest.raises(ValueError, match="state is on cpu"):
        layer.step(u, state.cpu())
    with pytest.raises(ValueError, match="u_t is on cpu"):
        layer.step(u.cpu(), state)
    with pytest.raises(TypeError, match="state must be float32"):
        layer.step(u, state.bfloat16())
    with pytest.raises(ValueError, match="contiguous"):
        layer.step(u, layer.init_state(4)[::2])
    with pytest.raises(ValueError, match=r"\(1, 16\)"):
        layer.step(u[:1], state)
    y = layer.step(u.t().contiguous().t(), state)  # a non-contiguous input is fine
    assert y.shape == (2, 16) and torch.isfinite(y).all()
