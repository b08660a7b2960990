"""Batched wrappers around LAPACK drivers chosen for accuracy.

``gesdd`` (NumPy's and SciPy's default SVD driver) can return inaccurate small singular values;
``gesvd`` is used wherever small singular values decide orders and bounds.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg


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
