"""Work spread over filters on threads (`mor._numerics.parallel.map_filters`): the same
numbers as on one thread, bit for bit. The tests pin Numba to one thread (``conftest.py``),
so the check runs in a process of its own with two."""

import os
import subprocess
import sys

CHECK = """
import numba
import numpy as np
import mor
from mor._numerics.parallel import map_filters
from mor.analysis.compare import model_errors
from mor.demo import hyena_like_filters

seen = []
def fn(rows):
    seen.append(numba.get_num_threads())
    return {"rows": np.arange(rows.start, rows.stop)}
parts = map_filters(fn, 11, 4)  # two threads: chunks of at most ceil(11 / 2) and 4
assert [p["rows"].tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
assert seen == [1, 1, 1], seen  # each chunk on one Numba thread
assert numba.get_num_threads() == 2  # the caller's own setting is untouched

# model_errors over chunks on threads (serial kernels, single-threaded FFTs) against the
# whole batch on one thread (parallel-sized kernels: 2^16 taps; the H-infinity refinement)
h = hyena_like_filters(5, 1 << 16, seed=3)
model = mor.reduce(h, 12)
poles, residues, direct = model.compact()
hsv = mor.hankel_singular_values(h, 13)
spread = model_errors(h, poles, residues, direct, model.order, hsv)
numba.set_num_threads(1)
one = model_errors(h, poles, residues, direct, model.order, hsv)
assert one.keys() == spread.keys()
for key in one:
    np.testing.assert_array_equal(spread[key], one[key], err_msg=key)
print("checked")
"""


def test_the_report_on_threads_is_the_report_on_one():
    env = dict(os.environ, NUMBA_NUM_THREADS="2")
    done = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "checked" in done.stdout
