"""The plain BM25 baseline every quality suite prints beside hhg.

BM25 (Robertson/Lucene form) over the same blocks as the index: each block is its name's terms
three times plus its text's terms, split like hhg splits identifiers (`tokens.index_text`); no
stemming, no field weights, no boosts, no file factors. The query's terms are `tokens.query_terms`.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..index.store import Store
from ..tokens import query_terms, terms
from .metrics import Chunk

K1 = 1.2
B = 0.75
NAME_REPEAT = 3


@dataclass(frozen=True, slots=True)
class Doc:
    path: str
    start: int
    end: int
    name: str
    text: str


class PlainBM25:
    """An in-memory BM25 index over blocks; `search` returns the top spans, best first."""

    def __init__(self, docs: list[Doc]) -> None:
        self.spans: list[Chunk] = [(d.path, d.start, d.end) for d in docs]
        self.postings: dict[str, list[tuple[int, int]]] = defaultdict(list)   # term -> [(doc, tf)]
        self.lengths: list[int] = []
        for i, doc in enumerate(docs):
            counts = Counter(terms(doc.name) * NAME_REPEAT + terms(doc.text))
            self.lengths.append(sum(counts.values()))
            for term, tf in counts.items():
                self.postings[term].append((i, tf))
        self.avgdl = sum(self.lengths) / len(self.lengths) if self.lengths else 0.0

    @classmethod
    def of_index(cls, root: Path) -> "PlainBM25":
        """The blocks of the index in `root`, as its store holds them."""
        store = Store.open(root)
        try:
            rows = store.conn.execute("SELECT f.path, b.start_line, b.end_line, b.name, b.text FROM blocks b "
                                      "JOIN files f ON f.id = b.file_id ORDER BY b.id").fetchall()
        finally:
            store.close()
        return cls([Doc(*row) for row in rows])

    def idf(self, term: str) -> float:
        n, df = len(self.lengths), len(self.postings.get(term, ()))
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def scores(self, query: str) -> dict[int, float]:
        """BM25 score of every block that holds a query term."""
        out: dict[int, float] = defaultdict(float)
        for term in query_terms(query):
            idf = self.idf(term)
            for doc, tf in self.postings.get(term, ()):
                norm = K1 * (1.0 - B + B * self.lengths[doc] / self.avgdl)
                out[doc] += idf * tf * (K1 + 1.0) / (tf + norm)
        return out

    def search(self, query: str, k: int = 10) -> list[Chunk]:
        """The spans of the `k` best blocks; ties go to the earlier block."""
        best = sorted(self.scores(query).items(), key=lambda item: (-item[1], item[0]))[:k]
        return [self.spans[doc] for doc, _ in best]
