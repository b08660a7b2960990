"""Frequency responses on the unit circle and their peaks (H-infinity norms).

The peak of ``|E(e^{iw})|`` for ``E = H_fir - H_model`` (either part may be absent) is found in
three stages, batched over filters:

1. an exact uniform grid ``w_j = 2 pi j / M`` on ``[0, pi]`` (real systems: ``|E|`` is even):
   the FIR part by a zero-padded real FFT and the model part by the FFT of its *periodized*
   impulse response ``p[r] = sum_q h_hat[r + qM]``, which in modal form is again a modal
   response with residues ``R / (1 - lambda^M)``: exact, with no truncation of the model's tail
   (a dense system from one decomposition of its ``A``: modal where its eigenvectors are well
   conditioned, else its Schur form at each frequency, `DenseResponse`);
2. candidate brackets: the largest local maxima of the grid, and every pole that is sharp on
   the scale of the grid (``1 - |lambda| < 4 * 2 pi / M``), sampled along the circle its
   resonance traces;
3. golden-section search in every bracket on the exact response (Horner's rule for the FIR
   part, the pole-residue sum for the model).
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.linalg

from mor._numerics.golden import golden_max
from mor._numerics.kernels import fir_dtft, grid_maxima, impulse_compact
from mor._numerics.parallel import worker_threads


def grid_size(size: int) -> int:
    """Default grid size ``M``: ``4 * size`` (4 points per FIR bandwidth) and at least 4096."""
    return scipy.fft.next_fast_len(max(4 * size, 4096), real=True)


def modal_grid_response(poles: np.ndarray, residues: np.ndarray, direct: np.ndarray,
                        m: int) -> np.ndarray:
    """Exact ``H_hat(e^{2 pi i j / M})`` for ``j = 0..M/2`` of a compact modal batch ``(F, k)``.

    The recurrence of `impulse_compact` stops each mode below the smallest normal float64
    (an absolute error below ``k * 2.2e-308``; subnormal arithmetic is several times slower),
    and a real pole's ``lambda^M`` is taken in real arithmetic (the complex power of a
    negative number has an imaginary part of rounding, ``1e-129`` was seen, which would decay
    through the subnormal numbers).
    """
    with np.errstate(all="ignore"):
        folded = residues / (1.0 - np.where(poles.imag == 0, poles.real**m, poles**m))
    folded[residues == 0] = 0.0
    p = impulse_compact(poles, folded, direct, m + 1, floor=np.finfo(np.float64).tiny)
    p[:, 0] += p[:, m]
    return scipy.fft.rfft(p[:, :m], axis=-1, workers=worker_threads())


def modal_response_at(poles: np.ndarray, residues: np.ndarray, direct: np.ndarray,
                      w: np.ndarray) -> np.ndarray:
    """``H_hat(e^{iw})`` of compact modal systems ``(F, k)`` at frequencies ``(F, K)``.

    A pair mode contributes ``R/2 / (z - lambda) + conj(R)/2 / (z - conj(lambda))``, a real mode
    ``R / (z - lambda)`` (its residue is real). The pair is summed over its common denominator,
    ``(Re(R) z - Re(R conj(lambda))) / ((z - lambda)(z - conj(lambda)))``: the two fractions
    would cancel to rounding where ``Im lambda`` is tiny and ``R`` huge (a near-defective
    pair, whose response lies in ``Im(R) Im(lambda)``), the numerator holds that product
    exactly, and the factored denominator keeps resonances accurate.
    """
    z = np.exp(1j * w)[:, :, None]
    lam = poles[:, None, :]
    res = residues[:, None, :]
    pair = lam.imag != 0
    # |e^{iw} - lambda| >= 1 - |lambda| on the circle: where rounding makes the computed
    # distance smaller (a pole within an ulp or two of the circle, at its own angle; even 0),
    # its floor keeps the term finite and no larger than it can be
    floor = np.where(np.abs(lam) < 1.0, 1.0 - np.abs(lam), 0.0)

    def inverse(gap):  # 1 / gap, its modulus at most 1 / floor
        size = np.abs(gap)
        unit = np.where(size > 0, np.conj(gap) / np.where(size > 0, size, 1.0), 1.0)
        return unit / np.maximum(size, floor)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        numerator = np.where(pair, res.real * z - (res.real * lam.real + res.imag * lam.imag),
                             res.real)
        terms = numerator * inverse(z - lam) * np.where(pair, inverse(z - np.conj(lam)), 1.0)
    terms = np.where(res == 0, 0.0, terms)
    return direct[:, None] + terms.sum(axis=-1)


class FirResponse:
    """Frequency response of FIR filters ``(F, L)``."""

    def __init__(self, h: np.ndarray):
        self.h, self.size, self.count = h, h.shape[-1], h.shape[0]

    def take(self, rows: np.ndarray) -> "FirResponse":
        return FirResponse(self.h[rows])

    def grid(self, m: int) -> np.ndarray:
        return scipy.fft.rfft(self.h, n=m, axis=-1, workers=worker_threads())

    def at(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        return fir_dtft(self.h, rows, w)

    def resonances(self):
        return None


class ModalResponse:
    """Frequency response of compact modal systems ``(poles, residues, direct)``, ``(F, k)``."""

    def __init__(self, poles: np.ndarray, residues: np.ndarray, direct: np.ndarray):
        self.parts = (poles, residues, direct)
        self.size, self.count = 32 * poles.shape[-1], poles.shape[0]

    def grid(self, m: int) -> np.ndarray:
        return modal_grid_response(*self.parts, m)

    def at(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        poles, residues, direct = self.parts
        return modal_response_at(poles[rows], residues[rows], direct[rows], w[:, None])[:, 0]

    def resonances(self):
        poles, residues, _ = self.parts
        live = residues != 0
        with np.errstate(divide="ignore", invalid="ignore"):
            height = np.where(live, np.abs(residues) / (1.0 - np.abs(poles)), -np.inf)
        return poles, height, ((np.abs(poles) >= 1.0) & live).any(axis=-1)


#: `DenseResponse` evaluates a system in modal form where the eigenvector matrix ``V`` of its
#: ``A`` has ``kappa_1(V) = ||V||_1 ||V^{-1}||_1`` at most this, else in complex Schur form.
#: The modal form is the exact response of a system within about ``kappa_1(V) n eps ||A||``
#: of the given one, the Schur form (like a dense solve per frequency) within about
#: ``n eps ||A||``: below this bound the modal form gives up at most three digits of that
#: backward error.
MODAL_COND_MAX = 1e3
#: Memory (bytes) of the complex work array of one block of frequencies in `schur_resolvent`.
SCHUR_BLOCK_BYTES = 1 << 25
#: Rows of ``T`` per block of `schur_resolvent`'s back substitution.
SCHUR_BLOCK_ROWS = 64


def schur_resolvent(t: np.ndarray, b: np.ndarray, c: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``c (z I - T)^{-1} b`` for upper-triangular ``T`` ``(G, n, n)``, ``b`` and ``c``
    ``(G, n)``, at the points ``z`` ``(G, K)``: a back substitution, ``O(n^2)`` per point.

    ``x = (zI - T)^{-1} b`` has ``x_i = (b_i + sum_{j>i} t_ij x_j) / (z - t_ii)``. The rows are
    taken in blocks of `SCHUR_BLOCK_ROWS` from the bottom up: what the components already
    solved add to a block is one matrix product for all points, and within the block each row
    is one division per point. A point on an eigenvalue gives ``inf`` or ``nan``.
    """
    n = b.shape[-1]
    x = np.zeros(b.shape[:1] + (n, z.shape[-1]), dtype=np.complex128)
    with np.errstate(all="ignore"):
        for stop in range(n, 0, -SCHUR_BLOCK_ROWS):
            start = max(stop - SCHUR_BLOCK_ROWS, 0)
            rhs = b[:, start:stop, None] + t[:, start:stop, stop:] @ x[:, stop:]
            for i in range(stop - 1, start - 1, -1):
                known = (t[:, i, None, i + 1:stop] @ x[:, i + 1:stop])[:, 0]
                x[:, i] = (rhs[:, i - start] + known) / (z - t[:, i, i, None])
        return (c[:, None, :] @ x)[:, 0]


class DenseResponse:
    r"""Frequency response ``D + C (zI - A)^{-1} B`` of dense systems (``A``: ``(F, n, n)``),
    from one decomposition of each ``A``, not a solve per frequency.

    Where the eigenvector matrix ``V`` of ``A = V Lambda V^{-1}`` is well conditioned
    (``kappa_1(V) <= MODAL_COND_MAX``; normal matrices have ``kappa_2(V) = 1``) the system is
    evaluated in modal form,

    .. math::

        H(z) = D + \sum_i \frac{(C V)_i (V^{-1} B)_i}{z - \lambda_i},

    as a `ModalResponse`: ``O(n)`` per frequency, and the grid from the FFT of the periodized
    impulse response. Elsewhere (non-normal or defective ``A``, such as the shift realisation
    of an FIR filter) it is evaluated in complex Schur form ``A = Z T Z^H``,
    ``H(z) = D + (C Z)(zI - T)^{-1}(Z^H B)``, by `schur_resolvent`: ``O(n^2)`` per frequency.

    Accuracy: the computed Schur form is exact for ``A + E`` with ``||E|| <= p(n) eps ||A||``
    and the triangular solve is backward stable, so the Schur form has the backward error of a
    dense solve per frequency; the computed eigendecomposition is exact for ``A + E V^{-1}``
    with ``||E|| <= p(n) eps ||A|| ||V||``, so the modal form's backward error is at most
    ``kappa(V)`` times larger (`MODAL_COND_MAX`). Both stay at rounding level.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray):
        poles, vectors = np.linalg.eig(a)
        inverse, cond = _inverse_and_condition(vectors)
        modal = cond <= MODAL_COND_MAX
        residues = (np.einsum("fi,fij->fj", c[modal], vectors[modal])
                    * np.einsum("fij,fj->fi", inverse[modal], b[modal]))
        rest, n = np.flatnonzero(~modal), a.shape[-1]
        schur = (np.empty((rest.size, n, n), dtype=np.complex128),  # T, Z^H B, C Z
                 np.empty((rest.size, n), dtype=np.complex128),
                 np.empty((rest.size, n), dtype=np.complex128))
        for j, i in enumerate(rest):
            schur[0][j], z = scipy.linalg.schur(a[i], output="complex")
            schur[1][j], schur[2][j] = z.conj().T @ b[i], c[i] @ z
        self._set(d, poles, modal, ModalResponse(*_compact(poles[modal], residues), d[modal]),
                  schur, None)

    def _set(self, d, poles, modal, modal_part, schur, grid):
        self.size, self.count = 32 * poles.shape[-1], d.shape[0]
        self.d, self.poles, self.modal = d, poles, modal
        self._modal, self._schur, self._grid = modal_part, schur, grid
        self._index = np.cumsum(modal) - 1, np.cumsum(~modal) - 1  # rows within each part

    def take(self, rows: np.ndarray) -> "DenseResponse":
        """The systems ``rows`` (indices) of the batch, with their decompositions and grid."""
        out = DenseResponse.__new__(DenseResponse)
        modal = self.modal[rows]
        parts = (x[self._index[0][rows[modal]]] for x in self._modal.parts)
        grid = None if self._grid is None else (self._grid[0], self._grid[1][rows])
        if grid is not None:
            grid[1].flags.writeable = False
        out._set(self.d[rows], self.poles[rows], modal, ModalResponse(*parts),
                 tuple(x[self._index[1][rows[~modal]]] for x in self._schur), grid)
        return out

    def grid(self, m: int) -> np.ndarray:
        """``H(e^{2 pi i j / M})`` for ``j = 0..M/2``, ``(F, M/2 + 1)``; kept (read-only) for the
        next call with the same ``M``."""
        if self._grid is None or self._grid[0] != m:
            out = np.empty((self.count, m // 2 + 1), dtype=np.complex128)
            out[self.modal] = self._modal.grid(m)
            rows = np.flatnonzero(~self.modal)
            if rows.size:
                z = np.exp(2j * np.pi * np.arange(m // 2 + 1) / m)
                n = self._schur[0].shape[-1]
                step = max(1, SCHUR_BLOCK_BYTES // (16 * rows.size * max(n, 1)))
                for s in range(0, z.size, step):
                    part = np.broadcast_to(z[s:s + step], (rows.size, z[s:s + step].size))
                    out[rows, s:s + step] = (self.d[rows, None]
                                             + schur_resolvent(*self._schur, part))
            out.flags.writeable = False
            self._grid = (m, out)
        return self._grid[1]

    def at(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        out = np.empty(rows.shape, dtype=np.complex128)
        modal = self.modal[rows]
        out[modal] = self._modal.at(self._index[0][rows[modal]], w[modal])
        if not modal.all():
            # the points of each system in a row of their own, padded (z = 0) to the longest
            local = self._index[1][rows[~modal]]
            which, group = np.unique(local, return_inverse=True)
            order = np.argsort(group, kind="stable")
            first = np.searchsorted(group[order], np.arange(which.size))
            slot = np.empty_like(group)
            slot[order] = np.arange(group.size) - first[group[order]]
            z = np.zeros((which.size, slot.max() + 1), dtype=np.complex128)
            z[group, slot] = np.exp(1j * w[~modal])
            t, b, c = (x[which] for x in self._schur)
            out[~modal] = (self.d[rows[~modal]]
                           + schur_resolvent(t, b, c, z)[group, slot])
        return out

    def resonances(self):
        poles = self.poles
        with np.errstate(divide="ignore"):
            height = 1.0 / np.abs(1.0 - np.abs(poles))
        return poles, height, (np.abs(poles) >= 1.0).any(axis=-1)


def _inverse_and_condition(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``V^{-1}`` and ``kappa_1(V) = ||V||_1 ||V^{-1}||_1`` per matrix of a batch ``(F, n, n)``
    (``inf`` where ``V`` is singular or its inverse overflows)."""
    try:
        inverse = np.linalg.inv(v)
    except np.linalg.LinAlgError:  # some V exactly singular: those get no inverse
        inverse = np.full_like(v, np.nan)
        for i, x in enumerate(v):
            try:
                inverse[i] = np.linalg.inv(x)
            except np.linalg.LinAlgError:
                pass
    with np.errstate(over="ignore", invalid="ignore"):
        cond = (np.abs(v).sum(axis=-2).max(axis=-1, initial=0.0)
                * np.abs(inverse).sum(axis=-2).max(axis=-1, initial=0.0))
    return inverse, np.where(np.isfinite(cond), cond, np.inf)


def _compact(poles: np.ndarray, residues: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The compact modal form ``(F, k)`` of the eigenvalues and residues of real systems: of a
    conjugate pair (LAPACK returns both members exactly conjugate) the member above the real
    axis with its residue doubled, a real pole with the real part of its residue."""
    keep = poles.imag >= 0
    residues = np.where(poles.imag > 0, 2 * residues, residues.real)
    order = np.argsort(~keep, axis=-1, kind="stable")
    width = int(keep.sum(axis=-1).max(initial=0))
    keep = np.take_along_axis(keep, order, axis=-1)[:, :width]
    poles = np.where(keep, np.take_along_axis(poles, order, axis=-1)[:, :width], 0)
    residues = np.where(keep, np.take_along_axis(residues, order, axis=-1)[:, :width], 0)
    return poles, residues


class Difference:
    """``first - second``, two responses of the same batch."""

    def __init__(self, first, second):
        self.first, self.second = first, second
        self.size, self.count = max(first.size, second.size), first.count

    def grid(self, m: int) -> np.ndarray:
        return self.first.grid(m) - self.second.grid(m)

    def at(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        return self.first.at(rows, w) - self.second.at(rows, w)

    def resonances(self):
        parts = [r for r in (self.first.resonances(), self.second.resonances()) if r is not None]
        if not parts:
            return None
        return (np.concatenate([p[0] for p in parts], axis=1),
                np.concatenate([p[1] for p in parts], axis=1),
                np.any([p[2] for p in parts], axis=0))


#: Samples per sharp resonance in `peak_magnitude`: the angles ``theta + delta tan(phi)`` for
#: ``phi`` equally spaced in ``[-RESONANCE_PHI, RESONANCE_PHI]``. Along them a pole's term
#: ``R / (z - lambda)`` runs at an even pace around the circle it traces (``delta = 1 - |lambda|``),
#: so that the largest of ``|E|`` on that circle lies between two neighbouring samples.
RESONANCE_SAMPLES = 13
RESONANCE_PHI = 1.5
#: Grid maxima whose parabolic estimate lies within this of the best one are all refined by
#: `peak_magnitude` (beyond its ``n_grid_candidates`` best), up to `GRID_MAX_CANDIDATES`.
GRID_CLOSE_RTOL = 1e-3
GRID_MAX_CANDIDATES = 64


def peak_magnitude(response, *, m: int | None = None, n_grid_candidates: int = 4,
                   iterations: int = 10, polish: int = 2, grid: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``max_w |E(e^{iw})|`` and its argument, per system of a batch response ``E``.

    Parameters
    ----------
    response : FirResponse, ModalResponse, DenseResponse or Difference
    m : int, optional
        Grid size; `grid_size` of the response by default.
    n_grid_candidates : int
        The largest local maxima of the grid that reach half the grid's maximum (a
        band-limited response cannot rise further between samples taken at 4 per bandwidth)
        refined per system, each in a bracket ``+-2 pi / M``, ranked by the vertex of the
        parabola through the maximum and its neighbours; every other maximum whose vertex
        lies within `GRID_CLOSE_RTOL` of the best is refined too (up to
        `GRID_MAX_CANDIDATES`): an error that is nearly equiripple has many.
    grid : ndarray, optional
        ``response.grid(m)``, where the caller has it already.
    iterations, polish : int
        Golden-section steps per bracket (each shrinks it by 0.618; 10 steps by ``8e-3``), then
        steps of successive parabolic interpolation (error falling like the cube of the
        spacing). Measured on 128 trained filters and their balanced truncations at orders 8
        and 32: the defaults agree with 30 golden steps to ``3e-10`` relative, with 12
        evaluations instead of the 22 that 20 golden steps (agreement ``1.3e-9``) take.

    Notes
    -----
    Every pole within ``4 * 2 pi / M`` of the circle (a resonance the grid does not resolve)
    is refined, not a few ranked by height: how high the error peaks there depends on the
    rest of the response as much as on the pole (a model whose poles rebuild a passband has
    many resonances of nearly the same height, any of which may carry the peak). The error is
    sampled at `RESONANCE_SAMPLES` angles ``theta + delta tan(phi)`` around the pole's angle
    ``theta`` (``delta = 1 - |lambda|``), on which the pole's term moves evenly around the
    circle it traces, and refined by golden section in ``phi`` between the neighbours of the
    largest sample.

    Returns
    -------
    peak, w_peak : arrays ``(F,)``
        The peak magnitude (``inf`` where a pole lies on or outside the circle) and the
        frequency in ``[0, pi]`` where it is attained.
    """
    n_filters = response.count
    if m is None:
        m = grid_size(response.size)
    step = 2 * np.pi / m
    res = response.resonances()
    unstable = np.zeros(n_filters, dtype=bool) if res is None else res[2]
    if grid is None:
        with np.errstate(all="ignore"):
            grid = response.grid(m)
    # the grid's peak and its local maxima worth refining, ranked by the vertex of the
    # parabola through each and its neighbours (a nearly equiripple error has many maxima
    # within less of each other than the grid misses their tops by)
    peak, grid_arg, top, count = grid_maxima(grid, unstable, n_grid_candidates,
                                             max(n_grid_candidates, GRID_MAX_CANDIDATES),
                                             GRID_CLOSE_RTOL)
    w_peak = grid_arg * step

    def evaluate(rows, w):
        with np.errstate(all="ignore"):
            return np.abs(response.at(rows, _fold(w)))

    def improve(rows, w, value):
        order = np.lexsort((value, rows))  # per filter, its best candidate comes last
        last = np.r_[rows[order][1:] != rows[order][:-1], True]
        best_rows, best = rows[order][last], order[last]
        better = value[best] > peak[best_rows]
        peak[best_rows[better]] = value[best][better]
        w_peak[best_rows[better]] = _fold(w[best][better])

    keep = np.arange(top.shape[1])[None, :] < count[:, None]
    rows, centre = np.nonzero(keep)[0], top[keep] * step
    if rows.size:
        # unclipped: |E| is even about 0 and pi (`evaluate` folds), so a maximum there is
        # an interior one of the bracket (a clipped bracket's end is never evaluated, and
        # an odd M has no grid point at pi)
        found_w, found = golden_max(lambda w: evaluate(rows, w), centre - step,
                                    centre + step, iterations, polish)
        improve(rows, found_w, found)
    # ... and every resonance sharper than the grid resolves (see the notes).
    if res is not None and res[0].shape[1]:
        poles, height, _ = res
        modulus = np.abs(poles)
        sharp = (1.0 - modulus < 4 * step) & (modulus < 1.0) & (height > -np.inf)
        sharp &= ~unstable[:, None]
        rows, cols = np.nonzero(sharp)
        if rows.size:
            theta = np.abs(np.angle(poles[rows, cols]))
            delta = 1.0 - modulus[rows, cols]
            phi = np.linspace(-RESONANCE_PHI, RESONANCE_PHI, RESONANCE_SAMPLES)
            angles = theta[:, None] + delta[:, None] * np.tan(phi)[None, :]
            samples = evaluate(np.repeat(rows, phi.size), angles.reshape(-1)).reshape(angles.shape)
            samples = np.where(np.isnan(samples), -np.inf, samples)
            k = samples.argmax(axis=1)
            improve(rows, angles[np.arange(rows.size), k], samples[np.arange(rows.size), k])
            lo = phi[np.maximum(k - 1, 0)]
            hi = phi[np.minimum(k + 1, phi.size - 1)]
            found_phi, found = golden_max(
                lambda x: evaluate(rows, theta + delta * np.tan(x)), lo, hi, iterations, polish)
            improve(rows, theta + delta * np.tan(found_phi), found)
    return peak, w_peak


def _fold(w: np.ndarray) -> np.ndarray:
    """Angles folded into ``[0, pi]`` (``|E|`` of a real system is even and ``2 pi``-periodic)."""
    return np.abs(np.mod(w + np.pi, 2 * np.pi) - np.pi)
