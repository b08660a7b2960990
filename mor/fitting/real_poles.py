r"""Real poles in ``(0, 1)`` chosen greedily from candidates: the start of real-pole fits.

Balanced truncation's poles are complex in general, so a model restricted to real poles (what
Vortex's Hyena-LI layer runs, ``h[t] = sum R exp(t log_pole)``) needs a start of its own. The
candidates are a `dictionary` of real poles ``lambda_j = exp(-r_j)`` with decay rates ``r_j``
log-spaced, `PER_DECADE` to a decade, from ``SLOWEST_DECAY / (L - 1)`` (a pole that decays by
``e^-SLOWEST_DECAY`` over the window) to ``-log(SMALLEST_POLE)``, and per filter any poles the
caller adds within that span (`mor.methods.modal.RealPoleStart` adds the real positive poles of
the filter's balanced truncations). The filter, zero after its ``L`` taps, is approximated by
atoms ``a_j[k] = lambda_j^k`` (``k >= 0``, against ``h[1:]``) in the inner product

.. math::

    \langle a, b \rangle = \sum_{k=0}^{L-2} a_k b_k + t \sum_{k \ge L-1} a_k b_k,
    \qquad t = \text{TAIL\_WEIGHT},

(the window, and what the model still emits after it, which the filter does not), whose Gram
matrix has the closed form ``(1 - x^(L-1) + t x^(L-1)) / (1 - x)``, ``x = lambda_i lambda_j``.
`RealPoleSelection.path` chooses atoms one at a time by orthogonal least squares: each step
takes the atom whose component orthogonal to those already chosen removes the most of the
residual,

.. math::

    \max_j \frac{\langle r, a_j \rangle^2}{\| (I - P) a_j \|^2}, \qquad r = (I - P)\, h,

with ``P`` the projection onto the chosen atoms, updating the correlations, the remaining norms
and the coefficients each candidate would give by one Gram-Schmidt direction (``O(N k)`` per
filter at step ``k`` for ``N`` candidates, plus ``O(N k^2)`` for the coefficients); a ``seed``
makes it take given candidates first. `RealPoleSelection.refine` then swaps: each chosen atom in
turn is replaced by the best candidate given the others (a rank-one change of the projection),
until a pass changes nothing. The first ``d`` atoms of the path, refined, are the order-``d``
start; residues are a least-squares fit (`mor.fitting.least_squares`), and the poles are
refined by variable projection (`mor.methods.modal` with ``real_poles=True``).

Real exponentials are a notoriously ill-conditioned basis: nearly collinear atoms fit the taps
with large residues that cancel, which float32 (the engines' arithmetic: the float32 deviation
grows like ``eps_32 sum |R| / (1 - lambda)``) and the response after the window do not forgive.
So a candidate is not chosen where its remaining norm is below `MIN_NORM` of its own, or where
the fit with it would have ``sum_j |R_j| / (1 - lambda_j)`` (the l1 norms of its modes) above
`MAX_CANCELLATION` times the filter's own l1 norm ``sum |h[1:]|`` (a model without cancellation
has about 1). A filter for which no candidate qualifies stops choosing: its start, and the fit
from it, then has fewer real poles than asked for (about 10 to 15 at ``L = 2048`` on the
filters below; `mor.reduce` flags the filter ``rank_capped``).

The settings were chosen on an Evo 2-style layer (64 channels of 16 real poles, decay rates
log-uniform in ``[1e-3, 1]``, residues standard normal, ``L = 2048``; its own float32 deviation
is 9e-6 and its channels emit up to 0.2 of their norm after 2048 taps) reduced to 4, 8 and 16
real poles, and on 32 oscillating Hyena-like filters (`mor.demo.hyena_like_filters`). Without the
two guards the 8-pole fits of the Evo 2 layer emitted up to 24 times the filter's norm after the
window with a float32 deviation up to 1e-2; with them every channel gets its 8 poles, the tails
stay within 0.17 and the float32 deviations within 1.3e-5 (median l2 2.5e-3, worst 2.3e-2;
balanced truncation at 8 complex modes: 1.1e-2); the oscillating filters' 8-pole fits went from
a float32 deviation of 7e-4 to 8e-5 (real poles cannot follow an oscillation: their l2 errors
are near 0.5 whatever the start). On sums of up to 4 real exponentials (decay rates at least a
factor 1.5 apart) the greedy path with swaps alone was a start from which the fit found the
exact poles in 46 of 60 draws (the others ended where two poles merge), and in all 60 with the
balanced truncation's poles among the candidates and the path seeded with them.
"""

from __future__ import annotations

import numpy as np

#: Dictionary atoms per decade of decay rate.
PER_DECADE = 40
#: The slowest atom decays by ``exp(-SLOWEST_DECAY)`` over the window of ``L - 1`` steps.
SLOWEST_DECAY = 2.0
#: The fastest atom's pole (a near-impulse at lag 1): smaller poles cost the engines float32
#: accuracy when exported (Vortex's residue is ``R / lambda``).
SMALLEST_POLE = 1e-2
#: An atom whose component orthogonal to the chosen ones has less than this squared norm (its
#: own is 1) is not chosen (module notes).
MIN_NORM = 1e-3
#: Nor one that would make ``sum |R| / (1 - lambda)`` exceed this many times ``sum |h[1:]|``.
MAX_CANCELLATION = 30.0
#: Passes of the swap refinement (each tries every chosen atom once).
SWAP_PASSES = 4
#: Weight of the response after the window in the selection's inner product (1: the filter,
#: zero after its taps, matched over all time).
TAIL_WEIGHT = 1.0


def dictionary(length: int) -> np.ndarray:
    """The dictionary's real poles in ``(0, 1)`` for filters of ``length`` taps, slowest
    first."""
    steps = max(int(length) - 1, 1)
    slow, fast = SLOWEST_DECAY / steps, -np.log(SMALLEST_POLE)
    count = max(int(np.ceil(PER_DECADE * np.log10(fast / slow))) + 1, 2)
    return np.exp(-np.geomspace(slow, fast, count))


def _gram(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    """``<a_i, b_j>`` of unnormalised atoms of poles ``a`` ``(..., I)`` and ``b`` ``(..., J)``:
    ``sum_{k < n} x^k + t sum_{k >= n} x^k = (1 - x^n + t x^n) / (1 - x)``, ``x = a_i b_j``,
    ``n = steps`` (to full relative accuracy near ``x = 1``)."""
    with np.errstate(under="ignore", divide="ignore"):
        lx = np.log(a)[..., :, None] + np.log(b)[..., None, :]
        return (-np.expm1(steps * lx) + TAIL_WEIGHT * np.exp(steps * lx)) / -np.expm1(lx)


class RealPoleSelection:
    """The greedy selection for a batch of filters ``h`` ``(F, L)``: the candidates are the
    `dictionary` and, per filter, the real poles in ``extra`` ``(F, E)`` (NaN: none; e.g. the
    real positive poles of balanced truncations). `path` chooses, `refine` swaps (module
    notes)."""

    def __init__(self, h: np.ndarray, extra: np.ndarray | None = None):
        h = np.asarray(h, dtype=np.float64)
        f, length = h.shape
        self.steps = max(length - 1, 1)
        base = dictionary(length)
        extra = np.zeros((f, 0)) if extra is None else np.asarray(extra, dtype=np.float64)
        # the filter's own candidates within the dictionary's span
        valid = np.isfinite(extra) & (extra >= base.min()) & (extra <= base.max())
        self.poles = np.concatenate([np.broadcast_to(base, (f, base.size)),
                                     np.where(valid, extra, 0.5)], axis=1)  # (F, N)
        self.valid = np.concatenate([np.ones((f, base.size), bool), valid], axis=1)
        self.scale = np.sqrt(_self_gram(self.poles, self.steps))  # atom norms (F, N)
        k = np.arange(length - 1, dtype=np.float64)
        with np.errstate(under="ignore"):
            atoms = np.exp(k[:, None] * np.log(base)[None, :])  # (L-1, N0)
        corr = np.empty(self.poles.shape)
        corr[:, :base.size] = h[:, 1:] @ atoms
        for i in range(f):  # the filter's own candidates
            if extra.shape[1]:
                with np.errstate(under="ignore"):
                    own = np.exp(k[:, None] * np.log(self.poles[i, base.size:])[None, :])
                corr[i, base.size:] = h[i, 1:] @ own
        self.corr = corr / self.scale  # <h, a_j> of the normalised atoms
        # a coefficient c_j of the normalised atom j is a residue of l1 norm |c_j| l1_j
        self.l1 = 1.0 / (-np.expm1(np.log(self.poles)) * self.scale)
        self.limit = MAX_CANCELLATION * np.abs(h[:, 1:]).sum(axis=1)  # (F,)

    def gram(self, rows: np.ndarray, i: np.ndarray, j: np.ndarray | None = None) -> np.ndarray:
        """``<a_i, a_j>`` of the normalised atoms of the filters ``rows`` ``(B,)``: ``i``
        ``(B, I)`` against ``j`` ``(B, J)`` (every candidate by default), ``(B, I, J)``."""
        p, s = self.poles[rows], self.scale[rows]
        pi, si = np.take_along_axis(p, i, 1), np.take_along_axis(s, i, 1)
        pj, sj = (p, s) if j is None else (np.take_along_axis(p, j, 1),
                                           np.take_along_axis(s, j, 1))
        return _gram(pi, pj, self.steps) / (si[:, :, None] * sj[:, None, :])

    def path(self, count: int, seed: np.ndarray | None = None) -> np.ndarray:
        """Candidate indices ``(F, count)`` in the order chosen; ``-1`` after a filter
        stopped. ``seed`` ``(F, S)`` (``-1``-padded) names candidates taken first, in order,
        where the guards allow them; the rest are chosen greedily."""
        f, n = self.corr.shape
        out = np.full((f, count), -1, dtype=np.int64)
        limit = min(count, n)
        corr = self.corr.copy()  # <r, a_j>, r the residual
        norm = np.ones((f, n))  # ||(I - P) a_j||^2
        basis = np.zeros((f, limit, n))  # <q_t, a_j>
        to_atoms = np.zeros((f, limit, limit))  # q_t in the chosen atoms (upper triangular)
        coef = np.zeros((f, limit))  # the fit's coefficients on the chosen atoms
        weights = np.zeros((f, limit))  # l1 of the chosen atoms
        rows = np.arange(f)
        chosen = ~self.valid.copy()
        live = np.ones(f, dtype=bool)  # filters still choosing
        for t in range(limit):
            usable = ~chosen & (norm > MIN_NORM) & live[:, None]
            with np.errstate(divide="ignore", invalid="ignore"):
                gain = np.where(usable, corr**2 / norm, -1.0)
                step = np.where(usable, corr / norm, 0.0)  # the candidate's coefficient
            near = basis[:, :t].transpose(0, 2, 1)  # (F, N, t): <q_s, a_j>
            moved = coef[:, None, :t] - step[..., None] * np.matmul(near, to_atoms[:, :t, :t])
            spread = (np.abs(moved) @ weights[:, :t, None])[..., 0] + np.abs(step) * self.l1
            ok = usable & (spread <= self.limit[:, None])
            live &= ok.any(axis=1)
            if not live.any():
                break
            pick = np.argmax(np.where(ok, gain, -1.0), axis=1)
            if seed is not None and t < seed.shape[1]:
                given = seed[:, t]
                take = (given >= 0) & ok[rows, np.maximum(given, 0)]
                pick[take] = given[take]
            scale = np.sqrt(np.where(live, norm[rows, pick], 1.0))
            direction = (self.gram(rows, pick[:, None])[:, 0]
                         - np.einsum("ft,ftn->fn", near[rows, pick], basis[:, :t])) / scale[:, None]
            direction[~live] = 0.0
            basis[:, t] = direction
            to_atoms[:, t, :t] = -np.einsum("fs,fsu->fu", near[rows, pick],
                                            to_atoms[:, :t, :t]) / scale[:, None]
            to_atoms[:, t, t] = 1.0 / scale
            coef[live, :t] = moved[rows, pick][live]
            coef[live, t] = step[rows, pick][live]
            weights[:, t] = self.l1[rows, pick]
            corr -= (corr[rows, pick] / scale)[:, None] * direction
            norm -= direction**2
            chosen[rows[live], pick[live]] = True
            out[live, t] = pick[live]
        return out

    def refine(self, idx: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Candidate indices ``(F', d)`` of the filters ``rows`` improved by swaps: each chosen
        atom in turn is replaced by the best one (largest residual reduction) given the others,
        under the same guards, until a pass changes nothing (at most `SWAP_PASSES` passes);
        ``-1`` entries (a filter that stopped) stay."""
        rows = np.arange(idx.shape[0]) if rows is None else np.asarray(rows)
        idx = idx.copy()
        counts = (idx >= 0).sum(axis=1)
        for k in np.unique(counts):
            group = np.flatnonzero(counts == k)
            if k >= 1:
                idx[group, :k] = self._swap(idx[group, :k], rows[group])
        return idx

    def _swap(self, idx: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """`refine` for filters of ``k`` chosen atoms each: with ``M = G_SS^-1``,
        ``W = M G_Sn`` and ``beta = M c_S`` for the chosen set ``S``, leaving atom ``i`` out
        is a rank-one change (``P_{S-i} = P_S - d_i d_i^T / M_ii``, ``d_i`` the dual basis
        vector), so every position costs ``O(k N)``; ``M`` is computed again only where a
        swap was made."""
        b, k = idx.shape
        corr, limit, l1 = self.corr[rows], self.limit[rows], self.l1[rows]
        valid = self.valid[rows]
        every = np.arange(b)

        def state(sub):
            g_sn = self.gram(rows[sub], idx[sub])  # (B', k, N)
            g_ss = np.take_along_axis(g_sn, idx[sub][:, None, :], 2)
            c_s = np.take_along_axis(corr[sub], idx[sub], 1)
            m = np.linalg.inv(g_ss)
            w, beta = m @ g_sn, np.einsum("bst,bt->bs", m, c_s)
            rc = corr[sub] - np.einsum("bs,bsn->bn", beta, g_sn)  # <r_S, a_j>
            norm = 1.0 - np.einsum("bsn,bsn->bn", g_sn, w)  # ||(I - P_S) a_j||^2
            return m, w, beta, rc, norm

        m, w, beta, rc, norm = state(every)
        for _ in range(SWAP_PASSES):
            changed = np.zeros(b, dtype=bool)
            for i in range(k):
                keep = np.arange(k) != i
                mi = m[:, i, i]
                wi = w[:, i]  # <d_i, a_j>
                with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                    rc_i = rc + (beta[:, i] / mi)[:, None] * wi  # without atom i
                    norm_i = norm + wi**2 / mi[:, None]
                    beta_i = beta[:, keep] - (beta[:, i] / mi)[:, None] * m[:, keep, i]
                    w_i = w[:, keep] - (m[:, keep, i] / mi[:, None])[:, :, None] * wi[:, None]
                    step = rc_i / norm_i  # the coefficient of candidate j
                    moved = beta_i[:, :, None] - step[:, None, :] * w_i
                    spread = np.einsum("bsn,bs->bn", np.abs(moved),
                                       np.take_along_axis(l1, idx[:, keep], 1)) \
                        + np.abs(step) * l1
                ok = (norm_i > MIN_NORM) & (spread <= limit[:, None]) & valid
                ok[every[:, None], idx[:, keep]] = False
                ok[every, idx[:, i]] = True  # the current atom: never worse
                with np.errstate(invalid="ignore"):
                    gain = np.where(ok, rc_i * step, -1.0)
                best = np.argmax(gain, axis=1)
                better = gain[every, best] > gain[every, idx[:, i]] * (1 + 1e-12)
                if better.any():
                    idx[better, i] = best[better]
                    m[better], w[better], beta[better], rc[better], norm[better] = \
                        state(np.flatnonzero(better))
                changed |= better
            if not changed.any():
                break
        return idx

    def explained(self, idx: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """``||P_S h||^2`` per filter for the candidates ``idx`` ``(F', d)`` of the filters
        ``rows`` (``-1`` entries left out): the larger, the smaller the least-squares error."""
        rows = np.arange(idx.shape[0]) if rows is None else np.asarray(rows)
        out = np.zeros(idx.shape[0])
        counts = (idx >= 0).sum(axis=1)
        for k in np.unique(counts):
            group = np.flatnonzero(counts == k)
            if k == 0:
                continue
            chosen = np.sort(idx[group], axis=1)[:, -k:]  # the -1 entries sort first
            c = np.take_along_axis(self.corr[rows[group]], chosen, 1)
            g = self.gram(rows[group], chosen, chosen)
            out[group] = np.einsum("bi,bi->b", c, np.linalg.solve(g, c[..., None])[..., 0])
        return out

    def chosen_poles(self, idx: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """The poles of candidate indices ``idx`` ``(F', d)`` of the filters ``rows`` (NaN for
        ``-1``)."""
        rows = np.arange(idx.shape[0]) if rows is None else np.asarray(rows)
        found = idx >= 0
        return np.where(found, np.take_along_axis(self.poles[rows], np.maximum(idx, 0), 1),
                        np.nan)


def _self_gram(poles: np.ndarray, steps: int) -> np.ndarray:
    """``<a_j, a_j>`` of the unnormalised atoms of ``poles`` ``(F, N)``."""
    with np.errstate(under="ignore"):
        lx = 2 * np.log(poles)
        return (-np.expm1(steps * lx) + TAIL_WEIGHT * np.exp(steps * lx)) / -np.expm1(lx)


def greedy_real_poles(h: np.ndarray, count: int, extra: np.ndarray | None = None,
                      refine: bool = True) -> np.ndarray:
    """Real poles ``(F, count)`` of the filters ``h`` ``(F, L)`` chosen greedily (and with
    ``refine`` improved by swaps; module notes) from the `dictionary` and the filters' own
    ``extra`` candidates ``(F, E)``; NaN where the selection stopped before ``count`` (no
    candidate qualified)."""
    h = np.asarray(h, dtype=np.float64)
    out = np.full((h.shape[0], count), np.nan)
    if count == 0 or h.shape[0] == 0 or h.shape[1] < 2:
        return out
    selection = RealPoleSelection(h, extra)
    idx = selection.path(count)
    if refine:
        idx = selection.refine(idx)
    return selection.chosen_poles(idx)
