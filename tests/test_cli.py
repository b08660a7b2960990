"""The mor command and its embedded default."""

import json
import subprocess
import sys

import numpy as np

import mor
from mor.cli import main
from mor.demo import hyena_like_filters


def test_demo_filters_are_deterministic_and_decay():
    a, b = hyena_like_filters(4, 256), hyena_like_filters(4, 256)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4, 256) and np.all(np.isfinite(a))
    assert np.all(np.abs(a[:, -32:]).max(1) < np.abs(a[:, :32]).max(1))


def test_demo_runs():
    from click.testing import CliRunner

    result = CliRunner().invoke(main, ["demo", "--filters", "4", "--length", "128",
                                       "--orders", "2,6"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "hinf" in out and "aak" in out and "whole-model path" in out
    assert "match the report to" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("2 ", "6 "))]
    assert len(rows) == 2
    for row in rows:
        aak, hinf, bt = float(row[4]), float(row[5]), float(row[6])
        assert aak <= hinf <= bt


def test_demo_ends_in_success_and_explains_its_flags():
    """Issue 19.2: the demo ended with filters failed and direct-term-only, unexplained."""
    result = CliRunner().invoke(main, ["demo", "--filters", "2", "--length", "512", "--orders",
                                       "4"])
    assert result.exit_code == 0, (result.output, result.exception)
    lines = result.output.splitlines()
    assert lines[-1] == ("mor demo finished: 2 of 2 filters distilled to stable modal models, "
                         "1 of them flagged as missing the tolerance (listed above).")
    flag = next(line for line in lines if "need an order above 64 for l2 <= 1e-2" in line)
    assert "keeps its most accurate model" in flag and flag.endswith("met_tol false: (0, 0)")
    for word in ("aak", "hinf/aak", "bt_bound", "tail", "missed", "failed"):
        assert any(line.startswith(f"  {word} ") for line in lines), word
    assert "above 1" in result.output


def test_console_script_help():
    done = subprocess.run([sys.executable, "-m", "mor.cli", "--help"], capture_output=True,
                          text=True, check=True)
    assert "demo" in done.stdout


# -- the command line is checked before the work, and errors are one line (issue 17) --------

import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from mor.drivers import distillation  # noqa: E402


def _no_reduction(*args, **kwargs):
    raise AssertionError("a filter was reduced before the command line was checked")


@pytest.fixture()
def filters_file(tmp_path, monkeypatch):
    """A small filter file in tmp_path (the working folder), and no reduction allowed."""
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "f.npy", hyena_like_filters(6, 64).reshape(2, 3, 64))
    (tmp_path / "blocker").write_text("a regular file where a folder is needed")
    monkeypatch.setattr(distillation, "_distill_chunk", _no_reduction)
    return tmp_path / "f.npy"


def _refused(result, flag: str, code: int = 2) -> str:
    """The command failed with ``code``, without a traceback, on an ``Error:`` line naming
    ``flag``; returns that line."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error:") and flag in last, result.stderr
    return last


@pytest.mark.parametrize("flag, path", [("--out", "blocker/bank.npz"),
                                        ("--out", "blocker/deeper/bank.npz"),
                                        ("--report", "blocker/report"),
                                        ("--shards", "blocker/shards")])
def test_unwritable_output_is_refused_before_any_work(filters_file, flag, path):
    args = ["distill", str(filters_file), "--order", "3", flag, path]
    if flag != "--out":
        args += ["--out", "bank.npz"]
    line = _refused(CliRunner().invoke(main, args), flag)
    assert "blocker is a file, not a folder" in line
    assert not list(filters_file.parent.glob("**/chunk_*.npz"))
    assert not (filters_file.parent / "bank.npz").exists()


def test_hsv_plot_path_is_checked_before_the_spectra(filters_file, monkeypatch):
    import mor

    monkeypatch.setattr(mor, "hankel_singular_values", _no_reduction)
    _refused(CliRunner().invoke(main, ["hsv", str(filters_file), "--plot", "blocker/s.png"]),
             "--plot")


@pytest.mark.parametrize("extra, flag, says", [
    (["--resume"], "--resume", "--resume needs --shards"),
    (["--max-order", "8"], "--max-order", "with --tol only"),
    (["--modes", "2"], "--modes", "exactly one of --order, --modes and --tol"),
    (["--out", "f.npy"], "--out", "overwrite INPUT"),
    (["--workers", "0"], "--workers", "not in the range"),
    (["--chunk-size", "0"], "--chunk-size", "not in the range"),
])
def test_flag_combinations_are_usage_errors(filters_file, extra, flag, says):
    result = CliRunner().invoke(main, ["distill", str(filters_file), "--order", "3", *extra])
    assert says in _refused(result, flag)


def test_order_beyond_the_filters_is_a_usage_error(filters_file):
    result = CliRunner().invoke(main, ["distill", str(filters_file), "--order", "64"])
    assert "L - 1 = 63" in _refused(result, "--order")


def test_shards_of_an_earlier_run_need_resume(filters_file, monkeypatch):
    monkeypatch.undo()
    monkeypatch.chdir(filters_file.parent)
    runner = CliRunner()
    first = runner.invoke(main, ["distill", str(filters_file), "--order", "3", "--chunk-size",
                                 "2", "--shards", "shards", "--out", "bank.npz"])
    assert first.exit_code == 0, first.output
    written = {p.name: p.read_bytes() for p in (filters_file.parent / "shards").iterdir()}
    monkeypatch.setattr(distillation, "_distill_chunk", _no_reduction)
    base = ["distill", str(filters_file), "--chunk-size", "2", "--shards", "shards"]
    line = _refused(runner.invoke(main, base + ["--order", "3"]), "--shards")
    assert "add --resume" in line
    # resuming with other settings is refused, naming the flag that differs (not recomputed)
    for extra, said in [(["--order", "3", "--chunk-size", "3"], "--chunk-size 2 there, 3 now"),
                        (["--order", "4"], "--order 3 there, 4 now"),
                        (["--order", "3", "--method", "hankel"], "--method auto there, hankel"),
                        (["--order", "3", "--norm", "hinf"], "--norm l2 there, hinf now"),
                        (["--tol", "0.1"], "--tol not given there, 0.1 now")]:
        line = _refused(runner.invoke(main, base + extra + ["--resume"]), "--resume")
        assert said in line and "resume=True" not in line
    other = filters_file.parent / "g.npy"
    np.save(other, np.load(filters_file) * 2)
    line = _refused(runner.invoke(main, ["distill", str(other), "--order", "3", "--chunk-size",
                                         "2", "--shards", "shards", "--resume"]), "--resume")
    assert "taps" in line
    assert {p.name: p.read_bytes() for p in (filters_file.parent / "shards").iterdir()} == written
    again = runner.invoke(main, base + ["--order", "3", "--resume", "--out", "again.npz"])
    assert again.exit_code == 0, again.output  # the same settings: every chunk read back


def test_a_failure_while_working_is_one_line_and_debug_shows_the_traceback(filters_file):
    args = ["distill", str(filters_file), "--key", "x", "--order", "3"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("Error: ") and "do not pass a key" in result.stderr
    debug = CliRunner().invoke(main, ["--debug", *args])
    assert isinstance(debug.exception, ValueError) and debug.exit_code == 1
    quiet = subprocess.run([sys.executable, "-m", "mor.cli", *args], capture_output=True,
                           text=True)
    loud = subprocess.run([sys.executable, "-m", "mor.cli", "--debug", *args],
                          capture_output=True, text=True)
    assert quiet.returncode == 1 and quiet.stderr.strip().startswith("Error: ")
    assert "Traceback" not in quiet.stderr and len(quiet.stderr.strip().splitlines()) == 1
    assert loud.returncode == 1 and "Traceback" in loud.stderr and "ValueError" in loud.stderr


def test_hsv_count_must_be_positive(filters_file):
    result = CliRunner().invoke(main, ["hsv", str(filters_file), "-k", "0"])
    _refused(result, "-k")
    small = CliRunner().invoke(main, ["hsv", str(filters_file), "-k", "1"])
    assert small.exit_code == 0 and "sigma_1" in small.output


@pytest.mark.parametrize("args", [["--filters", "1", "--length", "8", "--orders", "2"],
                                  ["--filters", "3", "--length", "5", "--orders", "1,3"],
                                  ["--filters", "2", "--length", "3", "--orders", "1"],
                                  ["--filters", "5", "--length", "40", "--orders", "38"]])
def test_demo_works_for_small_valid_arguments(args):
    result = CliRunner().invoke(main, ["demo", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "bank saved and reloaded" in result.output


@pytest.mark.parametrize("args, flag", [(["--filters", "0"], "--filters"),
                                        (["--length", "2"], "--length"),
                                        (["--length", "8", "--orders", "7"], "--orders"),
                                        (["--orders", "0"], "--orders"),
                                        (["--orders", "4,x"], "--orders")])
def test_demo_refuses_invalid_arguments(args, flag):
    _refused(CliRunner().invoke(main, ["demo", *args]), flag)


def test_report_draws_flagged_filters_by_their_index(tmp_path):
    """A NaN filter or filters of length 1 do not stop the report; flagged filters are named by
    their index in the model (here (1, 2), which a per-layer index would call (2,))."""
    h = hyena_like_filters(6, 48).reshape(2, 3, 48)
    h[1, 2, 5] = np.nan
    np.save(tmp_path / "nan.npy", h)
    np.save(tmp_path / "one.npy", np.ones((2, 3, 1)))
    runner = CliRunner()
    for name, size in (("nan", ["--order", "4"]), ("one", ["--order", "0"])):
        result = runner.invoke(main, ["distill", str(tmp_path / f"{name}.npy"), *size,
                                      "--out", str(tmp_path / f"{name}.npz"), "--report",
                                      str(tmp_path / f"rep_{name}")])
        assert result.exit_code == 0, (result.output, result.exception)
        assert (tmp_path / f"rep_{name}" / "spectra.png").stat().st_size > 5000
    from mor.cli import _spectrum_figure

    fig = _spectrum_figure(h, 20, flagged=np.isnan(h).any(axis=-1))
    texts = [t.get_text() for ax in fig.axes if ax.get_legend()
             for t in ax.get_legend().get_texts()]
    assert any("(1, 2)" in t and "NaN" in t for t in texts), texts
    assert "1 flagged" in fig.axes[1].get_title()


def test_report_spectra_include_every_flagged_filter(tmp_path):
    """The spectrum plot samples filters per layer; a flagged one outside the sample is drawn
    too, named by its index."""
    from mor.cli import SPECTRUM_FILTERS_PER_LAYER, _spectrum_figure

    count = 2 * SPECTRUM_FILTERS_PER_LAYER
    h = hyena_like_filters(count, 24)
    flagged = np.zeros(count, dtype=bool)
    flagged[7] = True  # the sample takes every second filter
    fig = _spectrum_figure(h, 8, flagged=flagged)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.lines]
    assert "flagged: (7,)" in labels, labels
    assert ax.get_title().startswith(f"layer 0 ({SPECTRUM_FILTERS_PER_LAYER + 1} of {count}")


# -- no filter silently degraded; every method reachable (issue 19) ---------------------------

from mor.methods import available_methods  # noqa: E402


@pytest.fixture()
def missing_file(tmp_path, monkeypatch):
    """Filters (2, 3, 64) with a NaN one at (1, 2); the others cannot meet l2 <= 1e-6 within
    order 2."""
    monkeypatch.chdir(tmp_path)
    h = hyena_like_filters(6, 64).reshape(2, 3, 64)
    h[1, 2, 5] = np.nan
    np.save(tmp_path / "f.npy", h)
    return tmp_path / "f.npy"


MISSED = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]


def test_summary_and_report_list_every_missed_filter(missing_file):
    """By default they keep their most accurate model; the summary and report.json list them
    by index apart from the failed one, and a warning line on stderr ends the run."""
    result = CliRunner().invoke(main, ["distill", str(missing_file), "--tol", "1e-6",
                                       "--max-order", "2", "--report", "rep"])
    assert result.exit_code == 0, (result.output, result.exception)
    out = result.stdout
    assert "5 missed l2 <= 1e-06, 1 failed" in out
    listed = out.split("5 filter(s) missed")[1].split("1 filter(s) failed")[0]
    assert all(str(i) in listed for i in MISSED) and "(1, 2)" not in listed
    assert "NaN or Inf taps:  (1, 2)" in out.split("1 filter(s) failed")[1]
    report = json.loads((missing_file.parent / "rep" / "report.json").read_text())
    assert [tuple(m["index"]) for m in report["missed"]] == MISSED
    assert [f["index"] for f in report["failed"]] == [[1, 2]]
    assert [r["missed"] for r in report["summary"]] == [3, 2]
    assert [r["failed"] for r in report["summary"]] == [0, 1]
    bank = mor.load(missing_file.parent / "bank.npz")
    assert all(bank.order[i] > 0 for i in MISSED) and bank.order[1, 2] == 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Warning:") and "5 missed" in last and "1 failed" in last


def test_on_fail_flag_and_raise(missing_file):
    runner = CliRunner()
    base = ["distill", str(missing_file), "--tol", "1e-6", "--max-order", "2"]
    flag = runner.invoke(main, base + ["--on-fail", "flag"])
    assert flag.exit_code == 0, (flag.output, flag.exception)
    assert "0 missed l2 <= 1e-06, 6 failed" in flag.stdout
    assert "filter(s) missed" not in flag.stdout and "6 filter(s) failed" in flag.stdout
    assert np.all(mor.load(missing_file.parent / "bank.npz").order == 0)
    assert "6 failed" in flag.stderr.strip().splitlines()[-1]
    raised = runner.invoke(main, base + ["--on-fail", "raise"])
    assert raised.exit_code == 1 and raised.stderr.strip().count("\n") == 0
    assert "NaN or Inf taps in filter (1, 2)" in raised.stderr
    met = runner.invoke(main, ["distill", str(missing_file), "--order", "2", "--on-fail",
                               "raise"])
    assert met.exit_code == 1 and "Error:" in met.stderr
    _refused(runner.invoke(main, base + ["--on-fail", "zero"]), "--on-fail")


def test_no_warning_when_every_filter_meets_the_tolerance(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "f.npy", hyena_like_filters(3, 32))
    result = CliRunner().invoke(main, ["distill", "f.npy", "--tol", "0.5"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "0 missed l2 <= 0.5, 0 failed" in result.stdout and "Warning" not in result.stderr


@pytest.mark.parametrize("method", ["auto", *available_methods()])
def test_every_registered_method_is_reachable(tmp_path, monkeypatch, method):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "f.npy", hyena_like_filters(3, 24))
    result = CliRunner().invoke(main, ["distill", "f.npy", "--modes", "2", "--method", method])
    assert result.exit_code == 0, (result.output, result.exception)
    methods = result.stdout.splitlines()[1].split(None, 10)[10]  # "name count, ..."
    kept = {part.split()[0] for part in methods.split(", ")}
    assert kept == ({method} if method != "auto" else {"modal"})  # auto at a size: modal
    assert mor.load(tmp_path / "bank.npz").modes.max() <= 2


@pytest.mark.parametrize("method", [m for m in available_methods() if m != "modal"])
def test_real_poles_with_a_method_that_cannot_is_refused(filters_file, method):
    result = CliRunner().invoke(main, ["distill", str(filters_file), "--modes", "2",
                                       "--real-poles", "--method", method])
    assert f"--method {method} gives complex poles" in _refused(result, "--real-poles")


def test_real_poles_with_method_modal(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "f.npy", hyena_like_filters(2, 24))
    result = CliRunner().invoke(main, ["distill", "f.npy", "--modes", "2", "--real-poles",
                                       "--method", "modal"])
    assert result.exit_code == 0, (result.output, result.exception)
    poles = mor.load(tmp_path / "bank.npz").compact()[0]
    assert np.all(poles.imag == 0)
