r"""``HeadwiseModalRecurrence``: MultiHyena's head-wise form, the outer product ``k v^T``.

Per head with filter ``h`` (compact modes ``lambda``, ``R``, direct ``h_0``) and head
dimension ``N``, the convolved signal is the matrix ``k[t] v[t]^T`` and the output is read
against ``q[t]``:

.. math::

    y[t] = q[t]^T \Big(\mathrm{Re} \sum_n R_n S_n[t] + h_0\, k[t] v[t]^T\Big), \qquad
    S_n[t+1] = \lambda_n S_n[t] + k[t] v[t]^T,

equivalently ``y[t]_j = sum_i q_i[t] sum_s h[t-s] k_i[s] v_j[s]``. The state has shape
``(B, H, modes, N, N, 2)``, float32.
"""

from __future__ import annotations

import torch
from torch import nn

from mor.torch import _validate
from mor.torch._conv import headwise_fft_conv, outer_products
from mor.torch.recurrence import ModalRecurrence


class HeadwiseModalRecurrence(nn.Module):
    r"""MultiHyena's head-wise layer as a modal recurrence (``q, k, v``: ``(B, H, N, T)``).

    Per head, with the compact modes ``lambda_n``, ``R_n`` and direct term ``h_0`` of its
    filter and head dimension ``N``, the convolved signal is the outer product
    ``k[t] v[t]^T`` and the output is read against ``q[t]``:

    .. math::

        y[t] = q[t]^T \Big(\mathrm{Re} \sum_n R_n S_n[t] + h_0\, k[t] v[t]^T\Big),
        \qquad S_n[t+1] = \lambda_n S_n[t] + k[t] v[t]^T,

    that is ``y[t]_j = sum_i q_i[t] sum_{s<=t} h[t-s] k_i[s] v_j[s]``, the exact
    `HeadwiseLongConv` with the filter ``h`` of the modes. The state has shape
    ``(B, H, modes, N, N, 2)`` in float32; a token costs ``O(modes N^2)`` per head instead of
    ``O(L N)``. Build it with `from_ssm`.

    Parameters
    ----------
    heads : ModalRecurrence
        One filter per head (``channel_map = arange(H)``).

    Raises
    ------
    TypeError
        If ``heads`` is not a `ModalRecurrence`.
    ValueError
        If ``heads`` shares filters between channels (its ``channel_map`` is not
        ``arange(H)``).

    See Also
    --------
    HeadwiseLongConv : The exact layer it replaces.

    ModalRecurrence : The channel-wise form, which holds the filters.

    distill_module : Puts this layer where a layer says ``headwise = True``.

    References
    ----------
    .. [1] S. Massaroli, M. Poli, D. Y. Fu, et al., "Laughing Hyena Distillery: Extracting
       compact recurrences from convolutions," in *Advances in Neural Information Processing
       Systems 36 (NeurIPS 2023)*, 2023 (MultiHyena).

    Examples
    --------
    Two heads of dimension 3; whole sequences, then a prompt and one token at a time:

    >>> import torch
    >>> import mor
    >>> import mor.torch as mt
    >>> from mor.demo import hyena_like_filters
    >>> layer = mt.HeadwiseModalRecurrence.from_ssm(mor.reduce(hyena_like_filters(2, 128), 8))
    >>> generator = torch.Generator().manual_seed(0)
    >>> q, k, v = (torch.randn(1, 2, 3, 64, generator=generator) for _ in range(3))
    >>> y = layer(q, k, v)
    >>> y.shape
    torch.Size([1, 2, 3, 64])
    >>> y_prompt, state = layer.prefill(q[..., :40], k[..., :40], v[..., :40])
    >>> state.shape[:2], state.shape[3:]
    (torch.Size([1, 2]), torch.Size([3, 3, 2]))
    >>> steps = [layer.step(q[..., t], k[..., t], v[..., t], state) for t in range(40, 64)]
    >>> error = torch.cat([y_prompt, torch.stack(steps, -1)], -1) - y
    >>> print(bool(error.abs().max() < 1e-5 * y.abs().max()))
    True
    """

    def __init__(self, heads: ModalRecurrence):
        super().__init__()
        if not isinstance(heads, ModalRecurrence):
            raise TypeError(f"heads must be a ModalRecurrence (one filter per head), got "
                            f"{type(heads).__name__}; build the layer with from_ssm(bank)")
        identity = torch.arange(heads.channels, device=heads.channel_map.device)
        if heads.channel_map.numel() != heads.lam.shape[0] \
                or not torch.equal(heads.channel_map, identity):
            raise ValueError("heads must have one filter per head (channel_map = arange(H)): "
                             "head-wise steps do not share filters between heads")
        self.heads = heads  # one filter per head

    @classmethod
    def from_ssm(cls, bank, *, length: int | None = None) -> "HeadwiseModalRecurrence":
        """From a bank with one filter per head (shape ``(H,)``): `ModalRecurrence.from_ssm`
        (``length``: the filters' length, for poles float32 holds exactly)."""
        return cls(ModalRecurrence.from_ssm(bank, length=length))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Whole sequences by FFT convolution of the outer products (memory ``B H N^2 L``)."""
        self._check(q, k, v)
        return self._convolve(q, outer_products(k, v))

    def _convolve(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        h = self.heads.kernel(kv.shape[-1])[self.heads.channel_map]  # (H, L)
        return headwise_fft_conv(q, kv, h)

    def init_state(self, batch: int, dim: int) -> torch.Tensor:
        batch = _validate.integer("batch", batch, minimum=0)
        dim = _validate.integer("dim", dim)
        return torch.zeros(batch, self.heads.channels, self.heads.modes, dim, dim, 2,
                           device=self.heads.lam.device, dtype=self.heads.lam.dtype)

    def prefill(self, q, k, v) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs (``forward``) and the state ``S_n = sum_s lambda_n^{T-1-s} k[s] v[s]^T``."""
        self._check(q, k, v)
        op = self.heads._chunk_operators(k.shape[-1])  # (H, m, T) powers lambda^{T-1-s}
        kv = outer_products(k, v)  # once, for the outputs and the state
        sr = torch.einsum("bhijt,hmt->bhmij", kv, op["wr"])
        si = torch.einsum("bhijt,hmt->bhmij", kv, op["wi"])
        return self._convolve(q, kv), torch.stack([sr, si], -1)

    def step(self, q_t, k_t, v_t, state: torch.Tensor) -> torch.Tensor:
        """One token (``q_t, k_t, v_t``: ``(B, H, N)``); ``state`` updated in place.

        The state is read once (the residue-weighted sum over modes, one complex matrix product)
        and updated in place (``S <- lambda S + k v^T``, one fused pass): no temporaries of the
        state's size.
        """
        heads = self.heads
        _validate.headwise_step(q_t, k_t, v_t, state, heads.channels, heads.modes,
                                heads.lam.dtype, heads.lam.device)
        b, h, n = k_t.shape
        lam = torch.view_as_complex(self.heads.lam)  # (H, m)
        res = torch.view_as_complex(self.heads.res)
        s = torch.view_as_complex(state)  # (B, H, m, N, N)
        kv = k_t.float()[..., :, None] * v_t.float()[..., None, :]  # (B, H, N, N)
        read = torch.matmul(res[:, None, :], s.view(b, h, -1, n * n)).real.view(b, h, n, n) \
            + self.heads.direct[None, :, None, None] * kv
        y = torch.einsum("bhi,bhij->bhj", q_t.float(), read)
        torch.addcmul(kv.to(s.dtype)[:, :, None], s, lam[:, :, None, None], out=s)
        return y.to(q_t.dtype)

    def _check(self, q, k, v) -> None:
        dims = ("batch", "heads", "head_dim", "length")
        for name, t in (("q", q), ("k", k), ("v", v)):
            _validate.activation(name, t, dims, (None, self.heads.channels, None, None),
                                 self.heads.lam.device)
        _validate.same_shapes(("q", "k", "v"), (q, k, v), dims)
