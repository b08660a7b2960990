"""Argument checks of the `mor.torch` layers: shapes, dtypes, devices, sizes and states.

Every public entry point of `ModalRecurrence`, `HeadwiseModalRecurrence`, `LongConv` and
`HeadwiseLongConv` goes through these functions, so a wrong argument is a ``TypeError`` (wrong
kind or dtype) or a ``ValueError`` (wrong shape, size or device) naming the argument, the
expected shape with its meaning and what was given, not a broadcasting error from deep inside
torch (or, worse, a silent broadcast).

The checks read metadata only (type, shape, dtype, device, strides): none reads a tensor's
values, allocates or synchronises with the device, so the decode steps stay cheap and
CUDA-graph capturable (a graph replays the kernels, not these checks). Values are not scanned:
NaN and infinite inputs propagate through the outputs and the states as through any
convolution; where an FFT carries them (``forward``, ``prefill``) a NaN at one token reaches
every output of the sequence (of the chunk in ``"chunked"`` mode), earlier ones included.

Activations must be floating point (float32, float64, float16 or bfloat16). Integer, boolean
and complex signals are refused with a ``TypeError`` rather than cast: the layers compute in
float32 and return the input's dtype, which cannot hold the convolution of an integer or
boolean signal (it would be truncated), and a complex signal would lose its imaginary part.
An integer tensor reaching a long convolution is almost always token ids passed where
embeddings belong; ``u.float()`` says so explicitly where it is meant.
"""

from __future__ import annotations

import numbers

import torch

#: Activation dtypes the layers accept (computed in float32, returned in the input's dtype).
FLOATING = frozenset({torch.float32, torch.float64, torch.float16, torch.bfloat16})
_FLOATING_NAMES = "float32, float64, float16 or bfloat16"


def integer(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum`` (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        bound = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


def choice(name: str, value, options: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        names = ", ".join(repr(o) for o in options[:-1]) + f" or {options[-1]!r}"
        raise ValueError(f"{name} must be {names}, got {value!r}")
    return value


def floating_dtype(name: str, dtype) -> torch.dtype:
    """A dtype argument (a cache's storage): a floating-point ``torch.dtype``."""
    if dtype not in FLOATING:
        raise TypeError(f"{name} must be a floating-point torch dtype ({_FLOATING_NAMES}), got "
                        f"{dtype!r}")
    return dtype


def tensor(name: str, value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def layout(dims: tuple[str, ...], sizes: tuple) -> str:
    """``(batch, channels, length) with channels = 5``: the axes' meaning, then fixed sizes."""
    fixed = list(dict.fromkeys(f"{d} = {s}" for d, s in zip(dims, sizes)
                               if s is not None and d != str(s)))
    axes = f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"
    return axes + (f" with {', '.join(fixed)}" if fixed else "")


def shape(name: str, t: torch.Tensor, dims: tuple[str, ...], sizes: tuple,
          context: str = "") -> None:
    """``t`` has ``len(dims)`` axes, of the given sizes where not ``None``."""
    actual = tuple(t.shape)
    if len(actual) != len(dims) or any(s is not None and s != a for s, a in zip(sizes, actual)):
        raise ValueError(f"{name} must have shape {layout(dims, sizes)}, got {actual}{context}")


def device(name: str, t: torch.Tensor, expected: torch.device, owner: str) -> None:
    if t.device != expected:
        raise ValueError(f"{name} is on {t.device} but {owner} is on {expected}: move it with "
                         f"{name}.to({str(expected)!r})")


def activation(name: str, t, dims: tuple[str, ...], sizes: tuple, on: torch.device,
               context: str = "") -> torch.Tensor:
    """An input signal: a floating-point tensor of shape ``dims`` on the layer's device."""
    tensor(name, t)
    if t.dtype not in FLOATING:
        raise TypeError(f"{name} must be a floating-point tensor ({_FLOATING_NAMES}), got "
                        f"{t.dtype}: the layer computes in float32 and returns {name}'s dtype, "
                        f"which cannot hold the convolution of an integer, boolean or complex "
                        f"signal; cast it first (e.g. {name}.float())")
    shape(name, t, dims, sizes, context)
    device(name, t, on, "the layer")
    return t


def same_shapes(names: tuple[str, ...], tensors: tuple[torch.Tensor, ...],
                dims: tuple[str, ...]) -> None:
    """Tensors that must share one shape (``q``, ``k`` and ``v``)."""
    shapes = [tuple(t.shape) for t in tensors]
    if any(s != shapes[0] for s in shapes):
        given = ", ".join(f"{n} {s}" for n, s in zip(names, shapes))
        raise ValueError(f"{', '.join(names[:-1])} and {names[-1]} must have the same shape "
                         f"{layout(dims, (None,) * len(dims))}, got {given}")


def state(name: str, t, dims: tuple[str, ...], sizes: tuple, dtype: torch.dtype,
          on: torch.device, context: str = "", owner: str = "the layer") -> torch.Tensor:
    """A recurrence state updated in place: ``dtype``, shape ``dims``, on ``on``, contiguous
    (the fused CUDA step reads and writes it through its raw pointer)."""
    tensor(name, t)
    if t.dtype != dtype:
        raise TypeError(f"{name} must be {str(dtype).removeprefix('torch.')} (the layer's state "
                        f"dtype; see init_state), got {t.dtype}: a state in another dtype "
                        f"would round or truncate what it carries at every step")
    shape(name, t, dims, sizes, context)
    device(name, t, on, owner)
    if not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous (it is updated in place), got strides "
                         f"{t.stride()}; pass a contiguous state (e.g. from init_state)")
    return t


# ---------------------------------------------------------------------------- decode steps
def modal_step(u_t, x, channels: int, tail: tuple[int, int], dtype: torch.dtype,
               on: torch.device) -> None:
    """`ModalRecurrence.step`: ``u_t`` ``(B, C)``, ``x`` ``(B, C, modes, 2)``; ``tail`` is
    ``(modes, 2)``.

    The hot path: one boolean expression on metadata (no allocation, no sync, about 1 us of
    Python); the detailed diagnosis runs only when it fails. ``u_t.shape + (modes, 2)`` equal
    to the state's shape makes ``u_t`` two-dimensional with the state's batch and channels.
    """
    try:
        us = u_t.shape
        if (us + tail == x.shape and us[1] == channels and x.dtype == dtype
                and u_t.dtype in FLOATING and u_t.device == on and x.device == on
                and x.is_contiguous()):
            return
    except (AttributeError, TypeError):
        pass
    modes = tail[0]
    activation("u_t", u_t, ("batch", "channels"), (None, channels), on)
    state("state", x, ("batch", "channels", "modes", "2"), (u_t.shape[0], channels, modes, 2),
          dtype, on, f" (u_t has shape {tuple(u_t.shape)})", "the layer and u_t")
    raise AssertionError("unreachable: the step's fast check and its diagnosis disagree")


def headwise_step(q_t, k_t, v_t, x, heads: int, modes: int, dtype: torch.dtype,
                  on: torch.device) -> None:
    """`HeadwiseModalRecurrence.step`: ``q_t, k_t, v_t`` ``(B, H, N)``, ``x``
    ``(B, H, modes, N, N, 2)``."""
    dims = ("batch", "heads", "head_dim")
    for name, t in (("q_t", q_t), ("k_t", k_t), ("v_t", v_t)):
        activation(name, t, dims, (None, heads, None), on)
    same_shapes(("q_t", "k_t", "v_t"), (q_t, k_t, v_t), dims)
    b, _, n = k_t.shape
    state("state", x, ("batch", "heads", "modes", "head_dim", "head_dim", "2"),
          (b, heads, modes, n, n, 2), dtype, on, f" (k_t has shape {tuple(k_t.shape)})",
          "the layer and q_t, k_t, v_t")
