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
    if length == 0:  # an empty sequence (no FFT of size 0): the empty output, broadcast
        return (u.float() * h.float()).to(u.dtype)
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


def _toeplitz(h: torch.Tensor) -> torch.Tensor:
    """``T[..., t, s] = h[..., t - s]`` for ``s <= t``, else 0: ``(..., T, T)`` from ``(..., T)``."""
    length = h.shape[-1]
    t = torch.arange(length, device=h.device)
    lag = t[:, None] - t[None]
    padded = torch.nn.functional.pad(h, (0, 1))  # index T holds 0
    return padded[..., torch.where(lag >= 0, lag, length)]


def _flipped_toeplitz(h: torch.Tensor) -> torch.Tensor:
    """``_toeplitz(h)`` with its rows in reverse order, ``U[..., t, s] = h[..., T-1-t-s]`` (0 for
    ``s > T-1-t``), as a strided view of a ``(..., 2T - 1)`` buffer: no ``T x T`` gather."""
    length = h.shape[-1]
    buffer = torch.nn.functional.pad(h.flip(-1), (0, length - 1)).contiguous()
    return buffer.as_strided(h.shape[:-1] + (length, length),
                             buffer.stride()[:-1] + (1, 1))


def _diagonal_sums(w: torch.Tensor) -> torch.Tensor:
    """``g[..., d] = sum_t w[..., t, t - d]`` for ``d = 0..T-1`` (lower triangle of ``w``).

    Skewed view: with ``T`` zeros in front, entry ``(t, s)`` of the flattened matrix sits at row
    ``t``, column ``T - (t - s)`` of a ``(T, T + 1)`` view, so each lag is one column.
    """
    length = w.shape[-1]
    skewed = torch.nn.functional.pad(w.tril().flatten(-2), (length, 0))
    columns = skewed.view(*w.shape[:-2], length, length + 1).sum(-2)
    return columns[..., 1:].flip(-1)


class _ToeplitzWeights(torch.autograd.Function):
    """``scores * T_h`` (``(B, H, T, T)`` times ``(H, T, T)``). The filter's gradient is summed
    along the diagonals: differentiating the gather that builds ``T_h`` would scatter ``T^2``
    values into ``T`` taps with atomic adds, several times slower than the whole forward."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(scores, h)
        return scores * _toeplitz(h).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        scores, h = ctx.saved_tensors
        g_scores = grad * _toeplitz(h).to(grad.dtype)
        w = torch.sum(grad * scores, 0, dtype=torch.float32)  # (H, T, T)
        return g_scores, _diagonal_sums(w).to(h.dtype)


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
    h = torch.nn.functional.pad(h[:, :length], (0, max(0, length - h.shape[-1])))
    scores = torch.einsum("bhit,bhis->bhts", q, k)
    weighted = _ToeplitzWeights.apply(scores, h)
    return torch.einsum("bhts,bhjs->bhjt", weighted, v).to(q.dtype)
