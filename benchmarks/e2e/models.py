r"""Byte-level language models of the end-to-end study, in plain torch: Hyena, MultiHyena and a
Transformer of the same width and depth.

Every model: a byte embedding (256 symbols, tied with the output head), ``layers`` pre-norm
residual blocks ``x + mixer(LN(x))``, ``x + MLP(LN(x))`` (4x, GELU), a final LayerNorm. Mixers:

- **Hyena** (order 2, as in the shared filters): ``q, k, v`` from one projection and a short
  causal depthwise convolution (width 3); ``y = q * (h * (k v) + b (k v))`` per channel, with a
  long implicit filter ``h`` (an MLP with sine activations over 33 positional features, times an
  exponential decay window, as in Hyena) and a separate skip ``b``.
- **MultiHyena**: the same projections, split into heads of dimension ``N``; one long filter per
  head, applied to the outer products: ``y[t]_j = sum_i q_i[t] sum_s h[t-s] k_i[s] v_j[s]``.
- **Transformer**: causal multi-head attention with rotary position embeddings.

Generation (greedy or timed decoding) goes through ``prefill(tokens) -> (logits, cache)`` and
``step(token, cache) -> logits``. The long convolutions are modules with ``long_filter()``
(`mor.torch.distill_module`'s protocol): `freeze_filters` swaps them for the exact cached layers
(`mor.torch.LongConv` / `HeadwiseLongConv`), `mor.torch.distill_module` for recurrences.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from mor.torch import HeadwiseLongConv, LongConv
from mor.torch._conv import causal_fft_conv, headwise_toeplitz_conv

VOCAB = 256
DECODE_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


@dataclass(frozen=True)
class Config:
    kind: str  # "hyena", "multihyena" or "transformer"
    width: int = 256
    layers: int = 4
    length: int = 2048  # the long filters' length (= the training context)
    heads: int = 8  # MultiHyena's and the Transformer's heads
    filter_features: int = 33
    filter_width: int = 64

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------- long filters
class ImplicitFilter(nn.Module):
    """``h[c, t] = MLP(z(t))_c * exp(-|delta_c| t / L)``: Hyena's implicit long filter.

    ``z(t)`` holds ``t / (L-1)`` and the real and imaginary parts of ``exp(-i f_b 2 pi t / L)``
    for 16 bands ``f_b``; the MLP has two hidden layers with ``sin(w x)`` activations (learned
    ``w``). The fixed decay rates ``delta`` span ``log(0.01) / 1.5 .. log(0.01) / 0.3`` over the
    channels (Hyena's defaults): every filter decays by 100x within the last 2/3 to 1/5 of L.
    """

    def __init__(self, channels: int, length: int, features: int = 33, width: int = 64):
        super().__init__()
        bands = (features - 1) // 2
        t = torch.linspace(0, 1, length)[:, None]
        w = 2 * math.pi * torch.arange(length)[:, None] / length
        f = torch.linspace(1e-4, bands - 1, bands)[None]
        self.register_buffer("z", torch.cat([t, torch.cos(f * w), -torch.sin(f * w)], -1))
        self.register_buffer("t", t[:, 0])
        self.register_buffer("deltas", torch.linspace(math.log(1e-2) / 1.5,
                                                      math.log(1e-2) / 0.3, channels).abs())
        self.inner = nn.ModuleList([nn.Linear(2 * bands + 1, width), nn.Linear(width, width)])
        self.freq = nn.Parameter(torch.ones(2, width))
        self.out = nn.Linear(width, channels, bias=False)

    def forward(self) -> torch.Tensor:
        x = self.z
        for layer, freq in zip(self.inner, self.freq):
            x = torch.sin(freq * layer(x))
        return (self.out(x) * torch.exp(-self.t[:, None] * self.deltas)).T.contiguous()


class ImplicitLongConv(nn.Module):
    """A per-channel causal convolution with an implicit filter (``(B, C, T)`` in and out)."""

    def __init__(self, channels: int, length: int, **filter_options):
        super().__init__()
        self.filter = ImplicitFilter(channels, length, **filter_options)

    def long_filter(self) -> torch.Tensor:
        return self.filter().float()

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        with torch.autocast(u.device.type, enabled=False):
            return causal_fft_conv(u, self.long_filter())

    def frozen(self) -> LongConv:
        return LongConv(self.long_filter().detach())


class ImplicitHeadwiseConv(ImplicitLongConv):
    """MultiHyena's head-wise convolution with one implicit filter per head, computed as
    ``((Q K^T) * T_h) V`` (`mor.torch._conv.headwise_toeplitz_conv`): matrix products over
    ``T x T`` scores (bfloat16 under autocast), several times faster to train at ``T = 2048`` than convolving the
    ``N^2`` outer products ``k v^T`` by FFT (which the exact and distilled layers use)."""

    headwise = True

    def forward(self, q, k, v) -> torch.Tensor:
        return headwise_toeplitz_conv(q, k, v, self.long_filter())

    def frozen(self) -> HeadwiseLongConv:
        return HeadwiseLongConv(self.long_filter().detach())


# ---------------------------------------------------------------------------- mixers
class ShortConv(nn.Module):
    """Causal depthwise convolution of width 3 over ``(B, C, T)``, with a two-input cache."""

    WIDTH = 3

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, self.WIDTH, groups=channels,
                              padding=self.WIDTH - 1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.conv(u)[..., :u.shape[-1]]

    def prefill(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        past = F.pad(u, (self.WIDTH - 1, 0))[..., -(self.WIDTH - 1):]
        return self.forward(u), past.contiguous()

    def step(self, u_t: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        window = torch.cat([past, u_t[..., None]], -1)
        past.copy_(window[..., 1:])
        return (window * self.conv.weight[:, 0]).sum(-1) + self.conv.bias


class HyenaMixer(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        d = cfg.width
        self.in_proj = nn.Linear(d, 3 * d)
        self.short = ShortConv(3 * d)
        self.long = ImplicitLongConv(d, cfg.length, features=cfg.filter_features,
                                     width=cfg.filter_width)
        self.skip = nn.Parameter(torch.randn(d))
        self.out_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.short(self.in_proj(x).transpose(1, 2)).chunk(3, 1)
        z = k * v
        y = q * (self.long(z) + self.skip[:, None] * z)
        return self.out_proj(y.transpose(1, 2))

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        u, short = self.short.prefill(self.in_proj(x).transpose(1, 2))
        q, k, v = u.chunk(3, 1)
        z = k * v
        y, long = self.long.prefill(z)
        y = q * (y + self.skip[:, None] * z)
        return self.out_proj(y.transpose(1, 2)), (short, long)

    def step(self, x_t: torch.Tensor, cache: tuple) -> torch.Tensor:
        short, long = cache
        q, k, v = self.short.step(self.in_proj(x_t), short).chunk(3, -1)
        z = k * v
        return self.out_proj(q * (self.long.step(z, long) + self.skip * z))


class MultiHyenaMixer(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        d = cfg.width
        self.heads = cfg.heads
        self.in_proj = nn.Linear(d, 3 * d)
        self.short = ShortConv(3 * d)
        self.long = ImplicitHeadwiseConv(cfg.heads, cfg.length, features=cfg.filter_features,
                                         width=cfg.filter_width)
        self.out_proj = nn.Linear(d, d)

    def _split(self, u: torch.Tensor):
        """``(B, 3d, T)`` or ``(B, 3d)`` -> three ``(B, H, N, ...)``."""
        q, k, v = u.chunk(3, 1)
        shape = (u.shape[0], self.heads, -1) + tuple(u.shape[2:])
        return q.reshape(shape), k.reshape(shape), v.reshape(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.short(self.in_proj(x).transpose(1, 2)))
        y = self.long(q, k, v)
        return self.out_proj(y.flatten(1, 2).transpose(1, 2))

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        u, short = self.short.prefill(self.in_proj(x).transpose(1, 2))
        y, long = self.long.prefill(*self._split(u))
        return self.out_proj(y.flatten(1, 2).transpose(1, 2)), (short, long)

    def step(self, x_t: torch.Tensor, cache: tuple) -> torch.Tensor:
        short, long = cache
        y = self.long.step(*self._split(self.short.step(self.in_proj(x_t), short)), long)
        return self.out_proj(y.flatten(1, 2))


def _rotary(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of ``x`` (``(B, H, T, D)``) at integer ``positions`` (``(T,)``)."""
    half = x.shape[-1] // 2
    freq = 10000.0 ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angle = positions.float()[:, None] * freq
    cos, sin = torch.cos(angle).to(x.dtype), torch.sin(angle).to(x.dtype)
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], -1)


class AttentionMixer(nn.Module):
    """Causal multi-head attention; the decoding cache holds keys and values up to a capacity."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.heads = cfg.heads
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.out_proj = nn.Linear(cfg.width, cfg.width)

    def _qkv(self, x: torch.Tensor, positions: torch.Tensor):
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        return _rotary(q, positions), _rotary(k, positions), v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._qkv(x, torch.arange(x.shape[1], device=x.device))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out_proj(y.transpose(1, 2).flatten(2))

    def prefill(self, x: torch.Tensor, capacity: int) -> tuple[torch.Tensor, dict]:
        b, t, _ = x.shape
        q, k, v = self._qkv(x, torch.arange(t, device=x.device))
        keys = k.new_zeros(b, self.heads, capacity, k.shape[-1])
        values = torch.zeros_like(keys)
        keys[:, :, :t], values[:, :, :t] = k, v
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out_proj(y.transpose(1, 2).flatten(2)), {"k": keys, "v": values, "t": t}

    def step(self, x_t: torch.Tensor, cache: dict) -> torch.Tensor:
        t = cache["t"]
        q, k, v = self._qkv(x_t[:, None], torch.arange(t, t + 1, device=x_t.device))
        cache["k"][:, :, t], cache["v"][:, :, t] = k[:, :, 0], v[:, :, 0]
        cache["t"] = t + 1
        # flash / memory-efficient kernels: cuDNN's would build a new plan for every length
        with sdpa_kernel(DECODE_BACKENDS):
            y = F.scaled_dot_product_attention(q, cache["k"][:, :, :t + 1],
                                               cache["v"][:, :, :t + 1])
        return self.out_proj(y.flatten(1))


MIXERS = {"hyena": HyenaMixer, "multihyena": MultiHyenaMixer, "transformer": AttentionMixer}


# ---------------------------------------------------------------------------- the model
class Block(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(cfg.width), nn.LayerNorm(cfg.width)
        self.mixer = MIXERS[cfg.kind](cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, 4 * cfg.width), nn.GELU(),
                                 nn.Linear(4 * cfg.width, cfg.width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class LanguageModel(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        if cfg.kind not in MIXERS:
            raise ValueError(f"kind must be one of {sorted(MIXERS)}, got {cfg.kind!r}")
        self.cfg = cfg
        self.embed = nn.Embedding(VOCAB, cfg.width)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.layers)])
        self.norm = nn.LayerNorm(cfg.width)
        nn.init.normal_(self.embed.weight, std=0.02)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x) @ self.embed.weight.T

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, T, 256)`` for byte tokens ``(B, T)``."""
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self._logits(x)

    @torch.no_grad()
    def prefill(self, tokens: torch.Tensor, capacity: int | None = None
                ) -> tuple[torch.Tensor, list]:
        """Logits of a prompt and the decoding cache (``capacity``: the Transformer's KV cache
        length, by default the prompt's)."""
        x = self.embed(tokens)
        caches = []
        for block in self.blocks:
            if self.cfg.kind == "transformer":
                y, cache = block.mixer.prefill(block.norm1(x), capacity or tokens.shape[1])
            else:
                y, cache = block.mixer.prefill(block.norm1(x))
            x = x + y
            x = x + block.mlp(block.norm2(x))
            caches.append(cache)
        return self._logits(x), caches

    @torch.no_grad()
    def step(self, token: torch.Tensor, caches: list) -> torch.Tensor:
        """Logits ``(B, 256)`` of the next position; the caches are updated in place."""
        x = self.embed(token)
        for block, cache in zip(self.blocks, caches):
            x = x + block.mixer.step(block.norm1(x), cache)
            x = x + block.mlp(block.norm2(x))
        return self._logits(x)

    def freeze_filters(self) -> "LanguageModel":
        """Swap each implicit long filter for its exact cached layer (for decoding); in place."""
        for block in self.blocks:
            long = getattr(block.mixer, "long", None)
            if isinstance(long, ImplicitLongConv):
                block.mixer.long = long.frozen()
        return self

    def filters(self) -> torch.Tensor:
        """The long filters ``(layers, channels or heads, L)`` (float32, detached)."""
        return torch.stack([b.mixer.long.long_filter().detach() for b in self.blocks])


def scored_batches(model: LanguageModel, windows: torch.Tensor, batch: int = 16):
    """Over batches of ``windows`` (``(W, T+1)`` bytes): ``(start, logits, bits)``, with each
    window's bits per byte, the mean over its ``T`` next-byte predictions of ``-log2 p``."""
    with torch.no_grad():
        for start in range(0, len(windows), batch):
            w = windows[start:start + batch]
            logits = model(w[:, :-1]).float()
            nll = F.cross_entropy(logits.transpose(1, 2), w[:, 1:], reduction="none")
            yield start, logits, nll.mean(-1) / math.log(2)


def bits_per_byte(model: LanguageModel, windows: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """Per-window bits per byte of ``windows`` (see `scored_batches`)."""
    return torch.cat([bits for _, _, bits in scored_batches(model, windows, batch)])
