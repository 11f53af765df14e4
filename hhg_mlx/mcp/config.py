"""`hhg mcp --print-config CLIENT`: the snippet that adds this server to a coding agent's configuration."""
from __future__ import annotations

import json
import sys
from pathlib import Path

# client -> where its snippet goes (for --help and the README)
CLIENTS = {
    "claude": ".mcp.json in the project (or `claude mcp add hhg -- hhg mcp`)",
    "cursor": ".cursor/mcp.json in the project, or ~/.cursor/mcp.json",
    "codex": "~/.codex/config.toml (or `codex mcp add hhg -- hhg mcp`)",
    "vscode": ".vscode/mcp.json in the workspace",
}


def server_command(roots: list[Path]) -> tuple[str, list[str]]:
    """How a client starts this server: the absolute path of the running `hhg` (clients do not always
    share the shell's PATH), else plain `hhg`; then `mcp` and the roots."""
    script = Path(sys.argv[0])
    command = str(script.absolute()) if script.name == "hhg" else "hhg"
    return command, ["mcp", *(arg for root in roots for arg in ("--root", str(root)))]


def snippet(client: str, roots: list[Path]) -> str:
    """The configuration text for `client` (one of CLIENTS): JSON, or TOML for codex."""
    command, args = server_command(roots)
    if client == "codex":        # TOML basic strings take JSON's escapes
        quoted = ", ".join(json.dumps(arg, ensure_ascii=False) for arg in args)
        return f"[mcp_servers.hhg]\ncommand = {json.dumps(command, ensure_ascii=False)}\nargs = [{quoted}]\n"
    server = {"command": command, "args": args}
    config = {"servers": {"hhg": {"type": "stdio", **server}}} if client == "vscode" else {"mcpServers": {"hhg": server}}
    return json.dumps(config, indent=2, ensure_ascii=False) + "\n"
