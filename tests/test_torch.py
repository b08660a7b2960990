"""The torch adapter on the CPU: modes agree, states agree, steps stay bounded, variants."""

import sys

import numpy as np
import pytest

import mor

torch = pytest.importorskip("torch")
import mor.torch as mt  # noqa: E402

LENGTH = 640


def _bank(filters=5, modes=6, seed=None):
    """Stable banks with poles up to |lambda| = 0.9999 (fresh draws unless seeded)."""
    rng = np.random.default_rng(seed)
    mod = np.concatenate([[0.9999, 0.999], rng.uniform(0.5, 0.995, modes - 2)])
    poles = np.stack([mod * np.exp(1j * rng.uniform(0, 0.3, modes)) for _ in range(filters)])
    poles[:, -1] = poles[:, -1].real  # one real pole per filter
    residues = rng.standard_normal((filters, modes)) + 1j * rng.standard_normal((filters, modes))
    residues *= (1 - np.abs(poles))  # keep |H| moderate near the circle
    return mor.ModalSSM.from_compact(poles, residues, rng.standard_normal(filters))


def _reference(bank, u, channel_map=None):
    h = bank.impulse(u.shape[-1])
    h = h if channel_map is None else h[channel_map]
    out = np.empty(u.shape)
    for b in range(u.shape[0]):
        for c in range(u.shape[1]):
            out[b, c] = np.convolve(u[b, c], h[c])[: u.shape[-1]]
    return out


def _rel(a, b):
    a, b = (x.detach().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
            for x in (a, b))
    return np.abs(a - b).max() / np.abs(b).max()


def test_importing_mor_does_not_import_torch():
    code = "import sys, mor; print('torch' in sys.modules)"
    import subprocess
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_modes_agree_with_the_exact_convolution():
    bank = _bank()
    layer = mt.ModalRecurrence.from_ssm(bank)
    u = torch.randn(3, 5, LENGTH)
    ref = _reference(bank, u.double().numpy())
    assert _rel(layer(u), ref) < 1e-5
    states = {}
    for mode in ("chunked", "fft", "recurrent"):
        y, states[mode] = layer.prefill(u, mode=mode, **({"chunk": 96} if mode == "chunked"
                                                          else {}))
        assert _rel(y, ref) < 1e-5, mode
    # token-by-token float32 accumulation over 640 steps with |lambda| = 0.9999: 5e-5
    for mode, tol in (("fft", 1e-5), ("recurrent", 5e-5)):
        assert _rel(states[mode], states["chunked"]) < tol, mode


def test_prefill_then_step_continues_the_sequence():
    bank = _bank()
    layer = mt.ModalRecurrence.from_ssm(bank)
    u = torch.randn(2, 5, LENGTH)
    full = layer(u)
    y, state = layer.prefill(u[..., :500], mode="chunked", chunk=64)
    steps = torch.stack([layer.step(u[..., t], state) for t in range(500, LENGTH)], -1)
    assert _rel(torch.cat([y, steps], -1), full) < 1e-5


def test_bf16_activations():
    bank = _bank()
    layer = mt.ModalRecurrence.from_ssm(bank)
    u = torch.randn(2, 5, LENGTH).to(torch.bfloat16)
    ref = _reference(bank, u.double().numpy())
    y = layer(u)
    assert y.dtype == torch.bfloat16 and _rel(y, ref) < 2e-2
    yc, state = layer.prefill(u, mode="chunked", chunk=128)
    assert state.dtype == torch.float32 and _rel(yc, ref) < 2e-2
    assert layer.lam.dtype == torch.float32 and layer.res.dtype == torch.float32


def test_stepping_100k_tokens_stays_bounded():
    bank = _bank(filters=2, modes=4)
    layer = mt.ModalRecurrence.from_ssm(bank)
    state = layer.init_state(1)
    u = torch.rand(100_000, 1, 2) * 2 - 1
    bound = 1.0 / (1.0 - np.abs(bank.compact()[0]).max()) * 1.01
    for t in range(u.shape[0]):
        y = layer.step(u[t], state)
    assert torch.isfinite(y).all() and state.abs().max().item() <= bound


def _impulse_stepped(layer, length):
    state, u = layer.init_state(1), torch.zeros(1, layer.channels, length)
    u[..., 0] = 1
    with torch.no_grad():
        return torch.stack([layer.step(u[..., t], state) for t in range(length)], -1)[0]


def test_length_gives_poles_float32_holds_and_residues_refitted():
    # two cancelling modes 1e-3 from the circle: rounding the poles to complex64 alone costs
    # 1.8e-5 of the peak over 2048 steps; refitted residues on the rounded poles, 4.9e-6
    length = 2048
    poles = np.array([[0.9991 * np.exp(0.0123j), 0.9987 * np.exp(0.0157j)], [0.5, 0.0]])
    residues = np.array([[40 + 3j, -39.5 - 3.2j], [1.0, 0.0]])
    bank = mor.ModalSSM.from_compact(poles, residues, np.array([0.1, -0.2]))
    h = bank.impulse(length)
    cast = _impulse_stepped(mt.ModalRecurrence.from_ssm(bank), length)
    layer = mt.ModalRecurrence.from_ssm(bank, length=length)
    exact = _impulse_stepped(layer, length)
    err_cast, err_exact = _rel(cast[0], h[0]), _rel(exact[0], h[0])
    assert err_exact < err_cast / 2 and err_exact < 1e-5, (err_cast, err_exact)
    # the float64 masters are the float32 poles: kernel and steps run the same system
    lam = torch.complex(layer.lam[..., 0], layer.lam[..., 1]).to(torch.complex128)
    assert torch.equal(torch.exp(layer.log_poles).to(torch.complex64).to(torch.complex128),
                       lam)
    assert _rel(layer.kernel(length)[0], exact[0].numpy()) < 1e-6
    # a filter whose cast loses nothing keeps its modes
    assert _rel(exact[1], h[1]) < 1e-6
    np.testing.assert_array_equal(layer.lam[1, 0].numpy(), [0.5, 0.0])
    with pytest.raises(ValueError, match="length must be positive"):
        mt.ModalRecurrence.from_ssm(bank, length=0)
    assert _rel(_impulse_stepped(mt.ModalRecurrence.from_ssm(bank, length=1), 8)[1],
                bank.impulse(8)[1]) < 1e-6


def test_shared_filters_channel_map():
    bank = _bank(filters=2)
    mapping = np.array([0, 0, 1, 1, 1])
    layer = mt.ModalRecurrence.from_ssm(bank, channel_map=mapping)
    u = torch.randn(2, 5, 300)
    assert _rel(layer(u), _reference(bank, u.double().numpy(), mapping)) < 1e-5
    y, state = layer.prefill(u, mode="chunked", chunk=50)
    _, ref_state = layer.prefill(u, mode="recurrent")
    assert _rel(state, ref_state) < 1e-5
    with pytest.raises(ValueError, match="channel_map"):
        mt.ModalRecurrence.from_ssm(bank, channel_map=[0, 2])


def test_headwise_agrees_with_a_direct_reference():
    bank = _bank(filters=3, modes=4)
    layer = mt.HeadwiseModalRecurrence.from_ssm(bank)
    b, hd, n, length = 2, 3, 4, 120
    q, k, v = (torch.randn(b, hd, n, length) for _ in range(3))
    h = torch.from_numpy(bank.impulse(length)).float()
    ref = torch.zeros(b, hd, n, length)
    for t in range(length):
        w = h[:, : t + 1].flip(-1)  # h[t - s] for s = 0..t
        mem = torch.einsum("hs,bhis,bhjs->bhij", w, k[..., : t + 1], v[..., : t + 1])
        ref[..., t] = torch.einsum("bhi,bhij->bhj", q[..., t], mem)
    assert _rel(layer(q, k, v), ref) < 1e-5
    y, state = layer.prefill(q[..., :80], k[..., :80], v[..., :80])
    steps = [layer.step(q[..., t], k[..., t], v[..., t], state) for t in range(80, length)]
    assert _rel(torch.cat([y, torch.stack(steps, -1)], -1), ref) < 1e-5


def test_longconv_step_equals_forward():
    h = torch.randn(4, 50)
    conv = mt.LongConv(h)
    u = torch.randn(2, 4, 120)
    full = conv(u)
    y, cache = conv.prefill(u[..., :30])
    steps = torch.stack([conv.step(u[..., t], cache) for t in range(30, 120)], -1)
    assert _rel(torch.cat([y, steps], -1), full) < 1e-5
    ref = np.stack([[np.convolve(u[b, c].numpy(), h[c].numpy())[:120] for c in range(4)]
                    for b in range(2)])
    assert _rel(full, ref) < 1e-5


def test_saved_bank_loads_into_a_layer(tmp_path):
    bank = _bank(seed=3)
    bank.save(tmp_path / "bank.npz")
    a = mt.ModalRecurrence.from_ssm(bank)
    b = mt.ModalRecurrence.from_ssm(mor.load(tmp_path / "bank.npz"))
    u = torch.randn(1, 5, 200)
    assert torch.equal(a(u), b(u))


def test_distill_module_replaces_long_convolutions():
    from mor.demo import hyena_like_filters

    class Block(torch.nn.Module):
        def __init__(self, seed):
            super().__init__()
            self.mix = mt.LongConv(torch.from_numpy(hyena_like_filters(4, 256, seed=seed)))
            self.proj = torch.nn.Linear(4, 4)

        def forward(self, u):
            return self.proj(self.mix(u).transpose(1, 2)).transpose(1, 2)

    model = torch.nn.Sequential(Block(1), Block(2))
    u = torch.randn(2, 4, 256)
    before = model(u)
    model, reports = mt.distill_module(model, 100)
    assert set(reports) == {"0.mix", "1.mix"}
    assert all(isinstance(model[i].mix, mt.ModalRecurrence) for i in range(2))
    worst = max(float(r.columns["l2"].max()) for r in reports.values())
    assert worst < 0.01
    assert _rel(model(u).detach(), before.detach()) < 0.03
    with pytest.raises(ValueError, match="no long-convolution layer"):
        mt.distill_module(torch.nn.Linear(3, 3), 4)


def test_bad_inputs():
    layer = mt.ModalRecurrence.from_ssm(_bank(seed=1))
    with pytest.raises(ValueError, match="shape"):
        layer(torch.randn(2, 3, 10))
    with pytest.raises(ValueError, match="mode"):
        layer.prefill(torch.randn(1, 5, 10), mode="magic")
    unstable = mor.ModalSSM.from_compact([[1.01]], [[1.0]], [0.0])
    with pytest.raises(ValueError, match="unit circle"):
        mt.ModalRecurrence.from_ssm(unstable)


def test_headwise_longconv_step_and_distill_module():
    from mor.demo import hyena_like_filters

    h = torch.from_numpy(hyena_like_filters(3, 64, seed=4)).float()
    conv = mt.HeadwiseLongConv(h)
    b, n, length = 2, 4, 90
    q, k, v = (torch.randn(b, 3, n, length) for _ in range(3))
    full = conv(q, k, v)
    y, cache = conv.prefill(q[..., :20], k[..., :20], v[..., :20])
    steps = [conv.step(q[..., t], k[..., t], v[..., t], cache) for t in range(20, length)]
    assert _rel(torch.cat([y, torch.stack(steps, -1)], -1), full) < 1e-5
    model, reports = mt.distill_module(torch.nn.ModuleDict({"mix": conv}), 40)
    assert isinstance(model["mix"], mt.HeadwiseModalRecurrence)
    worst = float(reports["mix"].columns["l2"].max())
    assert worst < 0.05
    assert _rel(model["mix"](q, k, v), full) < 3 * worst


def test_casting_a_model_keeps_the_recurrence_in_float32():
    layer = mt.ModalRecurrence.from_ssm(_bank(seed=5))
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), layer).to(torch.bfloat16)
    assert model[0].weight.dtype == torch.bfloat16
    assert layer.lam.dtype == layer.res.dtype == layer.direct.dtype == torch.float32
    assert layer.log_poles.dtype == torch.complex128
    u = torch.randn(1, 5, 64)
    assert _rel(layer(u.bfloat16()).float(), layer(u)) < 1e-2
