"""NDCG@10 for the semble code-search benchmark, by its rule for tools that return chunks.

A target is a file path, optionally with a 1-based inclusive line span. A result chunk
(path, start_line, end_line) matches a target when the paths are equal or one ends with "/"
plus the other, and, for a span target, the chunk overlaps the span. A target is found at the
rank of the first matching chunk; a rank where several targets are found counts once.
Repo score = mean over its queries; overall = unweighted mean of repo scores; a category's
score = mean over repos of each repo's mean for that category.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

K = 10
CATEGORIES = ("architecture", "semantic", "symbol")
Chunk = tuple[str, int, int]   # (path, start_line, end_line), 1-based inclusive


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


def heldout_texts(texts: Sequence[str]) -> frozenset[str]:
    """A deterministic third of one repo's queries, held out from tuning: the round(n/3) texts
    with the smallest SHA-256. Depends only on the texts, so it is stable across runs."""
    ordered = sorted(set(texts), key=lambda t: hashlib.sha256(t.encode("utf-8")).hexdigest())
    return frozenset(ordered[:round(len(ordered) / 3)])


@dataclass(frozen=True, slots=True)
class Scored:
    """One query's score and where it belongs."""

    repo: str
    category: str
    heldout: bool
    ndcg: float


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def repo_means(scored: Iterable[Scored], *, category: str | None = None,
               heldout: bool | None = None) -> dict[str, float]:
    """Per-repo mean NDCG over the selected queries; repos with none selected are left out."""
    by_repo: dict[str, list[float]] = defaultdict(list)
    for s in scored:
        if (category is None or s.category == category) and (heldout is None or s.heldout == heldout):
            by_repo[s.repo].append(s.ndcg)
    return {repo: sum(v) / len(v) for repo, v in by_repo.items()}


def summarize(scored: Sequence[Scored]) -> dict:
    """Overall, per-category and train/held-out figures, each a mean of per-repo means."""
    def block(heldout: bool | None) -> dict:
        per_repo = repo_means(scored, heldout=heldout)
        return {
            "overall": _mean(list(per_repo.values())),
            "per_repo": per_repo,
            "per_category": {c: _mean(list(repo_means(scored, category=c, heldout=heldout).values()))
                             for c in CATEGORIES},
        }
    return {"all": block(None), "train": block(False), "heldout": block(True)}
