"""The SQLite store: schema checks, error messages, rows kept in sync, windows, the build lock."""
import sqlite3
import threading

import numpy as np
import pytest

from hhg_mlx.errors import HhgError, IndexCorrupt, IndexLocked, IndexNotFound, SchemaMismatch
from hhg_mlx.index.embed import pending_windows
from hhg_mlx.index.store import BuildLock, PreparedBlock, Store, db_path, windows
from hhg_mlx.types import Block


def block(path, name, text, start=1):
    return Block(path, "python", "function", name, start, start + text.count("\n"), text)


def test_windows_cover_every_line_with_overlap():
    text = "".join(f"line {i:03d} " + "x" * 40 + "\n" for i in range(100))
    parts = windows(text, max_chars=500, overlap=2)
    assert len(parts) > 1 and all(len(p) <= 500 for p in parts)
    lines = text.splitlines(keepends=True)
    assert parts[0] == "".join(lines[:len(parts[0].splitlines())])
    covered = set()
    for p in parts:
        first = lines.index(p.splitlines(keepends=True)[0])
        covered.update(range(first, first + len(p.splitlines())))
    assert covered == set(range(100))
    # consecutive windows share exactly `overlap` lines
    assert parts[0].splitlines()[-2:] == parts[1].splitlines()[:2]
    assert windows("short") == ["short"]
    long_line = "y" * 1200
    assert windows(long_line + "\n" + "z\n", max_chars=1000, overlap=1) == [long_line + "\n", "z\n"]


def test_open_missing_index(tmp_path):
    with pytest.raises(IndexNotFound, match="hhg build"):
        Store.open(tmp_path)


def test_schema_mismatch_says_how_to_rebuild(tmp_path):
    store = Store.open(tmp_path, create=True)
    with store.transaction():
        store.set_meta(schema=0)
    store.close()
    with pytest.raises(SchemaMismatch) as err:
        Store.open(tmp_path)
    assert "schema version 0" in str(err.value) and "hhg build --force" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100, b""])
def test_corrupt_file_is_a_one_line_error(tmp_path, content):
    path = db_path(tmp_path)
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(IndexCorrupt) as err:
        Store.open(tmp_path)
    assert "hhg build --force" in str(err.value) and "\n" not in str(err.value)


def test_foreign_sqlite_database_is_not_an_index(tmp_path):
    path = db_path(tmp_path)
    path.parent.mkdir()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE something (x)")
    with pytest.raises(IndexCorrupt, match="not an hhg index"):
        Store.open(tmp_path)


def test_put_and_delete_keep_blocks_fts_and_windows_in_sync(tmp_path):
    store = Store.open(tmp_path, create=True)
    blocks = [PreparedBlock.of(block("a.py", "parse_args", "def parse_args():\n    pass\n")),
              PreparedBlock.of(block("a.py", "main", "def main():\n    parse_args()\n", 3))]
    with store.transaction():
        a = store.put_file("a.py", 10, 1, "h1", "python", "ok", blocks)
        store.put_file("b.py", 10, 1, "h2", "python", "ok", [PreparedBlock.of(block("b.py", "other", "x = 1\n"))])
    counts = lambda: [store.count(t) for t in ("blocks", "fts", "windows")]   # noqa: E731
    assert counts() == [3, 3, 3]
    hits = store.conn.execute("SELECT rowid FROM fts WHERE fts MATCH 'args'").fetchall()
    assert len(hits) == 2      # both blocks of a.py mention parse_args
    with store.transaction():  # replacing a file drops its old rows
        assert store.put_file("a.py", 11, 2, "h3", "python", "ok", blocks[:1]) == a
    assert counts() == [2, 2, 2]
    with store.transaction():
        store.delete_file(a)
    assert counts() == [1, 1, 1]
    assert list(store.files()) == ["b.py"]


def test_interrupted_transaction_rolls_back(tmp_path):
    store = Store.open(tmp_path, create=True)
    with pytest.raises(KeyboardInterrupt):
        with store.transaction():
            store.put_file("a.py", 1, 1, "h", "python", "ok", [PreparedBlock.of(block("a.py", "f", "def f(): pass"))])
            raise KeyboardInterrupt
    assert [store.count(t) for t in ("files", "blocks", "fts", "windows")] == [0, 0, 0, 0]


def test_embedding_cache_is_shared_by_identical_windows(tmp_path):
    store = Store.open(tmp_path, create=True)
    same = "def f():\n    return 1\n"
    with store.transaction():
        store.put_file("a.py", 1, 1, "ha", "python", "ok", [PreparedBlock.of(block("a.py", "f", same))])
        store.put_file("b.py", 1, 1, "hb", "python", "ok", [PreparedBlock.of(block("b.py", "f", same)),
                                                             PreparedBlock.of(block("b.py", "g", "def g(): pass"))])
    missing = pending_windows(store, "m")
    assert len(missing) == 2                                  # three windows, two distinct texts
    vectors = np.arange(8, dtype=np.float32).reshape(2, 4)
    with store.transaction():
        store.put_embeddings("m", [h for h, _, _ in missing], vectors)
    assert pending_windows(store, "m") == [] and len(pending_windows(store, "other")) == 2
    ids, vecs = store.window_vectors("m", 4)
    assert len(ids) == 3 and store.count_vectors("m") == 3
    by_hash = {h: v for (h, _, _), v in zip(missing, vectors)}
    same_hash = PreparedBlock.of(block("a.py", "f", same)).windows[0]
    np.testing.assert_array_equal(vecs[0], by_hash[same_hash])   # a.py's block, first id
    np.testing.assert_array_equal(vecs[1], by_hash[same_hash])


def test_build_lock_waits_then_refuses(tmp_path):
    with BuildLock(tmp_path):
        with pytest.raises(IndexLocked, match="another hhg build"):
            with BuildLock(tmp_path, wait=0.2):
                pass
    holder = BuildLock(tmp_path).__enter__()
    threading.Timer(0.2, holder.__exit__).start()
    with BuildLock(tmp_path, wait=30) as second:   # waits for the holder to let go
        assert second.fd is not None


def test_build_lock_failure_is_not_reported_as_another_build(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(HhgError) as caught:
        with BuildLock(tmp_path, wait=0.2):
            pass
    assert not isinstance(caught.value, IndexLocked)
    assert str(caught.value) == f"cannot lock {tmp_path / '.hhg' / 'build.lock'}: No locks available"
