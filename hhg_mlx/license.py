"""Licence opt-in for models whose licence restricts use (e.g. CC-BY-NC-4.0).

Accepting once (`--accept-license`) is remembered per model and licence in the config file
(`config.py`), under `accepted_licenses`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .config import config_path, read_config, write_config
from .errors import LicenseNotAccepted

if TYPE_CHECKING:
    from .models.registry import ModelInfo


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
