"""The SQLite store under `<root>/.hhg/`: files, blocks, an FTS5 table of split identifiers,
embedding windows and the embedding cache.

One database file in WAL mode: a build writes in transactions while searches read the last
committed state. Window vectors live only in the cache, keyed by (model, window text hash), so a
renamed or restored block is never embedded twice; `windows` maps each block to its window hashes.

Searches read the vectors from a snapshot next to the database: `.npy` segments that meta
`snapshot` lists (comma-separated tokens). A build writes one segment of every window; each
embedding batch appends a small segment in the transaction that stores its vectors, so the next
search sees them; appended segments are merged once they outgrow the first one.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from ..errors import HhgError, IndexCorrupt, IndexLocked, IndexNotFound, SchemaMismatch
from ..tokens import index_text
from ..types import Block

if TYPE_CHECKING:
    import numpy as np

SCHEMA_VERSION = 4   # 4: files.language is the language the file was parsed as (shebang, C++ headers)
INDEX_DIR = ".hhg"
DB_NAME = "index.sqlite"
LOCK_NAME = "build.lock"
MAX_SEGMENTS = 32      # appended snapshot segments a search reads at most before they are merged

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash TEXT,
    language TEXT,
    status TEXT NOT NULL            -- 'ok', or why the file is not indexed ('binary', 'encoding', ...)
);
CREATE TABLE blocks (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id),
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    language TEXT NOT NULL,
    hash TEXT NOT NULL,
    text TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX blocks_file ON blocks(file_id);
-- Contentless (blocks hold the text): a row is deleted by giving back the values it was indexed with
-- (fts_values), so a change to tokens.py must bump SCHEMA_VERSION. Porter stemming on top of the
-- split identifiers lets "templating" find "template" and "parsed" find "parser".
CREATE VIRTUAL TABLE fts USING fts5(name, path, doc, body, content = '',
                                    tokenize = "porter unicode61 remove_diacritics 2 tokenchars '_'");
CREATE TABLE windows (
    block_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (block_id, seq)
) WITHOUT ROWID;
CREATE INDEX windows_hash ON windows(hash);
CREATE TABLE embeddings (
    model TEXT NOT NULL,
    hash TEXT NOT NULL,
    vec BLOB NOT NULL,
    PRIMARY KEY (model, hash)
) WITHOUT ROWID;
"""

# Embedding windows: blocks longer than this are embedded as overlapping line windows.
WINDOW_CHARS = 1500
WINDOW_OVERLAP_LINES = 3


def digest(data: bytes | str) -> str:
    from hashlib import blake2b   # here: a search that finds nothing changed never hashes (OpenSSL loads in 2 ms)

    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return blake2b(data, digest_size=16).hexdigest()


def windows(text: str, max_chars: int = WINDOW_CHARS, overlap: int = WINDOW_OVERLAP_LINES) -> list[str]:
    """Split a block into line windows of about `max_chars`, consecutive windows sharing `overlap`
    lines. A block that fits is one window; a single over-long line is its own window."""
    if len(text) <= max_chars:
        return [text]
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    start = 0
    while start < len(lines):
        end, size = start, 0
        while end < len(lines) and (end == start or size + len(lines[end]) <= max_chars):
            size += len(lines[end])
            end += 1
        out.append("".join(lines[start:end]))
        if end >= len(lines):
            break
        start = max(end - overlap, start + 1)
    return out


@dataclass(slots=True)
class FileRow:
    id: int
    path: str
    size: int
    mtime_ns: int
    hash: str | None
    language: str | None
    status: str


def index_dir(root: Path) -> Path:
    return Path(root) / INDEX_DIR


def db_path(root: Path) -> Path:
    return index_dir(root) / DB_NAME


def remove_database(root: Path) -> None:
    """Delete the index database of `root` with its WAL files and vector snapshots (the lock stays)."""
    path = db_path(root)
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), *path.parent.glob("vectors-*")):
        p.unlink(missing_ok=True)


@dataclass(slots=True)
class PreparedBlock:
    """A block with everything its rows need, computed outside the write transaction (and
    possibly in a worker process): text hash, FTS column values, window hashes."""

    block: Block
    hash: str
    fts: tuple[str, str, str, str]       # name, path, doc (docstring + signature line), body
    windows: list[str]

    @classmethod
    def of(cls, block: Block) -> "PreparedBlock":
        fts = fts_values(block.name, block.path, block.doc, block.text)
        return cls(block, digest(block.text), fts, [digest(w) for w in windows(block.text)])


def fts_values(name: str, path: str, doc: str, text: str) -> tuple[str, str, str, str]:
    """The FTS columns of a block: split name, path, docstring + signature line, body."""
    signature = text.split("\n", 1)[0]
    return index_text(name), index_text(path), index_text(doc + "\n" + signature), index_text(text)


class Store:
    """A connection to one index database. Every write method expects the caller's transaction."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: Path, *, create: bool = False) -> "Store":
        path = db_path(root)
        if not path.exists():
            if not create:
                raise IndexNotFound(f"no index in {root}; run `hhg build {root}` first")
            path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        store = cls(path, conn)
        with store.closed_on_error(root):
            conn.execute("PRAGMA busy_timeout = 5000")
            version = store._schema_version()
            if version is None:
                if not create:
                    raise IndexCorrupt(f"{path} is empty; run `hhg build --force {root}`")
                store._create()
            elif version < 0:
                raise IndexCorrupt(f"{path} is not an hhg index; run `hhg build --force {root}`")
            elif version != SCHEMA_VERSION:
                raise SchemaMismatch(f"the index in {root} has schema version {version}, this hhg needs "
                                     f"{SCHEMA_VERSION}; run `hhg build --force {root}` to rebuild it")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        return store

    @contextmanager
    def closed_on_error(self, root: Path) -> Iterator[None]:
        """Close the connection when the body fails; SQLite errors become one-line HhgErrors."""
        try:
            yield
        except BaseException as err:
            self.conn.close()
            if isinstance(err, sqlite3.DatabaseError):
                raise database_error(root, err) from None
            raise

    def _schema_version(self) -> int | None:
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return None
        if "meta" not in tables:
            return -1
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        return int(row[0]) if row and row[0].isdigit() else -1

    def _create(self) -> None:
        with self.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.conn.execute(statement)
            now = str(time.time())
            self.set_meta(schema=SCHEMA_VERSION, created_at=now)

    def close(self) -> None:
        self.conn.close()

    # -- transactions and meta -------------------------------------------------------------------
    def transaction(self) -> "Transaction":
        return Transaction(self.conn)

    def meta(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM meta"))

    def set_meta(self, **values: object) -> None:
        self.conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                              [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in values.items()])

    def data_version(self) -> int:
        """Changes whenever another connection commits (SQLite's `PRAGMA data_version`)."""
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    # -- files -----------------------------------------------------------------------------------
    def files(self) -> dict[str, FileRow]:
        return {r[1]: FileRow(*r) for r in self.conn.execute(
            "SELECT id, path, size, mtime_ns, hash, language, status FROM files")}

    def touch_file(self, file_id: int, size: int, mtime_ns: int) -> None:
        self.conn.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, file_id))

    def put_file(self, path: str, size: int, mtime_ns: int, hash: str | None, language: str | None,
                 status: str, blocks: Iterable[PreparedBlock]) -> int:
        """Insert or replace a file with its blocks (old blocks, FTS rows and windows go)."""
        row = self.conn.execute("SELECT id FROM files WHERE path = ?", (path,)).fetchone()
        if row:
            file_id = row[0]
            self._delete_blocks(file_id)
            self.conn.execute("UPDATE files SET size = ?, mtime_ns = ?, hash = ?, language = ?, status = ? "
                              "WHERE id = ?", (size, mtime_ns, hash, language, status, file_id))
        else:
            file_id = self.conn.execute(
                "INSERT INTO files(path, size, mtime_ns, hash, language, status) VALUES (?, ?, ?, ?, ?, ?)",
                (path, size, mtime_ns, hash, language, status)).lastrowid
        for prepared in blocks:
            b = prepared.block
            block_id = self.conn.execute(
                "INSERT INTO blocks(file_id, start_line, end_line, kind, name, language, hash, text, doc) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (file_id, b.start_line, b.end_line, b.kind, b.name, b.language, prepared.hash, b.text, b.doc)
            ).lastrowid
            self.conn.execute("INSERT INTO fts(rowid, name, path, doc, body) VALUES (?, ?, ?, ?, ?)",
                              (block_id, *prepared.fts))
            self.conn.executemany("INSERT INTO windows(block_id, seq, hash) VALUES (?, ?, ?)",
                                  [(block_id, i, h) for i, h in enumerate(prepared.windows)])
        return file_id

    def delete_file(self, file_id: int) -> None:
        self._delete_blocks(file_id)
        self.conn.execute("DELETE FROM files WHERE id = ?", (file_id,))

    def _delete_blocks(self, file_id: int) -> None:
        rows = self.conn.execute(
            "SELECT b.id, b.name, f.path, b.doc, b.text FROM blocks b JOIN files f ON f.id = b.file_id "
            "WHERE b.file_id = ?", (file_id,)).fetchall()
        if not rows:
            return
        self.conn.executemany("INSERT INTO fts(fts, rowid, name, path, doc, body) VALUES ('delete', ?, ?, ?, ?, ?)",
                              [(block_id, *fts_values(*values)) for block_id, *values in rows])
        self.conn.executemany("DELETE FROM windows WHERE block_id = ?", [(r[0],) for r in rows])
        self.conn.execute("DELETE FROM blocks WHERE file_id = ?", (file_id,))

    # -- embeddings ------------------------------------------------------------------------------
    def put_embeddings(self, model: str, hashes: list[str], vectors: np.ndarray) -> None:
        import numpy as np

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.conn.executemany("INSERT OR REPLACE INTO embeddings(model, hash, vec) VALUES (?, ?, ?)",
                              [(model, h, v.tobytes()) for h, v in zip(hashes, vectors)])

    def window_vectors(self, model: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every embedded window ordered by block then window; ids rows are
        (block id, file id)."""
        return self._vectors_where(model, dim)

    def _vectors_where(self, model: str, dim: int, condition: str = "1", *args: object) -> tuple[np.ndarray, np.ndarray]:
        import numpy as np

        rows = self.conn.execute(
            "SELECT w.block_id, b.file_id, e.vec FROM windows w JOIN blocks b ON b.id = w.block_id "
            f"JOIN embeddings e ON e.model = ? AND e.hash = w.hash WHERE {condition} ORDER BY w.block_id, w.seq",
            (model, *args)).fetchall()
        ids = np.array([r[:2] for r in rows], dtype=np.int64).reshape(len(rows), 2)
        vecs = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        return ids, vecs

    def still_missing(self, model: str, hashes: list[str]) -> set[str]:
        """Those of `hashes` that have no vector for `model`."""
        have = {h for (h,) in self.conn.execute(
            "SELECT hash FROM embeddings WHERE model = ? AND hash IN (SELECT value FROM json_each(?))",
            (model, json.dumps(hashes)))}
        return set(hashes) - have

    def embedding_counts(self, model: str) -> tuple[int, int, int]:
        """(blocks, blocks with a vector for every window, windows without a vector) for `model`."""
        blocks, done, missing = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(missing = 0), 0), COALESCE(SUM(missing), 0) FROM ("
            "SELECT SUM(e.hash IS NULL) AS missing FROM windows w "
            "LEFT JOIN embeddings e ON e.model = ? AND e.hash = w.hash GROUP BY w.block_id)", (model,)).fetchone()
        return blocks, done, missing

    # -- vector snapshot: the window matrix as .npy segments next to the database, memory-mapped by
    # searches (reading it from SQLite costs ~20 µs a window; the snapshot costs nothing) ----------
    def save_snapshot(self, model: str, dim: int) -> None:
        """Write the current window matrix as one segment, point meta at it, drop every other segment.
        One write transaction, so no embedding batch appends a segment meanwhile."""
        with self.transaction():
            token = self._write_segment(*self.window_vectors(model, dim))
            self.set_meta(snapshot=token, snapshot_model=model)
            self._drop_segments({token})

    def append_snapshot(self, model: str, hashes: list[str]) -> None:
        """In the caller's transaction: add the windows whose vectors are `hashes` (just stored) to the
        snapshot of `model` as a new segment; merge the appended segments into one when they number
        more than MAX_SEGMENTS or hold as many rows as the first. Nothing without a snapshot of `model`."""
        import numpy as np

        meta = self.meta()
        if meta.get("snapshot_model") != model or not meta.get("snapshot") or not hashes:
            return
        tokens = meta["snapshot"].split(",") + [self._write_segment(*self._vectors_where(
            model, int(meta["dim"]), "w.hash IN (SELECT value FROM json_each(?))", json.dumps(hashes)))]
        segments = self.load_snapshot(",".join(tokens))
        if segments is None:                    # a segment file went missing: start again from SQLite
            self.set_meta(snapshot_model="")
            return
        if len(tokens) > MAX_SEGMENTS + 1 or sum(len(ids) for ids, _ in segments[1:]) >= len(segments[0][0]):
            ids = np.concatenate([ids for ids, _ in segments])
            order = np.argsort(ids[:, 0], kind="stable")
            tokens = [self._write_segment(ids[order], np.concatenate([vecs for _, vecs in segments])[order])]
            self._drop_segments(set(tokens))
        self.set_meta(snapshot=",".join(tokens))

    def load_snapshot(self, tokens: str) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """(ids, vectors) of each segment that `tokens` (meta `snapshot`) names, memory-mapped; None when
        a file is gone."""
        import numpy as np

        try:
            return [tuple(np.load(self._snapshot_path(token, suffix), mmap_mode="r") for suffix in ("ids", "vecs"))
                    for token in tokens.split(",")]
        except (OSError, ValueError):
            return None

    def _write_segment(self, ids: np.ndarray, vecs: np.ndarray) -> str:
        import numpy as np

        token = f"{time.time_ns():x}"
        for suffix, array in (("ids", ids), ("vecs", vecs)):
            tmp = self._snapshot_path(token, suffix).with_suffix(".tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, array)
            os.replace(tmp, self._snapshot_path(token, suffix))
        return token

    def _drop_segments(self, keep: set[str]) -> None:
        """Delete every segment file but `keep`'s (left-overs of killed writers too). Called inside a write
        transaction: no other writer is between writing a segment and committing it."""
        for old in self.path.parent.glob("vectors-*"):
            if old.name.split(".", 1)[0].removeprefix("vectors-") not in keep:
                old.unlink(missing_ok=True)

    def _snapshot_path(self, token: str, suffix: str) -> Path:
        return self.path.parent / f"vectors-{token}.{suffix}.npy"

    def count(self, table: str) -> int:
        return self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def count_vectors(self, model: str | None) -> int:
        if not model:
            return 0
        return self.conn.execute("SELECT COUNT(*) FROM windows w JOIN embeddings e "
                                 "ON e.model = ? AND e.hash = w.hash", (model,)).fetchone()[0]


def database_error(root: Path, err: sqlite3.DatabaseError) -> HhgError:
    """The one-line error for an SQLite failure: a damaged file, or anything else (disk, permissions)."""
    path = db_path(root)
    if isinstance(err, sqlite3.OperationalError) and "malformed" not in str(err):
        return HhgError(f"cannot use the index {path}: {err}")
    return IndexCorrupt(f"{path} is damaged or not an index ({err}); run `hhg build --force {root}`")


class Transaction:
    """`with store.transaction():` — BEGIN IMMEDIATE, COMMIT on success, ROLLBACK on any exception
    (KeyboardInterrupt included), then the exception propagates."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


def try_lock(fd: int, path: Path) -> bool:
    """Take the exclusive flock on `fd` (open on `path`) without waiting; False when another holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as err:
        if err.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise HhgError(f"cannot lock {path}: {err.strerror or err}") from None   # e.g. no locks on this file system


class BuildLock:
    """Exclusive, advisory lock on `.hhg/build.lock` (flock): one writer per index at a time.
    Waits up to `wait` seconds, then raises IndexLocked. Readers never take it."""

    def __init__(self, root: Path, wait: float = 2.0) -> None:
        self.path = index_dir(root) / LOCK_NAME
        self.wait = wait
        self.fd: int | None = None

    def __enter__(self) -> "BuildLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait
        try:
            while not try_lock(fd, self.path):
                if time.monotonic() >= deadline:
                    raise IndexLocked(f"another hhg build is updating the index in {self.path.parent.parent}; "
                                      f"wait for it to finish and try again")
                time.sleep(0.05)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
