"""The versioned ``.npz`` file schema of modal banks, on plain arrays (`mor.ModalSSM.save`,
`mor.load`).

File schema, version 1 (a NumPy ``.npz`` archive, read with ``allow_pickle=False``):

==========================  ==============  ==================================================
key                         dtype, shape    meaning
==========================  ==============  ==================================================
``mor_format``              str, ()         ``"mor.ModalSSM"``
``mor_version``             int, ()         schema version (1)
``poles``                   complex, (…, m)  compact poles (one per conjugate pair or real pole)
``residues``                complex, (…, m)  compact residues: ``h[k] = Re sum R lambda^(k-1)``
``direct``                  float, (…)      direct term ``h[0]``
``info_json``               str, ()         JSON object of the scalar ``info`` entries
``info.<key>``              any, (…, …)     array-valued ``info`` entries (batch-shaped)
==========================  ==============  ==================================================

Padded modes have zero pole and residue. Files of another format, of a newer version, with
missing or ill-shaped arrays, or that are not ``.npz`` archives raise ``ValueError``.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from typing import Any

import numpy as np

FORMAT = "mor.ModalSSM"
VERSION = 1


def write_bank(path: str | os.PathLike, poles: np.ndarray, residues: np.ndarray,
               direct: np.ndarray, info: dict[str, Any]) -> None:
    """Write a compact bank ``(poles, residues, direct)`` and its ``info`` to ``path`` in the
    schema above."""
    arrays: dict[str, Any] = {"mor_format": np.array(FORMAT), "mor_version": np.array(VERSION),
                              "poles": poles, "residues": residues, "direct": direct}
    scalars = {}
    for key, value in info.items():
        if isinstance(value, np.ndarray):
            arrays[f"info.{key}"] = value.astype(str) if value.dtype == object else value
        else:
            scalars[key] = value.item() if isinstance(value, np.generic) else value
    arrays["info_json"] = np.array(json.dumps(scalars, default=_json_default))
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"info entry of type {type(obj).__name__} cannot be saved")


def read_bank(path: str | os.PathLike
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Read ``(poles, residues, direct, info)`` written by `write_bank`.

    Raises
    ------
    ValueError
        If ``path`` is not a mor ``ModalSSM`` file of a version this mor reads, or is corrupt.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, NotImplementedError,
            zlib.error) as exc:  # zipfile raises NotImplementedError for a corrupt header's
        # "version" or compression method, KeyError and BadZipFile for a broken directory
        raise ValueError(f"{os.fspath(path)!r} is not a readable .npz file: {exc}") from exc
    except RuntimeError as exc:  # zipfile's only one: a member flagged encrypted
        if not _has_encrypted_member(path):
            raise
        raise ValueError(f"{os.fspath(path)!r} is not a readable .npz file: {exc}") from exc
    if not isinstance(arrays, dict) or str(arrays.get("mor_format", "")) != FORMAT:
        raise ValueError(f"{os.fspath(path)!r} is not a mor ModalSSM file (no "
                         f"mor_format = {FORMAT!r})")
    version = int(arrays["mor_version"]) if "mor_version" in arrays else -1
    if version != VERSION:
        raise ValueError(f"{os.fspath(path)!r} has schema version {version}; this mor reads "
                         f"version {VERSION}")
    missing = [k for k in ("poles", "residues", "direct", "info_json") if k not in arrays]
    if missing:
        raise ValueError(f"{os.fspath(path)!r} is corrupt: missing {missing}")
    poles, residues, direct = arrays["poles"], arrays["residues"], arrays["direct"]
    if (poles.shape != residues.shape or poles.ndim < 1 or direct.shape != poles.shape[:-1]
            or not np.issubdtype(direct.dtype, np.floating)):
        raise ValueError(f"{os.fspath(path)!r} is corrupt: inconsistent shapes poles "
                         f"{poles.shape}, residues {residues.shape}, direct {direct.shape}")
    try:
        info = json.loads(str(arrays["info_json"]))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{os.fspath(path)!r} is corrupt: bad info_json ({exc})") from exc
    for key, value in arrays.items():
        if key.startswith("info."):
            info[key[5:]] = value.astype(object) if value.dtype.kind == "U" else value
    return poles, residues, direct, info


def _has_encrypted_member(path) -> bool:
    """Whether the zip archive at ``path`` flags a member encrypted (bit 0 of its flags)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(info.flag_bits & 0x1 for info in archive.infolist())
    except (OSError, zipfile.BadZipFile):
        return False
