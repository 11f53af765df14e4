"""The per-user settings file, `$HHG_CONFIG_DIR/config.json` (default `~/.config/hhg/config.json`).

Keys: `accepted_licenses` (model id → licence, `license.py`) and `shared_cache` (false: builds do not
use the per-user embedding cache; `HHG_SHARED_CACHE=0|1` overrides it, `hhg build --no-shared-cache`
overrides both).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import ConfigUnreadable

SHARED_CACHE_ENV = "HHG_SHARED_CACHE"
_OFF = ("0", "false", "no", "off")


def config_path() -> Path:
    base = os.environ.get("HHG_CONFIG_DIR")
    return (Path(base) if base else Path.home() / ".config" / "hhg") / "config.json"


def read_config() -> dict:
    path = config_path()
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise ConfigUnreadable(f"cannot read {path}: {err}") from err
    if not isinstance(config, dict):
        raise ConfigUnreadable(f"cannot read {path}: not a JSON object")
    return config


def write_config(config: dict) -> None:
    """Replace the config file atomically (write a temporary file next to it, then rename)."""
    import tempfile     # here: reading the config (every build) does not need it

    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config.", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(config, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def shared_cache_enabled(use: bool | None = None) -> bool:
    """Whether a build uses the per-user embedding cache: `use` when given (`--no-shared-cache`), else
    `HHG_SHARED_CACHE` when set, else the config's `shared_cache` (default true)."""
    if use is not None:
        return use
    value = os.environ.get(SHARED_CACHE_ENV)
    if value is not None and value.strip():
        return value.strip().lower() not in _OFF
    return read_config().get("shared_cache", True) is not False
