"""Banks run by the inference engines: StripedHyena (``stripedhyena`` 0.2.2) and Vortex
(``vtx`` 1.1.0, the Evo 2 engine), on the CPU in float32.

Every bank is written with `mor.export` (`to_striped_hyena_state_dict`,
`to_vortex_state_dict`) into a one-layer engine model built from the engine's own code, and
the engine's materialised filter, its FFT prefill of a prompt and decode steps after it are
compared, on the worst channel (max-relative: ``max |a - b| / max |b|`` over taps or time),
with the bank's float64 response (``x2 * (h * (x1 v))``, ``h`` the bank's taps) and with mor's
own float32 layer (`mor.torch.ModalRecurrence`, FFT prefill). Inputs ``x2, x1, v`` are
standard normal; the short filter is the identity (``tests/engine_harness.py``, which also
says what stands in for CUDA on a CPU machine).

Banks: the shared trained filters (all 256 channels of each layer, L = 2048) reduced with
default options (`mor.reduce`, balanced truncation, at an order, at a number of modes and at a
tolerance; `mor.distill`, whose default fits modal models for a size, at an order and at 2
modes, and balanced truncation at tolerances: unequal mode counts, padded); synthetic
Evo 2-style layers (64 channels x 16 real poles, decay rates log-uniform in [1e-3, 1],
residues and D standard normal) at L = 2048 and 8192 in both engines, and reduced with
`mor.reduce` to 8 and 4 modes (errors beside the AAK bound; balanced truncation gives complex
poles, which Vortex does not take: they run in StripedHyena) and, from the taps at L = 2048,
to 8 and 4 *real* modes (``method="modal", real_poles=True``), which run in Vortex.

Run ``python benchmarks/bench_engines.py`` (``--quick``: 16 channels, one layer, no results;
``--real-poles``: only the real-pole reductions, about a minute, merged into the results of the
last full run: its JSON and its RESULTS.md section, the rest of which is rendered again from
the JSON).
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
import mor  # noqa: E402
from mor import export  # noqa: E402

sys.path.insert(0, str(C.ROOT / "tests"))
import engine_harness as eh  # noqa: E402

NAME = "bench_engines"
STEPS = 256
ENGINE_TOL, MOR_TOL = 1e-4, 5e-5


def run(engine: str, bank: mor.ModalSSM, prompt: int, steps: int = STEPS, length=None,
        seed: int = 0) -> dict:
    """One layer of ``bank`` (``(H,)``) in ``engine``: deviations and what the writer did."""
    import torch

    torch.set_num_threads(1)
    writer = (export.to_striped_hyena_state_dict if engine == "striped-hyena" else
              export.to_vortex_state_dict)
    out = writer(bank, length=length)  # the state size is the bank's largest mode count
    channels = bank.shape[0]
    config = (eh.striped_hyena_config if engine == "striped-hyena" else eh.vortex_config)(
        channels, out.state_size, 1)
    model = (eh.striped_hyena_model if engine == "striped-hyena" else eh.vortex_model)(config)
    loaded = model.load_state_dict(out.state_dict, strict=False)
    assert not loaded.unexpected_keys
    written = export.from_striped_hyena_state_dict(out.state_dict)[0] if \
        engine == "striped-hyena" else export.from_vortex_state_dict(out.state_dict)[0]
    # the reference is the bank the writer wrote (the input bank where nothing was dropped)
    target = bank if not out.dropped.any() else written
    x2, x1, v = eh.gate_inputs(1, channels, prompt + steps, seed)
    t0 = time.perf_counter()
    ran = eh.run_engine_layer(engine, model.blocks[0].filter, x2, x1, v, prompt, steps)
    seconds = time.perf_counter() - t0
    ref = eh.reference(target, x2, x1, v, prompt, steps)
    own = eh.run_mor_layer(target, x2, x1, v, prompt, steps, length)
    vs_ref, vs_mor, mor_ref = eh.worst(ran, ref), eh.worst(ran, own), eh.worst(own, ref)
    # what the layout itself loses: the float32 parameters written, evaluated in float64
    layout = eh.worst(eh.reference(written, x2, x1, v, prompt, steps), ref)
    return {"engine": engine, "channels": channels, "prompt": prompt, "steps": steps,
            "state_size": out.state_size, "modes_min": int(out.modes.min()),
            "modes_max": int(out.modes.max()), "padded": int(out.padded.sum()),
            "dropped": int(out.dropped.sum()), "change_max": float(out.change.max()),
            "nan": vs_ref["nan"], "engine_seconds": seconds,
            **{f"{k}_vs_f64": vs_ref[k] for k in ("filter", "prefill", "steps")},
            **{f"{k}_vs_mor": vs_mor[k] for k in ("filter", "prefill", "steps")},
            **{f"mor_{k}_vs_f64": mor_ref[k] for k in ("filter", "prefill", "steps")},
            **{f"layout_{k}_vs_f64": layout[k] for k in ("filter", "prefill", "steps")}}


def trained_banks(h: np.ndarray) -> dict:
    """Banks of one layer ``(256, 2048)`` with default options: `mor.reduce` (balanced
    truncation) and `mor.distill` (``method="auto"``: modal fits for a size, from the order
    homotopy at 2 modes; balanced truncation for a tolerance)."""
    return {
        "reduce(order=16)": lambda: mor.reduce(h, 16),
        "reduce(modes=16)": lambda: mor.reduce(h, modes=16),
        "reduce(tol=1e-3, on_fail='flag')": lambda: mor.reduce(h, tol=1e-3, on_fail="flag"),
        "distill(order=16)": lambda: mor.distill(h, 16).bank,
        "distill(modes=2)": lambda: mor.distill(h, modes=2).bank,
        "distill(tol=1e-2)": lambda: mor.distill(h, tol=1e-2).bank,
        "distill(tol=1e-3)": lambda: mor.distill(h, tol=1e-3).bank,
    }


def evo2_bank(channels: int, seed: int) -> mor.ModalSSM:
    layer = eh.evo2_layer(channels, 16, seed)
    return export.from_vortex_state_dict({f"blocks.0.filter.{k}": v
                                          for k, v in layer.items()})[0]


def real_pole_reductions(channels: int, length: int = 2048) -> list[dict]:
    """The Evo 2-style layer of the L = ``length`` rows reduced from its taps to 8 and 4 real
    modes (``method="modal", real_poles=True``), run in Vortex: errors beside AAK and the
    worst channel's engine agreement."""
    bank = evo2_bank(channels, seed=length)
    taps = bank.impulse(length)
    out = []
    for modes in (8, 4):
        t0 = time.perf_counter()
        red = mor.reduce(taps, modes=modes, method="modal", real_poles=True)
        seconds = time.perf_counter() - t0
        poles, residues, _ = red.compact()
        live = residues != 0
        assert np.all(poles.imag[live] == 0) and np.all(poles.real[live] > 0)
        bt = mor.compare(taps, mor.reduce(taps, modes=modes))
        i = red.info
        ratio = i["hinf"] / i["aak"]
        rec = {"length": length, "modes": modes, "channels": channels,
               "reduce_seconds": seconds, "modes_min": int(red.modes.min()),
               "modes_max": int(red.modes.max()),
               "l2_median": float(np.median(i["l2"])), "l2_max": float(i["l2"].max()),
               "bt_l2_median": float(np.median(bt.l2)),
               "tail_max": float(i["tail"].max()),
               "layer_tail_max": float((bank.tail_norm(length)
                                        / np.linalg.norm(taps, axis=-1)).max()),
               "hinf_median": float(np.median(i["hinf"])),
               "aak_median": float(np.median(i["aak"])),
               "hinf_over_aak_median": float(np.median(ratio)),
               "hinf_over_aak_max": float(ratio.max()),
               "f32_deviation_max": float(red.float32_deviation(length).max()),
               **{f"vortex_{k}": v for k, v in run("vortex", red, length, length=length).items()
                  if k.endswith(("_vs_f64", "_vs_mor")) or k in ("nan", "dropped")}}
        out.append(rec)
        C.log(f"Evo 2-style L={length} -> {modes} real modes: l2 {rec['l2_median']:.2e} "
              f"(BT {rec['bt_l2_median']:.2e}), hinf/aak {rec['hinf_over_aak_median']:.2f}, "
              f"Vortex vs f64 {rec['vortex_filter_vs_f64']:.1e} "
              f"{rec['vortex_prefill_vs_f64']:.1e} {rec['vortex_steps_vs_f64']:.1e}, vs mor "
              f"{rec['vortex_filter_vs_mor']:.1e} {rec['vortex_prefill_vs_mor']:.1e} "
              f"{rec['vortex_steps_vs_mor']:.1e} ({seconds:.1f} s)")
    return out


def real_poles_only():
    """``--real-poles``: the real-pole reductions alone, merged into the last full run's
    results (JSON and RESULTS.md section)."""
    start = time.perf_counter()
    C.pin_threads()
    eh.import_engines(tempfile.mkdtemp())
    path = C.RESULTS_DIR / f"{NAME}.json"
    saved = json.loads(path.read_text())
    real = real_pole_reductions(64)
    real_meta = C.metadata(start)
    report = _report(saved["rows"], saved["reductions"], saved["failures"], saved["meta"],
                     real, real_meta)
    print(report)
    C.write_json(NAME, saved | {"real_poles": real, "real_poles_meta": real_meta})
    C.write_section(NAME, report)


def main():
    if "--real-poles" in sys.argv:
        return real_poles_only()
    quick = "--quick" in sys.argv
    start = time.perf_counter()
    C.pin_threads()
    eh.import_engines(tempfile.mkdtemp())
    filters = C.load_filters()
    layers = [0] if quick else range(filters.shape[0])
    channels = 16 if quick else filters.shape[1]
    rows, reductions, failures = [], [], []
    for layer in layers:
        h = filters[layer, :channels]
        for name, make in trained_banks(h).items():
            t0 = time.perf_counter()
            try:
                bank = make()
            except ValueError as exc:  # a bank mor refuses to produce: said, not measured
                C.log(f"layer {layer}: {name}: {exc}")
                failures.append({"bank": f"layer {layer}: {name}", "error": str(exc)})
                continue
            reduce_s = time.perf_counter() - t0
            row = {"bank": f"layer {layer}: {name}", "reduce_seconds": reduce_s,
                   **run("striped-hyena", bank, 2048, length=h.shape[-1])}
            rows.append(row)
            C.log(f"{row['bank']}: modes {row['modes_min']}..{row['modes_max']}, dropped "
                  f"{row['dropped']}, f64 {row['filter_vs_f64']:.1e} {row['prefill_vs_f64']:.1e}"
                  f" {row['steps_vs_f64']:.1e}, mor {row['filter_vs_mor']:.1e} "
                  f"{row['prefill_vs_mor']:.1e} {row['steps_vs_mor']:.1e}, nan {row['nan']}")
    evo_channels = 16 if quick else 64
    for length in (2048, 8192):
        bank = evo2_bank(evo_channels, seed=length)
        for engine in ("vortex", "striped-hyena"):
            row = {"bank": f"Evo 2-style, {evo_channels} x 16 real", "reduce_seconds": 0.0,
                   **run(engine, bank, length, length=length)}
            rows.append(row)
            C.log(f"{row['bank']} {engine} L={length}: f64 {row['filter_vs_f64']:.1e} "
                  f"{row['prefill_vs_f64']:.1e} {row['steps_vs_f64']:.1e}, mor "
                  f"{row['filter_vs_mor']:.1e} {row['prefill_vs_mor']:.1e} "
                  f"{row['steps_vs_mor']:.1e}")
        # an existing modal model read back from a Vortex state dict and reduced
        for modes in (8, 4):
            for source in ("taps", "StateSpace"):
                data = bank.impulse(length) if source == "taps" else bank.to_dense()
                red = mor.reduce(data, modes=modes)
                taps = bank.impulse(length)
                cmp = mor.compare(taps, red)
                complex_poles = int((red.compact()[0].imag != 0).sum())
                rec = {"length": length, "modes": modes, "source": source,
                       "l2_median": float(np.median(cmp.l2)), "l2_max": float(cmp.l2.max()),
                       "hinf_median": float(np.median(cmp.hinf)),
                       "aak_median": float(np.median(cmp.aak)),
                       "hinf_over_aak_median": float(np.median(cmp.hinf / cmp.aak)),
                       "complex_modes": complex_poles}
                if source == "taps":
                    rec.update({f"sh_{k}": v for k, v in run(
                        "striped-hyena", red, length, length=length).items()
                        if k.endswith(("_vs_f64", "_vs_mor")) or k == "nan"})
                reductions.append(rec)
                C.log(f"Evo 2-style L={length} -> {modes} modes ({source}): l2 "
                      f"{rec['l2_median']:.2e}, hinf/aak {rec['hinf_over_aak_median']:.2f}, "
                      f"complex modes {complex_poles}")
    real = real_pole_reductions(evo_channels)
    meta = C.metadata(start, engines={"stripedhyena": _version("stripedhyena"),
                                      "vtx": _version("vtx"), "torch": _version("torch")})
    report = _report(rows, reductions, failures, meta, real)
    print(report)
    if not quick:
        C.write_json(NAME, {"meta": meta, "rows": rows, "reductions": reductions,
                            "failures": failures, "real_poles": real})
        C.write_section(NAME, report)


def _version(name):
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _ok(row) -> str:
    good = (row["nan"] == 0 and all(row[f"{k}_vs_f64"] < ENGINE_TOL and
                                    row[f"{k}_vs_mor"] < MOR_TOL
                                    for k in ("filter", "prefill", "steps")))
    return "yes" if good else "**no**"


def _report(rows, reductions, failures, meta, real=(), real_meta=None) -> str:
    e = meta["engines"]
    table = [[r["bank"], r["engine"], r["prompt"], f"{r['modes_min']}..{r['modes_max']}",
              r["state_size"], r["padded"],
              f"{r['dropped']}" + (f" ({r['change_max']:.1e})" if r["dropped"] else ""),
              " / ".join(f"{r[f'{k}_vs_f64']:.1e}" for k in ("filter", "prefill", "steps")),
              " / ".join(f"{r[f'{k}_vs_mor']:.1e}" for k in ("filter", "prefill", "steps")),
              " / ".join(f"{r[f'mor_{k}_vs_f64']:.1e}" for k in ("filter", "prefill", "steps")),
              " / ".join(f"{r[f'layout_{k}_vs_f64']:.1e}"
                         for k in ("filter", "prefill", "steps")),
              r["nan"], _ok(r)] for r in rows]
    red = [[r["length"], r["modes"], r["source"], f"{r['l2_median']:.2e} ({r['l2_max']:.1e})",
            f"{r['hinf_median']:.2e}", f"{r['aak_median']:.2e}",
            f"{r['hinf_over_aak_median']:.2f}", r["complex_modes"],
            " / ".join(f"{r[f'sh_{k}_vs_f64']:.1e}" for k in ("filter", "prefill", "steps"))
            if "sh_filter_vs_f64" in r else "—"] for r in reductions]
    return "\n".join(line for line in [
        C.header_block("Banks in the inference engines (`bench_engines.py`)", meta),
        f"- engines: stripedhyena {e['stripedhyena']}, vtx {e['vtx']} (installed with "
        f"`--no-deps`), torch {e['torch']} (CPU), float32; stand-ins: `flash_attn_2_cuda` "
        "(an empty module) and `torch.cuda.device` (a no-op for CPU devices, Vortex only)",
        "",
        "Worst channel, max-relative (`max |a - b| / max |b|`): the engine's materialised "
        f"filter / its FFT prefill of the prompt / {STEPS} decode steps after it, against the "
        "bank's float64 response (target 1e-4) and against mor's float32 layer "
        "(`ModalRecurrence`, FFT prefill; target 5e-5); mor's layer against float64 beside "
        "them, and `layout`: the float32 parameters as written, evaluated in float64 (what "
        "the engine's layout itself loses: StripedHyena stores the pole, Vortex its log). "
        "Batch 1, inputs standard normal. `padded`: slots given the pole 0.5 and a zero "
        "residue; `dropped`: tiny-pole modes dropped by the writer and the residues refitted "
        "(largest relative l2 change of a filter), the reference then being the refitted "
        "bank.\n",
        C.md_table(["bank", "engine", "prompt", "modes", "state_size", "padded",
                    "dropped (change)", "engine vs float64", "engine vs mor float32",
                    "mor vs float64", "layout vs float64", "NaN", "within targets"], table),
        "",
        *[f"- {f['bank']}: not produced ({f['error']})" for f in failures],
        "" if failures else None,
        "Evo 2-style layers read back from a Vortex state dict (`from_vortex_state_dict`, "
        "16 real modes per channel) and reduced with `mor.reduce(..., modes=m)` (balanced "
        "truncation) from the taps or from the `StateSpace` (`bank.to_dense()`): errors "
        "against the layer's taps (`mor.compare`; medians over channels; hinf beside the "
        "AAK bound sigma_{d+1}); `complex modes`: modes with complex poles, which Vortex does "
        "not take (real-pole reductions: the next table), so the reduced banks run in "
        "StripedHyena (engine vs float64: filter / prefill / steps, worst channel).\n",
        C.md_table(["L", "modes", "from", "l2 median (max)", "hinf median", "AAK median",
                    "hinf / AAK median", "complex modes", "StripedHyena vs float64"], red),
        "",
        *(_real_report(real, real_meta) if real else [])] if line is not None)


def _real_report(real, real_meta) -> list[str]:
    """The real-pole reductions' table and what it says."""
    table = [[r["length"], r["modes"], f"{r['modes_min']}..{r['modes_max']}",
              f"{r['l2_median']:.2e} ({r['l2_max']:.1e})", f"{r['bt_l2_median']:.2e}",
              f"{r['hinf_median']:.2e}", f"{r['aak_median']:.2e}",
              f"{r['hinf_over_aak_median']:.2f} ({r['hinf_over_aak_max']:.1f})",
              f"{r['tail_max']:.2f} ({r['layer_tail_max']:.2f})",
              f"{r['f32_deviation_max']:.1e}",
              " / ".join(f"{r[f'vortex_{k}_vs_f64']:.1e}" for k in ("filter", "prefill", "steps")),
              " / ".join(f"{r[f'vortex_{k}_vs_mor']:.1e}" for k in ("filter", "prefill", "steps")),
              r["vortex_nan"], _ok({k[len("vortex_"):]: v for k, v in r.items()
                                    if k.startswith("vortex_")}),
              f"{r['reduce_seconds']:.1f}"] for r in real]
    when = "" if real_meta is None else (
        f" (run on its own: {real_meta['date']}, `{real_meta['command']}`, "
        f"{real_meta['script_seconds']:.0f} s)")
    return [
        f"The same Evo 2-style layer at L = {real[0]['length']} ({real[0]['channels']} "
        "channels) reduced from its taps to m *real* modes, `mor.reduce(taps, modes=m, "
        "method=\"modal\", real_poles=True)` (a greedy real-pole start refined by variable "
        f"projection; every pole real in (0, 1)){when}, written with `to_vortex_state_dict` "
        "and run in Vortex: errors against the taps (medians over channels, worst in "
        "brackets), balanced truncation's l2 at m (complex) modes beside them; hinf beside the "
        "AAK bound, which holds for any order-m model, complex poles allowed, so real-pole "
        "models sit above it by more than balanced truncation's 1.5; `tail`: what the model "
        "emits after lag L relative to the taps' norm (the layer's own 16-pole filters "
        "in brackets); the bank's float32 deviation; the worst channel in Vortex (filter / "
        f"prefill / {STEPS} decode steps) against float64 and mor's float32 layer.\n",
        C.md_table(["L", "real modes", "got", "l2 median (max)", "BT l2 median",
                    "hinf median", "AAK median", "hinf / AAK median (max)",
                    "tail max (layer's)", "float32 dev. max", "Vortex vs float64",
                    "Vortex vs mor float32", "NaN", "within targets", "reduce s"], table),
        ""]


if __name__ == "__main__":
    main()
