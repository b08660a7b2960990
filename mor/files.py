"""Reading long filters from the files models are saved in.

Supported: ``.npy``; ``.npz`` (a named array); ``.safetensors``; torch state dicts (``.pt``,
``.pth``, ``.bin``, ``.ckpt``; needs the ``torch`` extra). In ``.npz``, safetensors and state
dicts a ``key`` selects the tensor; a glob (``"layers.*.filter"``) selects several, which are
stacked in sorted key order into a leading "layer" axis. Every tensor must be a real array of
shape ``(..., L)``.
"""

from __future__ import annotations

import fnmatch
import os
import re
import zipfile
from pathlib import Path

import numpy as np

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def read_filters(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Read long-convolution filters from a model file, as float64 of shape ``(..., L)``.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npy``, ``.npz``, ``.safetensors`` or torch state-dict file (``.pt``, ``.pth``,
        ``.bin``, ``.ckpt``; the latter need the ``torch`` extra and are read with
        ``weights_only=True``; a checkpoint's ``"state_dict"`` entry is used where present).
    key : str, optional
        The array's name, or a glob (`fnmatch` syntax, e.g. ``"layers.*.filter"``) matching
        several arrays of one shape, stacked along a new leading (layer) axis in sorted name
        order. Optional for ``.npy`` (which takes none) and for files holding a single array
        or an array named ``filters``.

    Returns
    -------
    ndarray, shape (..., L)
        The filters, float64, last axis the taps; one more leading axis where ``key`` matched
        several arrays.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        For an unknown suffix, a missing key (the available ones are listed), a key given for
        a ``.npy`` file, arrays of different shapes under one glob, a non-real or 0-d array,
        or a corrupt file.
    ImportError
        For a torch state dict without torch installed.

    See Also
    --------
    mor.distill : Distil the filters read, model-wide.

    mor.hankel_singular_values : Their Hankel spectra.

    Notes
    -----
    Names are sorted naturally, numbers by value: ``"layers.2.filter"`` comes before
    ``"layers.10.filter"``, as a model's layers do. Nothing is
    unpickled (``allow_pickle=False``; torch files with ``weights_only=True``).

    Examples
    --------
    >>> import pathlib
    >>> import tempfile
    >>> import numpy as np
    >>> import mor
    >>> rng = np.random.default_rng(0)
    >>> arrays = {f"layers.{i}.filter": rng.standard_normal((4, 128)) for i in range(3)}
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder) / "model.npz"
    ...     np.savez(path, **arrays, **{"layers.0.bias": np.zeros(4)})
    ...     filters = mor.read_filters(path, key="layers.*.filter")
    ...     second = mor.read_filters(path, key="layers.1.filter")
    ...     mor.read_filters(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: ...model.npz: holds 4 arrays; pass a key (one of ['layers.0.bias', ...])
    >>> filters.shape, filters.dtype
    ((3, 4, 128), dtype('float64'))
    >>> print(np.array_equal(filters[1], second))
    True
    """
    return np.asarray(open_filters(path, key), dtype=np.float64)


def open_filters(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """`read_filters` without the conversion to float64: the array as stored, a ``.npy`` file
    memory-mapped (read-only), so that `mor distill` reads each chunk of a model as it comes
    to it (2,048 filters of 2^20 float32 taps are 8 GiB on disk and 17 GiB as float64)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            if key is not None:
                raise ValueError(f"{path}: a .npy file holds one array; do not pass a key")
            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
            except ValueError as exc:
                raise ValueError(f"{path}: not a readable .npy file ({exc})") from exc
            return _checked(array, path, "the array")
        if suffix == ".npz":
            if not zipfile.is_zipfile(path):
                raise ValueError(f"{path}: not a readable .npz file (not a zip archive)")
            with np.load(path, allow_pickle=False) as data:
                names = _select(list(data.files), key, path)
                arrays = {name: data[name] for name in names}
        elif suffix == ".safetensors":  # imported here: `import mor` stays light
            from safetensors.numpy import load_file

            tensors = load_file(path)
            arrays = {name: tensors[name] for name in _select(list(tensors), key, path)}
        elif suffix in TORCH_SUFFIXES:
            arrays = _torch_arrays(path, key)
        else:
            raise ValueError(f"{path}: unknown filter file type {suffix!r} (use .npy, .npz, "
                             f".safetensors or a torch state dict {TORCH_SUFFIXES})")
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable {suffix} file ({exc})") from exc
    except Exception as exc:  # safetensors and torch raise their own types for corrupt files
        if isinstance(exc, (ValueError, ImportError, FileNotFoundError)):
            raise
        raise ValueError(f"{path}: not a readable {suffix} file ({type(exc).__name__}: "
                         f"{exc})") from exc
    return _stack(arrays, path)


def _select(names: list[str], key: str | None, path: Path) -> list[str]:
    if key is None:
        if len(names) == 1:
            return names
        if "filters" in names:
            return ["filters"]
        raise ValueError(f"{path}: holds {len(names)} arrays; pass a key (one of "
                         f"{sorted(names)[:10]}{' ...' if len(names) > 10 else ''})")
    chosen = sorted((n for n in names if fnmatch.fnmatchcase(n, key)), key=_natural)
    if not chosen:
        raise ValueError(f"{path}: no array matches key {key!r}; available: "
                         f"{sorted(names)[:10]}{' ...' if len(names) > 10 else ''}")
    return chosen


def _natural(name: str) -> list:
    """Sort key: the runs of digits of ``name`` by value (``layers.2`` before ``layers.10``)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in re.split(r"(\d+)", name)]


def _torch_arrays(path: Path, key: str | None) -> dict[str, np.ndarray]:
    try:  # torch is an optional extra (`mor[torch]`), needed only for state dicts
        import torch
    except ImportError as exc:
        raise ImportError("reading torch state dicts needs torch: pip install 'mor[torch]'") \
            from exc
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"],
                                                                       dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict (got {type(state).__name__})")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    out = {}
    for name in _select(list(tensors), key, path):
        tensor = tensors[name].detach().cpu()
        if tensor.dtype == torch.bfloat16:  # NumPy has no bfloat16; float32 holds it exactly
            tensor = tensor.to(torch.float32)
        out[name] = tensor.numpy()  # its own dtype: complex and bool are refused as elsewhere
    return out


def _checked(array: np.ndarray, path: Path, name: str) -> np.ndarray:
    if array.ndim == 0 or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ValueError(f"{path}: {name} must be a real array of shape (..., L), got dtype "
                         f"{array.dtype} and shape {array.shape}")
    return array


def _stack(arrays: dict[str, np.ndarray], path: Path) -> np.ndarray:
    checked = {name: _checked(a, path, repr(name)) for name, a in arrays.items()}
    if len(checked) == 1:
        return next(iter(checked.values()))
    shapes = {name: a.shape for name, a in checked.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"{path}: the selected arrays differ in shape: {shapes}")
    return np.stack(list(checked.values()))
