"""What every quality suite hands the runner: corpora (a folder to index) with their queries."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable


@dataclass(frozen=True, slots=True)
class Case:
    """One query of a suite with its answers and where it belongs in the tables."""

    text: str
    kind: str                # the row it is reported in: a query kind, category or language
    heldout: bool            # not used for tuning
    targets: tuple           # metrics.Target (block level) or scoring.Target (file level)
    note: str = ""           # how the query was made


@dataclass(frozen=True, slots=True)
class Corpus:
    """One codebase of a suite: the folder that is indexed and the queries about it."""

    name: str
    language: str
    root: Path
    cases: tuple[Case, ...]
    prefix: str = ""         # put before result paths to compare them with the targets


def heldout_by_hash(names: Iterable[str]) -> frozenset[str]:
    """The round(n/3) of `names` with the smallest SHA-256: a split that depends only on the names."""
    ordered = sorted(set(names), key=lambda n: hashlib.sha256(n.encode("utf-8")).hexdigest())
    return frozenset(ordered[:round(len(ordered) / 3)])


def blocks_corpora(cache: Path, projects: list[str] | None = None) -> list[Corpus]:
    """The `blocks` suite (`blocks.load_blocks_suite`) as corpora. Held out: within each project and
    query kind, the third of the queries `heldout_by_hash` picks. With nine projects, holding out whole
    projects would make the held-out figures those of three codebases (and of one language mix); this
    split measures every project and kind, and depends only on the query texts."""
    from .blocks import load_blocks_suite
    from .metrics import Target

    out = []
    for p in load_blocks_suite(cache, projects):
        heldout = frozenset().union(*(heldout_by_hash(q.text for q in p.queries if q.kind == kind)
                                      for kind in {q.kind for q in p.queries}))
        cases = tuple(Case(q.text, q.kind, q.text in heldout, tuple(Target(t.path, t.line) for t in q.targets), q.how)
                      for q in p.queries)
        out.append(Corpus(p.name, "/".join(p.languages), p.root, cases))
    return out
