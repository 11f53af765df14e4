"""Where hhg keeps per-user files outside an index."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/hhg`, default `~/.cache/hhg`."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hhg"
