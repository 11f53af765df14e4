"""Progressive indexing on a real codebase: the Django sources with a model of jina-code-v2's shape
(random weights, the all-MiniLM-L6-v2 tokenizer for realistic token counts), ONNX Runtime int8.

    python -m hhg_mlx.bench.progressive [--rounds 2] [--phase 45] [--searches 8] [--cache DIR]

Every step is a new `hhg` process, as a user runs it; the comparisons are interleaved, round by round,
so a busy machine slows both sides alike:

  first results   `hhg build -q SRC` (keyword only) against `hhg --model M -q QUERY SRC` on no index:
                  seconds until the search prints its first byte (the worker embeds afterwards)
  throughput      the background worker, measured over --phase seconds of committed batches (texts and
                  tokens of the windows it stored), against `hhg bench` (same backend and precision, its
                  length mix) and the same encoder on the next windows the worker would embed, both at
                  the worker's niceness
  search latency  `hhg -q --json QUERY SRC`, hybrid and keyword, with the worker running and stopped

Downloads the Django sdist once (`python -m hhg_mlx.bench.engine_perf` does the same) and keeps the
random model (with its ONNX export) in the cache folder.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ..index.worker import NICE
from .engine_perf import QUERIES, add_django_arguments, django_sources, hhg_command
from .speed import write_random_code_model

REFERENCE_TEXTS = 256          # windows the encoder-alone reference embeds (one worker batch)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_django_arguments(ap, "the Django sdist and the random model")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of each comparison (default 2)")
    ap.add_argument("--phase", type=float, default=45.0, help="seconds of worker throughput per round (default 45)")
    ap.add_argument("--searches", type=int, default=8, help="searches per mode, worker state and round (default 8)")
    ap.add_argument("--encode", type=Path, help=argparse.SUPPRESS)    # internal: the encoder-alone reference
    args = ap.parse_args()
    model = args.cache / "random-jina-code-v2"
    if args.encode:
        print(json.dumps(encode_file(model, args.encode)))
        return 0

    src = django_sources(args.cache, args.django)
    if not (model / "config.json").exists():
        write_random_code_model(model)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HHG_BACKGROUND": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    hhg = hhg_command()
    print("exporting the model to ONNX int8 once (cached)…", file=sys.stderr, flush=True)
    encode_file(model, None)

    first = {"keyword-only build": [], "first results, --model": []}
    for _ in range(args.rounds):
        run([*hhg, "clean", "-q", str(src)], env)
        first["keyword-only build"].append(timed_first_output([*hhg, "build", "-q", str(src)], env)[1])
        run([*hhg, "clean", "-q", str(src)], env)
        first["first results, --model"].append(
            timed_first_output([*hhg, "--model", str(model), "-q", "-n", "3", QUERIES[0], str(src)], env)[0])
    status = json.loads(run([*hhg, "status", "--json", str(src)], env).stdout)

    throughput = {"worker": [], "hhg bench (length mix)": [], "encoder alone (next windows)": []}
    for _ in range(args.rounds):
        throughput["worker"].append(worker_phase(src, model, args.phase, hhg, env))
        run([*hhg, "stop", "-q", str(src)], env, check=False)
        throughput["hhg bench (length mix)"].append(bench_mix(model, hhg, env))
        throughput["encoder alone (next windows)"].append(reference_on_next_windows(src, args.cache, env))
        run([*hhg, "build", "-q", str(src)], env)                       # an explicit build resumes the worker

    latency: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for running in (True, False):
            if running:
                run([*hhg, "build", "-q", str(src)], env)
                wait_for_batch(src)
            else:
                run([*hhg, "stop", "-q", str(src)], env, check=False)
            for mode in ("hybrid", "keyword"):
                key = f"{mode}, worker {'running' if running else 'stopped'}"
                for i in range(args.searches):
                    latency.setdefault(key, []).append(timed_first_output(
                        [*hhg, "-q", "--json", "--no-content", "--mode", mode, QUERIES[i % len(QUERIES)], str(src)],
                        env)[1])
    run([*hhg, "stop", "-q", str(src)], env, check=False)
    report(status, first, throughput, latency)
    return 0


def run(cmd: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def timed_first_output(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds to the first byte on stdout, seconds to the exit) of a new process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    proc.stdout.read(1)
    first = time.perf_counter() - start
    proc.stdout.read()
    proc.wait()
    return first, time.perf_counter() - start


def db(src: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{src / '.hhg' / 'index.sqlite'}?mode=ro", uri=True, timeout=30)


def stored_hashes(src: Path) -> set[str]:
    with db(src) as conn:
        return {h for (h,) in conn.execute("SELECT hash FROM embeddings")}


def wait_for_batch(src: Path) -> None:
    """Until the worker commits its next batch (its model is loaded then)."""
    before = len(stored_hashes(src))
    while len(stored_hashes(src)) == before:
        time.sleep(0.5)


def worker_phase(src: Path, model: Path, seconds: float, hhg: list[str], env: dict[str, str]) -> dict:
    """Texts and tokens per second of the windows the worker stored between two of its commits about
    `seconds` apart (model loading excluded)."""
    wait_for_batch(src)
    start, before = time.perf_counter(), stored_hashes(src)
    time.sleep(seconds)
    wait_for_batch(src)
    elapsed, new = time.perf_counter() - start, stored_hashes(src) - before
    tokens = sum(map(len, _encoder(model).tokenize(window_texts(src, new))))
    return {"texts_per_s": len(new) / elapsed, "tokens_per_s": tokens / elapsed, "texts": len(new)}


def window_texts(src: Path, hashes: set[str]) -> list[str]:
    from ..index.store import windows

    with db(src) as conn:
        rows = conn.execute("SELECT w.hash, w.seq, b.text FROM windows w JOIN blocks b ON b.id = w.block_id").fetchall()
    texts = {}
    for h, seq, text in rows:
        if h in hashes and h not in texts:
            texts[h] = windows(text)[seq]
    return list(texts.values())


def bench_mix(model: Path, hhg: list[str], env: dict[str, str]) -> dict:
    """`hhg bench` on its length mix, ONNX int8, at the worker's niceness."""
    proc = subprocess.run([*hhg, "bench", "--model", str(model), "--backends", "onnx-int8", "--texts", "256",
                           "--repeat", "1", "--json"], capture_output=True, text=True, env=env, check=True,
                          preexec_fn=lambda: os.nice(NICE))
    mix = json.loads(proc.stdout)["mix"]
    result = mix["results"][0]
    return {"texts_per_s": result["texts_per_s"], "tokens_per_s": result["tokens_per_s"], "texts": mix["texts"]}


def reference_on_next_windows(src: Path, cache: Path, env: dict[str, str]) -> dict:
    """The same encoder alone, at the worker's niceness, on the next REFERENCE_TEXTS windows it would embed."""
    from ..index.embed import pending_windows
    from ..index.index import Index

    with Index.open(src) as idx:
        pending = {w.hash for w in pending_windows(idx._store, idx.vector_key)[:REFERENCE_TEXTS]}
    texts_file = cache / "progressive-texts.json"
    texts_file.write_text(json.dumps(window_texts(src, pending)))
    proc = subprocess.run([sys.executable, "-m", "hhg_mlx.bench.progressive", "--cache", str(cache), "--encode",
                           str(texts_file)], capture_output=True, text=True, env=env, check=True,
                          preexec_fn=lambda: os.nice(NICE))
    return json.loads(proc.stdout)


def encode_file(model: Path, texts_file: Path | None) -> dict:
    """Embed the texts of a JSON file with the encoder the index uses (`embed_documents`: tokenisation and
    token-budget batches included); with None, only load it (the ONNX export is cached)."""
    encoder = _encoder(model)
    if texts_file is None:
        return {}
    texts = json.loads(texts_file.read_text())
    tokens = sum(map(len, encoder.tokenize(texts)))
    start = time.perf_counter()
    encoder.embed_documents(texts)
    seconds = time.perf_counter() - start
    return {"texts_per_s": len(texts) / seconds, "tokens_per_s": tokens / seconds, "texts": len(texts)}


@functools.cache
def _encoder(model: Path):
    """The model on ONNX Runtime int8, as the index runs it (loaded once per process)."""
    from ..loader import load_encoder

    return load_encoder(str(model), backend="onnx", quantize=8)


def report(status: dict, first: dict, throughput: dict, latency: dict) -> None:
    print(f"Django: {status['files']:,} files, {status['blocks']:,} blocks; {status['backend']}; "
          f"{os.cpu_count()} CPUs; worker niceness +{NICE}")
    print("\ntime to first results (s)")
    for name, values in first.items():
        print(f"  {name:<28} " + "  ".join(f"{v:.1f}" for v in values))
    ratios = [p / k for p, k in zip(first["first results, --model"], first["keyword-only build"])]
    print(f"  {'ratio':<28} " + "  ".join(f"{r:.2f}" for r in ratios) + "  (target <= 1.5)")
    print("\nthroughput, per round: texts/s (tokens/s)")
    for name, values in throughput.items():
        print(f"  {name:<30} " + "  ".join(f"{v['texts_per_s']:.2f} ({v['tokens_per_s']:,.0f})" for v in values))
    for name in ("hhg bench (length mix)", "encoder alone (next windows)"):
        ratios = [w["tokens_per_s"] / r["tokens_per_s"] for w, r in zip(throughput["worker"], throughput[name])]
        print(f"  worker / {name}, tokens/s: " + "  ".join(f"{r:.0%}" for r in ratios) + "  (target >= 90%)")
    print("\nsearch latency, new processes (s): p50  p90")
    for name, values in latency.items():
        q = statistics.quantiles(values, n=10)
        print(f"  {name:<26} {statistics.median(values):.3f}  {q[8]:.3f}  (n={len(values)})")


if __name__ == "__main__":
    sys.exit(main())
