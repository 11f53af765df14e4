"""NDCG@10 for the semble code-search benchmark, by its rule for tools that return chunks.

A target is a file path, optionally with a 1-based inclusive line span. A result chunk
(path, start_line, end_line) matches a target when the paths are equal or one ends with "/"
plus the other, and, for a span target, the chunk overlaps the span. A target is found at the
rank of the first matching chunk; a rank where several targets are found counts once.
Repo score = mean over its queries; overall = unweighted mean of repo scores; a category's
score = mean over repos of each repo's mean for that category (`metrics.means(per_group=True)`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .metrics import K, Chunk


@dataclass(frozen=True, slots=True)
class Target:
    path: str
    start_line: int | None = None
    end_line: int | None = None


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    targets: tuple[Target, ...]
    category: str


def infer_category(text: str) -> str:
    """Upstream's fallback when an annotation has no category."""
    if " " not in text:
        return "symbol"
    return "architecture" if text.startswith("how ") else "semantic"


def _target(raw: str | Mapping) -> Target:
    if isinstance(raw, str):
        return Target(raw)
    return Target(raw["path"], raw.get("start_line"), raw.get("end_line"))


def load_queries(path: Path) -> list[Query]:
    """The queries of one upstream annotation file; `relevant` and `secondary` both count."""
    out = []
    for item in json.loads(Path(path).read_text(encoding="utf-8")):
        raw = list(item.get("relevant", [])) + list(item.get("secondary", []))
        out.append(Query(item["query"], tuple(_target(t) for t in raw),
                         item.get("category") or infer_category(item["query"])))
    return out


def path_matches(result: str, target: str) -> bool:
    """Equal, or one is the other with a leading directory part (`src/XMonad/Core.hs` ~ `Core.hs`)."""
    return result == target or result.endswith("/" + target) or target.endswith("/" + result)


def chunk_matches(chunk: Chunk, target: Target) -> bool:
    path, start, end = chunk
    if not path_matches(path, target.path):
        return False
    if target.start_line is None or target.end_line is None:
        return True
    return start <= target.end_line and end >= target.start_line


def found_ranks(chunks: Sequence[Chunk], targets: Iterable[Target], k: int = K) -> list[int | None]:
    """For each target, the 1-based rank of the first matching chunk in the top k, or None."""
    top = chunks[:k]
    return [next((r for r, c in enumerate(top, 1) if chunk_matches(c, t)), None) for t in targets]


def ndcg(chunks: Sequence[Chunk], targets: Sequence[Target], k: int = K) -> float:
    """NDCG@k of one ranked chunk list against binary-gain targets."""
    if not targets:
        return 0.0
    ranks = {r for r in found_ranks(chunks, targets, k) if r is not None}
    dcg = sum(1.0 / math.log2(r + 1) for r in ranks)
    idcg = sum(1.0 / math.log2(i + 1) for i in range(1, min(k, len(targets)) + 1))
    return dcg / idcg
