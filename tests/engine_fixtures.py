"""A deterministic stub encoder and generated repositories for the engine tests."""
from __future__ import annotations

import hashlib
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np

from hhg_mlx.encoder import l2_normalize
from hhg_mlx.tokens import terms


class StubEncoder:
    """Hashed bag of identifier terms: texts sharing identifiers get high cosine. Counts what it embeds."""

    backend = "stub"
    max_length = 512

    def __init__(self, dim: int = 64, model_id: str = "stub-bag") -> None:
        self.dim = dim
        self.model_id = model_id
        self.documents: list[str] = []
        self.queries: list[str] = []

    def vector(self, text: str) -> np.ndarray:
        out = np.zeros(self.dim, dtype=np.float32)
        for term in terms(text):
            out[int.from_bytes(hashlib.blake2b(term.encode(), digest_size=4).digest(), "little") % self.dim] += 1.0
        return out

    def embed_documents(self, texts, progress=None) -> np.ndarray:
        self.documents.extend(texts)
        out = l2_normalize(np.stack([self.vector(t) for t in texts])) if texts else np.zeros((0, self.dim), np.float32)
        if progress:
            progress(len(texts), len(texts))
        return out

    def embed_queries(self, texts) -> np.ndarray:
        self.queries.extend(texts)
        return l2_normalize(np.stack([self.vector(t) for t in texts]))

    def embed_ids(self, input_ids, attention_mask) -> np.ndarray:
        raise NotImplementedError


FILLER_WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
                "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def filler_module(i: int) -> str:
    """A Python module of unrelated functions, so BM25 IDF behaves as in a real repository."""
    a, b = FILLER_WORDS[i % len(FILLER_WORDS)], FILLER_WORDS[(i * 7 + 3) % len(FILLER_WORDS)]
    return textwrap.dedent(f'''\
        """Helpers for {a} and {b}."""


        def {a}_{b}_total(items):
            """Sum the {a} values."""
            return sum(item.{a} for item in items)


        def {b}_{a}_names(items):
            return [item.{b} for item in items]
        ''')


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


def make_repo(root: Path, files: dict[str, str], fillers: int = 20) -> Path:
    """A repository of `files` plus `fillers` unrelated modules under `misc/`."""
    write_files(root, {f"misc/filler_{i:02d}.py": filler_module(i) for i in range(fillers)})
    write_files(root, files)
    return root


def contents(idx) -> tuple[set[tuple], Counter]:
    """Everything an index holds about blocks, comparable between two builds of the same tree: the
    block rows and every FTS term occurrence (term, column, offset), keyed by block, not by rowid."""
    conn = idx._store.conn
    conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.vocab USING fts5vocab(main, fts, instance)")
    blocks = {r[0]: r[1:] for r in conn.execute(
        "SELECT b.id, f.path, f.hash, b.start_line, b.end_line, b.kind, b.name, b.hash "
        "FROM blocks b JOIN files f ON f.id = b.file_id")}
    occurrences = Counter((blocks.get(doc), term, col, offset)
                          for term, doc, col, offset in conn.execute("SELECT term, doc, col, offset FROM temp.vocab"))
    return set(blocks.values()), occurrences
