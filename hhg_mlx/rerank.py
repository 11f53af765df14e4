"""Reranking a search's fused top candidates with a cross-encoder (the last step of a search).

The cross-encoder reads the query together with each candidate (its path and name, then its source)
and gives a raw relevance logit. A hit's new score is `sigmoid(logit)` times the ranking's
non-textual factors that applied to it (noise paths, prose, declaration files; see `search.boosts`),
so tests, examples, vendored code, documentation and type stubs stay below code as they do without
reranking; the textual boosts (names, BM25 file support) are what the cross-encoder replaces. A
one-identifier query's pinned definitions still lead. Needs numpy only: the reranker itself comes from
`loader.load_reranker`.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .types import Hit

if TYPE_CHECKING:
    from .cross_encoder import Reranker

DEPTH = 20                                  # fused candidates reranked by default (`--rerank-depth`)
NON_TEXTUAL = ("noise_path", "prose", "declaration")   # ranking factors kept after reranking


def document(hit: Hit) -> str:
    """What the cross-encoder reads for a hit: its path and name on a first line, then its source."""
    return f"{hit.file} {hit.name}".rstrip() + "\n" + hit.content


def sigmoid(x: float) -> float:
    return 0.5 * (1.0 + math.tanh(0.5 * x))       # no overflow for large |x|


def rerank(reranker: Reranker, query: str, hits: list[Hit], k: int, threshold: float | None = None) -> list[Hit]:
    """The best `k` of `hits` (a ranking's candidates, best first) by the cross-encoder's score times
    their non-textual factors (from `explain["boosts"]`); `threshold` drops hits scoring below it. Each
    hit's `explain` gains `reranker` (the model), `rerank_logit` and `fused_score` (before reranking)."""
    if not hits:
        return []
    logits = reranker.score(query, [document(hit) for hit in hits])
    for hit, logit in zip(hits, logits):
        explain = hit.explain if hit.explain is not None else {}
        factors = [value for key, value in explain.get("boosts", {}).items() if key in NON_TEXTUAL]
        fused, hit.score = hit.score, sigmoid(float(logit)) * math.prod(factors)
        explain.update(reranker=reranker.model_id, rerank_logit=float(logit), fused_score=fused)
        hit.explain = explain
    order = sorted(range(len(hits)), key=lambda i: (not hits[i].explain.get("defines_query"), -hits[i].score, i))
    ranked = [hits[i] for i in order]
    if threshold is not None:
        ranked = [hit for hit in ranked if hit.score >= threshold]
    return ranked[:k]
