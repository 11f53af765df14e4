"""Batch builds with the real MiniLM (ONNX fp32, whose vectors do not depend on what else is in the batch):
one encoder for many indexes, every shared text embedded once, each index identical to a separate build,
the shared cache, indexes that fail alone."""
from __future__ import annotations

from collections import Counter

import pytest

from batch_fixtures import (FP32, MINILM, contents, copies, make_repos, module, needs_minilm, reference,  # noqa: F401
                            results, window_texts)
from hhg_mlx.errors import ModelUnavailable
from hhg_mlx.index.index import Index
from hhg_mlx.index import batch
from hhg_mlx.index.batch import LocalPool, build_many
from hhg_mlx.index.store import BuildLock, digest

pytestmark = needs_minilm


class RecordingPool(LocalPool):
    """A local pool that records every chunk of texts it embeds."""

    made: list["RecordingPool"] = []

    def __init__(self, choice: dict) -> None:
        super().__init__(choice)
        self.chunks: list[list[str]] = []
        RecordingPool.made.append(self)

    def map(self, chunks, progress=None):
        def record():
            for chunk_id, texts in chunks:
                self.chunks.append(texts)
                yield chunk_id, texts
        return super().map(record(), progress)


@pytest.fixture
def recording():
    RecordingPool.made = []
    return RecordingPool


def test_a_batch_embeds_each_shared_text_once_and_equals_separate_builds(tmp_path, reference, recording):
    roots = copies(reference, tmp_path)
    result = build_many(roots, **FP32, open_pool=recording)

    texts = [window_texts(root) for root in reference]
    unique = {h: t for per_index in texts for h, t in per_index.items()}
    assert sum(map(len, texts)) > len(unique)                       # the fork shares texts with the origin
    assert result.to_json()["texts"] == {"total": sum(map(len, texts)), "unique": len(unique),
                                         "embedded": len(unique), "cached": 0}
    (pool,) = recording.made                                         # one encoder for the three indexes
    sent = Counter(t for chunk in pool.chunks for t in chunk)
    assert sent == Counter(unique.values())                          # every distinct text exactly once
    assert len(pool.chunks) == 1 and len(unique) <= batch.EMBED_BATCH   # one batch across the three indexes
    assert result.loads == 1 and result.failed == []

    for built, ref in zip(roots, reference):
        got, want = contents(built), contents(ref)
        assert got == want and len(got["vectors"]) == len(window_texts(ref))
        assert results(built) == results(ref)
    for entry, root in zip(result.to_json()["indexes"], roots):
        want = contents(root)
        assert entry == {"root": str(root.resolve()), "ok": True, "error": None, "files": len(want["files"]),
                         "blocks": len(want["blocks"]), "vectors": want["windows"]}


def test_chunks_cross_index_boundaries_and_owners_get_their_vectors_per_chunk(tmp_path, reference, recording,
                                                                              monkeypatch):
    monkeypatch.setattr(batch, "EMBED_BATCH", 16)
    roots = copies(reference, tmp_path)
    result = build_many(roots, **FP32, open_pool=recording)
    (pool,) = recording.made
    owner = {}
    for root in roots:
        for h in window_texts(root):
            owner.setdefault(h, root)
    spans = [{owner[digest(t)] for t in chunk} for chunk in pool.chunks]
    assert [len(chunk) for chunk in pool.chunks[:-1]] == [16] * (len(pool.chunks) - 1)
    assert any(len(span) > 1 for span in spans)                      # a chunk held texts of two indexes
    assert result.texts.embedded == sum(map(len, pool.chunks)) == result.texts.unique
    for built, ref in zip(roots, reference):
        assert contents(built) == contents(ref)


def test_int8_batches_equal_separate_builds_too(tmp_path, monkeypatch):
    """int8 vectors do not depend on their batch-mates either (per-row activation scales), so deduplicated,
    boundary-crossing chunks still give each index the vectors of a build on its own."""
    monkeypatch.setattr(batch, "EMBED_BATCH", 16)
    int8 = {**FP32, "precision": "int8"}
    separate = make_repos(tmp_path / "separate")
    for root in separate:
        Index.build(root, **int8).close()
    result = build_many(copies(separate, tmp_path / "batch"), **int8)
    assert result.texts.embedded == result.texts.unique < result.texts.total
    for entry, ref in zip(result.indexes, separate):
        got, want = contents(entry.root), contents(ref)
        assert "precision=int8/" in got["key"] and got == want


def test_the_shared_cache_makes_a_fresh_copy_cost_nothing(tmp_path, reference, monkeypatch, recording):
    monkeypatch.setenv("HHG_SHARED_CACHE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = build_many(copies(reference, tmp_path / "first"), **FP32)
    assert first.texts.embedded == first.texts.unique > 0

    fresh = copies(reference[:2], tmp_path / "fresh")                 # no .hhg: a new clone, a new fork
    again = build_many(fresh, **FP32, open_pool=recording)
    assert again.to_json()["texts"] == {"total": again.texts.total, "unique": again.texts.unique, "embedded": 0,
                                        "cached": again.texts.unique}
    assert again.loads == 0 and recording.made == []                 # not even a model load
    for built, ref in zip(fresh, reference):
        assert contents(built) == contents(ref)
        assert results(built) == results(ref)

    off = build_many(copies(reference[:1], tmp_path / "off"), **FP32, shared_cache=False)
    assert off.texts.embedded == off.texts.unique and off.texts.cached == 0


def test_a_missing_or_locked_repository_fails_alone(tmp_path, reference):
    roots = copies(reference, tmp_path)
    missing = tmp_path / "gone"
    with BuildLock(roots[1]):                                        # another build holds the fork
        result = build_many([roots[0], missing, roots[1], roots[2]], **FP32)
    entries = result.to_json()["indexes"]
    assert [e["ok"] for e in entries] == [True, False, False, True]
    assert entries[1]["error"] == f"{missing}: no such directory"
    assert entries[2]["error"] == (f"another hhg build is updating the index in {roots[1]}; wait for it to "
                                   "finish and try again")
    assert entries[2]["files"] == entries[2]["vectors"] == 0
    for i in (0, 2):
        assert contents(roots[i]) == contents(reference[i])


def test_a_new_model_is_recorded_once_per_index_and_loaded_once(tmp_path, reference, recording):
    """Indexes built keyword-only join the batch's model; later runs keep it without --model."""
    roots = copies(reference, tmp_path)
    plain = build_many(roots)
    assert plain.texts.total == 0 and plain.loads == 0
    assert all(entry["vectors"] == 0 and entry["blocks"] > 0 for entry in plain.to_json()["indexes"])
    build_many(roots, **FP32, open_pool=recording)
    again = build_many(roots, open_pool=recording)
    assert len(recording.made) == 1 and again.texts.total == 0
    for built, ref in zip(roots, reference):
        assert contents(built) == contents(ref)


@pytest.fixture
def grown(tmp_path, reference):
    """An index with vectors that then gained a file in a keyword-only build, and its embedding target as
    a batch planned it before that file came (pending: nothing); the windows the file added."""
    (root,) = copies(reference[2:], tmp_path)
    Index.build(root, **FP32).close()
    (root / "other" / "late.py").write_text(module("late", 0))
    Index.build(root, embed=False).close()
    with Index.open(root) as idx:
        late = idx.pending()
        target = batch.Target(batch.IndexResult(str(root)), idx.vector_key, idx.model_choice(), pending=[])
    assert late
    return target, late


def test_a_model_that_cannot_load_while_an_index_finishes_leaves_it_keyword_only(grown):
    """As a single build: a notice, the index keyword-searchable and not failed."""
    target, late = grown

    def unloadable(choice):
        raise ModelUnavailable(f"{choice['model']} is not installed")
    batch.embed_targets([target], batch.TextCounts(), 1, shared_cache=False, open_pool=unloadable,
                        report=lambda *report: None)
    assert target.result.ok and target.result.error is None
    assert target.result.notices == [f"new blocks were not embedded: {MINILM} is not installed"]
    with Index.open(target.result.root) as idx:
        assert idx.pending() == late and idx.embedding_status().state == "stopped"


def test_an_index_finishing_its_own_embedding_reports_the_batch_progress(grown):
    target, late = grown
    reports, texts = [], batch.TextCounts()
    batch.embed_targets([target], texts, 1, shared_cache=False, open_pool=LocalPool,
                        report=lambda *report: reports.append(report))
    embedding = [(done, total) for stage, done, total, note in reports if stage == "embed" and total]
    assert embedding[0] == (0, len(late)) and embedding[-1] == (len(late), len(late))
    assert [done for done, _ in embedding] == sorted(done for done, _ in embedding)
    assert texts.embedded == len(late) and target.result.ok
    with Index.open(target.result.root) as idx:
        assert idx.pending() == [] and idx.embedding_status().state == "done"


def test_a_shared_cache_of_another_dim_is_not_copied_into_the_indexes(tmp_path, reference, monkeypatch, recording):
    """As a single build: the shared store of the same key holding vectors of another size (a local model
    folder replaced by another model) is left aside with a notice, and the texts are embedded."""
    import numpy as np

    from hhg_mlx.index.vector_cache import VectorCache

    monkeypatch.setenv("HHG_SHARED_CACHE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    key = contents(reference[0])["key"]
    hashes = sorted({h for root in reference[:2] for h in window_texts(root)})
    with VectorCache.open(key) as stale:
        stale.put(hashes, np.ones((len(hashes), 8), dtype=np.float32))

    roots = copies(reference[:2], tmp_path / "batch")
    result = build_many(roots, **FP32, open_pool=recording)
    assert result.indexes[0].notices == [f"the shared embedding cache holds 8-dim {key} vectors, the encoder makes "
                                         "384-dim ones; building without it"]
    assert result.texts.cached == 0 and result.texts.embedded == result.texts.unique == len(hashes)
    assert len(recording.made) == 1 and result.failed == []
    for built, ref in zip(roots, reference):
        assert contents(built) == contents(ref)
