"""Tables and plots of the end-to-end study from the JSON files in ``results/``.

``python benchmarks/e2e/report.py [--distilled DIR]`` writes ``RESULTS.md``'s generated part
(between the markers) and ``results/quality_vs_modes.png``, ``results/throughput_vs_batch.png``;
with ``--distilled``, it first summarises the fits `distill.py` wrote there (per model, method
and size: median and worst ``l2`` over the taps, unstable poles, wall time) into
``results/distill_summary.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
METHODS = ("balanced", "hankel", "modal", "recipe")
BEGIN, END = "<!-- generated: begin -->", "<!-- generated: end -->"


def quality_tables(kinds) -> list[str]:
    lines = []
    for kind in kinds:
        path = RESULTS / f"{kind}_quality.json"
        if not path.exists():
            continue
        q = json.loads(path.read_text())
        train = json.loads((RESULTS / f"{kind}.json").read_text())
        sizes = sorted({r["modes"] for r in q["rows"] if r["modes"]})
        lines += [f"### {kind}: held-out {q['held_out_bpb']:.4f} bits per byte "
                  f"({q['windows']} windows of 2048; trained {train['steps']} steps, "
                  f"{train['train_seconds']:.0f} s)", "",
                  "Change of held-out bits per byte (%, 95% bootstrap interval) with every "
                  "long filter replaced by its distilled model:", "",
                  "| method | " + " | ".join(f"{m} modes" for m in sizes)
                  + " | tol 1e-2 |", "|---" * (len(sizes) + 2) + "|"]
        ref = q["held_out_bpb"]
        for method in METHODS:
            rows = {r["modes"]: r for r in q["rows"] if r["method"] == method}
            if not rows:
                continue
            cells = []
            for m in sizes + [0]:
                r = rows.get(m)
                cells.append("" if r is None else
                             f"{r['delta_percent']:+.2f} [{100 * r['delta_ci95'][0] / ref:+.2f}, "
                             f"{100 * r['delta_ci95'][1] / ref:+.2f}]"
                             + (f" ({r['unstable_poles']} unstable)" if r["unstable_poles"]
                                else ""))
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines += ["", "Relative RMS error of the logits:", "",
                  "| method | " + " | ".join(f"{m} modes" for m in sizes) + " | tol 1e-2 |",
                  "|---" * (len(sizes) + 2) + "|"]
        for method in METHODS:
            rows = {r["modes"]: r for r in q["rows"] if r["method"] == method}
            if rows:
                lines.append(f"| {method} | " + " | ".join(
                    f"{rows[m]['logit_rel_rms']:.3f}" if m in rows else ""
                    for m in sizes + [0]) + " |")
        for name, checks in q["greedy"].items():
            agree = sum(c["agrees_before_violation"] for c in checks)
            lines += ["", f"Greedy decoding, {name} against the undistilled model, "
                      f"{len(checks)} prompts of 512 bytes: first differing token "
                      f"{[c['first_token_difference'] for c in checks]}; first step where the "
                      f"logit error reaches half the decision margin "
                      f"{[c['first_margin_violation'] for c in checks]}; tokens agree before "
                      f"that step in {agree}/{len(checks)} (None: not within the steps run)."]
        lines.append("")
    return lines


def quality_plot(kinds) -> None:
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 3.8), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        path = RESULTS / f"{kind}_quality.json"
        if not path.exists():
            continue
        q = json.loads(path.read_text())
        for method in METHODS:
            rows = sorted((r for r in q["rows"] if r["method"] == method and r["modes"]),
                          key=lambda r: r["modes"])
            if rows:
                ax.plot([r["modes"] for r in rows], [r["delta_percent"] for r in rows], "o-",
                        label=method)
        ax.set(xscale="log", xlabel="complex modes per filter",
               ylabel="held-out bits/byte change (%)", title=kind)
        ax.set_yscale("symlog", linthresh=0.01)
        ax.axhline(0, color="k", lw=0.5)
        ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "quality_vs_modes.png", dpi=110)


#: Throughput files, oldest first: a later file's rows replace an earlier one's for the same
#: scale, context and model.
THROUGHPUT_FILES = ("throughput_first.json", "throughput_transformer.json",
                    "throughput_1p3b.json", "throughput_multihyena_m8.json",
                    "throughput_graph.json")
MODELS = ("distilled", "cached", "multihyena-distilled", "multihyena-cached", "transformer")


def label(row: dict, modes: int) -> str:
    """The row's model, with the modes of a distilled one (the file's ``modes`` where the row
    has none: prefill rows, and rows that predate the field)."""
    model = row["model"]
    if "distilled" in model:
        model += f" ({row.get('modes') or modes} modes{', CUDA graph' if row.get('graph') else ''})"
    return model


def throughput_rows() -> list[dict]:
    """The newest row of each scale, context, model and batch (`THROUGHPUT_FILES`), labelled
    (`label`)."""
    rows: dict = {}
    for name in THROUGHPUT_FILES:
        path = RESULTS / name
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        new = [r | {"label": label(r, data["modes"]), "file": name} for r in data["rows"]
               if name != "throughput_first.json" or r["model"] != "transformer"]
        replaced = {(r["scale"], r["prompt"], r["label"]) for r in new}
        rows = {k: r for k, r in rows.items() if k[:3] not in replaced}
        rows |= {(r["scale"], r["prompt"], r["label"], r.get("batch")): r for r in new}
    return list(rows.values())


def _labels(rows) -> list[str]:
    return sorted({r["label"] for r in rows},
                  key=lambda m: (MODELS.index(m.split(" ")[0]), m))


def _contexts(rows) -> list[tuple[str, int]]:
    return sorted({(r["scale"], r["prompt"]) for r in rows}, key=lambda k: (k[0] != "small", k))


def throughput_tables(rows) -> list[str]:
    lines = ["| scale | context | model | largest batch | tokens/s at it | ms/step | peak GB "
             "| tokens/s at batch 1 | prefill, batch 1 (s) | file |", "|---" * 10 + "|"]
    for scale, prompt in _contexts(rows):
        for model in _labels(rows):
            here = [r for r in rows if r["scale"] == scale and r["prompt"] == prompt
                    and r["label"] == model]
            sel = [r for r in here if "batch" in r]
            pre = [r["prefill_batch1_s"] for r in here if "prefill_batch1_s" in r]
            if not sel:
                continue
            top = max(sel, key=lambda r: r["batch"])
            one = min(sel, key=lambda r: r["batch"])
            prefill = "" if not pre else "OOM" if pre[0] is None else f"{pre[0]:.3f}"
            lines.append(f"| {scale} | {prompt}+{top['generated']} | {model} | {top['batch']} | "
                         f"{top['tokens_per_s']:,.0f} | {top['step_ms']:.1f} | "
                         f"{top['peak_gb']:.1f} | {one['tokens_per_s']:,.0f} | {prefill} | "
                         f"{top['file']} |")
    return lines


def throughput_plot(rows) -> None:
    keys = _contexts(rows)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), squeeze=False)
    for ax, (scale, prompt) in zip(axes[0], keys):
        for model in _labels(rows):
            sel = sorted((r for r in rows if r["scale"] == scale and r["prompt"] == prompt
                          and r["label"] == model and "batch" in r), key=lambda r: r["batch"])
            if sel:
                ax.plot([r["batch"] for r in sel], [r["tokens_per_s"] for r in sel], "o-",
                        label=model)
        ax.set(xscale="log", yscale="log", xlabel="batch", ylabel="tokens/s",
               title=f"{scale}, {prompt}+2048")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(RESULTS / "throughput_vs_batch.png", dpi=110)


def summarise(folder: Path) -> None:
    """Per model, method and size: the fits' l2 over the taps, unstable poles, wall time."""
    rows = []
    for path in sorted(folder.glob("*_*.npz")):
        kind, method = path.stem.split("_", 1)
        with np.load(path) as z:
            for m in sorted({int(k.split("_")[0][1:]) for k in z.files if k.endswith("_l2")}):
                unstable = (np.abs(z[f"m{m}_poles"]) >= 1).sum()
                rows.append({"model": kind, "method": method, "modes": m,
                             "l2_median": float(np.median(z[f"m{m}_l2"])),
                             "l2_max": float(np.max(z[f"m{m}_l2"])),
                             "unstable_poles": int(unstable),
                             "seconds": float(z[f"m{m}_seconds"])})
    (RESULTS / "distill_summary.json").write_text(json.dumps(rows, indent=1))


def distill_table() -> list[str]:
    path = RESULTS / "distill_summary.json"
    if not path.exists():
        return []
    rows = json.loads(path.read_text())
    lines = ["## The fits", "", "Relative `l2` error over the 2048 taps, median / worst over the "
             "model's filters (`modes = 0`: the tolerance run), unstable poles and wall time "
             "(mor's methods: Hyena's on 2 CPU cores here, shared between concurrent jobs, except "
             "modal at 16 modes; the retrained MultiHyena's and Hyena's modal at 16 on the H200 "
             "host's CPUs; modal at Hyena's 1-4 modes from the finite-difference Jacobian, 20-30x "
             "slower than the exact one at 8 and the batched one at 16; see 'How it was run'; "
             "the recipe on the H200):",
             "",
             "| model | method | modes | l2 median | l2 worst | unstable poles | seconds |",
             "|---" * 7 + "|"]
    for r in sorted(rows, key=lambda r: (r["model"], METHODS.index(r["method"]),
                                         r["modes"] or 99)):
        lines.append(f"| {r['model']} | {r['method']} | {r['modes'] or 'tol 1e-2'} | "
                     f"{r['l2_median']:.2e} | {r['l2_max']:.2e} | {r['unstable_poles']} | "
                     f"{r['seconds']:.0f} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distilled", type=Path, help="the folder distill.py wrote")
    args = parser.parse_args()
    if args.distilled:
        summarise(args.distilled)
    kinds = [k for k in ("hyena", "multihyena") if (RESULTS / f"{k}_quality.json").exists()]
    rows = throughput_rows()
    lines = [BEGIN, "", "## Quality", ""] + quality_tables(kinds) + distill_table()
    lines += ["## Generation throughput (H200)", ""] + throughput_tables(rows) + ["", END]
    quality_plot(kinds) if kinds else None
    throughput_plot(rows)
    md = HERE / "RESULTS.md"
    text = md.read_text() if md.exists() else f"# End-to-end results\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    md.write_text(head + "\n".join(lines) + rest.split(END, 1)[1])


if __name__ == "__main__":
    main()
