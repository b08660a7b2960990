"""``LongConv`` and ``HeadwiseLongConv``: the exact long-convolution layers that the modal
recurrences replace, with a ring-buffer cache of past inputs for decoding."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mor.torch._conv import causal_fft_conv, headwise_fft_conv, outer_products


@dataclass
class RingCache:
    """The last ``W`` inputs of a cached convolution, in a ring: ``buffer[..., position]`` is the
    oldest, and the newest sits just before it (cyclically). A step reads the ring once (two
    contiguous slices) and writes one entry; nothing is shifted."""

    buffer: torch.Tensor
    position: int = 0

    def push(self, u_t: torch.Tensor) -> None:
        """Overwrite the oldest entry with ``u_t`` (the ring's last axis is time)."""
        if self.buffer.shape[-1]:
            self.buffer[..., self.position] = u_t
            self.position = (self.position + 1) % self.buffer.shape[-1]

    def load(self, u: torch.Tensor) -> None:
        """Fill from a prompt ``u`` (time last): its last ``W`` inputs, oldest at position 0."""
        width = self.buffer.shape[-1]
        keep = min(u.shape[-1], width)
        self.buffer.zero_()
        if keep:
            self.buffer[..., width - keep:] = u[..., u.shape[-1] - keep:]
        self.position = 0

    def dot(self, oldest_first: torch.Tensor, spec: str) -> torch.Tensor:
        """``torch.einsum(spec, inputs, oldest_first)`` over the cached inputs in time order
        (``oldest_first[..., j]`` weighs the ``j``-th oldest), on the two slices of the ring."""
        p, width = self.position, self.buffer.shape[-1]
        head = torch.einsum(spec, self.buffer[..., p:], oldest_first[..., :width - p])
        return head + torch.einsum(spec, self.buffer[..., :p], oldest_first[..., width - p:]) \
            if p else head


class _FilterBank(nn.Module):
    """Exact filters ``h`` of shape ``(rows, L)`` in float32; ``long_filter()`` returns them."""

    rows = "rows"

    def __init__(self, filters: torch.Tensor):
        super().__init__()
        if filters.ndim != 2:
            raise ValueError(f"filters must have shape ({self.rows}, L), got "
                             f"{tuple(filters.shape)}")
        self.register_buffer("h", filters.detach().to(torch.float32).contiguous())
        self._past: dict = {}

    def long_filter(self) -> torch.Tensor:
        return self.h

    def past_taps(self, dtype: torch.dtype) -> torch.Tensor:
        """``h[:, L-1], ..., h[:, 1]`` (the weights of the cached inputs, oldest first) in
        ``dtype``: made once per dtype and device, not at every step."""
        key = (dtype, self.h.device)
        if key not in self._past:
            self._past = {key: self.h[:, 1:].flip(-1).to(dtype).contiguous()}
        return self._past[key]

    def _apply(self, fn, *args, **kwargs):
        self._past = {}
        return super()._apply(fn, *args, **kwargs)


class LongConv(_FilterBank):
    """``y[t] = sum_k h[k] u[t-k]`` per channel, with filters ``h`` of shape ``(C, L)``.

    ``forward`` convolves by FFT; ``prefill`` returns the outputs and a `RingCache` of the last
    ``L - 1`` inputs (float32 by default: exact; a bfloat16 cache halves its memory and
    traffic but rounds inputs and taps to bfloat16); ``step`` reads the cache once, O(L) per
    token (the cost a recurrence removes). It follows the protocol of
    `mor.torch.distill_module`: ``long_filter()`` returns ``h``.
    """

    rows = "channels"

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return causal_fft_conv(u, self.h)

    def init_state(self, batch: int, dtype: torch.dtype = torch.float32) -> RingCache:
        """An empty cache of ``L - 1`` past inputs per channel."""
        return RingCache(torch.zeros(batch, self.h.shape[0], self.h.shape[1] - 1,
                                     device=self.h.device, dtype=dtype))

    def prefill(self, u: torch.Tensor, dtype: torch.dtype = torch.float32
                ) -> tuple[torch.Tensor, RingCache]:
        cache = self.init_state(u.shape[0], dtype)
        cache.load(u)
        return self.forward(u), cache

    def step(self, u_t: torch.Tensor, cache: RingCache) -> torch.Tensor:
        """``y_t = h[0] u_t + sum_{k>=1} h[k] u[t-k]``; pushes ``u_t`` into ``cache``."""
        past = cache.dot(self.past_taps(cache.buffer.dtype), "bck,ck->bc")
        y = self.h[:, 0] * u_t.float() + past.float()
        cache.push(u_t)
        return y.to(u_t.dtype)


class HeadwiseLongConv(_FilterBank):
    """MultiHyena's exact head-wise layer: ``y[t]_j = sum_i q_i[t] sum_s h[t-s] k_i[s] v_j[s]``
    on ``q, k, v`` of shape ``(B, H, N, L)``, one filter per head (``(H, L)``).

    ``step`` reads the cached keys and values once, like attention with a KV cache but with
    the scores weighted by the filter: O(L N) per head and token. ``headwise = True`` tells
    `mor.torch.distill_module` to put a `HeadwiseModalRecurrence` in its place.
    """

    headwise = True
    rows = "heads"

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return headwise_fft_conv(q, outer_products(k, v), self.h)

    def init_state(self, batch: int, dim: int, dtype: torch.dtype = torch.float32
                   ) -> RingCache:
        """An empty cache of the last ``L - 1`` keys and values: ``(B, H, 2, N, L - 1)``."""
        return RingCache(torch.zeros(batch, self.h.shape[0], 2, dim, self.h.shape[1] - 1,
                                     device=self.h.device, dtype=dtype))

    def prefill(self, q, k, v, dtype: torch.dtype = torch.float32
                ) -> tuple[torch.Tensor, RingCache]:
        cache = self.init_state(k.shape[0], k.shape[2], dtype)
        cache.load(torch.stack([k, v], 2))
        return self.forward(q, k, v), cache

    def step(self, q_t, k_t, v_t, cache: RingCache) -> torch.Tensor:
        """One token (``q_t, k_t, v_t``: ``(B, H, N)``); pushes ``k_t, v_t`` into ``cache``."""
        q = q_t.float()
        now = self.h[:, 0, None] * (q * k_t.float()).sum(-1)[..., None] * v_t.float()
        keys, values = cache.buffer[:, :, 0], cache.buffer[:, :, 1]
        scores = torch.einsum("bhn,bhnw->bhw", q.to(keys.dtype), keys)  # q . k[s], oldest first
        p = cache.position
        weights = torch.roll(self.past_taps(torch.float32), p, -1)  # ring slot -> its tap
        past = torch.einsum("bhw,bhnw->bhn", (scores.float() * weights).to(values.dtype), values)
        cache.push(torch.stack([k_t, v_t], 2))
        return (now + past.float()).to(q_t.dtype)
