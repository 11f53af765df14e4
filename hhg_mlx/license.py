"""Licence opt-in for models whose licence restricts use (e.g. CC-BY-NC-4.0).

Accepting once (`--accept-license`) is remembered per model and licence in
`$HHG_CONFIG_DIR/config.json` (default `~/.config/hhg/config.json`), under `accepted_licenses`.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LicenseNotAccepted

if TYPE_CHECKING:
    from .models.registry import ModelInfo


def config_path() -> Path:
    base = os.environ.get("HHG_CONFIG_DIR")
    return (Path(base) if base else Path.home() / ".config" / "hhg") / "config.json"


def read_config() -> dict:
    path = config_path()
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise LicenseNotAccepted(f"cannot read {path}: {err}") from err


def write_config(config: dict) -> None:
    """Replace the config file atomically (write a temporary file next to it, then rename)."""
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


def is_accepted(info: ModelInfo) -> bool:
    return not info.opt_in or read_config().get("accepted_licenses", {}).get(info.id) == info.license


def ensure_accepted(info: ModelInfo, accept: bool) -> None:
    """Return if `info` needs no opt-in or its licence was accepted; with `accept`, record the
    acceptance; otherwise raise `LicenseNotAccepted` saying what the licence is and how to accept."""
    if is_accepted(info):
        return
    if not accept:
        use = "commercial use allowed" if info.commercial else "non-commercial use only"
        raise LicenseNotAccepted(
            f"{info.id} is licensed {info.license} ({use}); run again with --accept-license "
            f"to accept it (asked once, remembered in {config_path()})")
    config = read_config()
    config.setdefault("accepted_licenses", {})[info.id] = info.license
    write_config(config)
