r"""``ModalRecurrence``: a bank of modal filters as a GPU recurrence layer.

Per channel ``c`` with filter ``f = channel_map[c]`` (compact modal form, `mor.conventions`):

.. math::

    y[t] = \mathrm{Re} \sum_n R_n x_n[t] + h_0 u[t], \qquad x_n[t+1] = \lambda_n x_n[t] + u[t],

which is the convolution of ``u`` with ``h[0] = h_0``, ``h[k] = Re sum_n R_n lambda_n^{k-1}``.
Poles, residues and the state are kept in float32 (real and imaginary parts: Triton has no
complex type); activations may be bfloat16 (bf16 would round pole moduli above about 0.998 to
1). The state has shape ``(batch, channels, modes, 2)``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from mor.fitting.least_squares import complex64_poles, fit_residues
from mor.systems.modal import ModalSSM
from mor.torch import _validate
from mor.torch._conv import causal_fft_conv

#: Default prompt chunk of ``prefill(mode="chunked")``.
DEFAULT_CHUNK = 256
_KERNEL_BLOCK = 4096


class ModalRecurrence(nn.Module):
    r"""A long-convolution layer run as a diagonal recurrence: a bank of modal filters on GPU.

    Per channel ``c``, with the compact modes ``lambda_n``, ``R_n`` and direct term ``h_0`` of
    its filter ``channel_map[c]`` (`mor.conventions`):

    .. math::

        x_n[t+1] = \lambda_n x_n[t] + u[t], \qquad
        y[t] = \mathrm{Re} \sum_n R_n x_n[t] + h_0 u[t],

    the causal convolution of ``u`` with ``h[0] = h_0``,
    ``h[k] = Re sum_n R_n lambda_n^{k-1}``. Whole sequences (`forward`) are convolved by FFT
    with the kernel; prompts (`prefill`) return the outputs and the state without a loop over
    tokens; `step` generates one token in ``O(modes)`` per channel instead of the ``O(L)`` of
    the long convolution it replaces. Build it with `from_ssm`.

    Parameters
    ----------
    poles, residues : torch.Tensor, complex, shape (F, m)
        Compact poles and residues of ``F`` filters (padded modes: zero pole and residue).
    direct : torch.Tensor, shape (F,)
        Direct terms ``h_0``.
    channel_map : torch.Tensor of int, shape (C,)
        The filter of each channel.

    Raises
    ------
    TypeError
        If an argument is not a tensor, ``direct`` is complex or ``channel_map`` does not hold
        integers.
    ValueError
        If the shapes do not match, there is no mode or no channel, ``channel_map`` points
        outside ``[0, F)``, or a live pole lies on or outside the unit circle.

    See Also
    --------
    ModalRecurrence.from_ssm : The layer of a `mor.ModalSSM` bank.

    LongConv : The exact long convolution it replaces.

    HeadwiseModalRecurrence : MultiHyena's head-wise (outer-product) form.

    distill_module : Swap a model's long convolutions for recurrences.

    Notes
    -----
    Poles, residues and the state (shape ``(batch, C, modes, 2)``: real and imaginary parts)
    are kept in float32, also when the model is cast with ``model.to(torch.bfloat16)``:
    bfloat16 would round pole moduli above about 0.998 to 1. Activations may be bfloat16.
    Kernels and the prefill's chunk operators are formed with float64 powers, then cast.
    On CUDA, `step` runs a fused Triton [3] kernel (one launch, no host synchronisation,
    CUDA-graph capturable); elsewhere the same update in eager torch. The modal form of a
    long convolution follows Massaroli et al. [2] for Hyena [1] filters.

    References
    ----------
    .. [1] M. Poli, S. Massaroli, E. Nguyen, D. Y. Fu, T. Dao, S. Baccus, Y. Bengio, S. Ermon
       and C. Re, "Hyena Hierarchy: Towards larger convolutional language models," in
       *Proc. 40th International Conference on Machine Learning (ICML)*, PMLR vol. 202, 2023.

    .. [2] S. Massaroli, M. Poli, D. Y. Fu, et al., "Laughing Hyena Distillery: Extracting
       compact recurrences from convolutions," in *Advances in Neural Information Processing
       Systems 36 (NeurIPS 2023)*, 2023.

    .. [3] P. Tillet, H. T. Kung and D. Cox, "Triton: an intermediate language and compiler for
       tiled neural network computations," in *Proc. 3rd ACM SIGPLAN International Workshop
       on Machine Learning and Programming Languages (MAPL)*, 2019, pp. 10-19.

    Examples
    --------
    Four Hyena-like filters of 256 taps, reduced to order 16, as one layer:

    >>> import numpy as np
    >>> import torch
    >>> import mor
    >>> import mor.torch as mt
    >>> from mor.demo import hyena_like_filters
    >>> bank = mor.reduce(hyena_like_filters(4, 256), 16)
    >>> layer = mt.ModalRecurrence.from_ssm(bank)  # channel c runs filter c
    >>> layer.channels
    4
    >>> print(np.allclose(layer.kernel(300).numpy(), bank.impulse(300), atol=1e-6))
    True

    A whole sequence, then the same outputs from a prompt and one token at a time:

    >>> def rel(a, b):
    ...     return float((a - b).abs().max() / b.abs().max())
    >>> u = torch.randn(2, 4, 300, generator=torch.Generator().manual_seed(0))
    >>> y = layer(u)  # (batch, channels, length): FFT convolution with the kernel
    >>> y_prompt, state = layer.prefill(u[..., :200])  # exact; memory bounded by the chunk
    >>> state.shape == (2, 4, layer.modes, 2)
    True
    >>> steps = [layer.step(u[..., t], state) for t in range(200, 300)]  # state in place
    >>> rel(torch.cat([y_prompt, torch.stack(steps, -1)], -1), y) < 1e-5
    True

    Channels may share filters (MultiHyena's heads):

    >>> mt.ModalRecurrence.from_ssm(bank[:2], channel_map=[0, 0, 1, 1]).channels
    4
    """

    def __init__(self, poles: torch.Tensor, residues: torch.Tensor, direct: torch.Tensor,
                 channel_map: torch.Tensor):
        super().__init__()
        _check_parameters(poles, residues, direct, channel_map)
        # float64 masters (for kernels of any length) and float32 working copies. A pole at 0
        # (padding) gets log = -1e4: lambda^0 = 1 and lambda^k = 0 for k >= 1, exactly.
        poles = poles.to(torch.complex128)
        safe = torch.where(poles == 0, torch.ones_like(poles), poles)
        log_poles = torch.where(poles == 0, torch.full_like(poles, -1e4), torch.log(safe))
        self.register_buffer("log_poles", log_poles, persistent=True)
        self.register_buffer("residues64", residues.to(torch.complex128), persistent=True)
        self.register_buffer("direct", direct.to(torch.float32), persistent=True)
        self.register_buffer("channel_map", channel_map.to(torch.long), persistent=True)
        lam = poles.to(torch.complex64)
        res = residues.to(torch.complex64)
        self.register_buffer("lam", torch.stack([lam.real, lam.imag], -1).contiguous(),
                             persistent=False)
        self.register_buffer("res", torch.stack([res.real, res.imag], -1).contiguous(),
                             persistent=False)
        self._kernels: dict = {}
        self._operators: dict = {}
        self._channels, self._state_tail = self.channels, (self.modes, 2)  # checked by step

    @classmethod
    def from_ssm(cls, bank: ModalSSM, channel_map=None, *, length: int | None = None
                 ) -> "ModalRecurrence":
        """A layer from a bank of ``F`` filters (shape ``(F,)``).

        Parameters
        ----------
        bank : mor.ModalSSM
            Stable models of batch shape ``(F,)`` (e.g. ``mor.distill(...).bank`` of one layer).
        channel_map : array_like of int, shape (C,), optional
            Each channel's filter (MultiHyena: channels of a head share its filter); by
            default channel ``c`` uses filter ``c``.
        length : int, optional
            The filters' length ``L``. With it, the layer holds poles that float32 represents
            exactly: each filter's poles are rounded to complex64 and its residues fitted anew
            by least squares to the bank's own ``L`` taps (as the engine writers of
            `mor.export` do), kept where the float32 run (`mor.ModalSSM.float32_deviation`)
            then comes closer to those taps. A pole ``1 - |lambda| ~ 1e-3`` from the circle
            moves by ``6e-8`` when rounded, an error that grows like ``t |R| |lambda|^t``
            over the decode steps; without ``length`` the rounding is left to the cast.

        Returns
        -------
        ModalRecurrence
            On the CPU; move it with ``.to(device)``.

        Raises
        ------
        TypeError
            If ``bank`` is not a `mor.ModalSSM` or ``channel_map`` does not hold integers.
        ValueError
            If ``bank`` is not one-dimensional, has a pole on or outside the unit circle,
            ``channel_map`` points outside ``[0, F)`` or ``length`` is not positive.
        """
        if not isinstance(bank, ModalSSM):
            raise TypeError(f"bank must be a mor.ModalSSM, got {type(bank).__name__}")
        if len(bank.shape) != 1:
            raise ValueError(f"bank must hold one filter per row, shape (F,), got {bank.shape}")
        if not np.all(bank.is_stable()):
            raise ValueError("the bank has poles on or outside the unit circle")
        if length is not None:
            length = _validate.integer("length", length)
        poles, residues, direct = bank.compact()
        f = bank.shape[0]
        if poles.shape[1] == 0:  # order-0 filters only: one dead mode keeps shapes static
            poles, residues = np.zeros((f, 1), complex), np.zeros((f, 1), complex)
        elif length is not None and length >= 2:  # one tap has no mode to fit
            poles, residues = _float32_poles(bank, poles, residues, direct, length)
        if isinstance(channel_map, torch.Tensor):
            channel_map = channel_map.detach().cpu().numpy()
        mapping = np.arange(f) if channel_map is None else np.asarray(channel_map)
        if mapping.dtype == bool or not np.issubdtype(mapping.dtype, np.integer):
            raise TypeError(f"channel_map must hold integer filter indices, got dtype "
                            f"{mapping.dtype}")
        if mapping.ndim != 1 or mapping.size == 0 or mapping.min() < 0 or mapping.max() >= f:
            raise ValueError(f"channel_map must be a non-empty 1-D array of filter indices in "
                             f"[0, {f}), got {mapping}")
        # a padded mode (zero residue) gets pole 0: harmless, its state never reaches y
        return cls(torch.from_numpy(poles), torch.from_numpy(residues),
                   torch.from_numpy(direct), torch.from_numpy(mapping))

    @property
    def channels(self) -> int:
        """Number of channels ``C`` (the length of ``channel_map``)."""
        return self.channel_map.numel()

    @property
    def modes(self) -> int:
        """Compact modes per filter (the largest in the bank): the state size per channel."""
        return self.lam.shape[1]

    # ------------------------------------------------------------------ whole sequences
    def kernel(self, length: int) -> torch.Tensor:
        """The filters' taps ``(F, length)`` in float32, cached per length and device.

        ``lambda^k = exp(k log lambda)`` in float64, then cast: in float32 the phase error of
        ``k log lambda`` grows like ``k |log lambda| eps_32``, up to ``4e-4`` rad at ``k = 2048``
        for a pole near ``-1`` (trained layer 3 at 16 modes: the layer's filter was ``2.0e-6``
        off the bank's float64 response, ``5.7e-8`` with float64 powers).
        """
        length = _validate.integer("length", length, minimum=0)
        key = (length, self.log_poles.device)
        if key not in self._kernels:
            log, res = self.log_poles, self.residues64
            full = torch.empty(self.log_poles.shape[0], length, device=log.device)
            if length:
                full[:, 0] = self.direct
            for start in range(1, length, _KERNEL_BLOCK):  # memory F * modes * block
                k = torch.arange(start - 1, min(start - 1 + _KERNEL_BLOCK, length - 1),
                                 device=log.device, dtype=torch.float64)
                powers = torch.exp(k[None, None, :] * log[:, :, None])
                full[:, start:start + k.numel()] = torch.real(
                    torch.einsum("fn,fnk->fk", res, powers)).to(torch.float32)
            self._kernels = {key: full}  # one length cached at a time
        return self._kernels[key]

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """``y = h * u`` over the whole sequence (FFT convolution), ``u``: ``(B, C, L)``."""
        self._check(u)
        return causal_fft_conv(u, self.kernel(u.shape[-1])[self.channel_map])

    # ------------------------------------------------------------------ prompts
    def init_state(self, batch: int) -> torch.Tensor:
        """A zero state ``(batch, C, modes, 2)`` in float32."""
        batch = _validate.integer("batch", batch, minimum=0)
        return torch.zeros(batch, self.channels, self.modes, 2, device=self.lam.device,
                           dtype=self.lam.dtype)

    def prefill(self, u: torch.Tensor, mode: str = "chunked", chunk: int = DEFAULT_CHUNK
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs and state after a prompt ``u`` (``(B, C, T)``), without a loop over tokens.

        Modes: ``"chunked"`` (exact; per chunk of ``chunk`` tokens an FFT convolution inside the
        chunk, and real matrix products with the chunk's Vandermonde matrices for the state
        carried in and out: memory bounded by the chunk), ``"fft"`` (whole-prompt FFT for the
        outputs and one Vandermonde product for the state: memory ``C * modes * T``),
        ``"recurrent"`` (token by token through :meth:`step`: the reference).
        """
        _validate.choice("mode", mode, ("chunked", "fft", "recurrent"))
        chunk = _validate.integer("chunk", chunk)
        self._check(u)
        if mode == "chunked":
            return self._prefill_chunked(u, chunk)
        state = self.init_state(u.shape[0])
        if u.shape[-1] == 0:  # an empty prompt: no output, the zero state (as "chunked")
            return u.clone(), state
        if mode == "fft":
            return self.forward(u), self._state_after(u.float(), state)
        ys = [self.step(u[..., t], state) for t in range(u.shape[-1])]
        return torch.stack(ys, -1), state

    def _chunk_operators(self, count: int) -> dict[str, torch.Tensor]:
        """Per-channel matrices for a block of ``count`` tokens (cached per size):

        ``a[c, n, tau] = R_n lambda_n^tau`` (the carried-in state's outputs),
        ``w[c, n, s] = lambda_n^{count-1-s}`` (the block's contribution to the state) and
        ``lam_t = lambda^count``, as real and imaginary parts: formed in float64 (see
        `kernel`), kept in float32.
        """
        key = (count, self.log_poles.device)
        if key not in self._operators:
            tau = torch.arange(count, device=self.log_poles.device, dtype=torch.float64)
            log = self.log_poles[self.channel_map]
            powers = torch.exp(tau[None, None, :] * log[:, :, None])
            a = (self.residues64[self.channel_map][:, :, None] * powers).to(torch.complex64)
            w = powers.flip(-1).to(torch.complex64)
            lam_t = torch.exp(count * log).to(torch.complex64)
            recent = dict(list(self._operators.items())[-1:])  # full chunks and a remainder
            self._operators = recent | {key: {
                "ar": a.real.contiguous(), "ai": a.imag.contiguous(),
                "wr": w.real.contiguous(), "wi": w.imag.contiguous(),
                "lr": lam_t.real.contiguous(), "li": lam_t.imag.contiguous()}}
        return self._operators[key]

    def _state_after(self, u: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """``x <- lambda^T x + sum_s lambda^{T-1-s} u[s]`` for a block ``u`` (``(B, C, T)``)."""
        op = self._chunk_operators(u.shape[-1])
        xr, xi = state[..., 0], state[..., 1]
        new_r = op["lr"] * xr - op["li"] * xi + torch.einsum("bct,cmt->bcm", u, op["wr"])
        new_i = op["lr"] * xi + op["li"] * xr + torch.einsum("bct,cmt->bcm", u, op["wi"])
        return torch.stack([new_r, new_i], -1)

    def _prefill_chunked(self, u: torch.Tensor, chunk: int):
        batch, _, total = u.shape
        state = self.init_state(batch)
        out = torch.empty_like(u)
        for start in range(0, total, chunk):
            block = u[..., start:start + chunk].float()
            count = block.shape[-1]
            op = self._chunk_operators(count)
            carried = (torch.einsum("bcm,cmt->bct", state[..., 0], op["ar"])
                       - torch.einsum("bcm,cmt->bct", state[..., 1], op["ai"]))
            inside = causal_fft_conv(block, self.kernel(count)[self.channel_map])
            out[..., start:start + count] = (inside + carried).to(u.dtype)
            state = self._state_after(block, state)
        return out, state

    # ------------------------------------------------------------------ decoding
    def step(self, u_t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """One token: ``y_t`` (``(B, C)``) from ``u_t`` (``(B, C)``); ``state`` updated in place.

        O(modes) per channel, no host synchronisation and static shapes (CUDA-graph
        capturable); a fused Triton kernel on CUDA when Triton is available.
        """
        lam = self.lam
        _validate.modal_step(u_t, state, self._channels, self._state_tail, lam.dtype,
                             lam.device)
        if u_t.is_cuda and _triton_step is not None:
            return _triton_step(u_t, state, lam, self.res, self.direct, self.channel_map)
        return self._step_eager(u_t, state)

    def _step_eager(self, u_t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        lam = self.lam[self.channel_map]
        res = self.res[self.channel_map]
        xr, xi = state[..., 0], state[..., 1]
        u = u_t.float()
        y = (res[..., 0] * xr - res[..., 1] * xi).sum(-1) + self.direct[self.channel_map] * u
        new_r = lam[..., 0] * xr - lam[..., 1] * xi + u[..., None]
        new_i = lam[..., 0] * xi + lam[..., 1] * xr  # uses the old real part
        state[..., 0] = new_r
        state[..., 1] = new_i
        return y.to(u_t.dtype)

    def _check(self, u: torch.Tensor) -> None:
        _validate.activation("u", u, ("batch", "channels", "length"), (None, self.channels, None),
                             self.lam.device)

    def _apply(self, fn, *args, **kwargs):
        """Moves follow ``fn``; dtype casts do not: poles, residues and direct terms keep their
        precision when the model is cast (``model.to(torch.bfloat16)`` would round pole moduli
        above about 0.998 to 1)."""
        self._kernels, self._operators = {}, {}

        def move_only(t: torch.Tensor) -> torch.Tensor:
            with warnings.catch_warnings():  # a cast of complex poles to a real dtype warns
                warnings.simplefilter("ignore", UserWarning)
                out = fn(t)
            return out if out.dtype == t.dtype else t.to(out.device)

        return super()._apply(move_only, *args, **kwargs)


def _float32_poles(bank: ModalSSM, poles: np.ndarray, residues: np.ndarray,
                   direct: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Compact poles rounded to complex64 and residues refitted on the bank's ``length`` taps,
    per filter where that brings its float32 run closer to the taps
    (`ModalRecurrence.from_ssm`)."""
    taps = bank.impulse(length)
    live = residues != 0
    near = np.where(live, complex64_poles(poles), poles)
    refit, _ = fit_residues(taps, near, live)
    before = bank.float32_deviation(length, reference=taps)
    after = ModalSSM.from_compact(near, refit, direct).float32_deviation(length, reference=taps)
    better = (after < before)[:, None]
    return np.where(better, near, poles), np.where(better, refit, residues)


def _check_parameters(poles, residues, direct, channel_map) -> None:
    """`ModalRecurrence`'s constructor arguments: ``(F, modes)`` poles and residues, ``(F,)``
    direct terms, ``(C,)`` integer channel map into ``[0, F)``, poles inside the unit circle."""
    for name, value in (("poles", poles), ("residues", residues), ("direct", direct),
                        ("channel_map", channel_map)):
        _validate.tensor(name, value)
    _validate.shape("poles", poles, ("filters", "modes"), (None, None))
    f, m = poles.shape
    _validate.shape("residues", residues, ("filters", "modes"), (f, m))
    _validate.shape("direct", direct, ("filters",), (f,))
    _validate.shape("channel_map", channel_map, ("channels",), (None,))
    if direct.is_complex():
        raise TypeError(f"direct must be real, got {direct.dtype}")
    if channel_map.dtype == torch.bool or channel_map.is_floating_point() \
            or channel_map.is_complex():
        raise TypeError(f"channel_map must hold integer filter indices, got {channel_map.dtype}")
    if m == 0 or channel_map.numel() == 0:
        raise ValueError(f"a layer needs at least one mode and one channel, got poles of shape "
                         f"{(f, m)} and channel_map of shape {tuple(channel_map.shape)}")
    if channel_map.min() < 0 or channel_map.max() >= f:
        raise ValueError(f"channel_map must hold filter indices in [0, {f}), got "
                         f"{channel_map.tolist()}")
    if ((poles.abs() >= 1) & (residues != 0)).any():
        raise ValueError("the bank has poles on or outside the unit circle")


try:  # the fused decode kernel needs Triton (CUDA builds of torch ship it)
    from mor.torch._triton import triton_step as _triton_step
except ImportError:  # pragma: no cover - CPU-only torch
    _triton_step = None
