"""Pause Python's cyclic garbage collector around allocation-heavy, cycle-free work.

Parsing, validating and diffing a large configuration allocates hundreds of
thousands of dicts and lists in one go. Each burst triggers collections that
traverse every live container -- the whole parsed document, again and again --
although JSON data holds no reference cycles for the collector to find. Inside
``paused_gc()`` such passes do not run; reference counting still frees
everything, and the collector resumes (and catches up) when the outermost pause
ends. Pauses nest and may overlap across threads: the collector comes back only
when the last one ends, and only if it was enabled before the first.

    with paused_gc():
        bundle = read_bundle(raw, resolver)
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def paused_gc() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
