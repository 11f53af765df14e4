"""Block-level retrieval metrics: hit@1, hit@10 and MRR@10 of ranked result spans against the
definitions that answer a query.

A result (path, start_line, end_line) finds a target (path, line) when the paths are equal and
its span contains the target's line, the first line of the answering definition. A query is
answered at the rank of the first result that finds any of its targets.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

K = 10
METRICS = ("hit@1", "hit@10", "mrr@10")
Chunk = tuple[str, int, int]   # (path, start_line, end_line), 1-based inclusive


@dataclass(frozen=True, slots=True)
class Target:
    """The first line of a definition that answers a query (root-relative POSIX path, 1-based line)."""

    path: str
    line: int


def answer_rank(chunks: Sequence[Chunk], targets: Iterable[Target], k: int = K) -> int | None:
    """The 1-based rank of the first of the top `k` chunks that contains a target's line, or None."""
    targets = tuple(targets)
    for rank, (path, start, end) in enumerate(chunks[:k], 1):
        if any(t.path == path and start <= t.line <= end for t in targets):
            return rank
    return None


def block_scores(rank: int | None) -> dict[str, float]:
    """hit@1, hit@10 and MRR@10 of one query answered at `rank` (None: not in the top 10)."""
    return {"hit@1": float(rank == 1), "hit@10": float(rank is not None and rank <= K),
            "mrr@10": 1.0 / rank if rank is not None and rank <= K else 0.0}


@dataclass(frozen=True, slots=True)
class Row:
    """One query's scores under one ranker, with what it is grouped by."""

    group: str            # repository or project
    kind: str             # the query's kind or category
    heldout: bool
    scores: dict[str, float]


def means(rows: Sequence[Row], metrics: Sequence[str], *, per_group: bool) -> dict:
    """Mean of each metric by split (all/train/heldout) and kind (each kind and "all"), with the
    number of queries. `per_group`: the unweighted mean of per-group means (the semble rule);
    otherwise the mean over queries."""
    out: dict = {}
    for split, keep in (("all", None), ("train", False), ("heldout", True)):
        chosen = [r for r in rows if keep is None or r.heldout == keep]
        kinds = sorted({r.kind for r in rows})
        out[split] = {kind: _mean_of(chosen if kind == "all" else [r for r in chosen if r.kind == kind],
                                     metrics, per_group)
                      for kind in ("all", *kinds)}
    return out


def _mean_of(rows: Sequence[Row], metrics: Sequence[str], per_group: bool) -> dict:
    out: dict = {"n": len(rows)}
    for metric in metrics:
        if not rows:
            out[metric] = None
        elif per_group:
            groups: dict[str, list[float]] = defaultdict(list)
            for r in rows:
                groups[r.group].append(r.scores[metric])
            out[metric] = sum(sum(v) / len(v) for v in groups.values()) / len(groups)
        else:
            out[metric] = sum(r.scores[metric] for r in rows) / len(rows)
    return out
