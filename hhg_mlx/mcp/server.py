"""The MCP server over stdio, on the official SDK's low-level `Server`: hand-written schemas, results
with structured content and a text rendering, and every failure a one-line tool error.

Each tool call runs in a worker thread, so calls on different indexes overlap; `Workspace` keeps
indexes and encoders between them. stdout carries only the protocol (the SDK points fd 1 at stderr
while it serves); logs go to stderr.
"""
from __future__ import annotations

import logging
import warnings
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import anyio
import mcp_types as types
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from mcp.server import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from .. import __version__
from ..errors import HhgError, one_line
from .tools import TOOLS, ToolSpec
from .workspace import Roots, Workspace

log = logging.getLogger("hhg.mcp")

INSTRUCTIONS = (
    "hhg searches the code in this workspace by meaning and by keywords and answers with whole functions, "
    "classes and documentation sections. Prefer `search` to grep or reading files one by one when you need to "
    "find where something is implemented or how it works; `find_similar` finds code like a given definition. "
    "Paths are relative to the first root; results give 1-based line ranges.")


class RootSource:
    """The roots a call may read: the `--root` folders; without them, the client's roots when it lists
    them (asked once, again after it says they changed); else the working directory."""

    def __init__(self, fixed: list[Path]) -> None:
        self.fixed = Roots(fixed) if fixed else None
        self._client: Roots | None = None
        self._asked = False
        self._asking = anyio.Lock()         # calls that arrive while the client is asked wait for its answer

    async def current(self, ctx: ServerRequestContext) -> Roots:
        if self.fixed is not None:
            return self.fixed
        async with self._asking:
            if not self._asked and _lists_roots(ctx):
                self._client = await _client_roots(ctx)
                self._asked = True
        return self._client or Roots([Path.cwd()])

    async def changed(self, ctx: ServerRequestContext, params: Any) -> None:
        async with self._asking:
            self._asked, self._client = False, None


def _lists_roots(ctx: ServerRequestContext) -> bool:
    capabilities = ctx.session.client_capabilities
    return capabilities is not None and capabilities.roots is not None and ctx.session.can_send_request


async def _client_roots(ctx: ServerRequestContext) -> Roots | None:
    """The client's `file://` roots that are folders here; None when it lists none or fails to."""
    try:
        with warnings.catch_warnings():                  # roots are deprecated by the 2026-07-28 revision
            warnings.simplefilter("ignore")
            result = await ctx.session.list_roots()
    except Exception as err:
        log.warning("the client did not list its roots (%s); using %s", err, Path.cwd())
        return None
    folders = [Path(url2pathname(uri.path)) for uri in (urlparse(str(root.uri)) for root in result.roots)
               if uri.scheme == "file"]
    folders = [folder for folder in folders if folder.is_dir()]
    log.info("roots from the client: %s", ", ".join(map(str, folders)) or "none usable")
    return Roots(folders) if folders else None


def _arguments(tool: ToolSpec, validator: Draft202012Validator, arguments: dict[str, Any]) -> dict[str, Any]:
    """`arguments` checked against the tool's input schema; the first problem as a one-line HhgError."""
    error = best_match(validator.iter_errors(arguments))
    if error is not None:
        where = ".".join(map(str, error.absolute_path))
        raise HhgError(f"invalid arguments for {tool.name}: {where + ': ' if where else ''}{error.message}")
    return arguments


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=f"hhg: {message}")], is_error=True)


def create_server(roots: list[Path], workspace: Workspace) -> Server:
    """The low-level server with hhg's four tools over `workspace`, reading within `roots` (see RootSource)."""
    source = RootSource(roots)
    validators = {name: Draft202012Validator(tool.input_schema) for name, tool in TOOLS.items()}

    async def list_tools(ctx: ServerRequestContext, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[
            types.Tool(name=tool.name, title=tool.title, description=tool.description, input_schema=tool.input_schema,
                       output_schema=tool.output_schema,
                       annotations=types.ToolAnnotations(read_only_hint=tool.read_only, destructive_hint=False,
                                                         idempotent_hint=True, open_world_hint=False))
            for tool in TOOLS.values()])

    async def call_tool(ctx: ServerRequestContext, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = TOOLS.get(params.name)
        if tool is None:
            return _error(f"unknown tool {params.name!r}; the tools are {', '.join(TOOLS)}")
        try:
            arguments = _arguments(tool, validators[tool.name], params.arguments or {})
            call_roots = await source.current(ctx)
            result = await anyio.to_thread.run_sync(partial(tool.run, workspace, call_roots, **arguments))
        except (HhgError, OSError) as err:
            log.info("%s failed: %s", tool.name, one_line(err))
            return _error(one_line(err))
        except Exception as err:
            log.exception("%s failed", tool.name)
            return _error(f"{one_line(err)} (the traceback is in the server's log)")
        return types.CallToolResult(content=[types.TextContent(type="text", text=tool.render(result))],
                                    structured_content=result)

    server = Server("hhg", version=__version__, title="hhg code search", instructions=INSTRUCTIONS,
                    on_list_tools=list_tools, on_call_tool=call_tool)
    server.add_notification_handler("notifications/roots/list_changed", types.NotificationParams, source.changed)
    return server


def run_stdio(roots: list[Path]) -> None:
    """Serve one client over stdin/stdout until it closes stdin."""
    anyio.run(_serve, roots)


async def _serve(roots: list[Path]) -> None:
    log.info("hhg %s serving MCP on stdio; roots: %s", __version__,
             ", ".join(map(str, roots)) or "the client's, else the working directory")
    workspace = Workspace()
    server = create_server(roots, workspace)
    try:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
    finally:
        workspace.close()
