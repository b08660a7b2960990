"""The mor command and its embedded default."""

import subprocess
import sys

import numpy as np

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


def test_console_script_help():
    done = subprocess.run([sys.executable, "-m", "mor.cli", "--help"], capture_output=True,
                          text=True, check=True)
    assert "demo" in done.stdout
