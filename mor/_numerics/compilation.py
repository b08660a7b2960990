"""Numba compilation of mor's kernels: counted, and announced on first use.

Every kernel is compiled with ``cache=True``: the first process that calls a kernel with a
given signature compiles it (tens of seconds for all of mor's kernels together) and writes the
machine code to Numba's cache (``__pycache__`` beside the sources, or ``NUMBA_CACHE_DIR``);
later processes load it in milliseconds. ``mor warmup`` (`mor.warmup.warmup`, run by the
Makefile's set-up) does that once at install time. Where it has not run, the first
compilation of a mor kernel in a process prints one line to stderr saying so, so that the
time is not silently taken for the reduction's.

Numba signals a compilation (a cache miss; not a cache load) with its ``numba:compile``
event, which a listener here counts for mor's kernels (`compilations`).
"""

from __future__ import annotations

import sys
import threading

from numba.core import event

#: Printed (to stderr, once per process) when a mor kernel is first compiled outside
#: `quiet_compilation` (e.g. ``mor warmup`` was not run after installing or updating mor).
FIRST_USE_NOTICE = ("mor: compiling Numba kernels on first use (a minute or so, once: later "
                    "runs load them from Numba's cache; `mor warmup` does this at set-up)")

_lock = threading.Lock()
_state = {"count": 0, "announced": False, "quiet": 0}


def _is_mor_kernel(data) -> bool:
    dispatcher = (data or {}).get("dispatcher")
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
    return module == "mor" or module.startswith("mor.")


class _Listener(event.Listener):
    def on_start(self, ev):
        if not _is_mor_kernel(ev.data):
            return
        with _lock:
            _state["count"] += 1
            announce = not _state["announced"] and not _state["quiet"]
            _state["announced"] |= announce
        if announce:
            print(FIRST_USE_NOTICE, file=sys.stderr, flush=True)

    def on_end(self, ev):
        pass


_listener = _Listener()
event.register("numba:compile", _listener)


def compilations() -> int:
    """How many mor kernel signatures this process has compiled so far (cache loads are not
    counted)."""
    return _state["count"]


class quiet_compilation:
    """Context manager: no first-use notice inside (the caller says what it compiles)."""

    def __enter__(self):
        with _lock:
            _state["quiet"] += 1
        return self

    def __exit__(self, *exc):
        with _lock:
            _state["quiet"] -= 1
        return False
