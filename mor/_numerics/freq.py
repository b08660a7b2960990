"""Frequency responses on the unit circle and their peaks (H-infinity norms).

The peak of ``|E(e^{iw})|`` for ``E = H_fir - H_model`` (either part may be absent) is found in
three stages, batched over filters:

1. an exact uniform grid ``w_j = 2 pi j / M`` on ``[0, pi]`` (real systems: ``|E|`` is even):
   the FIR part by a zero-padded real FFT and the model part by the FFT of its *periodized*
   impulse response ``p[r] = sum_q h_hat[r + qM]``, which in modal form is again a modal
   response with residues ``R / (1 - lambda^M)``: exact, with no truncation of the model's tail;
2. candidate brackets: the largest local maxima of the grid, and the angles of the model's
   poles that are sharp on the scale of the grid (``1 - |lambda| < 4 * 2 pi / M``), ranked by
   the height ``|R| / (1 - |lambda|)`` of the resonance they make;
3. golden-section search in every bracket on the exact response (Horner's rule for the FIR
   part, the pole-residue sum for the model).
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from mor._numerics.golden import golden_max
from mor._numerics.kernels import fir_dtft, impulse_compact


def grid_size(size: int) -> int:
    """Default grid size ``M``: ``4 * size`` (4 points per FIR bandwidth) and at least 4096."""
    return scipy.fft.next_fast_len(max(4 * size, 4096), real=True)


def modal_grid_response(poles: np.ndarray, residues: np.ndarray, direct: np.ndarray,
                        m: int) -> np.ndarray:
    """Exact ``H_hat(e^{2 pi i j / M})`` for ``j = 0..M/2`` of a compact modal batch ``(F, k)``."""
    with np.errstate(all="ignore"):
        folded = residues / (1.0 - poles**m)
    folded[residues == 0] = 0.0
    p = impulse_compact(poles, folded, direct, m + 1)
    p[:, 0] += p[:, m]
    return scipy.fft.rfft(p[:, :m], axis=-1)


def modal_response_at(poles: np.ndarray, residues: np.ndarray, direct: np.ndarray,
                      w: np.ndarray) -> np.ndarray:
    """``H_hat(e^{iw})`` of compact modal systems ``(F, k)`` at frequencies ``(F, K)``.

    A pair mode contributes ``R/2 / (z - lambda) + conj(R)/2 / (z - conj(lambda))``, a real mode
    ``R / (z - lambda)`` (its residue is real).
    """
    z = np.exp(1j * w)[:, :, None]
    lam = poles[:, None, :]
    res = residues[:, None, :]
    pair = lam.imag != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(pair, 0.5 * res / (z - lam) + 0.5 * np.conj(res) / (z - np.conj(lam)),
                         res.real / (z - lam))
    terms = np.where(res == 0, 0.0, terms)
    return direct[:, None] + terms.sum(axis=-1)


class FirResponse:
    """Frequency response of FIR filters ``(F, L)``."""

    def __init__(self, h: np.ndarray):
        self.h, self.size, self.count = h, h.shape[-1], h.shape[0]

    def take(self, rows: np.ndarray) -> "FirResponse":
        return FirResponse(self.h[rows])

    def grid(self, m: int) -> np.ndarray:
        return scipy.fft.rfft(self.h, n=m, axis=-1)

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


class DenseResponse:
    """Frequency response ``D + C (zI - A)^{-1} B`` of dense systems (``A``: ``(F, n, n)``).

    The grid uses the periodized impulse response ``p[r] = C A^{r-1} (I - A^M)^{-1} B``.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray):
        self.parts = (a, b, c, d)
        self.size, self.count = 32 * a.shape[-1], a.shape[0]

    def take(self, rows: np.ndarray) -> "DenseResponse":
        return DenseResponse(*(x[rows] for x in self.parts))

    def grid(self, m: int) -> np.ndarray:
        a, b, c, d = self.parts
        n = a.shape[-1]
        power = np.linalg.matrix_power(a, m) if n else a
        x = np.linalg.solve(np.eye(n) - power, b[..., None])[..., 0] if n else b
        p = np.empty((a.shape[0], m))
        p[:, 0] = d
        for r in range(1, m + 1):
            val = np.einsum("fi,fi->f", c, x)
            if r < m:
                p[:, r] = val
            else:
                p[:, 0] += val
            x = np.einsum("fij,fj->fi", a, x)
        return scipy.fft.rfft(p, axis=-1)

    def at(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        a, b, c, d = (x[rows] for x in self.parts)
        mat = np.exp(1j * w)[:, None, None] * np.eye(a.shape[-1]) - a
        x = np.linalg.solve(mat, b[:, :, None].astype(complex))[..., 0]
        return d + np.einsum("ki,ki->k", c, x)

    def resonances(self):
        poles = np.linalg.eigvals(self.parts[0])
        with np.errstate(divide="ignore"):
            height = 1.0 / np.abs(1.0 - np.abs(poles))
        return poles, height, (np.abs(poles) >= 1.0).any(axis=-1)


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


def peak_magnitude(response, *, m: int | None = None, n_grid_candidates: int = 4,
                   n_pole_candidates: int = 6, iterations: int = 10, polish: int = 2
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``max_w |E(e^{iw})|`` and its argument, per system of a batch response ``E``.

    Parameters
    ----------
    response : FirResponse, ModalResponse, DenseResponse or Difference
    m : int, optional
        Grid size; `grid_size` of the response by default.
    n_grid_candidates, n_pole_candidates : int
        Brackets refined per system: the largest local maxima of the grid that reach half the
        grid's maximum (a band-limited response cannot rise further between samples taken at
        4 per bandwidth), each ``+-2 pi / M`` wide; and the resonances of the poles within
        ``4 * 2 pi / M`` of the circle, each ``+-8 (1 - |lambda|)`` around the pole's angle.
    iterations, polish : int
        Golden-section steps per bracket (each shrinks it by 0.618; 10 steps by ``8e-3``), then
        steps of successive parabolic interpolation (error falling like the cube of the
        spacing). Measured on 128 trained filters and their balanced truncations at orders 8
        and 32: the defaults agree with 30 golden steps to ``3e-10`` relative, with 12
        evaluations instead of the 22 that 20 golden steps (agreement ``1.3e-9``) take.

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
    with np.errstate(all="ignore"):
        mag = np.abs(response.grid(m))
    mag[unstable] = np.inf
    grid_arg = mag.argmax(axis=1)
    peak = mag[np.arange(n_filters), grid_arg]
    w_peak = grid_arg * step

    # Candidate brackets around local maxima of the grid (the ends are maxima of an even,
    # 2 pi-periodic function when they beat their one neighbour) ...
    padded = np.concatenate([mag[:, 1:2], mag, mag[:, -2:-1]], axis=1)
    is_max = (padded[:, 1:-1] >= padded[:, :-2]) & (padded[:, 1:-1] >= padded[:, 2:])
    score = np.where(is_max & (mag >= 0.5 * peak[:, None]), mag, -np.inf)
    n_grid = min(n_grid_candidates, score.shape[1])
    top = np.argpartition(-score, n_grid - 1, axis=1)[:, :n_grid]
    keep = np.take_along_axis(score, top, axis=1) > -np.inf
    rows = [np.nonzero(keep)[0]]
    centres = [top[keep] * step]
    widths = [np.full(rows[0].size, step)]
    # ... and around the sharpest resonances of the poles.
    if res is not None and n_pole_candidates > 0 and res[0].shape[1]:
        poles, height, _ = res
        modulus = np.abs(poles)
        height = np.where((1.0 - modulus < 4 * step) & (modulus < 1.0), height, -np.inf)
        n_pole = min(n_pole_candidates, poles.shape[1])
        top = np.argpartition(-height, n_pole - 1, axis=1)[:, :n_pole]
        keep = np.take_along_axis(height, top, axis=1) > -np.inf
        chosen = np.take_along_axis(poles, top, axis=1)[keep]
        rows.append(np.nonzero(keep)[0])
        centres.append(np.abs(np.angle(chosen)))
        # a resonance peaks within a few of its widths 1 - |lambda| of the pole's angle
        widths.append(np.minimum(step, 8 * (1.0 - np.abs(chosen))))
    rows, centre, width = (np.concatenate(x) for x in (rows, centres, widths))
    finite = ~unstable[rows]
    rows, centre, width = rows[finite], centre[finite], width[finite]
    if rows.size == 0:
        return peak, w_peak

    def evaluate(w):
        with np.errstate(all="ignore"):
            return np.abs(response.at(rows, w))

    refined_w, refined = golden_max(evaluate, np.clip(centre - width, 0.0, np.pi),
                                    np.clip(centre + width, 0.0, np.pi), iterations, polish)
    order = np.lexsort((refined, rows))  # per filter, its best candidate comes last
    last = np.r_[rows[order][1:] != rows[order][:-1], True]
    best_rows, best = rows[order][last], order[last]
    better = refined[best] > peak[best_rows]
    peak[best_rows[better]] = refined[best][better]
    w_peak[best_rows[better]] = refined_w[best][better]
    return peak, w_peak
