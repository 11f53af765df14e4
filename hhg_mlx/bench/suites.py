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
    """The `blocks` suite (`blocks.load_blocks_suite`) as corpora. The held-out split is a third of
    the projects (`heldout_by_hash` of their names), not of the queries: the queries of one project
    share its vocabulary and were written by reading the same code, so only unseen projects tell how a
    ranking does on codebases it was not tuned on."""
    from .blocks import load_blocks_suite
    from .metrics import Target

    loaded = load_blocks_suite(cache, projects)
    heldout = heldout_by_hash(p.name for p in loaded)
    return [Corpus(p.name, "/".join(p.languages), p.root,
                   tuple(Case(q.text, q.kind, p.name in heldout, tuple(Target(t.path, t.line) for t in q.targets), q.how)
                         for q in p.queries))
            for p in loaded]
