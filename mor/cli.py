"""The ``mor`` command: ``demo``, ``hsv`` and ``distill``.

Everything a command will write (``--out``, ``--report``, ``--shards``, ``--plot``) and every
combination of flags is checked before the work starts. An error is one line on stderr,
``Error: ...``, naming the flag: exit status 2 for a wrong command line (click's usage errors,
which print the usage line before it), 1 for a failure while working. ``mor --debug ...``
shows the Python traceback instead.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import click
import numpy as np

# Running `mor` imports the package root (mor/__init__.py) first, which already loads these;
# only matplotlib (mor.plot) and dask are left to the commands that need them.
import mor
from mor.demo import run_demo
from mor.drivers.distillation import ShardMismatch, shard_files
from mor.drivers.distillation import distill as run_distillation
from mor.files import open_filters, read_filters
from mor.methods import available_methods
from mor.warmup import warmup as run_warmup

SPECTRUM_FILTERS_PER_LAYER = 64  # the report's spectrum plot samples this many per layer
F32_FLOOR = 1e-9  # the report draws float32 deviations below this (0: exact) at it


class _Group(click.Group):
    """Turns an exception of a command into a one-line error (the traceback with --debug)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            raise _one_line(exc) from None


def _one_line(exc: Exception) -> click.ClickException:
    """``Error: ...`` on one line: the message of a user error (bad input, a file that cannot be
    read or written, a missing extra), or an internal error pointing at --debug."""
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    elif isinstance(exc, MemoryError):
        text = "out of memory"
    else:
        text = str(exc) or type(exc).__name__
    text = " ".join(text.split())
    if not isinstance(exc, (ValueError, OSError, ImportError, MemoryError)):
        text = (f"internal error ({type(exc).__name__}: {text}); please report it with the "
                "traceback that 'mor --debug ...' shows")
    return click.ClickException(text)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the Python traceback of an error.")
def main(debug: bool) -> None:
    """Long FIR filters to compact state-space models."""


def _check_writable(path: str, flag: str, *, folder: bool = False) -> None:
    """Fail now, naming ``flag``, where ``path`` could not be written after the work: the
    folder that will hold it (``folder``: the folder itself) is created and a file tried there."""
    target = Path(path)
    where = target if folder else target.parent
    if not folder and target.is_dir():
        raise click.BadParameter(f"{path} is a folder, not a file", param_hint=f"'{flag}'")
    for parent in (where, *where.parents):
        if parent.exists():
            if not parent.is_dir():
                raise click.BadParameter(f"cannot write {path}: {parent} is a file, not a folder",
                                         param_hint=f"'{flag}'")
            break
    try:
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as exc:
        raise click.BadParameter(f"cannot write {path}: {exc.strerror or exc}",
                                 param_hint=f"'{flag}'") from None


def _parse_orders(ctx, param, value: str) -> tuple[int, ...]:
    try:
        orders = tuple(int(o) for o in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") \
            from None
    return orders


@main.command()
@click.option("--filters", type=click.IntRange(min=1), default=32, show_default=True,
              help="Number of filters.")
@click.option("--length", type=click.IntRange(min=3), default=512, show_default=True,
              help="Filter length L.")
@click.option("--orders", default="4,8,16,32", show_default=True, callback=_parse_orders,
              help="Comma-separated orders to reduce to (each 1 to L - 2).")
def demo(filters: int, length: int, orders: tuple[int, ...]) -> None:
    """Spectrum, reductions and errors beside the bounds on the embedded Hyena-like filters."""
    wrong = [d for d in orders if not 1 <= d <= length - 2]
    if wrong:
        raise click.BadParameter(f"orders must lie in 1 .. L - 2 = {length - 2} for --length "
                                 f"{length}, got {', '.join(map(str, wrong))}",
                                 param_hint="'--orders'")
    run_demo(filters, length, orders, out=click.echo)


@main.command()
def warmup() -> None:
    """Compile mor's Numba kernels once, into Numba's cache (the set-up step; idempotent).

    Later processes load the kernels from the cache instead of compiling them on first use
    (about a minute). Run it again after updating mor or Numba; run twice, the second run
    compiles nothing.
    """
    click.echo("mor warmup: compiling (or loading from Numba's cache) every kernel ...")
    click.echo(str(run_warmup()))


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@click.option("--key", help="Array name or glob in INPUT (npz, safetensors, state dict).")
@click.option("-k", "count", type=click.IntRange(min=1), default=64, show_default=True,
              help="Singular values per filter (at least 1).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Write the spectrum plot (PNG) here.")
def hsv(input_path: str, key: str | None, count: int, plot_path: str | None) -> None:
    """Hankel singular values of the filters in INPUT: per-layer decay, optionally plotted."""
    if plot_path:
        _check_writable(plot_path, "--plot")
    h = read_filters(input_path, key)
    if h.shape[-1] < 2:
        raise click.ClickException(f"{input_path}: filters of length {h.shape[-1]} have no "
                                   "Hankel spectrum (order 0 is exact)")
    layers = _as_layers(h)
    count = min(count, h.shape[-1] - 1)
    finite = np.isfinite(h).all(axis=-1)  # filters with NaN or Inf taps are left out, by index
    if not finite.any():
        raise click.ClickException(f"{input_path}: every filter has NaN or Inf taps")
    values = np.full(h.shape[:-1] + (count,), np.nan)
    values[finite] = mor.hankel_singular_values(h[finite], count)
    values = values.reshape(layers.shape[:2] + (count,))
    rel = values / np.where(values[..., :1] > 0, values[..., :1], 1.0)
    shown = [d for d in (4, 8, 16, 32, 64, 128) if d < count] or list(range(1, count))
    click.echo(f"{layers.shape[0]} layer(s) x {layers.shape[1]} filters, L = {h.shape[-1]}; "
               "median sigma_(d+1)/sigma_1 (worst filter):")
    if not finite.all():
        bad = [str(tuple(int(i) for i in j)) for j in np.argwhere(~np.atleast_1d(finite))]
        click.echo(f"  {len(bad)} filter(s) with NaN or Inf taps left out: {', '.join(bad[:8])}"
                   + (" ..." if len(bad) > 8 else ""))
    for layer in range(layers.shape[0]):
        if np.isnan(values[layer, :, 0]).all():
            click.echo(f"  layer {layer}: no filter with finite taps")
            continue
        cells = [f"d={d}: {np.nanmedian(rel[layer, :, d]):.2e} ({np.nanmax(rel[layer, :, d]):.1e})"
                 for d in shown] or [f"sigma_1 {np.nanmedian(values[layer, :, 0]):.2e} (median)"]
        click.echo(f"  layer {layer}: " + "  ".join(cells))
    if plot_path:
        _spectrum_figure(h, count - 1, ~finite).savefig(plot_path, dpi=100)
        click.echo(f"wrote {plot_path}")


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@click.option("--key", help="Array name or glob in INPUT (npz, safetensors, state dict).")
@click.option("--order", type=click.IntRange(min=0), help="McMillan degree of every model.")
@click.option("--modes", type=click.IntRange(min=1),
              help="Compact modes (GPU state size) of every model.")
@click.option("--tol", type=click.FloatRange(min=0, min_open=True),
              help="Relative error tolerance (smallest order meeting it).")
@click.option("--norm", type=click.Choice(["l2", "hinf"]), default="l2", show_default=True)
@click.option("--method", type=click.Choice(["auto", *available_methods()]), default="auto",
              show_default=True,
              help="The reduction method (see mor.reduce). auto: modal for --order/--modes "
                   "(balanced and hankel, the better per filter, with --norm hinf); balanced "
                   "for --tol.")
@click.option("--real-poles", is_flag=True,
              help="Real poles in (0, 1) only, one per mode (Vortex's Hyena-LI filters): "
                   "method modal with real_poles=True (leave --method out or give modal). "
                   "Implied by --export vortex.")
@click.option("--max-order", type=click.IntRange(min=0),
              help="Largest order a --tol search tries (64).")
@click.option("--on-fail", type=click.Choice(["best", "flag", "raise"]), default="best",
              show_default=True,
              help="A filter that no order up to --max-order brings within --tol: best keeps "
                   "its most accurate model (listed as missed), flag gives it order 0 (listed "
                   "as failed), raise stops at the first filter that misses it or fails. "
                   "Filters with NaN or Inf taps fail (order 0) unless raise.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default="bank.npz",
              show_default=True, help="The bank (mor.load reads it).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False),
              help="Folder for report.json and plots.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Local worker processes.")
@click.option("--device",
              help="A torch device (cuda) for the Hankel decompositions of long filters: "
                   "balanced truncation there (the method --method auto then takes), in this "
                   "process. Needs torch.")
@click.option("--scheduler", help="Address of a dask.distributed scheduler to run on.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Filters per task.")
@click.option("--shards", "shard_dir", type=click.Path(file_okay=False),
              help="Write finished chunks here as they come (for --resume).")
@click.option("--resume", is_flag=True,
              help="Continue the run whose chunks are in --shards (same settings).")
@click.option("--export", type=click.Choice(list(mor.export.ENGINES)),
              help="Also write the bank as the engine's state dict, OUT's name with "
                   ".ENGINE.safetensors (vortex runs real poles only: --export vortex "
                   "implies --real-poles).")
@click.option("--export-config", type=click.Path(exists=True, dir_okay=False),
              help="The engine model's config (.json/.yml): its Hyena blocks, hidden_size "
                   "and state_size, which --export follows.")
def distill(input_path, key, order, modes, tol, norm, method, real_poles, max_order, on_fail,
            out_path, report_dir, workers, device, scheduler, chunk_size, shard_dir, resume,
            export, export_config) -> None:
    """Distill every filter in INPUT into a modal bank, with a report.

    With --real-poles, or --export vortex (Vortex runs real poles in (0, 1) only), every model
    is a sum of real exponentials fitted by the modal method (--modes then counts real poles);
    complex poles are never cast to real ones.

    The summary lists by index the filters that missed --tol (their most accurate model kept)
    and those that failed (order 0), as report.json does; a warning line on stderr ends a run
    that has any.
    """
    # everything that could fail after the work is checked first
    given = [o for o, v in (("--order", order), ("--modes", modes), ("--tol", tol))
             if v is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --order, --modes and --tol")
    options = {}
    if real_poles or export == "vortex":
        if method not in ("auto", "modal"):
            why = "--real-poles" if real_poles else "--export vortex (real poles only)"
            raise click.UsageError(f"{why} fits real poles with the modal method; --method "
                                   f"{method} gives complex poles: leave --method out or "
                                   "give modal")
        method, options = "modal", {"real_poles": True}
    if device:
        if workers > 1 or scheduler:
            raise click.UsageError("--device runs in this process: leave --workers and "
                                   "--scheduler out")
        try:  # the torch extra is optional: only --device needs it
            import mor.torch  # noqa: F401  (registers the device path)
        except ImportError as exc:
            raise click.ClickException("--device needs torch: pip install 'mor[torch]'") \
                from exc
        options["device"] = device
    if max_order is not None and tol is None:
        raise click.UsageError("--max-order bounds a --tol search; give it with --tol only")
    if resume and not shard_dir:
        raise click.UsageError("--resume needs --shards: the folder of the run to continue")
    if Path(out_path).resolve() == Path(input_path).resolve():
        raise click.BadParameter("the bank would overwrite INPUT", param_hint="'--out'")
    _check_writable(out_path, "--out")
    if report_dir:
        _check_writable(report_dir, "--report", folder=True)
    if shard_dir:
        _check_writable(shard_dir, "--shards", folder=True)
        if not resume and shard_files(shard_dir):
            raise _shards_exist(shard_dir)
    if export_config and not export:
        raise click.UsageError("--export-config describes the model of --export; give both")
    engine_config = _engine_config(export_config) if export_config else None
    if export:
        _check_writable(str(_export_path(Path(out_path), export)), "--export")
        _check_fits(export, engine_config, order, modes)
    executor = None
    if scheduler:
        try:  # the dask extra is optional: only --scheduler needs it
            from distributed import Client
        except ImportError as exc:
            raise click.ClickException("--scheduler needs the dask extra: "
                                       "pip install 'mor[dask]'") from exc
        executor = Client(scheduler).get_executor()
    h = open_filters(input_path, key)  # as stored: each chunk is read when it is reduced
    top = h.shape[-1] - 1
    for flag, value in (("--order", order), ("--modes", modes), ("--max-order", max_order)):
        if value is not None and value > top:
            raise click.BadParameter(f"{value} is more than L - 1 = {top} for the filters of "
                                     f"length {h.shape[-1]} in INPUT", param_hint=f"'{flag}'")
    start = time.perf_counter()
    try:
        result = run_distillation(h, order, modes=modes, tol=tol, norm=norm, method=method,
                                  max_order=max_order, on_fail=on_fail, executor=executor,
                                  workers=workers, chunk_size=chunk_size, shard_dir=shard_dir,
                                  resume=resume, progress=True, **options)
    except ShardMismatch as exc:  # raised before any work: said with the flags
        raise _shard_error(exc, shard_dir) from None
    elapsed = time.perf_counter() - start
    result.bank.save(out_path)
    report = result.report
    missed, failures = report.missed(), report.failures()
    count = h.size // h.shape[-1]
    click.echo(str(report))
    click.echo(f"{count} filters in {elapsed:.1f} s; "
               + (f"{len(missed)} missed {norm} <= {tol:g}, " if tol is not None else "")
               + f"{len(failures)} failed; bank written to {out_path}")
    for line in _flagged(report, tol, norm):
        click.echo(line)
    if export:
        _export(result.bank, export, Path(out_path), engine_config, h.shape[-1])
    if report_dir:
        _write_report(h, result, Path(report_dir), device)
        click.echo(f"report written to {report_dir}")
    if missed or failures:
        click.echo(_warning(report, count, tol, norm, report_dir), err=True)


def _warning(report, count: int, tol: float | None, norm: str, report_dir: str | None) -> str:
    """The line that ends a run with filters that missed the tolerance or failed."""
    said = []
    if report.missed():
        said.append(f"{len(report.missed())} missed {norm} <= {tol:g} (most accurate model "
                    "kept)")
    if report.failures():
        said.append(f"{len(report.failures())} failed (order 0)")
    where = " and in report.json" if report_dir else ""
    return f"Warning: of {count} filters, {' and '.join(said)}: listed by index above{where}"


def _flagged(report, tol: float | None, norm: str) -> list[str]:
    """Lines listing by index the filters that missed the tolerance (with the error reached)
    and those that failed (by reason)."""
    lines = []
    missed, failures = report.missed(), report.failures()
    if missed:
        error = report.columns[norm]
        lines.append(f"{len(missed)} filter(s) missed {norm} <= {tol:g} and kept their most "
                     f"accurate model (met_tol false), by index with the {norm} reached:")
        lines += _wrapped([f"{i} {error[i]:.2e}" for i in missed])
    if failures:
        lines.append(f"{len(failures)} filter(s) failed (order 0 in the bank), by index:")
        reason = report.columns["reason"]
        for why in dict.fromkeys(reason[i] for i in failures):
            lines += _wrapped([f"{why}:", *(str(i) for i in failures if reason[i] == why)])
    return lines


def _wrapped(items: list[str], width: int = 96) -> list[str]:
    """``items`` on indented lines of at most ``width`` characters (an item is never split)."""
    lines = [[]]
    for item in items:
        if lines[-1] and len("  ".join(["", *lines[-1], item])) > width:
            lines.append([])
        lines[-1].append(item)
    return ["  ".join(["", *line]) for line in lines]


#: What the settings recorded in a shard folder are called on the command line.
_SHARD_FLAGS = {"order": "--order", "modes": "--modes", "tol": "--tol", "norm": "--norm",
                "method": "--method", "options": "--real-poles (--export vortex)",
                "max_order": "--max-order", "on_fail": "--on-fail", "chunk_size": "--chunk-size",
                "shape": "the shape of the filters (INPUT, --key)",
                "filters": "the filters' taps (INPUT, --key: same shape, other values)"}


def _shards_exist(shard_dir: str) -> click.BadParameter:
    return click.BadParameter(f"{shard_dir} already holds shards of an earlier run: add "
                              "--resume to continue it, or give an empty folder",
                              param_hint="'--shards'")


def _shard_error(exc: ShardMismatch, shard_dir: str) -> click.ClickException:
    """A `ShardMismatch` of the library, said with the command's flags."""
    if exc.reason == "exists":
        return _shards_exist(shard_dir)
    if exc.reason != "settings":
        return click.ClickException(" ".join(str(exc).split()))

    def value(v):
        return "not given" if v is None else v if isinstance(v, str) else json.dumps(v)

    said = "; ".join(f"{_SHARD_FLAGS[k]}" if k == "filters" else
                     f"{_SHARD_FLAGS.get(k, k + ' (a mor.distill argument)')} "
                     f"{value(old)} there, {value(new)} now"
                     for k, (old, new) in exc.differences.items())
    return click.BadParameter(f"the shards in {shard_dir} were written with other settings "
                              f"({said}): rerun with those settings, or give an empty --shards "
                              "folder", param_hint="'--resume'")


def _as_layers(h: np.ndarray) -> np.ndarray:
    """``(layers, filters, L)``: a flat batch is one layer; more leading axes are merged."""
    if h.ndim == 1:
        return h[None, None]
    if h.ndim == 2:
        return h[None]
    return h.reshape(h.shape[0], -1, h.shape[-1])


def _spectrum_figure(h: np.ndarray, max_order: int, flagged, device=None):
    """Hankel spectra per layer of ``h``: a sample of ``SPECTRUM_FILTERS_PER_LAYER`` filters and
    every flagged one (``flagged``, of the batch shape, holds the filters with NaN or Inf taps:
    ``h`` is not scanned again, a model may be a memory map larger than memory), drawn as
    flagged and named by their index in ``h``; their values on ``device`` if given."""
    # matplotlib (also behind mor.plot) only when a plot is asked for: the CLI's start-up time
    from matplotlib.figure import Figure

    from mor import plot  # (matplotlib: the CLI's start-up time)

    layers = _as_layers(h)
    batch, shape = h.shape[:-1], layers.shape[:2]
    index = (np.stack(np.unravel_index(np.arange(np.prod(shape)), batch), axis=-1) if batch
             else np.zeros((1, 0), dtype=np.int64)).reshape(shape + (len(batch),))
    flag = np.asarray(flagged, dtype=bool).reshape(shape)
    cols = min(2, layers.shape[0])
    rows = -(-layers.shape[0] // cols)
    fig = Figure(figsize=(6 * cols, 3.5 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    step = max(1, layers.shape[1] // SPECTRUM_FILTERS_PER_LAYER)
    for layer, ax in enumerate(axes[: layers.shape[0]]):
        pick = np.zeros(layers.shape[1], dtype=bool)
        pick[::step] = True
        pick |= flag[layer]
        plot.hankel_spectrum(layers[layer, pick], max_order=max_order, flagged=flag[layer, pick],
                             index=index[layer, pick], ax=ax, device=device)
        bad = int(flag[layer].sum())
        ax.set_title(f"layer {layer} ({int(pick.sum())} of {layers.shape[1]} filters, "
                     f"L = {h.shape[-1]}" + (f"; {bad} flagged" if bad else "") + ")")
    for ax in axes[layers.shape[0]:]:
        ax.set_visible(False)
    return fig


def _write_report(h: np.ndarray, result, folder: Path, device=None) -> None:
    from mor import plot  # matplotlib only when a report is asked for: start-up time

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(result.report.to_json(indent=1))
    cols = result.report.columns
    layers = _as_layers(h)
    grid = (lambda v: np.asarray(v, dtype=float).reshape(layers.shape[0], -1))
    max_order = int(max(0, min(64, h.shape[-1] - 2)))
    # the failed filters hold those with NaN or Inf taps (`mor.distill`)
    _spectrum_figure(h, max_order, cols["failed"], device=device).savefig(
        folder / "spectra.png", dpi=90)
    order = np.where(cols["failed"], -1, cols["order"])
    plot.layer_heatmap(grid(order), label="order")[0].savefig(folder / "orders.png", dpi=90)
    plot.layer_heatmap(grid(np.where(cols["failed"], np.nan, cols["l2"])), label="l2 error",
                       log=True)[0].savefig(folder / "l2.png", dpi=90)
    # a deviation of 0 (an order-0 model whose direct term is a float32 number) has no log:
    # drawn at F32_FLOOR, not in red as a filter without a value
    f32 = np.maximum(np.asarray(cols["f32_deviation"], dtype=float), F32_FLOOR)
    plot.layer_heatmap(grid(np.where(cols["failed"], np.nan, f32)),
                       label="float32 deviation", log=True)[0].savefig(
        folder / "f32_deviation.png", dpi=90)
    ok = ~np.asarray(cols["failed"], dtype=bool)
    plot.hinf_vs_aak(np.asarray(cols["hinf"], float)[ok], np.asarray(cols["aak"], float)[ok]
                     )[0].savefig(folder / "hinf_vs_aak.png", dpi=90)


def _check_fits(kind: str, config, order: int | None, modes: int | None) -> None:
    """The engine's config read as the writer will read it, and the size asked for checked
    against its ``state_size`` ``S``, before the work: ``--modes`` above ``S``, or an
    ``--order`` above ``2 S`` (more than ``S`` modes whatever the poles), cannot be written."""
    try:
        slots = mor.export._spec(kind, config).state_size
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(" ".join(str(exc).split()),
                                 param_hint="'--export-config'") from None
    if slots is None:
        return
    if modes is not None and modes > slots:
        raise click.BadParameter(f"{modes} modes do not fit the engine's state_size {slots} "
                                 "(--export-config)", param_hint="'--modes'")
    if order is not None and order > 2 * slots:
        raise click.BadParameter(f"order {order} needs more than the engine's state_size "
                                 f"{slots} modes (--export-config)", param_hint="'--order'")


def _export_path(out_path: Path, kind: str) -> Path:
    return out_path.with_name(out_path.stem + f".{kind}.safetensors")


def _engine_config(path: str) -> dict:
    """The engine's model config (JSON or YAML), checked before the work."""
    text = Path(path).read_text()
    try:
        if Path(path).suffix in (".yml", ".yaml"):
            import yaml  # PyYAML: only for a YAML config (the engines' own format)

            config = yaml.safe_load(text)
        else:
            config = json.loads(text)
    except ImportError:
        raise click.BadParameter("reading a YAML config needs PyYAML (pip install pyyaml); "
                                 "or give it as JSON", param_hint="'--export-config'") from None
    except Exception as exc:  # a parse error, said on one line
        raise click.BadParameter(f"{path} is not readable as a config: "
                                 f"{' '.join(str(exc).split())}",
                                 param_hint="'--export-config'") from None
    if not isinstance(config, dict):
        raise click.BadParameter(f"{path} holds no mapping of settings",
                                 param_hint="'--export-config'")
    return config


def _export(bank, kind: str, out_path: Path, config, length: int) -> None:
    """The bank (layers, channels) in the engine's state dict; what was padded or dropped."""
    writer = (mor.export.to_striped_hyena_state_dict if kind == "striped-hyena" else
              mor.export.to_vortex_state_dict)
    if len(bank.shape) != 1 and len(bank.shape) != 2:  # as _as_layers: (layers, filters)
        poles, residues, direct = bank.compact()
        shape = (1, 1) if not bank.shape else (bank.shape[0], -1)
        bank = mor.ModalSSM.from_compact(poles.reshape(shape + poles.shape[-1:]),
                                         residues.reshape(shape + poles.shape[-1:]),
                                         direct.reshape(shape))
    try:
        exported = writer(bank, model=config, length=length, tensors="numpy")
    except ValueError as exc:
        raise click.ClickException(f"--export {kind}: {' '.join(str(exc).split())} (the bank "
                                   f"was written to {out_path})") from None
    target = exported.save(_export_path(out_path, kind))
    click.echo(str(exported))
    click.echo(f"{kind} state dict written to {target} (load it with "
               "model.load_state_dict(safetensors.torch.load_file(path), strict=False))")


if __name__ == "__main__":
    main()
