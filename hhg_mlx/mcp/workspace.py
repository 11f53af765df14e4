"""The MCP server's long-lived state and the work of its tools, in plain Python (no MCP SDK).

`Roots` confines every path a tool receives. `Workspace` keeps indexes open between calls and one
loaded encoder per model (`EncoderCache`, shared by every index that uses it), and searches the way
the CLI does: the index at or above the path (built by the first search there), brought up to date
by a stat walk, searched under the path. Each open index has its own lock, so calls on one index
take turns while calls on different indexes, a slow build included, run side by side in the
server's worker threads.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ..errors import HhgError, IndexLocked, IndexNotFound
from ..index.index import Index, find_root
from ..index.store import db_path
from ..output import hits_json
from ..types import SIMILAR, Filters, Hit

log = logging.getLogger("hhg.mcp")
T = TypeVar("T")
_UNSET = object()       # an open index whose encoder has not been chosen yet


class Roots:
    """The folders the tools may read. A path resolves (symlinks followed) inside one of them or is
    refused; relative paths start at the first root, and results inside it are shown relative to it."""

    def __init__(self, folders: Sequence[str | Path]) -> None:
        self.folders = tuple(dict.fromkeys(Path(f).resolve() for f in folders))
        if not self.folders:
            raise ValueError("no roots")

    def resolve(self, path: str | None) -> Path:
        """`path` (default: the first root) made absolute and real; HhgError outside the roots or missing."""
        if not path:
            return self.folders[0]
        try:
            target = (self.folders[0] / Path(path).expanduser()).resolve()
        except (OSError, RuntimeError) as err:        # a symlink loop
            raise HhgError(f"{path}: cannot resolve ({err})") from None
        if self.root_of(target) is None:
            raise HhgError(f"{path}: outside the roots this server may read ({', '.join(map(str, self.folders))})")
        if not target.exists():
            raise HhgError(f"{path}: no such file or directory")
        return target

    def root_of(self, path: Path) -> Path | None:
        """The root that holds the resolved `path`, None when none does."""
        return next((r for r in self.folders if path == r or r in path.parents), None)

    def show(self, path: Path) -> str:
        """How results name `path`: relative to the first root when inside it, else absolute."""
        try:
            return path.relative_to(self.folders[0]).as_posix()
        except ValueError:
            return str(path)


class SharedEncoder:
    """An encoder used by several threads: one embedding call at a time (MLX is not thread-safe)."""

    def __init__(self, encoder) -> None:
        self._encoder = encoder
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(self._encoder, name)       # dim, model_id, backend, precision, max_length...

    def embed_queries(self, texts):
        with self._lock:
            return self._encoder.embed_queries(texts)

    def embed_documents(self, texts, progress=None):
        with self._lock:
            return self._encoder.embed_documents(texts, progress=progress)


class EncoderCache:
    """Loaded encoders, one per `Index.encoder_args()` (model, task, backend, precision), kept for the
    server's lifetime. Concurrent first uses of one model load it once."""

    def __init__(self) -> None:
        self._loaded: dict[tuple, SharedEncoder] = {}
        self._loading: dict[tuple, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, args: dict) -> SharedEncoder | None:
        """The encoder for `args`, loaded on first use from local files only; None (logged) when it
        cannot be loaded, and the index then explains why in its notice."""
        key = tuple(sorted(args.items()))
        with self._lock:
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            if key not in self._loaded:
                encoder = _load(args)
                if encoder is None:
                    return None
                self._loaded[key] = SharedEncoder(encoder)
            return self._loaded[key]


def _load(args: dict):
    from ..loader import load_encoder
    start = time.perf_counter()
    try:
        encoder = load_encoder(**args, download=False)
    except HhgError as err:
        log.warning("cannot load model %s: %s", args["model"], err)
        return None
    except Exception:
        log.exception("cannot load model %s", args["model"])
        return None
    precision = getattr(encoder, "precision", "")
    log.info("loaded model %s on %s%s in %.1f s", args["model"], encoder.backend, f" ({precision})" if precision else "",
             time.perf_counter() - start)
    return encoder


@dataclass
class _Kept:
    """One index kept open between calls; `lock` makes the calls on it take turns."""

    root: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    index: Index | None = None
    identity: tuple[int, int] | None = None   # the database file it has open (a rebuilt index is a new file)
    encoder_args: object = _UNSET
    shared: bool = False                      # opened with an encoder from the cache
    shown: set[str] = field(default_factory=set)   # the index's notices already reported by a call

    def replace(self, index: Index | None) -> None:
        if self.index is not None:
            self.index.close()
        self.index, self.encoder_args, self.shared = index, _UNSET, False
        self.identity = _identity(self.root) if index is not None else None


class Workspace:
    """Open indexes and loaded encoders, kept between calls; the four tools' work."""

    def __init__(self) -> None:
        self.encoders = EncoderCache()
        self._kept: dict[Path, _Kept] = {}
        self._lock = threading.Lock()

    # -- the tools ---------------------------------------------------------------------------------
    def search(self, roots: Roots, query: str, path: str | None = None, k: int = 10, mode: str = "hybrid",
               types: Sequence[str] = (), exclude: Sequence[str] = (), code_only: bool = False,
               rerank: bool | str | None = None) -> dict:
        """Ranked blocks for `query` under `path`, with the filters applied before the top-k cut;
        `rerank` as `Index.search` takes it (this call only: the index's setting is left as it is)."""
        target = roots.resolve(path)

        def search(index: Index) -> list[Hit]:
            filters = Filters(types=tuple(types), exclude=tuple(exclude), paths=_scope(target, index.root),
                              code_only=code_only)
            return index.search(query, k=k, filters=filters, mode=mode, rerank=rerank)
        return self._hits(roots, target, search)

    def find_similar(self, roots: Roots, target: str, path: str | None = None, k: int = 10) -> dict:
        """Blocks like the definition `FILE#NAME` or the block at `FILE:LINE`, under `path` (default:
        the root that holds FILE)."""
        match = SIMILAR.match(target)
        if match is None:
            raise HhgError(f"{target!r} is neither FILE#NAME nor FILE:LINE")
        file = roots.resolve(match["file"])
        if not file.is_file():
            raise HhgError(f"{match['file']}: not a file")
        scope = roots.resolve(path) if path else roots.root_of(file)
        line = int(match["line"]) if match["line"] else None

        def similar(index: Index) -> list[Hit]:
            return index.similar(str(file), name=match["name"], line=line, k=k,
                                 filters=Filters(paths=_scope(scope, index.root)))
        return self._hits(roots, scope, similar)

    def index_status(self, roots: Roots, path: str | None = None) -> dict:
        """`hhg status --json` of the index at or above `path`."""
        target = roots.resolve(path)
        root = find_root(target)
        if root is None:
            raise IndexNotFound(f"no index at or above {roots.show(target)}; the build tool makes one")
        kept = self._keep(root)
        with kept.lock:
            if kept.index is None or kept.identity != _identity(root):
                kept.replace(Index.open(root))
            return _json_safe(kept.index.status())

    def build(self, roots: Roots, path: str | None = None, model: str | None = None) -> dict:
        """Build or update the index of the folder `path` (with `model`, or the index's own model): the
        keyword phase here, the embedding by the background worker. Its status and the build's notices."""
        folder = roots.resolve(path)
        if not folder.is_dir():
            raise HhgError(f"{path}: not a folder")
        index = Index.build(folder, model=model, wait=False)
        try:
            return {**_json_safe(index.status()), "notices": list(index.notices)}
        finally:
            index.close()

    # -- keeping indexes ---------------------------------------------------------------------------
    def _hits(self, roots: Roots, target: Path, run: Callable[[Index], list[Hit]]) -> dict:
        """The structured result of a search: hits in files that resolve inside the roots (a symlink in
        the tree may point anywhere; its hits are left out, with a notice), and the notices."""
        hits, root, notices = self._with_index(target, run)
        escaping = sorted({h.file for h in hits if roots.root_of((root / h.file).resolve()) is None})
        if escaping:
            hits = [h for h in hits if h.file not in escaping]
            notices.append(f"left out hits in files that resolve outside the roots: {', '.join(escaping)}")
        return {"hits": hits_json(hits, lambda rel: roots.show(root / rel)), "notices": notices}

    def _with_index(self, target: Path, run: Callable[[Index], T]) -> tuple[T, Path, list[str]]:
        """`run(index)` on the index at or above `target`, opened (or built, when there is none) and
        up to date, under its lock; the result, the index root and the notices this call brought."""
        folder = target if target.is_dir() else target.parent
        kept = self._keep(find_root(folder) or folder)
        with kept.lock:
            notices = self._prepare(kept)
            result = run(kept.index)
            news = [notice for notice in (*kept.index.notices, *kept.index.session_notices)
                    if notice not in kept.shown]
            kept.shown.update(news)
        return result, kept.root, notices + news

    def _prepare(self, kept: _Kept) -> list[str]:
        """Open, reopen or build `kept`'s index, give it the shared encoder of its model, and bring it
        up to date as every CLI search does first (new blocks go to the background embedding worker)."""
        notices = []
        built = False
        if not db_path(kept.root).is_file():
            try:
                kept.replace(Index.build(kept.root, wait=False))
                built = True
                notices.append(f"built a new index in {kept.root} (the first search there)")
            except IndexLocked:     # another process builds it first: search what it has committed
                pass
        if not built and (kept.index is None or kept.identity != _identity(kept.root)):
            kept.replace(Index.open(kept.root))
        self._share_encoder(kept)
        if not built:
            try:
                kept.index.update(wait=False)
            except IndexLocked:
                notices.append("another build is updating this index; results may be incomplete")
        return notices

    def _share_encoder(self, kept: _Kept) -> None:
        """Reopen `kept`'s index with the cached encoder of its model when the model is new to it."""
        args = kept.index.encoder_args()
        if args == kept.encoder_args:
            return
        encoder = self.encoders.get(args) if args else None
        if encoder is not None or kept.shared:
            reopened = Index.open(kept.root, encoder=encoder)
            kept.index.close()
            kept.index = reopened
        kept.encoder_args, kept.shared = args, encoder is not None

    def _keep(self, root: Path) -> _Kept:
        with self._lock:
            return self._kept.setdefault(root, _Kept(root))

    def close(self) -> None:
        for kept in self._kept.values():
            with kept.lock:
                kept.replace(None)


def _scope(target: Path, root: Path) -> tuple[str, ...]:
    """`Filters.paths` for a search under `target` in the index at `root` (which holds it)."""
    rel = target.relative_to(root).as_posix()
    return () if rel == "." else (rel,)


def _identity(root: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(db_path(root))
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _json_safe(status: dict) -> dict:
    """`Index.status()` as `hhg status --json` prints it."""
    return json.loads(json.dumps(status, default=str))
