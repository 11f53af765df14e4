"""The embedding phase in one process: which windows, in which order; batches written in one transaction
and appended to the vector snapshot; windows that a build adds meanwhile; a partly embedded index."""
from __future__ import annotations

import math

import numpy as np
import pytest

from engine_fixtures import StubEncoder, make_repo, write_files
from hhg_mlx.index import embed as embed_module
from hhg_mlx.index import index as index_module
from hhg_mlx.index.embed import embed_missing, pending_windows, write_batch
from hhg_mlx.index.index import Index
from hhg_mlx.index.store import MAX_SEGMENTS, PreparedBlock, Store
from hhg_mlx.search import VectorMatrix
from hhg_mlx.types import Block


def block(path, kind, name, text, language):
    return PreparedBlock.of(Block(path, language, kind, name, 1, text.count("\n") + 1, text))


def put(store, path, mtime_ns, *blocks):
    with store.transaction():
        store.put_file(path, 1, mtime_ns, path, blocks[0].block.language, "ok", list(blocks))


def test_pending_windows_order_definitions_then_code_then_prose_recent_files_first(tmp_path):
    store = Store.open(tmp_path, create=True)
    put(store, "old.py", 100, block("old.py", "module", "", "import os\n", "python"),
        block("old.py", "function", "old_f", "def old_f():\n    pass\n", "python"))
    put(store, "new.py", 300, block("new.py", "class", "New", "class New:\n    pass\n", "python"),
        block("new.py", "module", "", "X = 1\n", "python"))
    put(store, "guide.md", 400, block("guide.md", "section", "Guide", "# Guide\n\nRead me.\n", "markdown"))
    put(store, "conf.yaml", 500, block("conf.yaml", "chunk", "", "a: 1\n", "yaml"))
    put(store, "dup.py", 200, block("dup.py", "function", "old_f", "def old_f():\n    pass\n", "python"),
        block("dup.py", "function", "long_f", "def long_f():\n" + "    x = 1\n" * 300, "python"))
    names = dict(store.conn.execute("SELECT id, name || '@' || (SELECT path FROM files WHERE id = file_id) FROM blocks"))
    order = [(names[w.block_id], w.seq) for w in pending_windows(store, "m")]
    long_windows = [("long_f@dup.py", i) for i in range(len(block("x", "function", "", "def long_f():\n" + "    x = 1\n" * 300, "python").windows))]
    assert len(long_windows) > 1
    # definitions in code by file recency (new 300, dup 200, old 100; old_f's text is dup's: once, at dup.py),
    # then other code (new, old), then prose and config by recency (conf 500, guide 400)
    assert order == [("New@new.py", 0), ("old_f@dup.py", 0), *long_windows, ("@new.py", 0), ("@old.py", 0),
                     ("@conf.yaml", 0), ("Guide@guide.md", 0)]


def test_write_batch_skips_vectors_stored_meanwhile_and_appends_to_the_snapshot(tmp_path):
    store = Store.open(tmp_path, create=True)
    put(store, "a.py", 1, block("a.py", "function", "f", "def f(): pass", "python"),
        block("a.py", "function", "g", "def g(): pass", "python"))
    (f, _, _), (g, _, _) = sorted(pending_windows(store, "m"), key=lambda w: w.block_id)
    with store.transaction():
        store.set_meta(dim=2)
    store.save_snapshot("m", 2)
    with store.transaction():
        store.put_embeddings("m", [f], np.array([[1, 0]], np.float32))       # another embedder was faster
    assert write_batch(store, "m", [f, g], np.array([[9, 9], [0, 1]], np.float32), embed_rate=3.5) == 1
    ids, vecs = store.window_vectors("m", 2)
    np.testing.assert_array_equal(vecs, [[1, 0], [0, 1]])                     # f's vector was not replaced
    (ids, vecs), = store.load_snapshot(store.meta()["snapshot"])   # appended to an empty base: merged
    assert ids.tolist() == [[2, 1]]
    np.testing.assert_array_equal(vecs, [[0, 1]])                              # the batch, visible
    assert store.meta()["embed_rate"] == "3.5"


def test_snapshot_segments_stay_few_and_always_equal_the_stored_vectors(tmp_path):
    store = Store.open(tmp_path, create=True)
    rng = np.random.default_rng(0)
    texts = [f"def f{i}():\n    return {i}\n" for i in range(300)]
    put(store, "a.py", 1, *(block("a.py", "function", f"f{i}", t, "python") for i, t in enumerate(texts)))
    with store.transaction():
        store.set_meta(dim=3)
    store.save_snapshot("m", 3)
    pending = pending_windows(store, "m")
    seen = []
    for start in range(0, len(pending), 7):
        hashes = [w.hash for w in pending[start:start + 7]]
        write_batch(store, "m", hashes, rng.standard_normal((len(hashes), 3)).astype(np.float32))
        segments = store.load_snapshot(store.meta()["snapshot"])
        seen.append(len(segments))
        ids = np.concatenate([ids for ids, _ in segments])
        vecs = np.concatenate([v for _, v in segments])
        ref_ids, ref_vecs = store.window_vectors("m", 3)
        order = np.argsort(ids[:, 0], kind="stable")
        assert ids[order].tolist() == ref_ids.tolist()
        np.testing.assert_array_equal(vecs[order], ref_vecs)
    assert max(seen) <= MAX_SEGMENTS + 1 and 1 in seen                        # merged, more than once
    assert len(list(tmp_path.joinpath(".hhg").glob("vectors-*.npy"))) == 2 * seen[-1]   # no stray files


def test_vector_matrix_of_segments_scores_like_one_sorted_matrix():
    rng = np.random.default_rng(1)
    blocks = rng.integers(1, 40, 120)
    ids = np.stack([blocks, blocks // 10], axis=1)
    vecs = rng.standard_normal((120, 5)).astype(np.float32)
    cuts = [0, 50, 51, 90, 120]
    segments = [(ids[a:b], vecs[a:b]) for a, b in zip(cuts, cuts[1:])]
    matrix = VectorMatrix.of_segments(segments)
    query = rng.standard_normal(5).astype(np.float32)
    # reference: each block's best window cosine, and the normalised mean of its windows, in float64
    best = {int(b): max(float(v.astype(np.float64) @ query) for bb, v in zip(blocks, vecs) if bb == b)
            for b in set(blocks.tolist())}
    top = matrix.top(query, 10, None, None)
    expected = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:10]
    assert [b for b, _ in top] == [b for b, _ in expected]
    np.testing.assert_allclose([s for _, s in top], [s for _, s in expected], rtol=1e-5)
    allowed = {1, 2}
    assert all(b // 10 in allowed for b, _ in matrix.top(query, 50, allowed, None))
    b = int(blocks[0])
    mean = vecs[blocks == b].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(matrix.block_vector(b), mean / np.linalg.norm(mean), rtol=1e-5)
    assert matrix.has_vectors([b, 1000]).tolist() == [True, False] and len(matrix) == len(best)


FILES = {
    "src/upload.py": '''
        def retry_failed_uploads(queue):
            """Retry every failed upload with backoff."""
            return [queue.send(item) for item in queue.failed]
        ''',
    "src/jobs.py": '''
        def retry_failed_jobs(queue):
            """Retry every failed job."""
            return [queue.run(job) for job in queue.failed]
        ''',
}


def embed_some(idx, enc, names):
    """Store the stub's vectors of the named blocks only (as if the worker had done those so far)."""
    store = idx._store
    rows = store.conn.execute("SELECT b.name, w.hash, b.text FROM windows w JOIN blocks b ON b.id = w.block_id").fetchall()
    chosen = [(h, text) for name, h, text in rows if name in names]
    key = idx.vector_key
    with store.transaction():
        store.set_meta(dim=enc.dim)
        store.put_embeddings(key, [h for h, _ in chosen], enc.embed_documents([t for _, t in chosen]))
    store.save_snapshot(key, enc.dim)


@pytest.fixture
def no_worker(monkeypatch):
    """Background builds (`wait=False`) whose worker is not started: the tests embed by hand."""
    monkeypatch.setenv("HHG_BACKGROUND", "1")
    started = []
    monkeypatch.setattr(index_module.worker, "start", lambda store, root, shared_cache=None: started.append(root))
    return started


def test_hybrid_ranks_blocks_without_vectors_by_keyword_alone(tmp_path, no_worker):
    enc = StubEncoder()
    root = make_repo(tmp_path / "repo", FILES, fillers=4)
    idx = Index.build(root, encoder=enc, wait=False)                 # keyword phase only: no worker here
    assert idx._store.count("embeddings") == 0 and no_worker == [root.resolve()]
    embed_some(idx, enc, {"retry_failed_jobs"})
    hits = idx.search("retry failed uploads", k=5)
    keyword_hits = idx.search("retry failed uploads", k=100, mode="keyword")
    keyword_score = {(h.file, h.line): h.score for h in keyword_hits}
    unembedded = [h for h in hits if h.explain["cosine"] is None]
    assert unembedded and hits[0].name == "retry_failed_uploads"       # not pushed down for its missing vector
    top = max(h.score for h in keyword_hits)
    for hit in unembedded:
        fusion = hit.explain["fusion"]
        share = keyword_score[(hit.file, hit.line)] / top        # its keyword share stands in for the cosine
        assert fusion["semantic_from"] == "keyword: no vector yet"
        assert fusion["keyword"] == fusion["semantic"] == pytest.approx(share, abs=1e-6)
        assert hit.score == pytest.approx(share * (1 + fusion["weight"]))
    jobs = next(h for h in hits if h.name == "retry_failed_jobs")
    assert jobs.explain["cosine"] is not None and "semantic_from" not in jobs.explain["fusion"]
    covered = idx.session_notices[-1]
    assert covered == f"semantic search covers 1 of {idx._store.count('blocks')} blocks (" \
                      f"{100 // idx._store.count('blocks')}%); embedding is stopped; `hhg build` resumes it"
    assert [h.name for h in idx.search("retry", mode="semantic", k=5)] == ["retry_failed_jobs"]   # embedded part only


def test_new_vectors_reach_a_long_lived_reader_batch_by_batch(tmp_path, monkeypatch, no_worker):
    monkeypatch.setattr(embed_module, "EMBED_BATCH", 3)
    enc = StubEncoder()
    root = make_repo(tmp_path / "repo", FILES, fillers=4)
    Index.build(root, encoder=enc, wait=False).close()
    reader = Index.open(root, encoder=enc)
    seen = []

    def embed_and_look(texts, progress=None):
        seen.append(len(reader.search("alpha", mode="semantic", k=100)))   # what the reader sees so far
        return enc.embed_documents(texts, progress)

    writer = Index.open(root, encoder=enc)
    embed_missing(writer._store, writer.vector_key, embed_and_look, enc.dim)
    total = reader._store.count("blocks")
    assert seen[0] == 0 and seen == sorted(set(seen)) and len(seen) >= math.ceil(total / 3)   # each batch seen
    assert len(reader.search("alpha", mode="semantic", k=100)) == total


def test_windows_added_during_embedding_are_embedded_too(tmp_path, monkeypatch, no_worker):
    monkeypatch.setattr(embed_module, "EMBED_BATCH", 4)
    enc = StubEncoder()
    root = make_repo(tmp_path / "repo", FILES, fillers=4)
    idx = Index.build(root, encoder=enc, wait=False)
    other = Index.open(root)
    calls = []

    def embed(texts, progress=None):
        if not calls:                     # a search's update commits a new file meanwhile
            write_files(root, {"src/late.py": "def late_arrival():\n    return 1\n"})
            other.update(wait=False)
        calls.append(list(texts))
        return enc.embed_documents(texts, progress)

    key = idx.vector_key
    embedded = embed_missing(idx._store, key, embed, enc.dim)
    texts = [t for call in calls for t in call]
    assert [t for t in texts if "late_arrival" in t] == ["def late_arrival():\n    return 1"]
    assert embedded == len(texts) == len(set(texts))
    assert idx._store.meta()["embedded"] == key and pending_windows(idx._store, key) == []
