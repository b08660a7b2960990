r"""Better 8-mode fits of MultiHyena's head filters: larger budgets, several starts, and fits
weighted by what the model feeds each filter.

``python benchmarks/e2e/input_weighted.py --models DIR --out DIR2`` writes, for the model
``DIR/multihyena.pt`` and its 32 head filters, one ``multihyena_{variant}.npz`` per variant
below (the `distill.py` layout; state size ``m8``, ``modalJ`` every size asked) that
`evaluate.py --models DIR2` reads (with ``multihyena.pt`` copied there), and
``input_weighted.json`` (per filter and variant: ``l2``, ``tail``, the predicted output error
``J``).

The output-error metric. MultiHyena's head-wise layer is ``y[t]_j = sum_s h[t-s] S[t,s] v_j[s]``
with ``S[t,s] = q[t] . k[s]`` (`models.MultiHyenaMixer`, `mor.torch._conv.headwise_toeplitz_conv`),
then ``out_proj``. A filter error ``e = h - h_hat`` changes the layer's output (after
``out_proj``) by ``W sum_a e[a] g_t[a]`` with ``g_t[a]_j = S[t, t-a] v_j[t-a]`` (``a <= t``), so
over positions and windows the squared output error is the quadratic form ``J(e) = e^T M e``,

.. math:: M[a, b] = \sum_{\text{windows}} \sum_t g_t[a]^T P g_t[b], \qquad P = W_h^T W_h,

with ``W_h`` the head's columns of ``out_proj``. ``M`` is measured on random windows of the
training split (``--windows``, ``--positions`` sampled positions ``t`` each), every lag the
model uses at once: it holds the input's spectrum, the correlation of scores and values with
the lag, and that lag ``a`` is only used by the positions ``t >= a``. ``J`` is reported
relative to ``J`` of the zero filter (``e = h``).

Variants (8 modes, ``method="modal"`` unless said):

- ``big``: ``max_iter=100``, ``tail_weight=1e-3`` and a longer tail continuation
  (``TAIL_STAGES=20, TAIL_FLOOR=1e-3, TAIL_GROWTH=10**0.25``), from ``balanced``, ``irka`` and
  ``pencil``; per filter the best ``l2``.
- ``notail``: the same starts with ``limit_tail=False, tail_weight=0`` (the evaluation never
  uses lags beyond ``L``; generation beyond ``L`` would feel the tails); best ``l2``.
- ``weighted``: ``weight=w``, ``w`` the minimum-phase spectral factor (``--weight-taps`` taps)
  of the Toeplitz part of ``M`` (its diagonals' means over the lags' position counts), so that
  ``|W|^2`` follows the input's spectrum; from the ``big`` fit's best start, tail-limited.
- ``jselect``: per filter the candidate of least ``J`` among all the above and the original
  ``modal`` fit (`distill.py`'s), with its residues re-solved for least ``J`` (poles kept; no
  hold on the tail: it grows up to ``7e7 ||h||`` here).
- ``jtail``: the same over the tail-limited candidates only (``modal``, ``big``, ``weighted``),
  each candidate's residues re-solved for least ``J`` with its tail held to at most the
  candidate's own plus ``1e-9 ||h||`` (`mor.refit_residues`); the candidate's own residues
  where they do better.
- ``mfit``: the poles too fitted for least ``J`` (variable projection on a square root of
  ``M``, scipy's Levenberg-Marquardt, finite differences, ``--mfit-iters`` Jacobians; a tail
  penalty ``--mfit-tail`` times ``J`` of the zero filter per unit of relative tail energy, a
  penalty and not a hold), from ``jtail``'s poles.
- ``modalJ`` (``--resolve 1 2 4 8 16``): `distill.py`'s modal fits at those sizes, poles kept,
  residues re-solved as in ``jtail`` (tails at most the fit's own). No new fit at all.

Every residue re-solve is `mor.refit_residues` with ``metric`` an eigen factor of ``M``.

``M`` is cached in ``DIR2/forms.npy`` (512 MB) and the modal fits in ``DIR2/fits.pkl``; ``--seed``
and ``--windows`` draw other training windows. Results and commands: `RESULTS.md`, section
"Input-weighted fits".
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import scipy.optimize  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]
import mor  # noqa: E402
from corpus import load  # noqa: E402
from train import load_model  # noqa: E402

MODES = 8
STARTS = ("balanced", "irka", "pencil")
#: The large-budget fits' continuation: 20 stages from a tail weight of 1e-3, growing 10^0.25.
LONG_CONTINUATION = {"tail_stages": 20, "tail_floor": 1e-3, "tail_growth": 10 ** 0.25}


# ---------------------------------------------------------------------------- the metric
def output_error_forms(model, train_bytes: np.ndarray, windows: int, positions: int,
                       seed: int = 1) -> np.ndarray:
    """``M`` per head filter, ``(layers * heads, L, L)`` float64 (see the module notes)."""
    torch.set_num_threads(1)
    length = model.cfg.length
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(train_bytes) - length - 1, windows)
    tokens = torch.from_numpy(np.stack([train_bytes[s:s + length] for s in starts])
                              .astype(np.int64))
    captured = {}
    hooks = [b.mixer.long.register_forward_hook(
        lambda mod, inputs, out, i=i: captured.__setitem__(i, [x.detach() for x in inputs]))
        for i, b in enumerate(model.blocks)]
    with torch.no_grad():
        model(tokens)
    for hook in hooks:
        hook.remove()
    forms = []
    for i, block in enumerate(model.blocks):
        q, k, v = captured[i]  # (B, H, N, T)
        heads, n = q.shape[1], q.shape[2]
        weight = block.mixer.out_proj.weight.detach().double()
        for head in range(heads):
            cols = weight[:, head * n:(head + 1) * n]
            chol = torch.linalg.cholesky(cols.T @ cols + 1e-12 * torch.eye(n, dtype=cols.dtype))
            vp = torch.einsum("jk,bjt->bkt", chol.float(), v[:, head])  # L^T v
            m = torch.zeros(length, length, dtype=torch.float64)
            for b in range(q.shape[0]):
                ts = np.sort(rng.choice(length, positions, replace=False))
                tt = torch.from_numpy(ts)
                scores = torch.einsum("it,is->ts", q[b, head][:, tt], k[b, head])  # (nt, T)
                lag = torch.arange(length)
                src = tt[:, None] - lag[None]  # s = t - a
                valid = src >= 0
                srcc = src.clamp(min=0)
                s_ta = torch.gather(scores, 1, srcc) * valid  # S[t, t-a]
                g = s_ta[:, :, None] * vp[b][:, srcc].permute(1, 2, 0)  # (nt, a, N)
                g = g.permute(0, 2, 1).reshape(-1, length)
                m += (g.T @ g).double()
            forms.append((m * (length / positions)).numpy())
        print(f"layer {i}: M measured", flush=True)
    return np.stack(forms)


def toeplitz_weight(m: np.ndarray, taps: int) -> np.ndarray:
    """Minimum-phase FIR ``w`` (``taps`` taps) with ``|W|^2`` the spectrum of ``M``'s
    Toeplitz part: ``r(d)`` the mean of ``M``'s ``d``-th diagonal per position that uses it."""
    length = m.shape[0]
    # M[a, a+d] sums the positions t >= a + d: r(d), a per-position covariance, is the
    # diagonal's sum over the number of (a, t) pairs behind it
    per = np.array([np.trace(m, d) for d in range(length)]) \
        / ((length - np.arange(length)) * (length - np.arange(length) + 1) / 2)
    n = 4 * length
    acf = np.zeros(n)
    acf[:length], acf[n - length + 1:] = per, per[1:][::-1]
    acf[:length] *= np.hanning(2 * length - 1)[length - 1:]  # taper: a positive spectrum
    acf[n - length + 1:] *= np.hanning(2 * length - 1)[:length - 1]
    spec = np.maximum(np.fft.fft(acf).real, 1e-9 * np.abs(np.fft.fft(acf).real).max())
    cep = np.fft.ifft(np.log(spec) / 2).real  # log |W|
    fold = np.zeros(n)
    fold[0], fold[1:n // 2], fold[n // 2] = cep[0], 2 * cep[1:n // 2], cep[n // 2]
    w = np.fft.ifft(np.exp(np.fft.fft(fold))).real[:taps]
    return w / np.abs(w).max()


# ---------------------------------------------------------------------------- fits
def responses(ssm: mor.ModalSSM, length: int) -> np.ndarray:
    return np.asarray(ssm.impulse(length), dtype=np.float64)


def tail_energy(ssm: mor.ModalSSM, length: int) -> np.ndarray:
    """``||h_hat[L:]||`` (exact)."""
    return np.asarray(ssm.tail_norm(length), dtype=np.float64)


def fit_modal(h, init, **options) -> mor.ModalSSM:
    return mor.reduce(h, modes=MODES, method="modal", init=init, **options)


def basis(poles: np.ndarray, length: int) -> np.ndarray:
    """Real columns ``(L, order)`` of the modes ``lambda^(n-1)`` (``n >= 1``; row 0 zero) for
    compact poles (a pair: its real and imaginary parts)."""
    n = np.arange(length - 1)
    cols = []
    for p in poles:
        z = p ** n
        cols += [z.real, z.imag] if p.imag != 0 else [z.real]
    v = np.zeros((length, len(cols)))
    v[1:] = np.stack(cols, 1)
    return v


def from_real(poles: np.ndarray, coef: np.ndarray, direct: float):
    """Compact residues for `basis` coefficients: ``h[n] = sum Re(r lambda^(n-1))``."""
    res, i = [], 0
    for p in poles:
        if p.imag != 0:
            res.append(coef[i] - 1j * coef[i + 1])  # Re((c - i d) z) = c Re z + d Im z
            i += 2
        else:
            res.append(complex(coef[i]))
            i += 1
    return np.asarray(res), direct


def factor(m: np.ndarray) -> np.ndarray:
    """``r`` with ``M = r^T r`` (``M`` is only semidefinite: lags no sampled position used)."""
    w, u = np.linalg.eigh(m)
    return (u * np.sqrt(np.maximum(w, 0))).T


def resolve_j(h: np.ndarray, models: list, factors: np.ndarray, held: bool) -> list:
    """Per filter ``(poles, residues, direct)``: ``models``' residues re-solved for least
    ``J`` (`mor.refit_residues`), the model's own where they do better; where ``held``, the
    relative tail at most the model's own plus ``1e-9`` (what the evaluation cannot see)."""
    arrays = compact_arrays(models, (len(models),))
    bank = mor.ModalSSM.from_compact(arrays["m8_poles"], arrays["m8_residues"],
                                     arrays["m8_direct"])
    own = bank.tail_norm(h.shape[1]) / np.linalg.norm(h, axis=1)
    out = mor.refit_residues(h, bank, metric=factors,
                             hold_tail=own * (1 + 1e-9) + 1e-9 if held else False)
    return [compact_one(out[i]) for i in range(len(models))]


def model_taps(poles, residues, direct, length: int) -> np.ndarray:
    n = np.arange(length - 1)
    out = np.zeros(length)
    out[0] = direct
    out[1:] = sum((r * p ** n).real for p, r in zip(poles, residues))
    return out


def mfit(h: np.ndarray, poles: np.ndarray, m_chol: np.ndarray, tail: float, iters: int):
    """Poles of least ``J + tail * ||h||^2 * tail energy`` by variable projection (LM, finite
    differences) in the stable parameterisation ``rho sigmoid(a) e^{ib}`` / ``rho tanh(c)``."""
    rho = 1 - 1e-9
    pair = poles.imag != 0
    mag = np.clip(np.abs(poles) / rho, 1e-6, 1 - 1e-12)
    x0 = np.concatenate([np.log(mag[pair] / (1 - mag[pair])), np.angle(poles[pair]),
                         np.arctanh(np.clip(poles[~pair].real / rho, -1 + 1e-12, 1 - 1e-12))])
    npair = int(pair.sum())
    energy = float(h @ h)
    length = h.size

    def unpack(x):
        a, b, c = x[:npair], x[npair:2 * npair], x[2 * npair:]
        return np.concatenate([rho / (1 + np.exp(-a)) * np.exp(1j * b), rho * np.tanh(c) + 0j])

    def resid(x):
        p = unpack(x)
        rv = m_chol @ basis(p, length)
        coef = np.linalg.lstsq(rv, rh, rcond=None)[0]
        out = rh - rv @ coef
        if tail > 0:
            r, _ = from_real(p, coef, h[0])
            # tail energy sum_{n >= L} |sum_k Re(r_k p_k^(n-1))|^2 over the 2 x compact modes
            full_p = np.concatenate([p, np.conj(p[:npair])])
            full_r = np.concatenate([np.where(np.arange(len(p)) < npair, r / 2, r),
                                     np.conj(r[:npair]) / 2])
            c = full_r * full_p ** (length - 1)
            g = 1 / (1 - full_p[:, None] * np.conj(full_p[None]))
            te = float(np.real(np.conj(c) @ g.T @ c)) if len(c) else 0.0
            out = np.append(out, np.sqrt(tail * energy_m * max(te, 0) / energy))
        return out

    rh = m_chol @ np.concatenate([[0.0], h[1:]])  # h[0] is the direct term
    energy_m = float(rh @ rh)
    sol = scipy.optimize.least_squares(resid, x0, method="lm", max_nfev=iters * (len(x0) + 1))
    p = unpack(sol.x)
    v = basis(p, length)
    coef = np.linalg.lstsq(m_chol @ v, rh, rcond=None)[0]
    return (p,) + from_real(p, coef, h[0])


# ---------------------------------------------------------------------------- driver
def compact_arrays(models: list, shape) -> dict:
    """`distill.py`'s ``m8_*`` arrays from per-filter ``(poles, residues, direct)``."""
    width = max(len(p) for p, _, _ in models)
    poles = np.zeros((len(models), width), complex)
    residues = np.zeros((len(models), width), complex)
    for i, (p, r, _) in enumerate(models):
        poles[i, :len(p)], residues[i, :len(r)] = p, r
    direct = np.array([d for _, _, d in models])
    return {"shape": np.array(shape), "m8_poles": poles, "m8_residues": residues,
            "m8_direct": direct}


def compact_one(ssm: mor.ModalSSM):
    p, r, d = ssm.compact()
    live = r != 0
    return np.asarray(p)[live], np.asarray(r)[live], float(d)


def resolve(h, forms, factors, jzero, z, sizes) -> dict:
    """``modalJ``: `distill.py`'s modal fits re-solved for least J (see ``--resolve``)."""
    arrays, length = {"shape": z["shape"]}, h.shape[1]
    for m in sizes:
        ssm = mor.ModalSSM.from_compact(z[f"m{m}_poles"], z[f"m{m}_residues"],
                                        z[f"m{m}_direct"])
        models = resolve_j(h, [compact_one(ssm[i]) for i in range(h.shape[0])], factors,
                           held=True)
        e = h - np.stack([model_taps(*c, length) for c in models])
        gains = np.einsum("fa,fab,fb->f", e, forms, e) / jzero
        one = compact_arrays(models, z["shape"])
        arrays |= {k.replace("m8_", f"m{m}_"): v for k, v in one.items() if k != "shape"}
        print(f"modalJ m{m}: J sum-weighted {np.sum(gains * jzero) / jzero.sum():.2e}",
              flush=True)
    return arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--positions", type=int, default=128)
    parser.add_argument("--weight-taps", type=int, default=128)
    parser.add_argument("--mfit-tail", type=float, default=1e-3)
    parser.add_argument("--mfit-iters", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1, help="training windows' seed for M")
    parser.add_argument("--resolve", nargs="*", type=int, default=[],
                        help="also write modalJ: the existing modal fits at these sizes with "
                             "residues re-solved for least J (tails held), poles kept")
    parser.add_argument("--variants", nargs="+",
                        default=["big", "notail", "weighted", "jselect", "jtail", "mfit"])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.models / "multihyena.pt")
    h3 = model.filters().double().numpy()
    shape, h = h3.shape, h3.reshape(-1, h3.shape[-1])
    count, length = h.shape
    cache = args.out / "forms.npy"
    if cache.exists():
        forms = np.load(cache)
    else:
        start = time.perf_counter()
        forms = output_error_forms(model, load()[0], args.windows, args.positions,
                                   args.seed)
        np.save(cache, forms.astype(np.float32))
        print(f"M measured in {time.perf_counter() - start:.0f} s", flush=True)
    forms = forms.astype(np.float64)
    jzero = np.einsum("fa,fab,fb->f", h, forms, h)

    def j_of(taps):
        e = h - taps
        return np.einsum("fa,fab,fb->f", e, forms, e) / jzero

    cands: dict[str, list] = {}  # name -> per filter (poles, residues, direct)
    with np.load(args.models / "multihyena_modal.npz") as z:
        base = mor.ModalSSM.from_compact(z["m8_poles"], z["m8_residues"], z["m8_direct"])
    cands["modal"] = [compact_one(base[i]) for i in range(count)]
    timing = {}
    fits = args.out / "fits.pkl"
    if fits.exists():
        cands, timing = pickle.loads(fits.read_bytes())
    for init in STARTS if not fits.exists() else ():
        for name, opts in (("big", {"tail_weight": 1e-3}),
                           ("notail", {"tail_weight": 0.0, "limit_tail": False})):
            t0 = time.perf_counter()
            ssm = fit_modal(h, init, max_iter=100, **LONG_CONTINUATION, **opts)
            timing[f"{name}_{init}"] = time.perf_counter() - t0
            cands[f"{name}_{init}"] = [compact_one(ssm[i]) for i in range(count)]
            print(f"{name} from {init}: {timing[f'{name}_{init}']:.0f} s", flush=True)
    fits.write_bytes(pickle.dumps((cands, timing)))
    taps_of = {k: np.stack([model_taps(*c, length) for c in v]) for k, v in cands.items()}
    l2_of = {k: np.linalg.norm(h - t, axis=1) / np.linalg.norm(h, axis=1)
             for k, t in taps_of.items()}

    def best_by(prefix, score):
        names = [k for k in cands if k.startswith(prefix + "_")]
        pick = [min(names, key=lambda k: score[k][i]) for i in range(count)]
        return [cands[pick[i]][i] for i in range(count)], pick

    variants, picks = {}, {}
    variants["big"], picks["big"] = best_by("big", l2_of)
    variants["notail"], picks["notail"] = best_by("notail", l2_of)
    if "weighted" in args.variants:
        t0 = time.perf_counter()
        out = []
        for i in range(count):
            w = toeplitz_weight(forms[i], args.weight_taps)
            init = picks["big"][i].split("_", 1)[1]
            ssm = fit_modal(h[i], init, max_iter=100, tail_weight=1e-3, weight=w,
                            **LONG_CONTINUATION)
            out.append(compact_one(ssm))
        timing["weighted"] = time.perf_counter() - t0
        cands["weighted"] = variants["weighted"] = out
        taps_of["weighted"] = np.stack([model_taps(*c, length) for c in out])
        print(f"weighted: {timing['weighted']:.0f} s", flush=True)
    j_cand = {k: j_of(t) for k, t in taps_of.items()}
    # jselect: least J after re-solving residues for J, over every candidate's poles (tails
    # free); jtail: the same over the tail-limited fits only, tails held to the fit's own
    factors = np.stack([factor(m) for m in forms])
    for name, held in (("jselect", False), ("jtail", True)):
        names = [k for k in cands if held is False or not k.startswith("notail")]
        options = {k: resolve_j(h, cands[k], factors, held) for k in names}
        j_opt = {k: j_of(np.stack([model_taps(*c, length) for c in v]))
                 for k, v in options.items()}
        picks[name] = [min(names, key=lambda k: j_opt[k][i]) for i in range(count)]
        variants[name] = [options[picks[name][i]][i] for i in range(count)]
    if "mfit" in args.variants:
        t0 = time.perf_counter()
        out = [mfit(h[i], variants["jtail"][i][0], factors[i], args.mfit_tail, args.mfit_iters)
               for i in range(count)]
        timing["mfit"] = time.perf_counter() - t0
        variants["mfit"] = out
        print(f"mfit: {timing['mfit']:.0f} s", flush=True)
    if args.resolve:
        with np.load(args.models / "multihyena_modal.npz") as z:
            np.savez(args.out / "multihyena_modalJ.npz",
                     **resolve(h, forms, factors, jzero, z, args.resolve))
    summary = {"timing_s": timing, "variants": {}, "candidates": {}}
    for k in cands:
        l2 = np.linalg.norm(h - taps_of[k], axis=1) / np.linalg.norm(h, axis=1)
        summary["candidates"][k] = {"l2": l2.tolist(), "J": j_cand[k].tolist()}
    for name, models in variants.items():
        if name not in args.variants and name not in ("big", "notail"):
            continue
        arrays = compact_arrays(models, shape)
        np.savez(args.out / f"multihyena_{name}.npz", **arrays)
        ssm = mor.ModalSSM.from_compact(arrays["m8_poles"], arrays["m8_residues"],
                                        arrays["m8_direct"])
        taps = responses(ssm, length)
        l2 = np.linalg.norm(h - taps, axis=1) / np.linalg.norm(h, axis=1)
        tail = tail_energy(ssm, length) / np.linalg.norm(h, axis=1)
        j = j_of(taps)
        radius = np.array([np.abs(p).max() if len(p) else 0 for p, _, _ in models])
        summary["variants"][name] = {"l2": l2.tolist(), "tail": tail.tolist(), "J": j.tolist(),
                                     "max_radius": radius.tolist(), "picks": picks.get(name)}
        print(f"{name:9s} l2 median {np.median(l2):.4f} worst {l2.max():.4f} | tail median "
              f"{np.median(tail):.2e} worst {tail.max():.2e} | J median {np.median(j):.2e} "
              f"sum-weighted {np.sum(j * jzero) / jzero.sum():.2e}", flush=True)
    (args.out / "input_weighted.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
