"""The byte corpus of the end-to-end study: this machine's Python standard library sources.

Every ``.py`` file of the standard library (test suites and ``site-packages`` left out), in
sorted path order; every 20th file goes to the held-out split, the rest to training. The bytes
are saved once, LZMA-compressed, in ``data/corpus.npz`` with the Python version and the file
list's SHA-256, so that the GPU machine (another Python) and this one read the same bytes.

Run ``python benchmarks/e2e/corpus.py`` to (re)build it; `load` reads it.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import sys
import sysconfig
from pathlib import Path

import numpy as np

PATH = Path(__file__).resolve().parent / "data" / "corpus.npz"
HELD_OUT_EVERY = 20
_SKIP = {"test", "tests", "idle_test", "site-packages"}


def build(path: Path = PATH) -> None:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(f for f in root.rglob("*.py") if not _SKIP & set(f.relative_to(root).parts))
    train, held_out = io.BytesIO(), io.BytesIO()
    for i, f in enumerate(files):
        (held_out if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 else train).write(f.read_bytes())
    names = "\n".join(str(f.relative_to(root)) for f in files).encode()
    np.savez(path, train=np.frombuffer(lzma.compress(train.getvalue()), np.uint8),
             held_out=np.frombuffer(lzma.compress(held_out.getvalue()), np.uint8),
             python=sys.version.split()[0], files_sha256=hashlib.sha256(names).hexdigest())
    print(f"{len(files)} files: {train.tell()} training bytes, {held_out.tell()} held-out bytes "
          f"-> {path} ({path.stat().st_size / 1e6:.1f} MB)")


def load(path: Path = PATH) -> tuple[np.ndarray, np.ndarray]:
    """The training and held-out bytes as ``uint8`` arrays."""
    with np.load(path) as z:
        return tuple(np.frombuffer(lzma.decompress(z[k].tobytes()), np.uint8)
                     for k in ("train", "held_out"))


if __name__ == "__main__":
    build()
