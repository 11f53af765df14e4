"""Engine speed on a real codebase: the Django sources, keyword-only.

    python -m hhg_mlx.bench.engine_perf [--runs 10] [--cache DIR] [--django 5.2.8]

Downloads the Django sdist once (`pip download`, into the cache folder), then measures, each
through a new `hhg` process as a user runs it:

  cold build       `hhg build -q SRC` with no index
  no-change build  `hhg build -q SRC` again
  cold search      `hhg -q QUERY SRC`, median over --runs new processes (queries rotate)

Targets on a 2-core machine: build < 60 s, no-change < 2 s, cold search median < 300 ms.
Python may write bytecode caches (as `pip install` does): with PYTHONDONTWRITEBYTECODE set, every
new process would compile hhg's modules again (about 15 ms of each search).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .archives import unpack

QUERIES = ["database migration autodetector", "where are template filters registered", "csrf token check",
           "parse http accept header", "password hashing iterations", "queryset bulk create",
           "url resolver reverse", "session expiry", "form field validation error", "cache key prefix"]
# Where a cold search's time goes, measured inside a new process (interpreter start-up excluded).
STAGES = """
import json, sys, time
t0 = time.perf_counter()
from hhg_mlx.index.index import Index
t1 = time.perf_counter()
idx = Index.open(sys.argv[1])
idx.update()
t2 = time.perf_counter()
idx.search(sys.argv[2], k=10)
t3 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "stale check (update)": t2 - t1, "search": t3 - t2}))
"""
TARGETS = {"cold build": 60.0, "no-change build": 2.0, "cold search (median)": 0.3}


def hhg_command() -> list[str]:
    script = Path(sys.executable).with_name("hhg")
    return [str(script)] if script.exists() else [sys.executable, "-m", "hhg_mlx.cli"]


def django_sources(cache: Path, version: str) -> Path:
    """The unpacked Django sdist (downloaded and unpacked once)."""
    src = cache / f"django-{version}"
    if src.is_dir():
        return src
    cache.mkdir(parents=True, exist_ok=True)
    sdists = list(cache.glob(f"[dD]jango-{version}.tar.gz"))
    if not sdists:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        f"django=={version}", "-d", str(cache)], check=True)
        sdists = list(cache.glob(f"[dD]jango-{version}.tar.gz"))
    unpack(sdists[0], cache)
    unpacked = next(p for p in cache.iterdir() if p.is_dir() and p.name.lower() == f"django-{version}")
    if unpacked != src:
        unpacked.rename(src)
    return src


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return time.perf_counter() - start, proc


def add_django_arguments(ap: argparse.ArgumentParser, kept: str = "the Django sdist") -> None:
    """--cache (where `kept` is kept) and --django (the version)."""
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "hhg-bench", help=f"where {kept} is kept (default: ~/.cache/hhg-bench)")
    ap.add_argument("--django", default="5.2.8", help="Django version (default 5.2.8)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_django_arguments(ap)
    ap.add_argument("--runs", type=int, default=10, help="new processes for the cold search median")
    args = ap.parse_args()

    src = django_sources(args.cache, args.django)
    hhg = hhg_command()
    # Keyword-only: no model is looked up in a Hugging Face cache, nothing is downloaded.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(args.cache / "no-models")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)   # the cold build writes the caches the searches use
    shutil.rmtree(src / ".hhg", ignore_errors=True)

    results: dict[str, float] = {}
    results["cold build"], proc = timed([*hhg, "build", "-q", str(src)], env)
    if proc.returncode:
        sys.exit(f"hhg build failed ({proc.returncode}): {proc.stderr.strip()}")
    results["no-change build"], proc = timed([*hhg, "build", "-q", str(src)], env)
    searches = []
    for i in range(args.runs):
        seconds, proc = timed([*hhg, "-q", "--json", "--no-content", QUERIES[i % len(QUERIES)], str(src)], env)
        if proc.returncode not in (0, 1):
            sys.exit(f"hhg search failed ({proc.returncode}): {proc.stderr.strip()}")
        searches.append(seconds)
    results["cold search (median)"] = statistics.median(searches)
    stages = [json.loads(subprocess.run([sys.executable, "-c", STAGES, str(src), QUERIES[i % len(QUERIES)]],
                                        capture_output=True, text=True, env=env, check=True).stdout)
              for i in range(args.runs)]
    startup = statistics.median(timed([sys.executable, "-c", "pass"], env)[0] for _ in range(args.runs))
    status = json.loads(subprocess.run([*hhg, "status", "--json", str(src)], capture_output=True, text=True,
                                       env=env, check=True).stdout)

    print(f"Django {args.django}: {status.get('files', 0):,} files, {status.get('blocks', 0):,} blocks, "
          f"model: {status.get('model') or 'none (keyword only)'}; {os.cpu_count()} CPUs")
    print(f"{'measurement':<22} {'seconds':>9} {'target':>8}  ok")
    for name, seconds in results.items():
        target = TARGETS[name]
        print(f"{name:<22} {seconds:>9.3f} {target:>8.1f}  {'yes' if seconds < target else 'NO'}")
    print(f"cold search runs: min {min(searches):.3f}  max {max(searches):.3f}  (n={len(searches)})")
    print("cold search stages (medians): " + ", ".join(
        [f"python start-up {startup:.3f}"] + [f"{k} {statistics.median(s[k] for s in stages):.3f}" for k in stages[0]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
