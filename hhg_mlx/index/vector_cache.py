"""The shared embedding cache: per user, one SQLite store per vector key (model, task, precision)
under `$XDG_CACHE_HOME/hhg/vectors/`, mapping a window's text hash to its vector. It holds
vectors only, never source text, so a repository whose blocks were embedded anywhere before (another
clone, a fork, a release branch) costs nothing to embed.

Several processes may read and write a store at once: WAL mode (readers never wait), every write one
short `BEGIN IMMEDIATE` transaction that inserts what is not there yet (the same hash always carries
the same vector, so whichever writer comes first wins and nothing is written twice), and a long busy
timeout for the writers' turns. `--no-shared-cache` builds use a private temporary store instead,
which the same code reads and writes.
"""
from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from ..errors import HhgError
from ..paths import cache_dir
from .store import Transaction, digest

if TYPE_CHECKING:
    import numpy as np

    from ..encoder import Progress
    from .embed import Embed

BUSY_TIMEOUT_MS = 60_000       # how long a writer waits for another process's write transaction
LOOKUP_BATCH = 10_000          # hashes per lookup query
_SCHEMA = ("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
           "CREATE TABLE IF NOT EXISTS vectors (hash TEXT PRIMARY KEY, vec BLOB NOT NULL) WITHOUT ROWID")


def cache_folder() -> Path:
    """Where the stores live: `$XDG_CACHE_HOME/hhg/vectors` (default `~/.cache/hhg/vectors`)."""
    return cache_dir() / "vectors"


def store_name(key: str) -> str:
    """The file of a vector key's store: a readable slug of the key and a digest of it, e.g.
    `all-MiniLM-L6-v2-precision=int8-3f1a….sqlite`."""
    model, _, options = key.partition("#")          # options: e.g. precision=int8/q8-block128
    readable = model.rstrip("/").rsplit("/", 1)[-1] + (f"-{options}" if options else "")
    slug = re.sub(r"[^A-Za-z0-9.=_-]+", "-", readable).strip("-.")
    return f"{slug[:80]}-{digest(key)[:12]}.sqlite"


@dataclass(frozen=True)
class CacheInfo:
    """One store, as `hhg cache status` shows it."""

    path: Path
    key: str                  # model, task and precision (the index's vector key)
    dim: int | None           # None: nothing stored yet
    vectors: int
    size_bytes: int

    def to_json(self) -> dict:
        return {"path": str(self.path), "key": self.key, "dim": self.dim, "vectors": self.vectors,
                "size_bytes": self.size_bytes}


class VectorCache:
    """One store: `get` and `put` vectors by text hash. Not thread-safe; one per process and store."""

    def __init__(self, conn: sqlite3.Connection, key: str, path: Path | None) -> None:
        self.conn = conn
        self.key = key
        self.path = path          # None: a private temporary store
        self.dim: int | None = None   # set by the first vectors stored

    @classmethod
    def open(cls, key: str, folder: Path | None = None) -> "VectorCache":
        """The shared store of vector key `key`, created on first use."""
        folder = folder or cache_folder()
        path = folder / store_name(key)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as err:
            raise HhgError(f"cannot open the embedding cache {path}: {err}") from None
        cache = cls(conn, key, path)
        cache._setup(wal=True)
        return cache

    @classmethod
    def temporary(cls, key: str) -> "VectorCache":
        """A private store on disk that SQLite deletes when it is closed (builds without the shared cache)."""
        cache = cls(sqlite3.connect("", isolation_level=None, check_same_thread=False), key, None)
        cache._setup(wal=False)
        return cache

    def _setup(self, *, wal: bool) -> None:
        try:
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if wal:
                self.conn.execute("PRAGMA journal_mode = WAL")
                self.conn.execute("PRAGMA synchronous = NORMAL")
            with self._write():
                for statement in _SCHEMA:
                    self.conn.execute(statement)
                self.conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('key', ?)", (self.key,))
            stored = dict(self.conn.execute("SELECT key, value FROM meta"))
        except sqlite3.DatabaseError as err:
            self.conn.close()
            raise self._error(err) from None
        if stored.get("key") != self.key:
            self.conn.close()
            raise HhgError(f"the embedding cache {self.path} holds {stored.get('key')} vectors, not {self.key}; "
                           "run `hhg cache clean`")
        self.dim = int(stored["dim"]) if stored.get("dim") else None

    def get(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vector of each hash that has one."""
        import numpy as np

        if self.dim is None and not self._read_dim():
            return {}
        try:
            rows = self.conn.execute("SELECT hash, vec FROM vectors WHERE hash IN (SELECT value FROM json_each(?))",
                                     (json.dumps(list(hashes)),)).fetchall()
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None
        return {h: np.frombuffer(vec, dtype=np.float32) for h, vec in rows if len(vec) == 4 * self.dim}

    def known(self, hashes: Sequence[str]) -> set[str]:
        """Those of `hashes` that have a cached vector."""
        found: set[str] = set()
        try:
            for start in range(0, len(hashes), LOOKUP_BATCH):
                found.update(h for (h,) in self.conn.execute(
                    "SELECT hash FROM vectors WHERE hash IN (SELECT value FROM json_each(?))",
                    (json.dumps(list(hashes[start:start + LOOKUP_BATCH])),)))
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None
        return found

    def put(self, hashes: Sequence[str], vectors: np.ndarray) -> int:
        """Store the vectors of `hashes` that are not cached yet, in one transaction; returns how many."""
        import numpy as np

        if not len(hashes):
            return 0
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(hashes), -1)
        try:
            with self._write():
                self.conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('dim', ?)", (str(vectors.shape[1]),))
                self._read_dim()
                if self.dim != vectors.shape[1]:
                    raise HhgError(f"the embedding cache {self.path or '(temporary)'} holds {self.dim}-dim "
                                   f"{self.key} vectors, not {vectors.shape[1]}-dim ones; run `hhg cache clean`")
                before = self.conn.total_changes
                self.conn.executemany("INSERT OR IGNORE INTO vectors(hash, vec) VALUES (?, ?)",
                                      [(h, v.tobytes()) for h, v in zip(hashes, vectors)])
                return self.conn.total_changes - before
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None

    def _read_dim(self) -> int | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()
        self.dim = int(row[0]) if row else None
        return self.dim

    def count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "VectorCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self) -> Transaction:
        return Transaction(self.conn)

    def _error(self, err: sqlite3.DatabaseError) -> HhgError:
        where = self.path or "(temporary)"
        return HhgError(f"cannot use the embedding cache {where}: {err}; `hhg cache clean` deletes it")


class CachedEmbed:
    """An embed function that looks each text up in `cache` by its hash and runs only the misses
    through the embed function `load()` returns (called once, on the first miss), storing their
    vectors. `embedded` and `cached` count texts."""

    def __init__(self, cache: VectorCache, load: Callable[[], Embed]) -> None:
        self.cache = cache
        self.load = load
        self.embedded = 0
        self.cached = 0
        self._embed: Embed | None = None

    def __call__(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        import numpy as np

        hashes = [digest(t) for t in texts]
        found = self.cache.get(hashes)
        missing = [i for i, h in enumerate(hashes) if h not in found]
        vectors = None
        if missing:
            if self._embed is None:
                self._embed = self.load()
            done = len(texts) - len(missing)
            vectors = self._embed([texts[i] for i in missing],
                                  progress=(lambda n, _total: progress(done + n, len(texts))) if progress else None)
            self.cache.put([hashes[i] for i in missing], vectors)
        elif progress:
            progress(len(texts), len(texts))
        out = np.zeros((len(texts), self.cache.dim or 0), dtype=np.float32)
        for i, h in enumerate(hashes):
            if h in found:
                out[i] = found[h]
        if vectors is not None:
            out[missing] = vectors
        self.embedded += len(missing)
        self.cached += len(texts) - len(missing)
        return out


def open_shared(key: str, dim: int | None = None) -> tuple[VectorCache | None, str | None]:
    """The shared store of `key` for `dim`-dimensional vectors (None: any), or None and why not: a build
    goes on without it (a read-only home or a damaged store costs embedding time, not the build)."""
    try:
        cache = VectorCache.open(key)
    except HhgError as err:
        return None, f"{err}; building without the shared embedding cache"
    if dim is not None and cache.dim not in (None, dim):
        cache.close()
        return None, (f"the shared embedding cache holds {cache.dim}-dim {key} vectors, the encoder makes {dim}-dim "
                      "ones; building without it")
    return cache, None


def stores(folder: Path | None = None) -> list[CacheInfo]:
    """Every store in the shared cache, largest first; unreadable files are listed with what is known."""
    folder = folder or cache_folder()
    found = []
    for path in sorted(folder.glob("*.sqlite")) if folder.is_dir() else ():
        size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
        try:
            conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
            try:
                meta = dict(conn.execute("SELECT key, value FROM meta"))
                count = conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
            finally:
                conn.close()
            found.append(CacheInfo(path, meta.get("key", "?"), int(meta["dim"]) if meta.get("dim") else None, count,
                                   size))
        except sqlite3.DatabaseError:
            found.append(CacheInfo(path, "(unreadable)", None, 0, size))
    return sorted(found, key=lambda info: -info.size_bytes)


def clean(folder: Path | None = None) -> list[Path]:
    """Delete every store (with its WAL files); returns the stores deleted."""
    folder = folder or cache_folder()
    removed = []
    for path in sorted(folder.glob("*.sqlite")) if folder.is_dir() else ():
        for part in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            part.unlink(missing_ok=True)
        removed.append(path)
    return removed
