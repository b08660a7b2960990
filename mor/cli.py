"""The ``mor`` command: ``demo``, ``hsv`` and ``distill``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

# Running `mor` imports the package root (mor/__init__.py) first, which already loads these;
# only matplotlib (mor.plot) and dask are left to the commands that need them.
import mor
from mor.demo import run_demo
from mor.drivers.distillation import distill as run_distillation
from mor.files import read_filters

SPECTRUM_FILTERS_PER_LAYER = 64  # the report's spectrum plot samples this many per layer


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Long FIR filters to compact state-space models."""


@main.command()
@click.option("--filters", default=32, show_default=True, help="Number of filters.")
@click.option("--length", default=512, show_default=True, help="Filter length L.")
@click.option("--orders", default="4,8,16,32", show_default=True,
              help="Comma-separated orders to reduce to.")
def demo(filters: int, length: int, orders: str) -> None:
    """Spectrum, reductions and errors beside the bounds on the embedded Hyena-like filters."""
    run_demo(filters, length, tuple(int(o) for o in orders.split(",")), out=click.echo)


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@click.option("--key", help="Array name or glob in INPUT (npz, safetensors, state dict).")
@click.option("-k", "count", default=64, show_default=True, help="Singular values per filter.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Write the spectrum plot (PNG) here.")
def hsv(input_path: str, key: str | None, count: int, plot_path: str | None) -> None:
    """Hankel singular values of the filters in INPUT: per-layer decay, optionally plotted."""
    h = read_filters(input_path, key)
    layers = _as_layers(h)
    count = min(count, h.shape[-1] - 1)
    values = mor.hankel_singular_values(layers, count)
    rel = values / np.where(values[..., :1] > 0, values[..., :1], 1.0)
    shown = [d for d in (4, 8, 16, 32, 64, 128) if d < count]
    click.echo(f"{layers.shape[0]} layer(s) x {layers.shape[1]} filters, L = {h.shape[-1]}; "
               "median sigma_(d+1)/sigma_1 (worst filter):")
    for layer in range(layers.shape[0]):
        cells = [f"d={d}: {np.median(rel[layer, :, d]):.2e} ({rel[layer, :, d].max():.1e})"
                 for d in shown]
        click.echo(f"  layer {layer}: " + "  ".join(cells))
    if plot_path:
        _spectrum_figure(layers, count - 1).savefig(plot_path, dpi=100)
        click.echo(f"wrote {plot_path}")


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@click.option("--key", help="Array name or glob in INPUT (npz, safetensors, state dict).")
@click.option("--order", type=int, help="McMillan degree of every model.")
@click.option("--modes", type=int, help="Compact modes (GPU state size) of every model.")
@click.option("--tol", type=float, help="Relative error tolerance (smallest order meeting it).")
@click.option("--norm", type=click.Choice(["l2", "hinf"]), default="l2", show_default=True)
@click.option("--method", type=click.Choice(["auto", "balanced", "hankel"]), default="auto",
              show_default=True)
@click.option("--max-order", type=int, help="Largest order a --tol search tries (64).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default="bank.npz",
              show_default=True, help="The bank (mor.load reads it).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False),
              help="Folder for report.json and plots.")
@click.option("--workers", default=1, show_default=True, help="Local worker processes.")
@click.option("--scheduler", help="Address of a dask.distributed scheduler to run on.")
@click.option("--chunk-size", default=64, show_default=True, help="Filters per task.")
@click.option("--shards", "shard_dir", type=click.Path(file_okay=False),
              help="Write finished chunks here as they come (for --resume).")
@click.option("--resume", is_flag=True, help="Continue from the chunks in --shards.")
@click.option("--export", type=click.Choice(["striped-hyena", "log-poles"]),
              help="Also write the bank in an inference engine's convention.")
def distill(input_path, key, order, modes, tol, norm, method, max_order, out_path, report_dir,
            workers, scheduler, chunk_size, shard_dir, resume, export) -> None:
    """Distill every filter in INPUT into a modal bank, with a report."""
    h = read_filters(input_path, key)
    given = [o for o, v in (("--order", order), ("--modes", modes), ("--tol", tol))
             if v is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --order, --modes and --tol")
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)  # fail now, not after the work
    executor = None
    if scheduler:
        try:  # the dask extra is optional: only --scheduler needs it
            from distributed import Client
        except ImportError as exc:
            raise click.ClickException("--scheduler needs the dask extra: "
                                       "pip install 'mor[dask]'") from exc
        executor = Client(scheduler).get_executor()
    start = time.perf_counter()
    result = run_distillation(h, order, modes=modes, tol=tol, norm=norm, method=method,
                              max_order=max_order, executor=executor, workers=workers,
                              chunk_size=chunk_size, shard_dir=shard_dir, resume=resume,
                              progress=True)
    elapsed = time.perf_counter() - start
    result.bank.save(out_path)
    click.echo(str(result.report))
    failed = int(np.sum(result.report.columns["failed"]))
    click.echo(f"{h.size // h.shape[-1]} filters in {elapsed:.1f} s; {failed} failed; bank "
               f"written to {out_path}")
    if export:
        _export(result.bank, export, Path(out_path))
    if report_dir:
        _write_report(h, result, Path(report_dir))
        click.echo(f"report written to {report_dir}")


def _as_layers(h: np.ndarray) -> np.ndarray:
    """``(layers, filters, L)``: a flat batch is one layer; more leading axes are merged."""
    if h.ndim == 1:
        return h[None, None]
    if h.ndim == 2:
        return h[None]
    return h.reshape(h.shape[0], -1, h.shape[-1])


def _spectrum_figure(layers: np.ndarray, max_order: int):
    # matplotlib (also behind mor.plot) only when a plot is asked for: the CLI's start-up time
    from matplotlib.figure import Figure

    from mor import plot  # (matplotlib: the CLI's start-up time)

    cols = min(2, layers.shape[0])
    rows = -(-layers.shape[0] // cols)
    fig = Figure(figsize=(6 * cols, 3.5 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    step = max(1, layers.shape[1] // SPECTRUM_FILTERS_PER_LAYER)
    for layer, ax in enumerate(axes[: layers.shape[0]]):
        plot.hankel_spectrum(layers[layer, ::step], max_order=max_order, ax=ax)
        ax.set_title(f"layer {layer} ({layers[layer, ::step].shape[0]} filters)")
    for ax in axes[layers.shape[0]:]:
        ax.set_visible(False)
    return fig


def _write_report(h: np.ndarray, result, folder: Path) -> None:
    from mor import plot  # matplotlib only when a report is asked for: start-up time

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(result.report.to_json(indent=1))
    cols = result.report.columns
    layers = _as_layers(h)
    grid = (lambda v: np.asarray(v, dtype=float).reshape(layers.shape[0], -1))
    max_order = int(min(64, h.shape[-1] - 2))
    _spectrum_figure(layers, max_order).savefig(folder / "spectra.png", dpi=90)
    order = np.where(cols["failed"], -1, cols["order"])
    plot.layer_heatmap(grid(order), label="order")[0].savefig(folder / "orders.png", dpi=90)
    plot.layer_heatmap(grid(np.where(cols["failed"], np.nan, cols["l2"])), label="l2 error",
                       log=True)[0].savefig(folder / "l2.png", dpi=90)
    ok = ~np.asarray(cols["failed"], dtype=bool)
    plot.hinf_vs_aak(np.asarray(cols["hinf"], float)[ok], np.asarray(cols["aak"], float)[ok]
                     )[0].savefig(folder / "hinf_vs_aak.png", dpi=90)


def _export(bank, kind: str, out_path: Path) -> None:
    arrays = mor.export.to_striped_hyena(bank) if kind == "striped-hyena" else \
        mor.export.to_log_poles(bank)
    target = out_path.with_name(out_path.stem + f".{kind}.npz")
    np.savez(target, convention=json.dumps(kind), **arrays)
    click.echo(f"{kind} export written to {target}")


if __name__ == "__main__":
    main()
