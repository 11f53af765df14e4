"""`hhg model list | info MODEL | install MODEL`: the command-line face of the model registry."""
from __future__ import annotations

import argparse
from dataclasses import fields

from ..loader import choose_encoder
from . import registry
from .hub import is_installed, resolve_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="known models with size, dims, licence, commercial use, published scores "
                                    "and whether each is installed")
    info = actions.add_parser("info", help="everything about one model, and where it is installed")
    info.add_argument("model", help="registry id, Hugging Face repo id or local folder")
    install = actions.add_parser("install", help="download a model into the Hugging Face cache")
    install.add_argument("model", help="registry id or Hugging Face repo id")


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        print(format_list())
    elif args.action == "info":
        print(format_info(args.model))
    else:
        folder = resolve_model(args.model, download=True)
        print(f"{args.model}: installed at {folder}")
    return 0


def format_list() -> str:
    """A table of the registry; `*` marks the default embedding model and the default reranker."""
    header = ("", "ID", "KIND", "ARCH", "DIM", "SIZE", "LICENCE", "COMMERCIAL", "PUBLISHED", "INSTALLED")
    defaults = (registry.DEFAULT_MODEL, registry.DEFAULT_RERANKER)
    rows = [header] + [
        ("*" if info.id in defaults else "", info.id, info.kind, info.architecture, _dims(info),
         info.size or "-", info.license, _yes(info.commercial) + (" (opt-in)" if info.opt_in else ""),
         info.scores or "-", _yes(is_installed(info.id)))
        for info in registry.REGISTRY.values()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def format_info(model: str) -> str:
    """Registry fields (when known), install location, the backend and precision `auto` picks on
    this machine, the CPU features behind its int8 choice, and MLX's BLAS."""
    info = registry.get(model)
    lines = []
    if info is not None:
        lines += [f"{f.name}: {_show(getattr(info, f.name))}" for f in fields(info)]
        if info.id in (registry.DEFAULT_MODEL, registry.DEFAULT_RERANKER):
            lines.append("default: yes")
    installed = is_installed(model)
    lines.append(f"installed: {_yes(installed)}")
    if installed:
        folder = resolve_model(model, download=False)
        lines.append(f"folder: {folder}")
    if installed or info is not None:
        lines.append(f"backend: {choose_encoder(model)}")
    else:
        lines.append(f"{model} is not in the registry (see `hhg model list`)")
    lines += _cpu_lines()
    lines.append(_blas_note())
    return "\n".join(lines)


def _cpu_lines() -> list[str]:
    """The CPU features that decide the int8 path, and that path (what `auto` bases int8 on)."""
    try:
        from fallback.cpu_features import cpu_features
    except ImportError:
        return []
    features = cpu_features()
    return [f"cpu: {features.summary()}", f"int8 path: {features.int8_path()}"]


def _blas_note() -> str:
    try:
        from ..mlx_runtime import blas_note
    except ImportError:
        return "MLX: not installed"
    return blas_note()


def _dims(info: registry.ModelInfo) -> str:
    """"768", "64-768" for a Matryoshka model, "-" for a reranker (no vectors)."""
    return f"{min(info.matryoshka_dims)}-{info.dim}" if info.matryoshka_dims else str(info.dim or "-")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _show(value: object) -> str:
    if isinstance(value, bool):
        return _yes(value)
    if isinstance(value, tuple):
        return ", ".join(map(str, value)) or "-"
    if isinstance(value, str):
        return repr(value) if value.strip() != value else value or "-"
    return str(value)
