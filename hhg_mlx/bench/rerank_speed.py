"""`hhg bench --rerank`: cross-encoder reranking latency on this machine, per backend and precision.

The workload is what one reranked search costs: PAIRS (query, document) pairs, a QUERY_TOKENS-token
query with documents of the code-like length mix of `speed.length_mix` cut at DOC_TOKENS, as random
token ids (tokenisation is not measured), scored through `PairScorer.score_tokens` in the same
token-budget batches as a search. Backends are timed round-robin, best of `repeat` rounds, in wall
seconds and in the process's CPU seconds (all threads): on a machine shared with other jobs the CPU
time, divided by the threads the backend uses, says what a quiet machine would take.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .speed import BACKENDS, length_mix

PAIRS = 20
QUERY_TOKENS = 12
DOC_TOKENS = 256


def pair_tokens(lengths: np.ndarray, vocab: int, limit: int, seed: int = 1) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids and type ids of `first query sep document sep` pairs, each cut at `limit` tokens."""
    rng = np.random.default_rng(seed)
    query = rng.integers(5, vocab, QUERY_TOKENS).tolist()
    ids, types = [], []
    for n in lengths:
        first = [0, *query, 2]
        pair = (first + rng.integers(5, vocab, int(n)).tolist() + [2])[:limit]
        ids.append(pair)
        types.append([0] * len(first) + [1] * (len(pair) - len(first)))
    return ids, types


def measure(model: str, folder: Path, backends: list[str], *, pairs: int = PAIRS, doc_tokens: int = DOC_TOKENS,
            repeat: int = 3) -> dict:
    """Load every backend's reranker, then time scoring the pairs round-robin; returns the report
    `format_report` prints."""
    from ..loader import load_reranker
    from ..models.folder import model_architecture, read_settings

    settings = read_settings(folder)
    rerankers = {name: load_reranker(str(folder), **BACKENDS[name]) for name in backends}
    limit = min(reranker.max_length for reranker in rerankers.values())
    lengths = np.minimum(length_mix(pairs), doc_tokens)
    ids, types = pair_tokens(lengths, settings.config["vocab_size"], limit)
    for reranker in rerankers.values():
        reranker.score_tokens(ids[:2], types[:2])          # warm-up: graph optimisation, first allocations
    best = {name: (float("inf"), float("inf")) for name in backends}
    for _ in range(repeat):
        for name, reranker in rerankers.items():
            wall, cpu = _timed(lambda: reranker.score_tokens(ids, types))
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    tokens = sum(map(len, ids))
    return {"model": model, "architecture": model_architecture(settings, None), "pairs": pairs,
            "query_tokens": QUERY_TOKENS, "doc_tokens": {"min": int(lengths.min()), "median": int(np.median(lengths)),
                                                          "max": int(lengths.max())},
            "tokens": tokens, "repeat": repeat,
            "results": [{"backend": name, "seconds": t, "cpu_seconds": cpu, "pairs_per_s": pairs / t,
                         "tokens_per_s": tokens / t} for name, (t, cpu) in best.items()]}


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def format_report(report: dict) -> str:
    docs = report["doc_tokens"]
    lines = [f"reranker: {report['model']} ({report['architecture']})",
             f"{report['pairs']} pairs: query {report['query_tokens']} tokens, documents {docs['min']}-{docs['max']} "
             f"tokens (median {docs['median']}), {report['tokens']:,} tokens in all; best of {report['repeat']}",
             f"  {'backend':<15}{'seconds':>9}{'CPU s':>9}{'pairs/s':>9}{'tokens/s':>10}"]
    lines += [f"  {r['backend']:<15}{r['seconds']:>9.3f}{r['cpu_seconds']:>9.3f}{r['pairs_per_s']:>9.1f}"
              f"{r['tokens_per_s']:>10.0f}" for r in report["results"]]
    return "\n".join(lines)
