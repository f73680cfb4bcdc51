"""Modules as they were at an earlier commit, read from the repository's history: the reference a faster
rewrite is tested equal to, without a copy of the old code in the tree.

load("d825af4", ["overlap", "text_stats", "diversity"]) returns the three agent/audit modules of that commit
as one package of their own (their imports of each other pointed into it). Outside a git checkout that holds
the commit (an unpacked source archive, a shallow clone), the test that asks is skipped, saying why.
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load(rev: str, names: list[str], folder: str = "agent/audit") -> dict[str, types.ModuleType]:
    package = f"_old_{rev}"
    prefix = folder.replace("/", ".") + "."
    if package not in sys.modules:
        pkg = types.ModuleType(package)
        pkg.__path__ = []
        sys.modules[package] = pkg
    out = {}
    for name in names:   # in dependency order: a module's imports of the others must be loaded already
        full = f"{package}.{name}"
        if full not in sys.modules:
            try:
                source = subprocess.run(["git", "show", f"{rev}:{folder}/{name}.py"], cwd=ROOT, capture_output=True,
                                        text=True, check=True, timeout=30).stdout
            except (OSError, subprocess.SubprocessError) as e:
                pytest.skip(f"{folder}/{name}.py at {rev} is not in this checkout's history ({e})")
            # the old modules import each other, and text_stats names a helper module it loads by file
            source = source.replace(f"from {prefix}", f"from {package}.").replace("agent._textblob_text",
                                                                                f"{package}._textblob_text")
            module = types.ModuleType(full)
            module.__file__ = f"{rev}:{folder}/{name}.py"
            sys.modules[full] = module   # before running it: dataclasses look their module up there
            exec(compile(source, module.__file__, "exec"), module.__dict__)
        out[name] = sys.modules[full]
    return out
