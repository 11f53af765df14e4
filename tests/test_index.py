"""Index lifecycle: build, incremental updates, the embedding cache, interruption, locking, errors."""
import json
import os
import shutil
import sqlite3

import pytest

from engine_fixtures import StubEncoder, contents, make_repo, write_files
from hhg_mlx.errors import (IndexCorrupt, IndexLocked, IndexNotFound, LicenseNotAccepted, ModelUnavailable,
                            SchemaMismatch, UnsupportedModel)
from hhg_mlx.index import build as build_module
from hhg_mlx.index import embed as embed_module
from hhg_mlx.index import index as index_module
from hhg_mlx.index.extract import parser_revisions
from hhg_mlx.index.index import Index, clean, find_indexes
from hhg_mlx.index.store import SCHEMA_VERSION, BuildLock, db_path
from hhg_mlx.index.walk import walk

FILES = {
    "src/upload.py": '''
        import time


        def retry_failed_uploads(queue, attempts=3):
            """Retry every failed upload with exponential backoff."""
            for attempt in range(attempts):
                for item in queue.failed:
                    queue.send(item)
                time.sleep(2 ** attempt)
        ''',
    "src/config.py": '''
        def parse_config(text):
            """Parse key=value lines."""
            return dict(line.split("=", 1) for line in text.splitlines())


        def dump_config(values):
            return "\\n".join(f"{k}={v}" for k, v in values.items())
        ''',
    "docs/guide.md": '''
        # Guide

        Install with pip.

        ## Configuration

        Settings live in a file of key=value lines.
        ''',
}


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo", FILES, fillers=8)


def clean_copy(src, dst):
    """The same tree in a new folder, built from scratch."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".hhg"))
    return Index.build(dst)


def file_count(root):
    return len(walk(root).files)


def test_build_then_nothing_to_do(repo):
    idx = Index.build(repo)
    n = file_count(repo)
    first = idx.last_stats
    assert (first.added, first.modified, first.deleted, first.unchanged) == (n, 0, 0, 0)
    assert first.blocks == idx.status()["blocks"] > n
    reader = Index.open(repo)
    version = reader._store.data_version()
    again = idx.update()
    assert reader._store.data_version() == version            # a no-change update writes nothing
    assert (again.added, again.modified, again.deleted, again.unchanged, again.blocks) == (0, 0, 0, n, 0)
    assert Index.build(repo).last_stats.unchanged == n


def test_incremental_add_modify_delete_rename(repo, tmp_path):
    idx = Index.build(repo)
    write_files(repo, {"src/new.py": "def brand_new_helper():\n    return 42\n"})
    with open(repo / "src/config.py", "a") as fh:
        fh.write("\n\ndef load_config(path):\n    return parse_config(open(path).read())\n")
    (repo / "docs/guide.md").unlink()
    (repo / "misc/filler_00.py").rename(repo / "misc/renamed.py")
    stats = idx.update()
    assert (stats.added, stats.modified, stats.deleted) == (2, 1, 2)
    assert stats.unchanged == file_count(repo) - 3
    assert contents(idx) == contents(clean_copy(repo, tmp_path / "copy"))
    assert [h.name for h in idx.search("brand_new_helper", k=1, mode="keyword")] == ["brand_new_helper"]
    assert not idx.search("install pip", mode="keyword")
    assert idx.status()["stale"] == 0


def test_touched_but_identical_file_is_not_reextracted(repo, monkeypatch):
    idx = Index.build(repo)
    path = repo / "src/config.py"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert idx.status()["stale"] == 1
    extracted = []
    real_extract = build_module.prepare

    def counting(root, rel, old_hash):
        out = real_extract(root, rel, old_hash)
        extracted.append((rel, out.status))
        return out

    monkeypatch.setattr(build_module, "prepare", counting)
    stats = idx.update()
    assert extracted == [("src/config.py", "same")]          # hashed, found identical, not extracted
    assert (stats.modified, stats.blocks, stats.unchanged) == (0, 0, file_count(repo))
    assert idx.status()["stale"] == 0                         # the new mtime was recorded
    extracted.clear()
    idx.update()
    assert extracted == []                                     # stat matches now: not even hashed


def test_embedding_cache_embeds_only_new_text(repo):
    enc = StubEncoder()
    idx = Index.build(repo, encoder=enc)
    conn = idx._store.conn
    distinct = conn.execute("SELECT COUNT(DISTINCT hash) FROM windows").fetchone()[0]
    assert len(enc.documents) == idx.last_stats.embedded == distinct
    assert idx.status()["vectors"] == conn.execute("SELECT COUNT(*) FROM windows").fetchone()[0]

    enc.documents.clear()
    assert idx.update().embedded == 0 and Index.build(repo, encoder=enc).last_stats.embedded == 0
    assert enc.documents == []

    before = {r[0] for r in conn.execute("SELECT text FROM blocks")}
    text = (repo / "src/config.py").read_text().replace('"""Parse key=value lines."""', '"""Parse lines."""')
    (repo / "src/config.py").write_text(text)
    stats = idx.update()
    after = {r[0] for r in conn.execute("SELECT text FROM blocks")}
    assert stats.modified == 1
    assert sorted(enc.documents) == sorted(after - before) and len(enc.documents) == 1
    assert stats.cached == stats.blocks - 1                  # the file's other blocks came from the cache

    enc.documents.clear()
    (repo / "src/upload.py").rename(repo / "src/uploads.py")
    stats = idx.update()
    assert (stats.added, stats.deleted, stats.embedded) == (1, 1, 0) and stats.cached == stats.blocks
    assert enc.documents == []
    assert idx.status()["vectors"] == conn.execute("SELECT COUNT(*) FROM windows").fetchone()[0]


def test_the_task_is_part_of_the_vector_key(repo):
    enc = StubEncoder()
    idx = Index.build(repo, encoder=enc, task="code")
    embedded = len(enc.documents)
    assert idx.status()["vectors"] == idx._store.count("windows") and embedded > 0
    enc.documents.clear()
    Index.build(repo, encoder=enc, task="nl")            # other prompts: other vectors
    assert len(enc.documents) == embedded
    enc.documents.clear()
    assert Index.build(repo, encoder=enc, task="code").status()["vectors"] == idx._store.count("windows")
    assert enc.documents == []                           # back to the first task: all cached


def test_status_reports_model_and_counts(repo):
    idx = Index.build(repo, encoder=StubEncoder(dim=32))
    status = idx.status()
    assert status["model"] == "stub-bag" and status["dim"] == 32 and status["schema"] == SCHEMA_VERSION
    assert status["files"] == file_count(repo) and status["blocks"] == idx.last_stats.blocks
    assert status["size_bytes"] > 0 and status["built_at"] >= status["updated_at"] > 0
    assert status["root"] == str(repo.resolve()) and status["stale"] == 0
    (repo / "src/config.py").write_text("x = 1\n")
    (repo / "docs/guide.md").unlink()
    assert idx.status()["stale"] == 2


def test_unreadable_and_odd_files_are_skipped_and_counted(repo):
    (repo / "blob.py").write_bytes(b"\x00\x01\x02\x03" * 200)
    (repo / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    (repo / "huge.txt").write_text("x\n" * 1_100_000)
    os.symlink("missing-target.py", repo / "broken.py")
    idx = Index.build(repo)
    skipped = idx.last_stats.skipped
    assert skipped == {"binary": 2, "too-large": 1, "broken-symlink": 1}
    assert idx.status()["skipped"] == skipped
    assert idx.status()["files"] == file_count(repo) - 1     # blob.py is walked, then found binary
    assert idx.update().skipped == skipped


@pytest.mark.parametrize("recorded, reparsed", [
    ({"haskell": 0}, {"src/Core.hs"}),                      # the Haskell query changed since the index was built
    ({"haskell": None}, {"src/Core.hs"}),                   # Haskell had no grammar then (its files are chunks)
    (None, "every code file"),                              # an index from before revisions were recorded
])
def test_files_of_a_language_whose_grammar_changed_are_parsed_again(repo, monkeypatch, recorded, reparsed):
    write_files(repo, {"src/Core.hs": "-- | Runs it.\nrunX :: X a -> IO a\nrunX (X a) = run a\n"})
    idx = Index.build(repo)
    current = parser_revisions()
    assert json.loads(idx._store.meta()["parsers"]) == current
    with idx._store.transaction():
        if recorded is None:
            idx._store.conn.execute("DELETE FROM meta WHERE key = 'parsers'")
        else:
            before = {**current, **recorded}
            idx._store.set_meta(parsers={k: v for k, v in before.items() if v is not None})
        idx._store.conn.execute("UPDATE blocks SET kind = 'chunk', name = '' WHERE file_id = "
                                "(SELECT id FROM files WHERE path = 'src/Core.hs')")
    prepared = []
    real_prepare = build_module.prepare
    monkeypatch.setattr(build_module, "prepare",
                        lambda root, rel, old: prepared.append((rel, old)) or real_prepare(root, rel, old))
    again = Index.build(repo)
    if reparsed == "every code file":
        reparsed = {f.path for f in walk(repo).files if f.path.endswith((".py", ".hs"))}
        assert len(reparsed) == 11
    assert {rel for rel, _ in prepared} == reparsed and all(old is None for _, old in prepared)
    assert json.loads(again._store.meta()["parsers"]) == current
    assert [(h.kind, h.name, h.line) for h in again.search("runX", mode="keyword")][:1] == [("function", "runX", 1)]
    prepared.clear()
    assert Index.build(repo).last_stats.modified == 0 and prepared == []


def test_interrupted_build_resumes_without_redoing_committed_files(repo, tmp_path, monkeypatch):
    monkeypatch.setattr(build_module, "BATCH_FILES", 3)

    def interrupt(stage, done, total):
        if stage == "extract" and done >= 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Index.build(repo, progress=interrupt)
    partial = Index.open(repo)
    committed = set(partial._store.files())
    assert len(committed) == 6
    assert partial._store.count("fts") == partial._store.count("blocks") > 0

    prepared = []
    real_prepare = build_module.prepare
    monkeypatch.setattr(build_module, "prepare",
                        lambda root, rel, old: prepared.append(rel) or real_prepare(root, rel, old))
    resumed = Index.build(repo)
    assert not committed & set(prepared) and len(prepared) == file_count(repo) - 6
    assert resumed.last_stats.added == len(prepared) and resumed.last_stats.unchanged == 6
    assert contents(resumed) == contents(clean_copy(repo, tmp_path / "copy"))


def test_interrupted_embedding_resumes(repo, monkeypatch):
    monkeypatch.setattr(embed_module, "EMBED_BATCH", 4)
    enc = StubEncoder()

    def interrupt(stage, done, total):
        if stage == "embed" and done >= 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Index.build(repo, encoder=enc, progress=interrupt)
    partial = Index.open(repo)._store
    distinct = partial.conn.execute("SELECT COUNT(DISTINCT hash) FROM windows").fetchone()[0]
    done = partial.count("embeddings")
    assert 0 < done < distinct
    enc.documents.clear()
    resumed = Index.build(repo, encoder=enc)
    assert resumed.last_stats.embedded == len(enc.documents) == distinct - done
    assert resumed.status()["vectors"] == resumed._store.count("windows")


def test_second_build_waits_then_refuses(repo, monkeypatch):
    idx = Index.build(repo)
    monkeypatch.setattr(index_module, "LOCK_WAIT_S", 0.2)
    with BuildLock(repo):
        with pytest.raises(IndexLocked, match="another hhg build"):
            Index.build(repo)
        with pytest.raises(IndexLocked):
            idx.update()
        assert idx.search("retry failed uploads", mode="keyword")     # readers are never blocked


def test_readers_see_the_last_committed_state_during_a_build(repo, monkeypatch):
    Index.build(repo)
    reader = Index.open(repo)
    (repo / "src/upload.py").write_text("def zebra_later(queue):\n    queue.defer()\n")
    seen = []
    real_put = build_module.Store.put_file

    def put_and_look(self, *args, **kwargs):
        out = real_put(self, *args, **kwargs)
        seen.append([h.name for h in reader.search("retry failed uploads", k=1, mode="keyword")])
        seen.append([h.name for h in reader.search("zebra", k=1, mode="keyword")])
        return out

    monkeypatch.setattr(build_module.Store, "put_file", put_and_look)
    Index.build(repo)
    assert seen == [["retry_failed_uploads"], []]              # inside the open transaction: old state
    assert [h.name for h in reader.search("zebra", k=1, mode="keyword")] == ["zebra_later"]


def test_schema_mismatch_then_force_rebuild(repo):
    Index.build(repo).close()
    with sqlite3.connect(db_path(repo)) as conn:
        conn.execute("UPDATE meta SET value = '0' WHERE key = 'schema'")
    for attempt in (lambda: Index.open(repo), lambda: Index.build(repo)):
        with pytest.raises(SchemaMismatch, match=r"hhg build --force"):
            attempt()
    idx = Index.build(repo, force=True)
    assert idx.status()["schema"] == SCHEMA_VERSION and idx.last_stats.added == file_count(repo)


def test_corrupt_index_is_one_line_then_force_rebuild(repo):
    Index.build(repo).close()
    for suffix in ("-wal", "-shm"):
        db_path(repo).with_name(db_path(repo).name + suffix).unlink(missing_ok=True)
    db_path(repo).write_bytes(b"garbage " * 1000)
    with pytest.raises(IndexCorrupt) as err:
        Index.open(repo)
    assert "\n" not in str(err.value) and "--force" in str(err.value)
    assert Index.build(repo, force=True).search("retry failed uploads", k=1, mode="keyword")


def test_damage_found_while_searching_is_a_one_line_error(repo):
    idx = Index.build(repo)
    conn = idx._store.conn
    try:
        pages = [p for (p,) in conn.execute("SELECT pageno FROM dbstat WHERE name = 'fts_data'")]
    except sqlite3.OperationalError:
        pytest.skip("this SQLite has no dbstat")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    idx.close()                                   # the last connection folds the WAL into the file
    with open(db_path(repo), "r+b") as fh:
        for page in pages:
            fh.seek((page - 1) * page_size)
            fh.write(b"\xff" * page_size)
    reader = Index.open(repo)                     # the schema pages are intact
    with pytest.raises(IndexCorrupt, match="hhg build --force"):
        reader.search("retry failed uploads", mode="keyword")


def test_missing_directory_and_missing_index(tmp_path):
    with pytest.raises(IndexNotFound, match="no such directory"):
        Index.open(tmp_path / "nope")
    with pytest.raises(IndexNotFound, match="hhg build"):
        Index.open(tmp_path)


def test_explicit_model_that_cannot_be_loaded(repo):
    with pytest.raises(ModelUnavailable):
        Index.build(repo, model=str(repo / "no-such-model"))


REFUSED_BUILDS = [
    ({"model": "no-such-model"}, ModelUnavailable, "unknown model 'no-such-model'"),
    ({"precision": "fp32"}, ModelUnavailable, "a backend or precision needs a model"),
    ({"model": "minilm", "backend": "onnx", "precision": "4bit"}, UnsupportedModel, "onnx does not run 4bit"),
    ({"model": "jina-code-0.5b"}, LicenseNotAccepted, "jina-code-0.5b is licensed CC-BY-NC-4.0"),
]


@pytest.fixture
def keyword_only(tmp_path, monkeypatch):
    """No default model installed and a config folder of the test's own (no licence accepted)."""
    monkeypatch.setattr(index_module, "_installed_default_model", lambda: None)
    monkeypatch.setenv("HHG_CONFIG_DIR", str(tmp_path / "config"))


@pytest.mark.parametrize("options, error, message", REFUSED_BUILDS)
def test_a_refused_first_build_leaves_nothing_behind(repo, keyword_only, options, error, message):
    with pytest.raises(error, match=message):
        Index.build(repo, **options)
    assert not (repo / ".hhg").exists()               # the next search builds an index of its own
    Index.build(repo).close()
    assert Index.open(repo).status()["files"] == file_count(repo)


def index_rows(root):
    conn = sqlite3.connect(db_path(root))
    try:
        return (conn.execute("SELECT key, value FROM meta ORDER BY key").fetchall(),
                conn.execute("SELECT id, file_id, start_line, end_line, name, hash FROM blocks ORDER BY id").fetchall())
    finally:
        conn.close()


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("options, error, message", REFUSED_BUILDS)
def test_a_refused_build_leaves_the_index_untouched(repo, keyword_only, options, error, message, force):
    Index.build(repo).close()
    before = index_rows(repo)
    assert before[1]
    with pytest.raises(error, match=message):
        Index.build(repo, force=force, **options)
    assert index_rows(repo) == before


def test_find_indexes_and_clean(tmp_path):
    roots = [tmp_path / "a", tmp_path / "a/sub/b", tmp_path / "a/node_modules/c"]
    for root in roots:
        write_files(root, {"x.py": "def f():\n    pass\n"})
        Index.build(root).close()
    assert find_indexes(tmp_path) == [roots[0] / ".hhg", roots[1] / ".hhg"]
    assert clean(roots[0]) == [roots[0] / ".hhg"]
    assert find_indexes(tmp_path) == [roots[1] / ".hhg"]
    assert clean(tmp_path, recursive=True) == [roots[1] / ".hhg"]
    assert find_indexes(tmp_path) == [] and clean(tmp_path) == []
