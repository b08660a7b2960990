"""Causal FFT convolutions shared by the exact and the recurrent layers (float32 throughout)."""

from __future__ import annotations

import torch


def causal_fft_conv(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``y[..., c, t] = sum_{k<=t} h[c, k] u[..., c, t-k]`` for ``u`` of shape ``(..., C, T)``.

    Filters ``h`` (``(C, K)``) longer than ``T`` are cut to ``T`` taps; the FFT has size
    ``2 T`` (no circular wrap). Computed in float32, returned in ``u``'s dtype.
    """
    length = u.shape[-1]
    h = h[..., :length]
    n = 2 * length
    y = torch.fft.irfft(torch.fft.rfft(u.float(), n=n) * torch.fft.rfft(h.float(), n=n), n=n)
    return y[..., :length].to(u.dtype)


def outer_products(k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``k[t] v[t]^T`` per head and time, float32: ``(B, H, N, N, T)`` from ``(B, H, N, T)``."""
    return k.float()[:, :, :, None, :] * v.float()[:, :, None, :, :]


def headwise_fft_conv(q: torch.Tensor, kv: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``y[b, h, j, t] = sum_i q_i[t] sum_{s<=t} h[t-s] k_i[s] v_j[s]`` (MultiHyena's form).

    ``q``: ``(B, H, N, T)``; ``kv``: the `outer_products` of ``k`` and ``v``; ``h``: ``(H, K)``.
    The outer products are convolved by FFT: memory ``B H N^2 T``.
    """
    conv = causal_fft_conv(kv, h[:, None, None, :])
    return torch.einsum("bhit,bhijt->bhjt", q.float(), conv).to(q.dtype)
