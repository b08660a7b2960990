"""What the torch layers refuse, and how (issue 17, item 2): every public entry point of
`ModalRecurrence`, `HeadwiseModalRecurrence`, `LongConv` and `HeadwiseLongConv` checks shapes,
dtypes, devices, sizes and states, and says what it expected; empty prompts work in every mode.
The "other device" cases use the meta device (no GPU needed)."""

import re

import numpy as np
import pytest

import mor

torch = pytest.importorskip("torch")
import mor.torch as mt  # noqa: E402
from mor.torch import _validate  # noqa: E402

B, C, M, H, N, L, TAPS = 2, 5, 6, 3, 4, 24, 20
KINDS = ("modal", "headwise", "longconv", "headwise_longconv")
ENTRY_POINTS = ("modal.forward", "modal.prefill.chunked", "modal.prefill.fft",
                "modal.prefill.recurrent", "modal.step", "headwise.forward", "headwise.prefill",
                "headwise.step", "longconv.forward", "longconv.prefill", "longconv.step",
                "headwise_longconv.forward", "headwise_longconv.prefill",
                "headwise_longconv.step")


def _bank(filters, modes, seed):
    rng = np.random.default_rng(seed)
    poles = rng.uniform(0.5, 0.99, (filters, modes)) * np.exp(1j * rng.uniform(0, 0.3, (filters,
                                                                                     modes)))
    residues = rng.standard_normal((filters, modes)) + 1j * rng.standard_normal((filters, modes))
    return mor.ModalSSM.from_compact(poles, residues * 0.1, rng.standard_normal(filters))


@pytest.fixture(scope="module")
def layers():
    g = torch.Generator().manual_seed(0)
    return {"modal": mt.ModalRecurrence.from_ssm(_bank(C, M, 1)),
            "headwise": mt.HeadwiseModalRecurrence.from_ssm(_bank(H, 4, 2)),
            "longconv": mt.LongConv(torch.randn(C, TAPS, generator=g)),
            "headwise_longconv": mt.HeadwiseLongConv(torch.randn(H, TAPS, generator=g))}


def _signals(kind, length, batch=B, cast=lambda t: t):
    """The inputs of ``kind``: ``(u,)`` ``(B, C, T)`` or ``(q, k, v)`` ``(B, H, N, T)``."""
    if kind in ("modal", "longconv"):
        return (cast(torch.randn(batch, C, length)),)
    return tuple(cast(torch.randn(batch, H, N, length)) for _ in range(3))


def _state(layers, kind, batch=B):
    layer = layers[kind]
    return layer.init_state(batch, N) if kind.startswith("headwise") else layer.init_state(batch)


def _tensor(state):
    """The tensor inside a state (a `RingCache`'s buffer for the exact layers)."""
    return getattr(state, "buffer", state)


def _call(layers, entry, cast=lambda t: t, length=L):
    kind, method, *mode = entry.split(".")
    layer = layers[kind]
    if method == "step":
        inputs = tuple(t[..., 0] for t in _signals(kind, 1, cast=cast))
        return layer.step(*inputs, _state(layers, kind))
    inputs = _signals(kind, length, cast=cast)
    if method == "forward":
        return layer(*inputs)
    return layer.prefill(*inputs, **({"mode": mode[0]} if mode else {}))


def _step(layers, kind, inputs, state):
    return layers[kind].step(*inputs, state)


# ---------------------------------------------------------------------------- prefill arguments
@pytest.mark.parametrize("chunk, error", [(-4, ValueError), (0, ValueError), (2.5, TypeError),
                                          (8.0, TypeError), (True, TypeError),
                                          (False, TypeError), ("8", TypeError),
                                          (None, TypeError)])
@pytest.mark.parametrize("mode", ["chunked", "fft"])
def test_prefill_chunk_must_be_a_positive_int(layers, chunk, error, mode):
    """``chunk=-4`` returned uninitialised memory; ``True`` ran one-token chunks."""
    u = torch.randn(B, C, L)
    with pytest.raises(error, match="chunk"):
        layers["modal"].prefill(u, mode=mode, chunk=chunk)


def test_prefill_chunk_accepts_numpy_ints(layers):
    u = torch.randn(B, C, L)
    y, state = layers["modal"].prefill(u, chunk=np.int64(7))
    y_ref, state_ref = layers["modal"].prefill(u, chunk=7)
    assert torch.equal(y, y_ref) and torch.equal(state, state_ref)


@pytest.mark.parametrize("mode", ["FFT", "", "chunk", None, 3])
def test_prefill_mode_names(layers, mode):
    with pytest.raises(ValueError, match="mode must be 'chunked', 'fft' or 'recurrent'"):
        layers["modal"].prefill(torch.randn(B, C, L), mode=mode)


# ---------------------------------------------------------------------------- input dtypes
CASTS = {"int64": lambda t: (t * 4).to(torch.int64), "int32": lambda t: (t * 4).to(torch.int32),
         "uint8": lambda t: t.abs().to(torch.uint8), "bool": lambda t: t > 0,
         "complex64": lambda t: t.to(torch.complex64)}


@pytest.mark.parametrize("dtype", list(CASTS))
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_integer_boolean_and_complex_inputs_are_refused(layers, entry, dtype):
    """An integer signal was convolved in integer arithmetic (and returned as integers); the
    layers compute in float32 and return the input's dtype, so they refuse it."""
    with pytest.raises(TypeError, match="must be a floating-point tensor"):
        _call(layers, entry, CASTS[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_floating_inputs_come_back_in_their_dtype(layers, entry, dtype):
    out = _call(layers, entry, lambda t: t.to(dtype))
    y = out[0] if isinstance(out, tuple) else out
    assert y.dtype == dtype and torch.isfinite(y.float()).all()


@pytest.mark.parametrize("entry", ["modal.forward", "modal.step", "headwise.forward",
                                   "longconv.prefill", "headwise_longconv.step"])
def test_non_tensor_inputs_are_refused(layers, entry):
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        _call(layers, entry, lambda t: t.numpy())


# ---------------------------------------------------------------------------- input shapes
SHAPES = {"modal": [(C, L), (B, C + 1, L), (B, 1, C, L), (B, C - 1, L)],
          "longconv": [(C, L), (B, C + 1, L), (B, 1, C, L)],
          "headwise": [(H, N, L), (B, H + 1, N, L), (B, H, N, 1, L)],
          "headwise_longconv": [(H, N, L), (B, H - 1, N, L), (B, H, N, 1, L)]}


@pytest.mark.parametrize("kind, shape", [(k, s) for k, shapes in SHAPES.items() for s in shapes])
@pytest.mark.parametrize("method", ["forward", "prefill", "step"])
def test_wrong_input_shapes_are_value_errors(layers, kind, shape, method):
    """Wrong channel counts reached the user as broadcasting errors (or broadcast silently)."""
    layer = layers[kind]
    count = 1 if kind in ("modal", "longconv") else 3
    dims = "(batch, channels" if count == 1 else "(batch, heads, head_dim"
    inputs = [torch.randn(shape) for _ in range(count)]
    with pytest.raises(ValueError, match=rf"must have shape \{dims}") as info:
        if method == "step":
            layer.step(*(t[..., 0] for t in inputs), _state(layers, kind))
        else:
            getattr(layer, method)(*inputs) if method == "prefill" else layer(*inputs)
    assert "got (" in str(info.value)


@pytest.mark.parametrize("kind", ["headwise", "headwise_longconv"])
@pytest.mark.parametrize("method", ["forward", "prefill", "step"])
def test_q_k_v_must_share_a_shape(layers, kind, method):
    q, k, v = torch.randn(B, H, N, L), torch.randn(B, H, N - 1, L), torch.randn(B, H, N, L)
    with pytest.raises(ValueError, match="must have the same shape"):
        if method == "step":
            layers[kind].step(q[..., 0], k[..., 0], v[..., 0], _state(layers, kind))
        else:
            getattr(layers[kind], method)(q, k, v)


# ---------------------------------------------------------------------------- decode states
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("inputs_batch, state_batch", [(1, 2), (2, 1), (3, 2)])
def test_step_batch_must_match_the_state(layers, kind, inputs_batch, state_batch):
    """A batch-1 input was broadcast against a batch-2 state (both rows got the same token)."""
    inputs = tuple(t[..., 0] for t in _signals(kind, 1, batch=inputs_batch))
    state = _state(layers, kind, state_batch)
    before = _tensor(state).clone()
    with pytest.raises(ValueError, match="must have shape") as info:
        _step(layers, kind, inputs, state)
    message = str(info.value)
    assert str(tuple(inputs[-1].shape)) in message and str(tuple(_tensor(state).shape)) in message
    assert torch.equal(_tensor(state), before)  # refused before anything was written


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64, torch.int64,
                                   torch.int32, torch.bool, torch.complex64])
@pytest.mark.parametrize("kind", ["modal", "headwise"])
def test_step_state_must_be_float32(layers, kind, dtype):
    """A bfloat16 state drifted (1e-2 after 300 steps); an integer one was zeroed each step."""
    inputs = tuple(t[..., 0] for t in _signals(kind, 1))
    state = _state(layers, kind).to(dtype)
    with pytest.raises(TypeError, match="state must be float32"):
        _step(layers, kind, inputs, state)


MODAL_STATES = [(B, C, M + 1, 2), (B, C + 1, M, 2), (B, C, M), (B, C, M, 2, 1), (C, M, 2),
                (B, C, M, 1)]
HEADWISE_STATES = [(B, H, 4, N, N + 1, 2), (B, H, 5, N, N, 2), (B, H, 4, N, N),
                   (B, H + 1, 4, N, N, 2), (B, H, 4, N * N, 2)]


@pytest.mark.parametrize("kind, shape", [("modal", s) for s in MODAL_STATES]
                         + [("headwise", s) for s in HEADWISE_STATES])
def test_step_state_shape(layers, kind, shape):
    inputs = tuple(t[..., 0] for t in _signals(kind, 1))
    dims = ("(batch, channels, modes, 2)" if kind == "modal"
            else "(batch, heads, modes, head_dim, head_dim, 2)")
    with pytest.raises(ValueError, match=re.escape(f"state must have shape {dims}")):
        _step(layers, kind, inputs, torch.zeros(shape))


@pytest.mark.parametrize("kind", ["modal", "headwise"])
def test_step_state_must_be_contiguous(layers, kind):
    """The fused CUDA step writes the state through its raw pointer: a strided view would be
    corrupted there, so it is refused on every device."""
    inputs = tuple(t[..., 0] for t in _signals(kind, 1))
    state = _state(layers, kind, 2 * B)[::2]
    with pytest.raises(ValueError, match="contiguous"):
        _step(layers, kind, inputs, state)


@pytest.mark.parametrize("kind", ["longconv", "headwise_longconv"])
def test_step_cache_must_be_a_ring_cache(layers, kind):
    inputs = tuple(t[..., 0] for t in _signals(kind, 1))
    with pytest.raises(TypeError, match="RingCache"):
        _step(layers, kind, inputs, _tensor(_state(layers, kind)))
    cache = _state(layers, kind)
    cache.buffer = cache.buffer.to(torch.int64)
    with pytest.raises(TypeError, match="cache.buffer.dtype"):
        _step(layers, kind, inputs, cache)
    cache = _state(layers, kind)
    cache.position = TAPS - 1
    with pytest.raises(ValueError, match="cache.position"):
        _step(layers, kind, inputs, cache)


# ---------------------------------------------------------------------------- devices
@pytest.mark.parametrize("kind", KINDS)
def test_state_on_another_device(layers, kind):
    inputs = tuple(t[..., 0] for t in _signals(kind, 1))
    state = _state(layers, kind)
    if hasattr(state, "buffer"):
        state.buffer = state.buffer.to("meta")
    else:
        state = state.to("meta")
    with pytest.raises(ValueError, match="is on meta but the layer"):
        _step(layers, kind, inputs, state)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_inputs_on_another_device_than_the_layer(layers, entry):
    with pytest.raises(ValueError, match="is on meta but the layer is on cpu"):
        _call(layers, entry, lambda t: t.to("meta"))


# ---------------------------------------------------------------------------- empty prompts
@pytest.mark.parametrize("entry", [e for e in ENTRY_POINTS if "step" not in e])
def test_empty_prompts_work_in_every_mode(layers, entry):
    """An empty prompt gives an empty output and the initial (zero) state, from which the steps
    continue as the whole sequence's forward (``fft`` raised IndexError, the exact layers a
    RuntimeError)."""
    kind, method, *mode = entry.split(".")
    layer = layers[kind]
    inputs = _signals(kind, L)
    empty = tuple(t[..., :0] for t in inputs)
    if method == "forward":
        y = layer(*empty)
        assert y.shape == inputs[0].shape[:-1] + (0,)
        return
    y, state = layer.prefill(*empty, **({"mode": mode[0]} if mode else {}))
    assert y.shape == inputs[0].shape[:-1] + (0,) and y.dtype == inputs[0].dtype
    assert torch.equal(_tensor(state), _tensor(_state(layers, kind)))
    steps = torch.stack([layer.step(*(t[..., i] for t in inputs), state) for i in range(L)], -1)
    assert torch.allclose(steps, layer(*inputs), atol=1e-5)


def test_empty_kernel(layers):
    assert layers["modal"].kernel(0).shape == (C, 0)
    with pytest.raises(ValueError, match="length"):
        layers["modal"].kernel(-1)


# ---------------------------------------------------------------------------- what still works
def _strided(t):
    """The same values as ``t``, in a non-contiguous layout (reversed axes, then every other
    element of a twice-as-long last axis)."""
    wide = torch.zeros(*reversed(t.shape[:-1]), 2 * t.shape[-1]).permute(
        *reversed(range(t.ndim - 1)), t.ndim - 1)
    view = wide[..., ::2]
    view.copy_(t)
    assert not view.is_contiguous()
    return view


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_non_contiguous_inputs_work(layers, entry):
    torch.manual_seed(0)
    reference = _call(layers, entry)
    torch.manual_seed(0)
    out = _call(layers, entry, _strided)
    for a, b in zip(*(x if isinstance(x, tuple) else (x,) for x in (out, reference))):
        assert torch.allclose(_tensor(a), _tensor(b), atol=1e-6)


@pytest.mark.parametrize("entry", [e for e in ENTRY_POINTS if "step" not in e])
def test_nan_inputs_propagate_unchecked(layers, entry):
    """Values are not scanned (a scan would sync with the device): a NaN comes back as NaN,
    over the whole sequence (the whole chunk) where an FFT carries it, causally token by
    token."""
    def poison(t):
        t[..., L // 2] = float("nan")
        return t

    out = _call(layers, entry, poison)
    y = out[0] if isinstance(out, tuple) else out
    assert torch.isnan(y[..., L // 2:]).any()
    if entry.endswith("recurrent"):
        assert not torch.isnan(y[..., :L // 2]).any()


def test_the_step_check_reads_metadata_only(layers):
    """The hot path's check launches nothing, reads no value and allocates nothing (so the
    step stays cheap and CUDA-graph capturable): no aten operation runs inside it."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        ops: list = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func)
            return func(*args, **(kwargs or {}))

    layer = layers["modal"]
    u_t, state = torch.randn(B, C), layer.init_state(B)
    with Record() as record:
        _validate.modal_step(u_t, state, layer._channels, layer._state_tail, layer.lam.dtype,
                             layer.lam.device)
    assert record.ops == []


# ---------------------------------------------------------------------------- constructors
def test_constructor_arguments():
    bank = _bank(3, 4, 0)
    with pytest.raises(TypeError, match="ModalSSM"):
        mt.ModalRecurrence.from_ssm(np.zeros((3, 8)))
    with pytest.raises(TypeError, match="integer"):
        mt.ModalRecurrence.from_ssm(bank, channel_map=[0.0, 1.0])
    with pytest.raises(TypeError, match="integer"):
        mt.ModalRecurrence.from_ssm(bank, channel_map=[True, False])
    mapped = mt.ModalRecurrence.from_ssm(bank, channel_map=torch.tensor([0, 0, 2, 1]))
    assert mapped.channels == 4
    poles, residues, direct = (torch.from_numpy(a) for a in bank.compact())
    with pytest.raises(ValueError, match=r"residues must have shape \(filters, modes\)"):
        mt.ModalRecurrence(poles, residues[:, :-1], direct, torch.arange(3))
    with pytest.raises(ValueError, match=r"direct must have shape \(filters,\)"):
        mt.ModalRecurrence(poles, residues, direct[:2], torch.arange(3))
    with pytest.raises(ValueError, match="channel_map"):
        mt.ModalRecurrence(poles, residues, direct, torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="channel_map"):
        mt.ModalRecurrence(poles, residues, direct, torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="poles must be a torch.Tensor"):
        mt.ModalRecurrence(poles.numpy(), residues, direct, torch.arange(3))
    with pytest.raises(ValueError, match="unit circle"):
        mt.ModalRecurrence(poles * 2, residues, direct, torch.arange(3))
    with pytest.raises(TypeError, match="ModalRecurrence"):
        mt.HeadwiseModalRecurrence(bank)
    with pytest.raises(ValueError, match="one filter per head"):
        mt.HeadwiseModalRecurrence(mapped)
    with pytest.raises(TypeError, match="torch.Tensor"):
        mt.LongConv(np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"filters must have shape \(channels, L\)"):
        mt.LongConv(torch.ones(3, 0))
    with pytest.raises(ValueError, match=r"filters must have shape \(heads, L\)"):
        mt.HeadwiseLongConv(torch.ones(3))
    with pytest.raises(TypeError, match="real"):
        mt.LongConv(torch.ones(3, 5, dtype=torch.complex64))


@pytest.mark.parametrize("batch, error", [(-1, ValueError), (1.5, TypeError), (True, TypeError),
                                          (None, TypeError)])
@pytest.mark.parametrize("kind", KINDS)
def test_init_state_batch(layers, kind, batch, error):
    layer = layers[kind]
    with pytest.raises(error, match="batch"):
        layer.init_state(batch, N) if kind.startswith("headwise") else layer.init_state(batch)


def test_init_state_dim_and_cache_dtype(layers):
    with pytest.raises(ValueError, match="dim"):
        layers["headwise"].init_state(B, 0)
    with pytest.raises(ValueError, match="dim"):
        layers["headwise_longconv"].init_state(B, 0)
    with pytest.raises(TypeError, match="dtype"):
        layers["longconv"].init_state(B, torch.int64)
    with pytest.raises(TypeError, match="dtype"):
        layers["longconv"].prefill(torch.randn(B, C, L), dtype=torch.complex64)
    with pytest.raises(TypeError, match="dtype"):
        layers["headwise_longconv"].prefill(*_signals("headwise_longconv", L), dtype="float32")
    cache = layers["longconv"].init_state(B, torch.bfloat16)
    assert cache.buffer.dtype == torch.bfloat16
