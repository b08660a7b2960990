"""`mor warmup`: Numba's kernels compiled once into the cache, and the first-use notice.

No test here asserts a duration (speed is in `benchmarks/bench_first_use.py`): they check what
is compiled, what is cached across processes, and what is said.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
from click.testing import CliRunner

import mor
from mor._numerics.compilation import FIRST_USE_NOTICE, compilations
from mor.cli import main
from mor.warmup import Warmup, warmup


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env={**os.environ, **env})


def test_warmup_command_runs_and_is_idempotent_in_a_process():
    runner = CliRunner()
    first = runner.invoke(main, ["warmup"])
    assert first.exit_code == 0, first.output
    assert "mor warmup:" in first.output
    # the kernels are now compiled in this process: a second run has nothing to compile
    second = runner.invoke(main, ["warmup"])
    assert second.exit_code == 0, second.output
    assert "every kernel already compiled (loaded from the cache)" in second.output


def test_warmup_is_idempotent_across_processes():
    """What one process compiled the next one loads from Numba's cache (every kernel reached
    has ``cache=True``): the second ``mor warmup`` compiles nothing and says so."""
    runs = [subprocess.run([sys.executable, "-m", "mor.cli", "warmup"], capture_output=True,
                           text=True) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert "mor warmup:" in run.stdout
        assert FIRST_USE_NOTICE not in run.stderr  # warmup says what it does itself
    assert "every kernel already compiled (loaded from the cache)" in runs[1].stdout, \
        runs[1].stdout


def test_warmup_covers_a_distillation_at_a_tolerance(trained_filters):
    """After `warmup`, the issue's run (a tolerance, balanced truncation, trained filters;
    here two chunks of them) compiles no kernel."""
    done = warmup()
    assert isinstance(done, Warmup) and done.compiled >= 0
    before = compilations()
    h = trained_filters[:, :24]
    out = mor.distill(h, tol=1e-2, method="balanced", workers=1)
    assert out.bank.shape == h.shape[:-1]
    assert compilations() == before


def test_first_compilation_in_a_process_is_announced_once(tmp_path):
    """With an empty cache, the first mor kernel compiled prints the notice (once); the
    counter counts compilations, not calls; a kernel from the cache compiles nothing."""
    code = """
        import sys
        import numpy as np
        from mor._numerics.compilation import compilations
        from mor._numerics.kernels import impulse_compact
        p = np.array([[0.5 + 0.1j]]); r = np.array([[1.0 + 0j]]); d = np.zeros(1)
        impulse_compact(p, r, d, 8)
        n = compilations()
        impulse_compact(p, r, d, 16)
        print(n, compilations())
    """
    cache = str(tmp_path / "numba-cache")
    first = _python(code, NUMBA_CACHE_DIR=cache)
    assert first.returncode == 0, first.stderr
    compiled, again = map(int, first.stdout.split())
    assert compiled >= 1 and again == compiled
    assert first.stderr.count(FIRST_USE_NOTICE) == 1
    second = _python(code, NUMBA_CACHE_DIR=cache)  # the same cache: loaded, not compiled
    assert second.returncode == 0, second.stderr
    assert second.stdout.split() == ["0", "0"]
    assert FIRST_USE_NOTICE not in second.stderr


def test_notice_is_quiet_inside_quiet_compilation(tmp_path):
    code = """
        import numpy as np
        from mor._numerics.compilation import compilations, quiet_compilation
        from mor._numerics.kernels import impulse_compact
        with quiet_compilation():
            impulse_compact(np.array([[0.5 + 0.1j]]), np.array([[1.0 + 0j]]), np.zeros(1), 8)
        print(compilations())
    """
    done = _python(code, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 1
    assert FIRST_USE_NOTICE not in done.stderr


def test_demo_says_its_times_exclude_compilation():
    result = CliRunner().invoke(main, ["demo", "--filters", "2", "--length", "128",
                                       "--orders", "2"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("Numba kernels ready"))
    assert "the times below exclude compilation" in line
    assert np.isfinite(float(line.split(" in ")[1].split(" s")[0]))


WARM_ON_THREADS = """
import sys
import numba
import mor
from mor.demo import hyena_like_filters
from mor.warmup import warmup

def signatures():
    # every mor kernel's compiled or cache-loaded signatures in this process
    return {(name, key, str(sig)) for name, module in list(sys.modules.items())
            if name == "mor" or name.startswith("mor.")
            for key, value in vars(module).items()
            if isinstance(value, numba.core.dispatcher.Dispatcher)
            for sig in value.signatures}

warmup()
before = signatures()
one = hyena_like_filters(1, 1 << 17, seed=1)      # fewer filters than threads: threaded kernels
batch = hyena_like_filters(4, 1 << 12, seed=2)    # as many as threads or more: mapped, serial
for h in (one, batch):
    mor.reduce(h, 16)
    mor.reduce(h, tol=1e-3, norm="hinf", on_fail="flag")
mor.distill(batch, order=8, workers=1)
new = sorted(signatures() - before)
assert not new, new
print("covered")
"""


def test_warmup_covers_the_threaded_and_the_mapped_kernels():
    """On a machine with several threads a report on fewer filters than threads runs the
    threaded kernels, on more the serial ones side by side: after `warmup`, both are there
    (each kernel's signatures, compiled or loaded from the cache, compared before and after;
    in a process of its own, since the tests pin Numba to one thread)."""
    done = _python(WARM_ON_THREADS, NUMBA_NUM_THREADS="2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "covered" in done.stdout
