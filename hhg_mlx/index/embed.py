"""The embedding phase: windows without a vector for the index's model → encoder → stored vectors.

Three steps that other work plugs into separately:
- `pending_windows(store, model)`: which windows still need a vector, in which order (definitions
  in code first, then other code, then prose and chunks; recently modified files first in each);
- `Embed`: texts → unit vectors (an encoder's `embed_documents`, or anything with its signature);
- `write_batch(store, model, hashes, vectors)`: one transaction that stores a batch and appends it
  to the vector snapshot, so the next search sees it and a crash loses at most this batch.
`embed_missing` runs them batch by batch until no window is left, including windows that a
concurrent build adds meanwhile.
"""
from __future__ import annotations

import json
import time
from collections import deque
from typing import TYPE_CHECKING, Callable, NamedTuple, Protocol, Sequence

from ..search import DEFINITION_KINDS
from .languages import CODE_LANGUAGES
from .store import Store, windows

if TYPE_CHECKING:
    import numpy as np

    from ..encoder import Progress

EMBED_BATCH = 256          # windows per embedding call and transaction (what a crash loses at most)
RATE_BATCHES = 4           # the rate in meta is measured over this many recent batches

Report = Callable[[str, int, int], None]
"""Called as report("embed", windows_done, windows_total)."""


class Embed(Protocol):
    def __call__(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray: ...


class Window(NamedTuple):
    hash: str
    block_id: int
    seq: int


def priority(kind: str, language: str) -> int:
    """0 for definitions in code, 1 for other code, 2 for prose, configuration and text chunks."""
    if language in CODE_LANGUAGES:
        return 0 if kind in DEFINITION_KINDS else 1
    return 2


def pending_windows(store: Store, model: str) -> list[Window]:
    """One window per text hash that has no vector for `model`, in embedding order: by `priority`, then
    the most recently modified file first, then by position."""
    rows = store.conn.execute(
        "SELECT w.hash, w.block_id, w.seq, b.kind, b.language, f.mtime_ns FROM windows w "
        "JOIN blocks b ON b.id = w.block_id JOIN files f ON f.id = b.file_id "
        "WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model = ? AND e.hash = w.hash)", (model,)).fetchall()
    rows.sort(key=lambda r: (priority(r[3], r[4]), -r[5], r[1], r[2]))
    seen: set[str] = set()
    out = []
    for h, block_id, seq, *_ in rows:
        if h not in seen:
            seen.add(h)
            out.append(Window(h, block_id, seq))
    return out


def window_texts(store: Store, batch: list[Window]) -> list[str | None]:
    """The text of each window; None where its block was deleted since `pending_windows`."""
    ids = sorted({w.block_id for w in batch})
    texts = dict(store.conn.execute("SELECT id, text FROM blocks WHERE id IN (SELECT value FROM json_each(?))",
                                    (json.dumps(ids),)))
    split = {block_id: windows(text) for block_id, text in texts.items()}
    return [split[w.block_id][w.seq] if w.block_id in split and w.seq < len(split[w.block_id]) else None
            for w in batch]


def write_batch(store: Store, model: str, hashes: list[str], vectors: np.ndarray, **meta: object) -> int:
    """Store a batch of vectors in one transaction, with `meta` values (progress), and append it to the
    snapshot. Hashes that got a vector meanwhile are skipped. Returns how many were stored."""
    with store.transaction():
        missing = store.still_missing(model, hashes)
        keep = [i for i, h in enumerate(hashes) if h in missing]
        new = [hashes[i] for i in keep]
        store.put_embeddings(model, new, vectors[keep])
        store.append_snapshot(model, new)
        store.set_meta(**meta)
    return len(new)


class Rate:
    """Texts and tokens per second over the last few batches."""

    def __init__(self, batches: int = RATE_BATCHES) -> None:
        self.recent: deque[tuple[float, int, int | None]] = deque(maxlen=batches)

    def add(self, seconds: float, texts: int, tokens: int | None) -> dict[str, float | str]:
        """Record a batch; the meta values of the current rate (an empty token rate: not counted)."""
        self.recent.append((seconds, texts, tokens))
        total = sum(s for s, _, _ in self.recent) or 1e-9
        token_counts = [t for _, _, t in self.recent]
        return {"embed_rate": sum(n for _, n, _ in self.recent) / total,
                "embed_token_rate": sum(token_counts) / total if None not in token_counts else ""}


def embed_missing(store: Store, model: str, embed: Embed, dim: int, report: Report | None = None, *,
                  tokenize: Callable[[list[str]], list[list[int]]] | None = None) -> int:
    """Embed every window without a vector for `model` with `embed` (`dim`-dimensional vectors), one
    transaction per EMBED_BATCH windows, in `pending_windows` order; windows added meanwhile by another
    writer are embedded too. Each batch records the current rate in meta (`tokenize` counts its tokens)
    and zeroes `embed_attempts` (the worker's starts without progress). Marks the index complete (meta
    `embedded`) and rewrites the snapshot as one segment at the end. Returns how many were embedded."""
    report = report or (lambda stage, done, total: None)
    with store.transaction():
        store.set_meta(dim=dim)
    if store.meta().get("snapshot_model") != model:
        store.save_snapshot(model, dim)          # the base the batches append to
    rate, embedded = Rate(), 0
    while (pending := pending_windows(store, model)) or not _mark_complete(store, model):
        total = embedded + len(pending)
        for start in range(0, len(pending), EMBED_BATCH):
            report("embed", embedded, total)
            started, batch = time.perf_counter(), pending[start:start + EMBED_BATCH]
            texts = window_texts(store, batch)
            live = [i for i, text in enumerate(texts) if text is not None]     # (blocks deleted meanwhile)
            if not live:
                continue
            texts, done = [texts[i] for i in live], embedded
            vectors = embed(texts, progress=lambda n, _total: report("embed", done + n, total))
            tokens = sum(map(len, tokenize(texts))) if tokenize else None
            write_batch(store, model, [batch[i].hash for i in live], vectors, embed_attempts=0,
                        **rate.add(time.perf_counter() - started, len(texts), tokens))
            embedded += len(texts)
        report("embed", embedded, total)
    store.save_snapshot(model, dim)
    return embedded


def _mark_complete(store: Store, model: str) -> bool:
    """Mark the index fully embedded for `model`, unless a build added windows meanwhile (checked inside
    the write transaction, so none slips in between)."""
    with store.transaction():
        if pending_windows(store, model):
            return False
        store.set_meta(embedded=model, updated_at=time.time())
        return True
