"""``LongConv``: the exact long-convolution layer that `ModalRecurrence` replaces."""

from __future__ import annotations

import torch
from torch import nn


class LongConv(nn.Module):
    """``y[t] = sum_k h[k] u[t-k]`` per channel, with filters ``h`` of shape ``(C, L)``.

    ``forward`` convolves by FFT; ``prefill`` returns the outputs and a cache of the last
    ``L - 1`` inputs; ``step`` costs O(L) per token (the cost a recurrence removes). It also
    follows the protocol of `mor.torch.distill_module`: ``long_filter()`` returns ``h``.
    """

    def __init__(self, filters: torch.Tensor):
        super().__init__()
        if filters.ndim != 2:
            raise ValueError(f"filters must have shape (channels, L), got {tuple(filters.shape)}")
        self.register_buffer("h", filters.detach().to(torch.float32).contiguous())

    def long_filter(self) -> torch.Tensor:
        return self.h

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        length = u.shape[-1]
        n = 2 * max(length, self.h.shape[-1])
        y = torch.fft.irfft(torch.fft.rfft(u.float(), n=n) * torch.fft.rfft(self.h, n=n), n=n)
        return y[..., :length].to(u.dtype)

    def init_state(self, batch: int) -> torch.Tensor:
        """The cache of past inputs, newest last: ``(batch, C, L - 1)``, zero."""
        return torch.zeros(batch, self.h.shape[0], self.h.shape[1] - 1, device=self.h.device)

    def prefill(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cache = self.init_state(u.shape[0])
        keep = min(u.shape[-1], cache.shape[-1])
        if keep:
            cache[..., cache.shape[-1] - keep:] = u[..., u.shape[-1] - keep:].float()
        return self.forward(u), cache

    def step(self, u_t: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
        """``y_t = h[0] u_t + sum_{k>=1} h[k] u[t-k]``; shifts ``u_t`` into ``cache`` in place."""
        u = u_t.float()
        y = self.h[:, 0] * u + torch.einsum("bck,ck->bc", cache, self.h[:, 1:].flip(-1))
        if cache.shape[-1]:
            cache.copy_(torch.cat([cache[..., 1:], u[..., None]], dim=-1))
        return y.to(u_t.dtype)
