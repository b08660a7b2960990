"""``LongConv`` and ``HeadwiseLongConv``: the exact long-convolution layers that the modal
recurrences replace, with a ring-buffer cache of past inputs for decoding."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mor.torch import _validate
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
        _validate.tensor("filters", filters)
        if filters.is_complex():
            raise TypeError(f"filters must be real, got {filters.dtype}")
        if filters.ndim != 2 or 0 in filters.shape:
            raise ValueError(f"filters must have shape ({self.rows}, L) with at least one row "
                             f"and one tap, got {tuple(filters.shape)}")
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

    def _input(self, name: str, t, dims: tuple[str, ...]) -> None:
        """An activation of shape ``dims`` whose second axis holds the filters' rows."""
        _validate.activation(name, t, dims, (None, self.h.shape[0]) + (None,) * (len(dims) - 2),
                             self.h.device)

    def _cache(self, cache, dims: tuple[str, ...], sizes: tuple, given: str) -> None:
        """A `RingCache` from ``init_state`` or ``prefill`` with a buffer of shape ``dims``."""
        if not isinstance(cache, RingCache):
            raise TypeError(f"cache must be the RingCache of init_state or prefill, got "
                            f"{type(cache).__name__}")
        buffer = cache.buffer
        _validate.tensor("cache.buffer", buffer)
        _validate.floating_dtype("cache.buffer.dtype", buffer.dtype)
        _validate.shape("cache.buffer", buffer, dims, sizes, given)
        _validate.device("cache.buffer", buffer, self.h.device, "the layer")
        if isinstance(cache.position, bool) or not isinstance(cache.position, int) \
                or not 0 <= cache.position < max(1, buffer.shape[-1]):
            raise ValueError(f"cache.position must be an int in [0, {max(1, buffer.shape[-1])}), "
                             f"got {cache.position!r}")


class LongConv(_FilterBank):
    """The exact long convolution ``y[t] = sum_k h[k] u[t-k]`` per channel, filters ``(C, L)``.

    ``forward`` convolves ``u`` of shape ``(B, C, T)`` by FFT (float32); ``prefill`` returns
    the outputs and a `RingCache` of the last ``L - 1`` inputs (float32 by default: exact; a
    bfloat16 cache halves its memory and traffic but rounds inputs and taps to bfloat16);
    ``step`` reads the cache once, ``O(L)`` per token (the cost a recurrence removes). It
    follows the protocol of `mor.torch.distill_module`: ``long_filter()`` returns ``h``.

    Parameters
    ----------
    filters : torch.Tensor, shape (C, L)
        Real taps ``h`` per channel, kept as a float32 buffer.

    Raises
    ------
    TypeError
        If ``filters`` is not a real tensor.
    ValueError
        If ``filters`` is not of shape ``(C, L)`` with ``C, L >= 1``.

    See Also
    --------
    ModalRecurrence : The recurrence that replaces it.

    distill_module : Does the replacement in a model.

    Examples
    --------
    >>> import torch
    >>> import mor.torch as mt
    >>> from mor.demo import hyena_like_filters
    >>> conv = mt.LongConv(torch.from_numpy(hyena_like_filters(4, 256)))
    >>> u = torch.randn(2, 4, 256, generator=torch.Generator().manual_seed(0))
    >>> y = conv(u)
    >>> y_prompt, cache = conv.prefill(u[..., :200])  # outputs and the last L - 1 inputs
    >>> steps = [conv.step(u[..., t], cache) for t in range(200, 256)]  # O(L) per token
    >>> error = torch.cat([y_prompt, torch.stack(steps, -1)], -1) - y
    >>> print(bool(error.abs().max() < 1e-5 * y.abs().max()))
    True
    >>> conv.long_filter().shape
    torch.Size([4, 256])
    """

    rows = "channels"

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        self._input("u", u, ("batch", "channels", "length"))
        return causal_fft_conv(u, self.h)

    def init_state(self, batch: int, dtype: torch.dtype = torch.float32) -> RingCache:
        """An empty cache of ``L - 1`` past inputs per channel."""
        batch = _validate.integer("batch", batch, minimum=0)
        _validate.floating_dtype("dtype", dtype)
        return RingCache(torch.zeros(batch, self.h.shape[0], self.h.shape[1] - 1,
                                     device=self.h.device, dtype=dtype))

    def prefill(self, u: torch.Tensor, dtype: torch.dtype = torch.float32
                ) -> tuple[torch.Tensor, RingCache]:
        self._input("u", u, ("batch", "channels", "length"))
        cache = self.init_state(u.shape[0], dtype)
        cache.load(u)
        return self.forward(u), cache

    def step(self, u_t: torch.Tensor, cache: RingCache) -> torch.Tensor:
        """``y_t = h[0] u_t + sum_{k>=1} h[k] u[t-k]``; pushes ``u_t`` into ``cache``."""
        self._input("u_t", u_t, ("batch", "channels"))
        c, width = self.h.shape[0], self.h.shape[1] - 1
        self._cache(cache, ("batch", "channels", "L - 1"), (u_t.shape[0], c, width),
                    f" (u_t has shape {tuple(u_t.shape)})")
        past = cache.dot(self.past_taps(cache.buffer.dtype), "bck,ck->bc")
        y = self.h[:, 0] * u_t.float() + past.float()
        cache.push(u_t)
        return y.to(u_t.dtype)


class HeadwiseLongConv(_FilterBank):
    r"""MultiHyena's exact head-wise layer, one long filter per head.

    On ``q, k, v`` of shape ``(B, H, N, T)`` with head dimension ``N`` and filters ``h`` of
    shape ``(H, L)``:

    .. math::

        y[t]_j = \sum_i q_i[t] \sum_{s \le t} h[t-s]\, k_i[s]\, v_j[s] .

    ``forward`` convolves the outer products ``k v^T`` by FFT; ``step`` reads the cached keys
    and values once, like attention with a KV cache but with the scores weighted by the
    filter: ``O(L N)`` per head and token. ``headwise = True`` tells
    `mor.torch.distill_module` to put a `HeadwiseModalRecurrence` in its place.

    Parameters
    ----------
    filters : torch.Tensor, shape (H, L)
        Real taps ``h`` per head, kept as a float32 buffer.

    Raises
    ------
    TypeError
        If ``filters`` is not a real tensor.
    ValueError
        If ``filters`` is not of shape ``(H, L)`` with ``H, L >= 1``.

    See Also
    --------
    HeadwiseModalRecurrence : The recurrence that replaces it.

    LongConv : The channel-wise long convolution.

    References
    ----------
    .. [1] S. Massaroli, M. Poli, D. Y. Fu, et al., "Laughing Hyena Distillery: Extracting
       compact recurrences from convolutions," in *Advances in Neural Information Processing
       Systems 36 (NeurIPS 2023)*, 2023 (MultiHyena).

    Examples
    --------
    >>> import torch
    >>> import mor.torch as mt
    >>> from mor.demo import hyena_like_filters
    >>> layer = mt.HeadwiseLongConv(torch.from_numpy(hyena_like_filters(2, 128)))
    >>> generator = torch.Generator().manual_seed(0)
    >>> q, k, v = (torch.randn(1, 2, 3, 64, generator=generator) for _ in range(3))
    >>> y = layer(q, k, v)
    >>> y_prompt, cache = layer.prefill(q[..., :40], k[..., :40], v[..., :40])
    >>> steps = [layer.step(q[..., t], k[..., t], v[..., t], cache) for t in range(40, 64)]
    >>> error = torch.cat([y_prompt, torch.stack(steps, -1)], -1) - y
    >>> print(bool(error.abs().max() < 1e-5 * y.abs().max()))
    True
    """

    headwise = True
    rows = "heads"

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        self._qkv(q, k, v, ("batch", "heads", "head_dim", "length"))
        return headwise_fft_conv(q, outer_products(k, v), self.h)

    def _qkv(self, q, k, v, dims: tuple[str, ...]) -> None:
        names = ("q", "k", "v") if len(dims) == 4 else ("q_t", "k_t", "v_t")
        for name, t in zip(names, (q, k, v)):
            self._input(name, t, dims)
        _validate.same_shapes(names, (q, k, v), dims)

    def init_state(self, batch: int, dim: int, dtype: torch.dtype = torch.float32
                   ) -> RingCache:
        """An empty cache of the last ``L - 1`` keys and values: ``(B, H, 2, N, L - 1)``."""
        batch = _validate.integer("batch", batch, minimum=0)
        dim = _validate.integer("dim", dim)
        _validate.floating_dtype("dtype", dtype)
        return RingCache(torch.zeros(batch, self.h.shape[0], 2, dim, self.h.shape[1] - 1,
                                     device=self.h.device, dtype=dtype))

    def prefill(self, q, k, v, dtype: torch.dtype = torch.float32
                ) -> tuple[torch.Tensor, RingCache]:
        self._qkv(q, k, v, ("batch", "heads", "head_dim", "length"))
        cache = self.init_state(k.shape[0], k.shape[2], dtype)
        cache.load(torch.stack([k, v], 2))
        return self.forward(q, k, v), cache

    def step(self, q_t, k_t, v_t, cache: RingCache) -> torch.Tensor:
        """One token (``q_t, k_t, v_t``: ``(B, H, N)``); pushes ``k_t, v_t`` into ``cache``."""
        self._qkv(q_t, k_t, v_t, ("batch", "heads", "head_dim"))
        b, h, n = k_t.shape
        self._cache(cache, ("batch", "heads", "2", "head_dim", "L - 1"),
                    (b, h, 2, n, self.h.shape[1] - 1), f" (k_t has shape {tuple(k_t.shape)})")
        q = q_t.float()
        now = self.h[:, 0, None] * (q * k_t.float()).sum(-1)[..., None] * v_t.float()
        keys, values = cache.buffer[:, :, 0], cache.buffer[:, :, 1]
        scores = torch.einsum("bhn,bhnw->bhw", q.to(keys.dtype), keys)  # q . k[s], oldest first
        p = cache.position
        weights = torch.roll(self.past_taps(torch.float32), p, -1)  # ring slot -> its tap
        past = torch.einsum("bhw,bhnw->bhn", (scores.float() * weights).to(values.dtype), values)
        cache.push(torch.stack([k_t, v_t], 2))
        return (now + past.float()).to(q_t.dtype)
