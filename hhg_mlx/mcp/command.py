"""`hhg mcp`: serve hhg's search to coding agents over the Model Context Protocol, on stdio.

Importable without the MCP SDK (`hhg mcp --help` and `--print-config` need none); serving without it
is a one-line error that names the `hhg[mcp]` extra.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..errors import HhgError
from .config import CLIENTS, snippet

SDK_MODULES = ("mcp", "mcp_types", "anyio", "jsonschema")
EPILOG = """\
tools: search, find_similar, index_status, build (see the README's "hhg mcp" section).

examples:
  hhg mcp                                  serve the client's roots, else the current directory
  hhg mcp --root ~/src/app --root ~/src/lib
  hhg mcp --print-config claude > .mcp.json

where each --print-config snippet goes:
""" + "".join(f"  {client:8} {place}\n" for client, place in CLIENTS.items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Serve hybrid code search to coding agents over the Model Context Protocol (stdio).\n"
                          "stdout carries only the protocol; logs go to stderr. Every path a tool receives\n"
                          "must resolve inside a root.")
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--root", action="append", default=[], metavar="PATH",
                        help="a folder the tools may read (repeatable); default: the client's roots when it "
                        "lists them, else the current directory")
    parser.add_argument("--print-config", choices=tuple(CLIENTS), metavar="CLIENT",
                        help=f"print the configuration snippet for CLIENT ({', '.join(CLIENTS)}) and exit")


def run(args: argparse.Namespace) -> int:
    roots = [_folder(path) for path in args.root]
    if args.print_config:
        sys.stdout.write(snippet(args.print_config, roots))
        return 0
    try:
        from .server import run_stdio
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] in SDK_MODULES:
            raise HhgError("`hhg mcp` needs the MCP SDK: pip install 'hhg[mcp]'") from None
        raise
    _log_to_stderr()
    run_stdio(roots)
    return 0


def _folder(path: str) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise HhgError(f"{path}: no such directory")
    return folder.resolve()


def _log_to_stderr() -> None:
    """hhg's log lines (models loaded, failed calls) on stderr, which MCP clients keep as the server's log."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("hhg mcp: %(message)s"))
    logger = logging.getLogger("hhg")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
