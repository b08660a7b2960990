"""Small StripedHyena (``stripedhyena`` 0.2.2) and Vortex (``vtx`` 1.1.0) models on the CPU in
float32, and one Hyena layer of each run as the engine runs it: the materialised filter, the
FFT prefill of a prompt and decode steps after it; beside mor's own float32 layer
(`mor.torch.ModalRecurrence`) and a float64 convolution with the bank's taps.

Used by ``tests/test_engines.py`` and ``benchmarks/bench_engines.py``.

Two stand-ins, and nothing else, let the engines run on a CPU-only machine:

* ``flash_attn_2_cuda``: Vortex imports this CUDA extension (flash-attention's) when its
  attention module is imported; an empty module of that name is put on ``sys.modules`` where
  the real one is not installed. No Hyena code path calls it.
* ``torch.cuda.device``: Vortex's model enters ``torch.cuda.device(device)`` while building
  its blocks and in each block's input projection, which refuses a CPU device;
  `cpu_cuda_device` makes it a no-op context for CPU devices while a Vortex model is built
  or run (CUDA devices go to the real one).

Vortex's input projection (``TELinear`` without Transformer Engine) is created in bfloat16
whatever the config says; `vortex_model` casts the model to float32.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import types

import numpy as np
import pytest

import mor

torch = pytest.importorskip("torch")  # also skips this helper's doctest collection without torch
from mor.torch import ModalRecurrence  # noqa: E402

STAND_IN = "flash_attn_2_cuda"


def import_engines(workdir: str | os.PathLike | None = None):
    """``(stripedhyena.model, vortex.model.model)``, with the ``flash_attn_2_cuda`` stand-in.

    Vortex's logging module opens ``activations_debug.log`` in the working directory when
    imported: ``workdir`` (e.g. a temporary folder) is where that file goes.
    """
    if importlib.util.find_spec(STAND_IN) is None and STAND_IN not in sys.modules:
        sys.modules[STAND_IN] = types.ModuleType(STAND_IN)  # stand-in: never called on CPU
    here = os.getcwd()
    try:
        if workdir is not None:
            os.chdir(workdir)
        import stripedhyena.model as sh_model
        import vortex.model.model as vortex_model_module
    finally:
        os.chdir(here)
    for name in ("StripedHyena", "vortex"):  # Vortex logs its whole config at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    return sh_model, vortex_model_module


@contextlib.contextmanager
def cpu_cuda_device():
    """``torch.cuda.device`` as a no-op context for CPU devices (Vortex enters it)."""
    real = torch.cuda.device

    def device(d):
        return contextlib.nullcontext() if torch.device(d).type == "cpu" else real(d)

    torch.cuda.device = device
    try:
        yield
    finally:
        torch.cuda.device = real


def striped_hyena_config(hidden: int, state_size: int, layers: int) -> dict:
    """A StripedHyena config of ``layers`` Hyena blocks, one filter per channel, float32."""
    return dict(vocab_size=16, hidden_size=hidden, num_filters=hidden, num_layers=layers,
                attn_layer_idxs=[], hyena_layer_idxs=list(range(layers)),
                short_filter_length=3, short_filter_bias=True, state_size=state_size,
                num_attention_heads=1, eps=1e-6, params_dtype=torch.float32,
                hyena_filter_groups=1, tie_embeddings=True, use_flashfft=False,
                inner_mlp_size=16, mlp_dtype=torch.float32, column_split_hyena=False,
                prefill_style="fft", model_parallel_size=1)


def vortex_config(hidden: int, state_size: int, layers: int) -> dict:
    """A Vortex config of ``layers`` Hyena-LI blocks (``hcl_layer_idxs``), float32."""
    return dict(vocab_size=16, hidden_size=hidden, num_filters=hidden, num_layers=layers,
                attn_layer_idxs=[], hcl_layer_idxs=list(range(layers)), hcm_layer_idxs=[],
                hcs_layer_idxs=[], short_filter_length=3, short_filter_bias=False,
                state_size=state_size, num_attention_heads=1, eps=1e-6,
                params_dtype=torch.float32, tie_embeddings=True, use_flashfft=False,
                inner_mlp_size=16, mlp_dtype=torch.float32, hyena_block_dtype=torch.float32,
                column_split_hyena=False, interleave=False, qkv_proj_bias=False,
                hyena_out_proj_bias=True, prefill_style="fft", evo2_style_activations=True,
                model_parallel_size=1, max_seqlen=16384)


def striped_hyena_model(config: dict):
    from stripedhyena.model import StripedHyena
    from stripedhyena.utils import dotdict

    torch.manual_seed(0)
    return StripedHyena(dotdict(config)).eval()


def vortex_model(config: dict):
    from vortex.model.model import StripedHyena
    from vortex.model.utils import dotdict

    torch.manual_seed(0)
    with cpu_cuda_device():
        model = StripedHyena(dotdict(config))
    return model.float().eval()


def _params(engine: str, state_size: int):
    if engine == "striped-hyena":
        from stripedhyena.cache import RecurrentInferenceParams
        return RecurrentInferenceParams(fir_filter_length=3, state_dim=state_size)
    from vortex.model.cache import HyenaCascadeIIRInferenceParams
    return HyenaCascadeIIRInferenceParams(fir_filter_length=3, state_dim=state_size)


def gate_inputs(batch: int, channels: int, length: int, seed: int = 0):
    """``(x2, x1, v)``: the gate and the two factors of a Hyena layer's input, float32
    ``(B, H, T)``."""
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, channels, length, generator=gen) for _ in range(3))


def run_engine_layer(engine: str, filt, x2, x1, v, prompt: int, steps: int) -> dict:
    """One Hyena block's filter module (``model.blocks[i].filter``) run by its engine.

    The short filter is set to the identity (last tap 1, no bias), so that the layer's inputs
    are ``x2, x1, v`` as given: ``y = x2 * (k * (x1 v) + D x1 v)``. Returns float64 arrays:
    ``filter`` (``(H, prompt)``: the engine's materialised kernel, ``D`` added at ``t = 0``),
    ``prefill`` (``(B, H, prompt)``: its FFT prefill) and ``steps`` (``(B, H, steps)``: decode
    steps after the prompt).
    """
    with torch.no_grad():
        filt.short_filter_weight.zero_()
        filt.short_filter_weight[:, 0, -1] = 1
        if filt.short_filter_bias is not None:
            filt.short_filter_bias.zero_()
        z = torch.cat([x2, x1, v], 1).permute(0, 2, 1).contiguous()  # (B, T, 3H)
        params = _params(engine, filt.state_size)
        context = cpu_cuda_device() if engine == "vortex" else contextlib.nullcontext()
        with context:
            y, _ = filt(z[:, :prompt], inference_params=params)
            outs = [filt(z[:, prompt + k:prompt + k + 1], inference_params=params)[0][:, 0]
                    for k in range(steps)]
            kernel = filt.compute_filter(prompt, z.device)[0][0].double()
        kernel[:, 0] += filt.D.double()
    return {"filter": kernel.numpy(),
            "prefill": y.permute(0, 2, 1).double().numpy(),
            "steps": (torch.stack(outs, -1).double().numpy() if steps else
                      np.zeros(x2.shape[:2] + (0,)))}


def run_mor_layer(bank: mor.ModalSSM, x2, x1, v, prompt: int, steps: int,
                  length: int | None = None) -> dict:
    """The same with mor's float32 layer (`mor.torch.ModalRecurrence`, FFT prefill), built
    with the filters' ``length`` where given (poles float32 holds exactly)."""
    layer = ModalRecurrence.from_ssm(bank, length=length)
    u = x1 * v
    with torch.no_grad():
        y, state = layer.prefill(u[..., :prompt], mode="fft")
        outs = [layer.step(u[..., prompt + k], state) for k in range(steps)]
        kernel = layer.kernel(prompt).double()
    gate = x2.double()
    return {"filter": kernel.numpy(),
            "prefill": (gate[..., :prompt] * y.double()).numpy(),
            "steps": (gate[..., prompt:prompt + steps] * torch.stack(outs, -1).double()).numpy()
            if steps else np.zeros(x2.shape[:2] + (0,))}


def reference(bank: mor.ModalSSM, x2, x1, v, prompt: int, steps: int) -> dict:
    """The float64 answer: the bank's taps and ``x2 * (h * (x1 v))``, ``h`` over the prompt
    and the steps (the decode steps see the bank's response beyond the prompt's length)."""
    total = prompt + steps
    taps = bank.impulse(total)
    u = (x1.double() * v.double()).numpy()[..., :total]
    n = 1 << int(np.ceil(np.log2(2 * total)))
    conv = np.fft.irfft(np.fft.rfft(u, n) * np.fft.rfft(taps, n), n)[..., :total]
    y = x2.double().numpy()[..., :total] * conv
    return {"filter": taps[:, :prompt], "prefill": y[..., :prompt], "steps": y[..., prompt:]}


def worst(result: dict, ref: dict) -> dict:
    """Per quantity the worst channel's max-relative deviation ``max|a - b| / max|b|``
    (``b`` the reference; over taps, batch and time), and the count of NaNs in ``result``."""
    out = {}
    for key in ("filter", "prefill", "steps"):
        a, b = result[key], ref[key]
        if a.size == 0:
            out[key] = 0.0
            continue
        axes = tuple(i for i in range(a.ndim) if i != a.ndim - 2)  # all but the channel axis
        scale = np.abs(b).max(axis=axes)
        dev = np.abs(a - b).max(axis=axes)
        out[key] = float(np.max(np.divide(dev, scale, out=dev.copy(), where=scale > 0)))
        out["nan"] = out.get("nan", 0) + int(np.isnan(a).sum())
    return out


def evo2_layer(channels: int, modes: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """An Evo 2-style Hyena-LI layer in Vortex's layout: ``modes`` real poles per channel,
    decay rates log-uniform in [1e-3, 1] (``log_pole = -rate``), residues and ``D`` standard
    normal; float32 arrays ``log_poles (H, S, 1)``, ``residues (H, S)``, ``D (H,)``."""
    rng = np.random.default_rng(seed)
    rate = np.exp(rng.uniform(np.log(1e-3), 0.0, (channels, modes)))
    return {"log_poles": (-rate[..., None]).astype(np.float32),
            "residues": rng.standard_normal((channels, modes)).astype(np.float32),
            "D": rng.standard_normal(channels).astype(np.float32)}
