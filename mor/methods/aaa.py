r"""AAA rational approximation on the unit circle, with real (conjugate-symmetric) models.

Samples: ``F_j = H(e^{i w_j})``, ``w_j = 2 pi j / M``, from the FFT of the taps zero-padded to
``M = next_fast_len(max(4 L, 256, 8 order))`` points (``samples=`` overrides it, at least
``4 order + 4``). Fewer were measured and not taken: on 64 trained filters (``L = 2048``,
order 32) ``M = 2 L`` reflected 68 poles and ``M = L`` 280, against 11 at ``4 L``, for a small
saving (the greedy loop is not the larger cost of a reduction). They are the frequency
response of the finite filter: a rational model fitted to them approximates the ``L`` taps
followed by zeros (the zero-padded, not a periodic, response); the taps are what matter, and
the residues are refitted on them in the end.

Greedy loop (Nakatsukasa, Sete and Trefethen's AAA), kept real: support points enter in
conjugate pairs ``(z_k, conj z_k)`` with weights ``(w_k, conj w_k)`` (``z = 1`` and ``z = -1``
alone, with real weights), so ``r(conj z) = conj r(z)``. The weights minimise
``sum_j |F_j D(z_j) - N(z_j)|`` over the samples of the upper half circle, with the real
parameters ``(Re w_k, Im w_k)`` of unit norm: the last right singular vector of a real
Loewner matrix. Each step adds the pair where the error is largest, until the barycentric
form has ``order + 1`` support points (``order`` poles); an odd count ends with ``z = 1`` or
``z = -1``, whichever has the larger error. The loop runs in a Numba kernel batched over
filters (`mor.methods._aaa_kernels.aaa_greedy`: an updated factorisation of the Loewner matrix,
``O(M k)`` per step for ``k`` weights instead of an SVD of the ``M x k`` matrix);
`aaa_greedy_reference` is its NumPy reference, one SVD per step.

Poles are the finite eigenvalues of the pencil ``([[0, w^T], [1, diag(z)]], diag(0, 1, ...))``.
Froissart doublets (poles whose barycentric residue is below ``1e-13 max|F|``) are removed;
poles on or outside the circle are reflected or dropped (`mor.methods.prony`), and the
residues are refitted by least squares (`mor.fitting.least_squares`) on the zero-padded filter over
all time: the ``L`` taps and the model's tail after them (``tail_weight = 1``, the default; by
Parseval the ``L^2`` error on the circle, the function the samples come from). With the taps
alone (``tail_weight=0``) a pole near the circle that the samples put there keeps any residue
that helps the taps: on 16 trained filters at order 32 the worst relative H-infinity error was
12.9 (0.26 with the tail), on two ``firwin`` designs at order 8 the median 78 (1.24), for
relative l2 errors within 0.1% of each other.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.linalg
import scipy.linalg.lapack

from mor.methods._aaa_kernels import aaa_greedy, real_points
from mor.methods.base import PoleMethod, register

#: A pole is a Froissart doublet (dropped) where its residue is below this, relative to max |f|.
FROISSART_RTOL = 1e-13
#: Poles whose imaginary part is below this (relative, at least absolute) are made real.
REAL_RTOL = 1e-10
_SQRT2 = np.sqrt(2.0)
_dggev = scipy.linalg.lapack.dggev


@register
class AAAFamily(PoleMethod):
    """AAA poles with least-squares residues; see the module notes."""

    name = "aaa"

    @classmethod
    def from_fir(cls, h: np.ndarray, max_order: int, *, unstable: str = "reflect",
                 samples: int | None = None, tail_weight: float = 1.0) -> "AAAFamily":
        """AAA models of flat FIR filters ``h`` ``(F, L)`` up to ``max_order``.

        Parameters
        ----------
        unstable : {"reflect", "drop", "keep"}
            What to do with poles on or outside the unit circle (counted in
            ``info["poles_touched"]``; with ``"keep"`` `mor.reduce` fails the filter unless
            ``allow_unstable``).
        samples : int, optional
            Points on the unit circle (default ``next_fast_len(max(4 L, 256, 8 max_order))``, at
            least ``4 max_order + 4``).
        tail_weight : float
            Weight of the model's tail after lag ``L`` in the residue fit (``1``: the taps
            followed by zeros over all time; ``0``: the taps alone).
        """
        m = scipy.fft.next_fast_len(max(4 * h.shape[-1], 256, 8 * max_order))
        if samples is not None:
            m = int(samples)
            if m < 4 * max_order + 4:
                raise ValueError(f"AAA needs at least {4 * max_order + 4} samples, got {m}")
        values = scipy.fft.fft(h, n=m, axis=-1)[:, : m // 2 + 1]
        z = np.exp(2j * np.pi * np.arange(m // 2 + 1) / m)

        def find_poles(order, rows):
            out = np.full((rows.size, order), np.nan, dtype=np.complex128)
            support, weights, counts = aaa_greedy(z, values[rows], order)
            for r, i in enumerate(rows):
                p = aaa_poles(z, values[i], support[r, : counts[r]], weights[r])
                out[r, : p.size] = p
            return out, {}

        return cls(h, max_order, unstable, find_poles, tail_weight=tail_weight)


def aaa_greedy_reference(z: np.ndarray, f: np.ndarray, order: int
                         ) -> tuple[np.ndarray, np.ndarray]:
    """AAA's greedy loop for samples ``f`` at the upper-half-circle points ``z`` (``z[0] = 1``;
    ``z[-1] = -1`` when the grid includes it), one SVD of the real Loewner matrix per step.

    The NumPy reference of `mor.methods._aaa_kernels.aaa_greedy`. Returns the support indices in the
    order chosen and the unit real weight parameters (one per self-conjugate point, the real
    and imaginary parts of ``w`` for a pair); both empty for a zero filter or ``order = 0``.
    """
    if order == 0 or np.abs(f).max(initial=0.0) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    real_point = real_points(z)
    support: list[int] = []
    free = np.ones(z.size, dtype=bool)
    approx = np.full(f.shape, f.mean())
    count = 0  # support points with conjugates counted: order + 1 wanted
    while count < order + 1:
        err = np.where(free, np.abs(f - approx), -1.0)
        need = order + 1 - count
        # pairs while two or more points are wanted; a self-conjugate point (z = +-1) last
        candidates = np.flatnonzero(free & (real_point if need == 1 else ~real_point))
        if candidates.size == 0:
            break
        j = candidates[np.argmax(err[candidates])]
        support.append(j)
        free[j] = False
        count += 1 if real_point[j] else 2
        weights = _weights(z, f, support, free, real_point)
        approx = np.where(free, _evaluate(z, f, support, weights, real_point), f)
    return np.array(support, dtype=np.int64), _weights(z, f, support, free, real_point)


def aaa_poles(z: np.ndarray, f: np.ndarray, support: np.ndarray, weights: np.ndarray
              ) -> np.ndarray:
    """The conjugate-closed poles of the barycentric form with the given support and weights
    (from `aaa_greedy_reference` or `mor.methods._aaa_kernels.aaa_greedy`), Froissart doublets
    removed: the finite eigenvalues of the pencil
    ``([[0, w^T], [1, diag(z)]], diag(0, 1, ..., 1))`` whose barycentric residue
    ``N(p) / D'(p)`` is at least ``FROISSART_RTOL max |f|``.

    The pencil is solved in real form (LAPACK ``dggev``): the unitary similarity
    ``Q = [[1, -i], [1, i]] / sqrt(2)`` on the rows and columns of each conjugate pair
    ``(z, conj z)`` turns its block into ``[[Re z, Im z], [-Im z, Re z]]``, its weights into
    ``sqrt(2) (Re w, Im w)`` and its ones into ``(sqrt(2), 0)``; the eigenvalues are the same and
    come in exact conjugate pairs."""
    if support.size == 0:
        return np.zeros(0, dtype=np.complex128)
    real = real_points(z)[support]
    sizes = np.where(real, 1, 2)
    first = np.cumsum(sizes) - sizes  # each support point's first weight parameter
    n = int(sizes.sum())
    zj, fj = z[support], f[support]
    a = np.zeros((n + 1, n + 1))
    one, two = first[real] + 1, first[~real] + 1  # pencil rows and columns
    a[0, one], a[one, 0], a[one, one] = weights[first[real]], 1.0, zj[real].real
    zp, re_w, im_w = zj[~real], weights[first[~real]], weights[first[~real] + 1]
    a[0, two], a[0, two + 1], a[two, 0] = _SQRT2 * re_w, _SQRT2 * im_w, _SQRT2
    a[two, two] = a[two + 1, two + 1] = zp.real
    a[two, two + 1], a[two + 1, two] = zp.imag, -zp.imag
    b = np.eye(n + 1)
    b[0, 0] = 0.0
    alphar, alphai, beta, _, _, _, info = _dggev(a, b, compute_vl=0, compute_vr=0,
                                                  overwrite_a=1, overwrite_b=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"dggev failed on the AAA pencil (info {info})")
    with np.errstate(divide="ignore", invalid="ignore"):
        poles = (alphar + 1j * alphai) / beta
    poles = poles[np.isfinite(poles)]
    # Froissart doublets: a tiny barycentric residue N(p) / D'(p)
    w = re_w + 1j * im_w
    zs = np.concatenate([zj[real], zp, np.conj(zp)])
    fs = np.concatenate([fj[real].real, fj[~real], np.conj(fj[~real])])
    ws = np.concatenate([weights[first[real]], w, np.conj(w)])
    with np.errstate(divide="ignore", invalid="ignore"):  # a pole on a support point of
        cauchy = 1.0 / (poles[:, None] - zs[None, :])  # weight 0 is no pole: NaN, dropped
        numer = cauchy @ (ws * fs)
        dprime = -((cauchy * cauchy) @ ws)
        poles = poles[np.abs(numer / dprime) > FROISSART_RTOL * np.abs(f).max()]
    return _conjugate_closed(poles)


def _expand(z, f, support, weights, real_point):
    """All support points, values and weights (conjugates included)."""
    zs, fs, ws = [], [], []
    pos = 0
    for j in support:
        if real_point[j]:
            zs.append(z[j]), fs.append(f[j].real), ws.append(weights[pos])
            pos += 1
        else:
            w = weights[pos] + 1j * weights[pos + 1]
            zs += [z[j], np.conj(z[j])]
            fs += [f[j], np.conj(f[j])]
            ws += [w, np.conj(w)]
            pos += 2
    return np.array(zs), np.array(fs), np.array(ws)


def _columns(z, f, support, real_point, rows):
    """Complex Loewner columns for the real weight parameters, at the samples ``rows``."""
    cols = []
    for j in support:
        c1 = (f[rows] - f[j]) / (z[rows] - z[j])
        if real_point[j]:
            cols.append(c1)
        else:
            c2 = (f[rows] - np.conj(f[j])) / (z[rows] - np.conj(z[j]))
            cols += [c1 + c2, 1j * (c1 - c2)]
    return np.stack(cols, axis=1)


def _weights(z, f, support, free, real_point):
    rows = np.flatnonzero(free)
    loewner = _columns(z, f, support, real_point, rows)
    real = np.concatenate([loewner.real, loewner.imag])
    return np.linalg.svd(real, full_matrices=False)[2][-1]


def _evaluate(z, f, support, weights, real_point):
    zs, fs, ws = _expand(z, f, support, weights, real_point)
    with np.errstate(divide="ignore", invalid="ignore"):
        cauchy = 1.0 / (z[:, None] - zs[None, :])
        return (cauchy @ (ws * fs)) / (cauchy @ ws)


def _conjugate_closed(poles: np.ndarray) -> np.ndarray:
    """Exact conjugate pairs and real poles from numerically symmetric ones, as many as given.

    Poles within ``1e-10`` (relative) of the real axis are real; when the two half planes
    still hold different numbers of poles (an ill-conditioned real pole pushed off the axis
    has no conjugate partner), the surplus side's poles nearest the axis are taken as real
    too, so that the count is kept.
    """
    near_real = np.abs(poles.imag) <= REAL_RTOL * np.maximum(np.abs(poles), 1.0)
    upper = poles[~near_real & (poles.imag > 0)]
    lower = poles[~near_real & (poles.imag < 0)]
    upper, lower = upper[np.argsort(-upper.imag)], lower[np.argsort(lower.imag)]
    pairs = min(upper.size, lower.size)
    real = np.concatenate([poles[near_real], upper[pairs:], lower[pairs:]]).real
    return np.concatenate([upper[:pairs], np.conj(upper[:pairs]), real])
