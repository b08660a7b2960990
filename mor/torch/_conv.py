"""Causal convolutions shared by the exact and the recurrent layers (the FFT ones in float32)."""

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


def headwise_toeplitz_conv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           h: torch.Tensor) -> torch.Tensor:
    """`headwise_fft_conv` of ``k v^T`` as two matrix products: ``Y = ((Q K^T) * T_h) V``.

    ``T_h[t, s] = h[t - s]`` (``s <= t``, else 0) is each head's causal Toeplitz matrix, so
    ``y[t]_j = sum_s h[t-s] (q[t] . k[s]) v_j[s]``: attention with the scores weighted by the
    filter. ``q, k, v``: ``(B, H, N, T)``; ``h``: ``(H, K)``. Memory ``B H T^2`` instead of the
    FFT form's ``B H N^2 T``, and matrix products instead of ``N^2`` FFTs per head: the faster
    form to train with at ``T <= N^2``. Computed in the inputs' dtype (bfloat16 matrix products
    under autocast), returned in ``q``'s dtype.
    """
    length = q.shape[-1]
    t = torch.arange(length, device=h.device)
    lag = t[:, None] - t[None]
    hp = torch.nn.functional.pad(h[:, :length], (0, max(0, length - h.shape[-1]) + 1))
    toeplitz = hp[:, torch.where(lag >= 0, lag, length)]  # (H, T, T); index T holds 0
    scores = torch.einsum("bhit,bhis->bhts", q, k)
    scores = scores * toeplitz.to(scores.dtype)
    return torch.einsum("bhts,bhjs->bhjt", scores, v).to(q.dtype)
