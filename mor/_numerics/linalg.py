"""Batched wrappers around LAPACK drivers chosen for accuracy.

``gesdd`` (NumPy's and SciPy's default SVD driver) can return inaccurate small singular values;
``gesvd`` is used wherever small singular values decide orders and bounds.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from mor._numerics.parallel import map_chunks, worker_threads


def svd_gesvd(a: np.ndarray, compute_uv: bool = True):
    """SVD of a stack ``(..., m, n)`` by LAPACK ``gesvd``; returns ``s`` or ``(u, s, vh)``."""
    batch = a.shape[:-2]
    flat = a.reshape((-1,) + a.shape[-2:])
    k = min(a.shape[-2:])
    s = np.empty((flat.shape[0], k))
    if compute_uv:
        u = np.empty((flat.shape[0], a.shape[-2], k), dtype=a.dtype)
        vh = np.empty((flat.shape[0], k, a.shape[-1]), dtype=a.dtype)
    for i, m in enumerate(flat):
        res = scipy.linalg.svd(m, full_matrices=False, compute_uv=compute_uv,
                               lapack_driver="gesvd", check_finite=False)
        if compute_uv:
            u[i], s[i], vh[i] = res
        else:
            s[i] = res
    s = s.reshape(batch + (k,))
    if not compute_uv:
        return s
    return u.reshape(batch + u.shape[1:]), s, vh.reshape(batch + vh.shape[1:])


#: `eig_batched` splits a stack over worker threads from this much work (matrices times
#: ``n^3``, about a millisecond of ``geev``) and at least `THREADED_EIG_MIN_COUNT` matrices.
THREADED_EIG_MIN_WORK = 100_000
THREADED_EIG_MIN_COUNT = 16


def eig_batched(a: np.ndarray):
    """``np.linalg.eig`` of a stack ``(..., n, n)``, the stack split over mor's worker threads.

    LAPACK's ``geev`` runs on each matrix alone and NumPy releases the GIL around it, so the
    parts run in parallel and give exactly what one call gives, dtype included (real arrays
    where every eigenvalue of the stack is real, as NumPy returns them).
    """
    flat = a.reshape((-1,) + a.shape[-2:])
    count, n = flat.shape[0], a.shape[-1]
    threads = worker_threads()
    if threads < 2 or count < THREADED_EIG_MIN_COUNT or count * n**3 < THREADED_EIG_MIN_WORK:
        return np.linalg.eig(a)
    step = -(-count // threads)
    parts: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def run(sl: slice) -> None:
        parts[sl.start] = np.linalg.eig(flat[sl])

    map_chunks(run, count, step)
    ordered = [parts[k] for k in sorted(parts)]
    lam = np.concatenate([p[0] for p in ordered])
    vec = np.concatenate([p[1] for p in ordered])
    return lam.reshape(a.shape[:-1]), vec.reshape(a.shape)
