"""Start-up of a `datagen` process: what it does once so that a command starts faster, with the same results.

While a command imports its libraries and builds its set-up (pydantic's plan models, the audit's tables, the
ledger), it allocates hundreds of thousands of objects that live until the process ends and almost no garbage.
Each pass of Python's cyclic garbage collector over them is wasted work: about a tenth of `generate`'s start-up
CPU and 3 % of `plan --show` (bench/README.md 'Client CPU per accepted example', round 4). `collector_paused()`
pauses the collector for such a block. When the process is datagen's own (the console script, `python -m
agent`), what the block built is then frozen (gc.freeze): moved out of the collector's sight for the rest of
the run and for the full collection at exit. In a process that only calls datagen (the tests, a program that
embeds the CLI) nothing is frozen: garbage there could belong to the caller, and frozen garbage is never freed.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager

_own_process = False


def own_process() -> None:
    """Called once by cli.main when it runs the process's own command line (the process ends with it)."""
    global _own_process
    _own_process = True
    # pydantic's plugin loader reads the entry points of every installed distribution (a file per package) when
    # the first model is built; datagen uses no pydantic plugin. The documented switch, unless the user set it
    # (PYDANTIC_DISABLE_PLUGINS= with an empty value keeps plugins on).
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block; the collector's previous state after it (a block inside
    another leaves it paused)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if _own_process:
                gc.freeze()
            gc.enable()
