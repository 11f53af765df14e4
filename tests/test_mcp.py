"""`hhg mcp`: the server started as a subprocess and driven by the MCP SDK's stdio client, on generated
repositories; results are checked against the files themselves and against the CLI's `--json`."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import tomllib
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from jsonschema import Draft202012Validator
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from checkpoints import make_bert
from cli_fixtures import HHG, env_for, make_repo, run_hhg, search_json, worker_env, write_tree
from hhg_mlx.index import worker
from hhg_mlx.index.index import Index

TIMEOUT = 180                      # seconds any one request may take before the test fails
OTHER = {"net/socket_pool.py": '''
    class SocketPool:
        """Keeps idle sockets for reuse."""

        def borrow_socket(self, host):
            """Hand out an idle socket for host, or open a new one."""
            return self.idle.pop(host, None) or self.connect(host)
    '''}
# Counts every encoder the server process loads, whoever loads it (the tools' cache or an Index itself).
COUNTING = """
import sys
import hhg_mlx.loader as loader
real = loader.load_encoder
def counted(*args, **kwargs):
    print("load_encoder called", file=sys.stderr, flush=True)
    return real(*args, **kwargs)
loader.load_encoder = counted
from hhg_mlx.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    return env_for(tmp_path_factory.mktemp("env"))


@pytest.fixture
def repo(tmp_path) -> Path:
    return make_repo(tmp_path / "repo", use_git=False)


@pytest.fixture
def other(tmp_path) -> Path:
    write_tree(tmp_path / "other", OTHER)
    return tmp_path / "other"


@asynccontextmanager
async def connect(cwd: Path, env: dict[str, str], *args: str, log: Path | None = None, list_roots=None,
                  program: tuple[str, ...] = ("-m", "hhg_mlx.cli")):
    """A session with `hhg mcp ARGS` started in `cwd`; the server's stderr goes to `log`. Leaving the
    block closes its stdin and, failing that, kills it: no server outlives its test."""
    params = StdioServerParameters(command=sys.executable, args=[*program, "mcp", *args], cwd=str(cwd), env=env)
    with open(log or os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=TIMEOUT, list_roots_callback=list_roots) as s:
                await s.initialize()
                yield s


async def call(session: ClientSession, tool: str, **arguments) -> dict:
    """A successful call's structured result (its text rendering checked to be there too)."""
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.content[0].type == "text" and result.content[0].text
    return result.structured_content


async def error(session: ClientSession, tool: str, **arguments) -> str:
    result = await session.call_tool(tool, arguments)
    assert result.is_error and result.structured_content is None, result
    [content] = result.content
    return content.text


def lines_of(root: Path, rel: str, first: str, last: str) -> tuple[int, int, str]:
    """The 1-based span from the line starting (after indentation) with `first` to the next one with
    `last`, and its text: the expected hit, read from the file itself."""
    lines = (root / rel).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(first))
    end = next(i for i in range(start, len(lines)) if lines[i].strip().startswith(last))
    return start + 1, end + 1, "\n".join(lines[start:end + 1])


# --- the tools and their schemas ---------------------------------------------------------------

@pytest.mark.asyncio
async def test_tools_have_model_readable_schemas(repo, env):
    async with connect(repo, env) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert set(tools) == {"search", "find_similar", "index_status", "build"}
    for tool in tools.values():
        Draft202012Validator.check_schema(tool.input_schema)
        Draft202012Validator.check_schema(tool.output_schema)
        assert tool.input_schema["additionalProperties"] is False
        assert len(tool.description) > 150
        assert all(len(p["description"]) > 20 for p in tool.input_schema["properties"].values())
    search = tools["search"].input_schema
    assert set(search["properties"]) == {"query", "path", "k", "mode", "types", "exclude", "code_only", "rerank"}
    assert search["required"] == ["query"]
    assert search["properties"]["mode"]["enum"] == ["hybrid", "keyword", "semantic"]
    assert (search["properties"]["k"]["default"], search["properties"]["k"]["minimum"]) == (10, 1)
    assert tools["find_similar"].input_schema["required"] == ["target"]
    assert set(tools["find_similar"].input_schema["properties"]) == {"target", "path", "k"}
    assert set(tools["index_status"].input_schema["properties"]) == {"path"}
    assert set(tools["build"].input_schema["properties"]) == {"path", "model"}
    hit = tools["search"].output_schema["properties"]["hits"]["items"]
    assert hit["required"] == ["file", "line", "end_line", "kind", "name", "score", "content"]
    assert {name: tool.annotations.read_only_hint for name, tool in tools.items()} == {
        "search": True, "find_similar": True, "index_status": True, "build": False}


# --- search and find_similar -------------------------------------------------------------------

@pytest.mark.asyncio
async def test_search_finds_the_definition_first_with_1_based_lines(repo, env):
    line, end_line, content = lines_of(repo, "src/upload.py", "def retry_failed_uploads", "time.sleep")
    async with connect(repo, env) as session:
        result = await session.call_tool("search", {"query": "retry failed uploads", "k": 3})
        again = await call(session, "search", query="retry failed uploads", k=3)
    found = result.structured_content
    first = found["hits"][0]
    assert {key: first[key] for key in ("file", "line", "end_line", "kind", "name", "content")} == {
        "file": "src/upload.py", "line": line, "end_line": end_line, "kind": "method",
        "name": "Uploader.retry_failed_uploads", "content": content}
    assert found["notices"] == [
        f"built a new index in {repo.resolve()} (the first search there)",
        "semantic search unavailable (this index has no embeddings; run `hhg build --model MODEL` to add them); "
        "showing keyword results"]
    assert again == {"hits": found["hits"], "notices": []}        # each notice once per index
    # The same hits as the CLI's --json on the index the server built, and a grep-like text rendering.
    assert found["hits"] == search_json("retry failed uploads", "-n", "3", cwd=repo, env=env)
    text = result.content[0].text
    assert text.startswith(f"src/upload.py:{line}-{end_line} method Uploader.retry_failed_uploads\n"
                           f"    def retry_failed_uploads(self, attempts=3):\n")


@pytest.mark.asyncio
async def test_search_options_match_the_cli(repo, env):
    cases = [({"query": "wombat", "types": ["go"]}, ("wombat", "-t", "go")),
             ({"query": "retry", "path": "lib"}, ("retry", "lib")),
             ({"query": "quokka", "exclude": ["config/*"], "k": 4}, ("quokka", "--exclude", "config/*", "-n", "4")),
             ({"query": "retry uploads", "code_only": True}, ("retry uploads", "--code-only")),
             ({"query": "retry uploads", "mode": "keyword"}, ("retry uploads", "--mode", "keyword"))]
    async with connect(repo, env) as session:
        for arguments, cli_args in cases:
            hits = (await call(session, "search", **arguments))["hits"]
            assert hits == search_json(*cli_args, cwd=repo, env=env), arguments
    assert {h["file"] for h in search_json("wombat", "-t", "go", cwd=repo, env=env)} == {"zoo/burrows.go"}
    assert all(h["file"].startswith("lib/") for h in search_json("retry", "lib", cwd=repo, env=env))


@pytest.mark.asyncio
async def test_find_similar_by_name_and_by_line(repo, env):
    line, end_line, _ = lines_of(repo, "src/upload.py", "def retry_failed_uploads", "time.sleep")
    async with connect(repo, env) as session:
        by_name = await call(session, "find_similar", target="src/upload.py#Uploader.retry_failed_uploads", k=5)
        by_line = await call(session, "find_similar", target=f"src/upload.py:{line + 2}", k=5)
        under_lib = await call(session, "find_similar", target="src/upload.py#retry_failed_uploads", path="lib")
    assert by_name["hits"] == by_line["hits"]
    assert "retry_failed_jobs" in {h["name"] for h in by_name["hits"]}
    assert ("src/upload.py", line) not in {(h["file"], h["line"]) for h in by_name["hits"]}
    assert by_name["hits"] == search_json("src/upload.py#Uploader.retry_failed_uploads", "-n", "5", cwd=repo, env=env)
    assert [(h["file"], h["name"]) for h in under_lib["hits"]][0] == ("lib/jobs.py", "retry_failed_jobs")
    assert {h["file"] for h in under_lib["hits"]} == {"lib/jobs.py"}


@pytest.mark.asyncio
async def test_rerank_passes_through_for_this_call_only(tmp_path, repo, env):
    reranker = make_bert(tmp_path / "reranker", labels=1, prefix="bert.", sentence_transformers=False)
    query = "retry failed uploads"
    async with connect(repo, env) as session:
        plain = (await call(session, "search", query=query))["hits"]
        reranked = (await call(session, "search", query=query, rerank=str(reranker)))["hits"]
        after = (await call(session, "search", query=query))["hits"]
        refused = await error(session, "search", query=query, rerank=str(tmp_path / "no-such-reranker"))
    assert after == plain                                     # the index's setting did not change
    assert json.loads(run_hhg("status", "--json", cwd=repo, env=env).stdout)["rerank"] is None
    assert reranked == search_json("--rerank", str(reranker), query, cwd=repo, env=env)
    assert [h["name"] for h in reranked] != [h["name"] for h in plain]
    assert refused == f"hhg: {tmp_path / 'no-such-reranker'}: no such model folder"      # the CLI's line


# --- build and index_status --------------------------------------------------------------------

@pytest.mark.asyncio
async def test_index_status_after_build_is_hhg_status(tmp_path, repo, env):
    model = make_bert(tmp_path / "tiny-bert")
    async with connect(repo, env) as session:
        missing = await error(session, "index_status")
        built = await call(session, "build", model=str(model))      # returns after the keyword phase
        status = await call(session, "index_status", path="src")
        with anyio.fail_after(TIMEOUT):
            while status["embedding"]["state"] == "running":         # the background worker embeds
                await anyio.sleep(0.2)
                status = await call(session, "index_status", path="src")
    assert missing == "hhg: no index at or above .; the build tool makes one"
    assert built["embedding"]["state"] in ("running", "done") and built["embedding"]["total"] == built["blocks"]
    assert (status["embedding"]["state"], status["embedding"]["done"]) == ("done", status["blocks"])
    cli = json.loads(run_hhg("status", "--json", cwd=repo, env=env).stdout)
    assert status["size_bytes"] > 0 and cli["size_bytes"] > 0
    for reported in (status, cli):
        del reported["size_bytes"]                     # the WAL grows and shrinks between readers
    assert status == cli
    assert status["root"] == str(repo.resolve()) and status["model"] == str(model.resolve())
    assert status["vectors"] >= status["blocks"] > 0 and status["stale"] == 0
    assert built["notices"] == [] and {k: built[k] for k in ("files", "blocks", "model")} == {
        k: status[k] for k in ("files", "blocks", "model")}


@pytest.mark.asyncio
async def test_build_leaves_the_embedding_to_the_background_worker(tmp_path, repo):
    env = worker_env(tmp_path, delay=0.2)          # a stub model that takes 0.2 s a text: ~10 s for this repo
    try:
        async with connect(repo, env) as session:
            built = await call(session, "build", model="stub-slow")
            early = await call(session, "search", query="retry failed uploads", k=1)
            status = await call(session, "index_status")
            with anyio.fail_after(TIMEOUT):
                while status["embedding"]["state"] == "running":
                    await anyio.sleep(0.2)
                    status = await call(session, "index_status")
            late = await call(session, "search", query="retry failed uploads", mode="semantic", k=1)
    finally:
        worker.stop(repo, timeout=5)
    embedding = built["embedding"]
    assert embedding["state"] == "running" and embedding["pid"] and embedding["total"] == built["blocks"]
    assert early["hits"][0]["name"] == "Uploader.retry_failed_uploads"           # the keyword index answers
    assert re.fullmatch(rf"semantic search covers [\d,]+ of {built['blocks']:,} blocks \(\d+%\); "
                        r"embedding continues in the background", early["notices"][0]), early["notices"]
    assert (status["embedding"]["state"], status["embedding"]["done"]) == ("done", built["blocks"])
    assert late["hits"] and late["notices"] == []
    assert not worker.alive(embedding["pid"])


# --- paths and errors --------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_paths_outside_the_roots_and_bad_arguments_are_tool_errors(tmp_path, repo, env):
    outside = tmp_path / "outside"
    write_tree(outside, {"secret.py": "def secret_token():\n    return 'wombat'\n"})
    (repo / "escape").symlink_to(outside, target_is_directory=True)
    (repo / "escape.py").symlink_to(outside / "secret.py")
    root = repo.resolve()
    refused = f"outside the roots this server may read ({root})"
    async with connect(repo, env) as session:
        expected = {
            ("search", str(outside)): f"hhg: {outside}: {refused}",
            ("search", "escape"): f"hhg: escape: {refused}",
            ("search", "../outside"): f"hhg: ../outside: {refused}",
            ("index_status", "escape"): f"hhg: escape: {refused}",
            ("build", "escape"): f"hhg: escape: {refused}",
            ("search", "no/such/folder"): "hhg: no/such/folder: no such file or directory",
            ("build", "src/upload.py"): "hhg: src/upload.py: not a folder",
        }
        for (tool, path), message in expected.items():
            arguments = {"query": "secret token"} if tool == "search" else {}
            assert await error(session, tool, path=path, **arguments) == message
        assert await error(session, "find_similar", target="escape.py#secret_token") == f"hhg: escape.py: {refused}"
        assert await error(session, "find_similar", target="src/upload.py") == \
            "hhg: 'src/upload.py' is neither FILE#NAME nor FILE:LINE"
        assert await error(session, "find_similar", target="src/upload.py#no_such_name") == \
            "hhg: src/upload.py has no function, class or section named 'no_such_name'"
        assert await error(session, "search", query="x", mode="fuzzy") == \
            "hhg: invalid arguments for search: mode: 'fuzzy' is not one of ['hybrid', 'keyword', 'semantic']"
        assert await error(session, "search", query="x", k=0) == \
            "hhg: invalid arguments for search: k: 0 is less than the minimum of 1"
        assert await error(session, "search", path="src") == \
            "hhg: invalid arguments for search: 'query' is a required property"
        assert await error(session, "search", query="x", limit=3) == \
            "hhg: invalid arguments for search: Additional properties are not allowed ('limit' was unexpected)"
        assert await error(session, "search", query="x", mode="semantic") == (
            "hhg: semantic search unavailable: this index has no embeddings; run `hhg build --model MODEL` to add them")
        assert await error(session, "grep", query="x") == \
            "hhg: unknown tool 'grep'; the tools are search, find_similar, index_status, build"
        # ... and the server keeps answering; the indexed symlink's hit is left out, with a notice.
        found = await call(session, "search", query="secret token wombat", types=["py"])
    assert found["hits"] and "secret_token" not in {h["name"] for h in found["hits"]}
    assert found["notices"][-1] == "left out hits in files that resolve outside the roots: escape.py"
    assert "secret_token" in {h["name"] for h in search_json("secret token", cwd=repo, env=env)}   # the CLI shows it


def test_stdout_carries_only_the_protocol(repo, env, tmp_path):
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "build", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "search", "arguments": {"query": "retry failed uploads"}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
            "name": "search", "arguments": {"query": "x", "path": "/"}}},
    ]
    proc = subprocess.Popen([*HHG, "mcp"], cwd=repo, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(TIMEOUT, proc.kill)
    watchdog.start()
    try:
        proc.stdin.write("".join(json.dumps(r) + "\n" for r in requests))
        proc.stdin.flush()
        lines = [proc.stdout.readline() for _ in range(4)]        # one response per request with an id
        proc.stdin.close()
        lines += proc.stdout.read().splitlines(keepends=True)
        stderr = proc.stderr.read()
        assert proc.wait(timeout=30) == 0
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    messages = [json.loads(line) for line in lines]               # every line of stdout is JSON-RPC
    assert all(m["jsonrpc"] == "2.0" for m in messages) and sorted(m["id"] for m in messages) == [1, 2, 3, 4]
    by_id = {m["id"]: m["result"] for m in messages}
    assert by_id[3]["structuredContent"]["hits"][0]["name"] == "Uploader.retry_failed_uploads"
    assert by_id[4]["isError"] is True
    assert "Traceback" not in stderr


# --- long-lived state and concurrency ----------------------------------------------------------

@pytest.mark.asyncio
async def test_concurrent_searches_of_two_roots(repo, other, env):
    async with connect(repo, env, "--root", str(repo), "--root", str(other)) as session:
        results = {}

        async def search(name: str, arguments: dict) -> None:
            results.setdefault(name, []).append(await call(session, "search", **arguments))
        async with anyio.create_task_group() as group:      # two at once on each index, both unbuilt
            for _ in range(2):
                group.start_soon(search, "repo", {"query": "retry failed uploads", "k": 1})
                group.start_soon(search, "other", {"query": "borrow an idle socket", "path": str(other), "k": 1})
    assert [r["hits"] for r in results["repo"]][0] == [r["hits"] for r in results["repo"]][1]
    assert [r["hits"] for r in results["other"]][0] == [r["hits"] for r in results["other"]][1]
    assert results["repo"][0]["hits"][0]["name"] == "Uploader.retry_failed_uploads"
    line, end_line, _ = lines_of(other, "net/socket_pool.py", "def borrow_socket", "return")
    [hit] = results["other"][0]["hits"]
    # Outside the first root, files are shown absolute.
    assert (hit["file"], hit["line"], hit["end_line"], hit["name"]) == (
        str(other.resolve() / "net/socket_pool.py"), line, end_line, "SocketPool.borrow_socket")


@pytest.mark.asyncio
async def test_one_encoder_load_serves_every_search(tmp_path, repo, other, env):
    model = make_bert(tmp_path / "tiny-bert")
    for folder in (repo, other):
        assert run_hhg("build", "-q", "--wait", "--model", str(model), cwd=folder, env=env, timeout=600).returncode == 0
    log = tmp_path / "server.log"
    async with connect(repo, env, "--root", str(repo), "--root", str(other), log=log,
                       program=("-c", COUNTING)) as session:
        first = await call(session, "search", query="retry failed uploads")
        again = await call(session, "search", query="parse config", mode="semantic")
        elsewhere = await call(session, "search", query="borrow socket", path=str(other), mode="semantic")
        similar = await call(session, "find_similar", target="src/upload.py#parse_config")
    assert all(result["hits"] for result in (first, again, elsewhere, similar))
    assert not any(result["notices"] for result in (first, again, elsewhere, similar))   # none fell back to keywords
    lines = log.read_text().splitlines()
    assert lines.count("load_encoder called") == 1
    backend = json.loads(run_hhg("status", "--json", cwd=repo, env=env).stdout)["backend"]     # e.g. onnx (int8)
    [loaded] = [line for line in lines if line.startswith("hhg mcp: loaded model")]
    assert loaded.startswith(f"hhg mcp: loaded model {model.resolve()} on {backend} in ")


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore:The roots capability is deprecated")
async def test_client_roots_replace_the_working_directory(repo, other, env):
    roots = [other]

    async def list_roots(context) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=root.resolve().as_uri()) for root in roots])
    async with connect(repo, env, list_roots=list_roots) as session:
        hits = (await call(session, "search", query="borrow socket", k=1))["hits"]
        refused = await error(session, "search", query="retry", path=str(repo))
        roots[:] = [repo]
        await session.send_roots_list_changed()
        after = (await call(session, "search", query="retry failed uploads", k=1))["hits"]
    assert hits[0]["file"] == "net/socket_pool.py"
    assert refused == f"hhg: {repo}: outside the roots this server may read ({other.resolve()})"
    assert after[0]["name"] == "Uploader.retry_failed_uploads"


# --- the command line ----------------------------------------------------------------------------

@pytest.mark.parametrize("client", ["claude", "cursor", "codex", "vscode"])
def test_print_config(client, repo, env):
    proc = run_hhg("mcp", "--root", str(repo), "--print-config", client, cwd=repo, env=env)
    assert proc.returncode == 0 and proc.stderr == ""
    server = {"command": "hhg", "args": ["mcp", "--root", str(repo.resolve())]}
    if client == "codex":
        assert tomllib.loads(proc.stdout) == {"mcp_servers": {"hhg": server}}
    elif client == "vscode":
        assert json.loads(proc.stdout) == {"servers": {"hhg": {"type": "stdio", **server}}}
    else:
        assert json.loads(proc.stdout) == {"mcpServers": {"hhg": server}}


def test_print_config_names_the_installed_script(repo, env):
    script = Path(sys.executable).parent / "hhg"
    if not script.is_file():
        pytest.skip("no `hhg` console script next to this Python")
    proc = subprocess.run([str(script), "mcp", "--print-config", "cursor"], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=60)
    assert json.loads(proc.stdout)["mcpServers"]["hhg"] == {"command": str(script), "args": ["mcp"]}


def test_without_the_sdk_one_line_names_the_extra(repo, env):
    hidden = "import sys; sys.modules['mcp'] = None; from hhg_mlx.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", hidden, "mcp"], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2, "", "hhg: `hhg mcp` needs the MCP SDK: pip install 'hhg[mcp]'\n")
    assert run_hhg("mcp", "--root", "no-such-dir", cwd=repo, env=env).stderr == "hhg: no-such-dir: no such directory\n"


# --- overlap, in process: the server's handlers with a stalled engine ------------------------------

@asynccontextmanager
async def in_process(*roots: Path):
    """A client of `create_server` in this process, so a test can stall the engine deterministically."""
    from mcp import Client

    from hhg_mlx.mcp.server import create_server
    from hhg_mlx.mcp.workspace import Workspace
    workspace = Workspace()
    try:
        async with Client(create_server(list(roots), workspace), read_timeout_seconds=TIMEOUT) as client:
            yield client
    finally:
        workspace.close()


@pytest.mark.asyncio
async def test_searches_of_two_indexes_run_at_the_same_time(monkeypatch, repo, other):
    both_inside = threading.Barrier(2, timeout=60)    # broken (a tool error) unless two searches overlap
    search = Index.search

    def meeting_search(self, *args, **kwargs):
        both_inside.wait()
        return search(self, *args, **kwargs)
    monkeypatch.setattr(Index, "search", meeting_search)
    for root in (repo, other):
        Index.build(root).close()
    async with in_process(repo, other) as client:
        results = []

        async def run(arguments: dict) -> None:
            results.append(await client.call_tool("search", arguments))
        async with anyio.create_task_group() as group:
            group.start_soon(run, {"query": "retry failed uploads", "k": 1})
            group.start_soon(run, {"query": "borrow socket", "path": str(other), "k": 1})
    assert [r.is_error for r in results] == [False, False], [r.content for r in results]
    assert {r.structured_content["hits"][0]["name"] for r in results} == {
        "Uploader.retry_failed_uploads", "SocketPool.borrow_socket"}


@pytest.mark.asyncio
async def test_a_slow_build_does_not_hold_up_a_search_of_another_index(monkeypatch, repo, other):
    building, release = threading.Event(), threading.Event()
    build = Index.build.__func__

    def stalled_build(cls, *args, **kwargs):
        building.set()
        assert release.wait(60)
        return build(cls, *args, **kwargs)
    for root in (repo, other):
        Index.build(root).close()
    async with in_process(repo, other) as client:
        monkeypatch.setattr(Index, "build", classmethod(stalled_build))
        async with anyio.create_task_group() as group:
            built = []

            async def run_build() -> None:
                built.append(await client.call_tool("build", {"path": str(other)}))
            group.start_soon(run_build)
            await anyio.to_thread.run_sync(building.wait)
            found = await client.call_tool("search", {"query": "retry failed uploads", "k": 1})
            assert built == []                          # the build is still stalled: the search did not wait
            release.set()
    assert found.structured_content["hits"][0]["name"] == "Uploader.retry_failed_uploads"
    assert not built[0].is_error and built[0].structured_content["root"] == str(other.resolve())

