"""`Index`: the public handle on one codebase's index (`<root>/.hhg/index.sqlite`).

Searching never updates the index implicitly: front ends call `idx.update()` first (a stat-only
walk when nothing changed), so a search sees the tree as it is now, and a library user decides.

A build has two phases: the keyword phase (files, blocks, FTS) commits first; the embedding phase
then fills the vectors, in this process (`wait=True`, the library's default) or in the background
worker (`wait=False`, the CLI's default; `worker.py`). Searches use whatever vectors are there.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .. import rerank as reranking
from ..errors import HhgError, IndexNotFound, ModelUnavailable
from ..search import VectorMatrix, rank
from ..tokens import STOP_WORDS, query_terms, terms
from ..types import Filters, Hit
from . import worker
from .build import BuildProgress, BuildStats, run, scan, skip_counts
from .embed import Window, embed_missing, pending_windows
from .store import (DB_NAME, INDEX_DIR, SCHEMA_VERSION, BuildLock, Store, database_error, db_path,
                    remove_database)
from .worker import EmbeddingStatus

if TYPE_CHECKING:
    from ..cross_encoder import Reranker
    from ..encoder import Encoder

__all__ = ["Index", "BuildProgress", "BuildStats", "find_root", "find_indexes", "clean"]

MODES = ("hybrid", "keyword", "semantic")
LOCK_WAIT_S = 2.0              # how long a build waits for another build's lock before IndexLocked
SIMILAR_TERMS = 32             # identifiers of a block used as the keyword query of `similar`
_PRUNE_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", INDEX_DIR})


def _sqlite_errors(method):
    """Turn SQLite failures inside an Index method into one-line HhgErrors."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as err:
            raise database_error(self.root, err) from None
    return wrapper


class Index:
    """An open index. Searches read the last committed state; `build`/`update` take the build lock."""

    def __init__(self, root: Path, store: Store, encoder: Encoder | None = None,
                 reranker: Reranker | None = None) -> None:
        self.root = root
        self.notices: list[str] = []           # shown once per index (the CLI remembers them)
        self.session_notices: list[str] = []   # shown once per session: how much semantic search covers
        self.last_stats: BuildStats | None = None
        self._store = store
        self._encoder = encoder
        self._injected = encoder is not None
        self._encoder_error: str | None = None
        self._reranker = reranker                   # given by the caller: used whenever a search reranks
        self._rerankers: dict[str, Reranker] = {}   # loaded on first use, by model name
        self._reranker_errors: dict[str, str] = {}  # why the index's own reranker could not be loaded
        self._vectors: VectorMatrix | None = None
        self._vectors_key: tuple | None = None
        self._writes = 0           # own commits (SQLite's data_version only counts other connections')

    # -- opening and building ------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path, *, encoder: Encoder | None = None, reranker: Reranker | None = None) -> "Index":
        """The index of `root`. `encoder` replaces the index's own model for queries; `reranker` is the
        cross-encoder every reranking search uses (else the index's reranker, loaded when first needed)."""
        root = _directory(root)
        return cls(root, Store.open(root), encoder, reranker)

    @classmethod
    def build(cls, root: str | Path, model: str | None = None, *, force: bool = False,
              progress: BuildProgress | None = None, encoder: Encoder | None = None,
              accept_license: bool = False, task: str | None = None, backend: str | None = None,
              precision: str | None = None, wait: bool = True, embed: bool = True,
              shared_cache: bool | None = None) -> "Index":
        """Create the index or bring it up to date. `model=None` keeps the index's model, else uses the
        default model when it is installed locally, else builds keyword-only. `force` starts afresh.
        `task` picks the prompt pair of models that have several; it is kept with the model.
        `backend` ("auto", "mlx", "onnx", "onnx-cuda") and `precision` ("auto", "fp32", "fp16", "bf16",
        "int8", "8bit", "4bit") are resolved once and kept too, so queries are embedded like documents;
        both None: keep the index's choice for its model, else auto. A refused choice (unknown model,
        licence, backend and precision) leaves no index behind and an existing one untouched.
        `wait=False` returns after the keyword phase and leaves the embedding to the background worker,
        which loads the index's model by name (with `HHG_BACKGROUND=0` it embeds here, as `wait=True`).
        A running worker is stopped first by `force` and by another model; a failed or held one may
        start again (this is an explicit build). `embed=False` runs the keyword phase only, loads no
        encoder and starts no worker: the caller embeds (`batch.build_many` does, for many indexes).
        `shared_cache` (None: as configured) says whether its embedding, here or in the worker, uses the
        per-user embedding cache."""
        root = _directory(root)
        wait = wait or not worker.background_enabled()
        options = (model, accept_license, task, backend, precision, encoder, wait and embed)
        # No index to keep a choice: choose (or fail) before creating or replacing anything on disk
        choice = _choose_model({}, *options) if force or not db_path(root).exists() else None
        with BuildLock(root, LOCK_WAIT_S):
            if force:
                worker.stop(root)
                remove_database(root)
            store = Store.open(root, create=True)
            idx = cls(root, store, encoder)
            with store.closed_on_error(root):
                meta = store.meta()
                if choice is None or meta.get("model"):       # (or another build made one meanwhile)
                    choice = _choose_model(meta, *options)
                values, loaded = choice
                if loaded is not None:
                    idx._encoder = loaded
                if values:
                    if _vector_key(values) != _vector_key(meta):
                        worker.stop(root)                    # it embeds for the model being replaced
                    with store.transaction():
                        store.set_meta(**values)
                worker.reset(store)
                idx.last_stats = idx._run(progress, wait, embed, shared_cache)
                with store.transaction():
                    store.set_meta(built_at=time.time())
        return idx

    @_sqlite_errors
    def update(self, progress: BuildProgress | None = None, *, wait: bool = True) -> BuildStats:
        """Bring the index up to date with the tree: stat every file, hash only files whose size or
        mtime changed, re-extract only those whose content changed, embed only new windows (`wait=False`:
        in the background worker, unless it failed or `hhg stop` held it)."""
        with BuildLock(self.root, LOCK_WAIT_S):
            self.last_stats = self._run(progress, wait or not worker.background_enabled())
        return self.last_stats

    def _run(self, progress: BuildProgress | None, wait: bool, embed: bool = True,
             shared_cache: bool | None = None) -> BuildStats:
        """The keyword phase, then (`embed`) the embedding phase here (`wait`) or in the background worker,
        with the shared embedding cache as `shared_cache` says (None: as configured)."""
        store = self._store
        try:
            key = _vector_key(store.meta())
            stats = run(store, self.root, model=key, progress=progress)
            meta = store.meta()
            missing = embed and key is not None and meta.get("embedded") != key
            if missing and wait:
                try:
                    with worker.foreground(store, self.root):
                        stats.embedded = self.embed(progress, shared_cache=shared_cache)   # (rewrites the snapshot)
                    return stats
                except ModelUnavailable as err:
                    self._notice(f"new blocks were not embedded: {err}")
            if key and meta.get("dim") and (stats.added or stats.modified or stats.deleted
                                            or meta.get("snapshot_model") != key):
                store.save_snapshot(key, int(meta["dim"]))      # new blocks' cached vectors, deleted blocks
            if missing and not wait:
                worker.start(store, self.root, shared_cache)
            return stats
        finally:
            self._writes += 1

    @_sqlite_errors
    def embed(self, progress: BuildProgress | None = None, *, shared_cache: bool | None = None) -> int:
        """Embed, in this process, every window without a vector for the index's model: one committed
        batch at a time, in `embed.pending_windows` order, new windows from concurrent builds included.
        Texts in the per-user shared cache (`shared_cache`; None: as configured) are taken from it, the
        others embedded and added to it. Returns how many windows the encoder embedded; ModelUnavailable
        when the model cannot be loaded. Builds call it (or the background worker does); it takes no lock
        of its own."""
        from ..config import shared_cache_enabled
        from .vector_cache import CachedEmbed, open_shared

        key = self.vector_key
        if not key:
            return 0
        encoder = self._query_encoder()
        if encoder is None:
            raise ModelUnavailable(self._encoder_error)
        cache = None
        if shared_cache_enabled(shared_cache):
            cache, problem = open_shared(key, encoder.dim)
            if problem:
                self._notice(problem)
        embed = CachedEmbed(cache, lambda: encoder.embed_documents) if cache else None
        try:
            count = embed_missing(self._store, key, embed or encoder.embed_documents, encoder.dim, progress,
                                  tokenize=getattr(encoder, "tokenize", None))
            return embed.embedded if embed else count
        finally:
            self._writes += 1
            if cache:
                cache.close()

    @_sqlite_errors
    def pending(self) -> list[Window]:
        """The windows still without a vector for the index's model, one per text, in embedding order."""
        key = self.vector_key
        return pending_windows(self._store, key) if key and self._store.meta().get("embedded") != key else []

    @_sqlite_errors
    def stop_worker(self) -> int | None:
        """Stop the background worker and keep it stopped: searches do not start another until the next
        `build`. Returns the stopped worker's pid, None when none ran."""
        worker.record(self._store, embed_held=1)
        pid = worker.stop(self.root)
        if pid is not None:
            worker.record(self._store, embed_state="stopped")
        return pid

    # -- searching -------------------------------------------------------------------------------
    @_sqlite_errors
    def search(self, query: str, k: int = 10, filters: Filters | None = None, mode: str = "hybrid", *,
               rerank: bool | str | None = None, rerank_depth: int = reranking.DEPTH) -> list[Hit]:
        """Ranked blocks for `query`. `hybrid` falls back to keyword (with one notice) when the index has
        no vectors or the model cannot be loaded; `semantic` raises ModelUnavailable instead.
        `rerank`: None follows the index's setting (`set_rerank`; a notice and no reranking when its
        model cannot be loaded), False never reranks, True reranks with the index's reranker or the
        default one, a string names the reranker (registry id, Hugging Face repo id or folder). A
        reranking search has the cross-encoder reorder the best max(k, `rerank_depth`) candidates after
        the filters (`hhg_mlx.rerank`); `filters.threshold` then applies to the reranked scores."""
        if mode not in MODES:
            raise HhgError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        reranker = self._reranker_for(rerank)
        vectors = query_vector = None
        if mode != "keyword":
            vectors = self._semantic_ready(required=mode == "semantic")
            if vectors is not None:
                query_vector = self._encoder.embed_queries([query])[0]
            elif mode == "semantic":
                return []                   # nothing is embedded yet (the session notice says so)
        words = query_terms(query) if mode != "semantic" else []
        if reranker is None:
            return rank(self._store, query, words, k, filters, vectors=vectors, query_vector=query_vector)
        threshold = filters.threshold if filters is not None else None
        candidates = rank(self._store, query, words, max(k, rerank_depth),
                          dataclasses.replace(filters, threshold=None) if filters is not None else None,
                          vectors=vectors, query_vector=query_vector)
        return reranking.rerank(reranker, query, candidates, k, threshold)

    # -- reranking -------------------------------------------------------------------------------
    def reranker_name(self, rerank: bool | str | None = None) -> str | None:
        """The reranker a search with `rerank` (see `search`) uses: a model name, or None for none."""
        stored = self._store.meta().get("rerank") or None
        if rerank is False:
            return None
        if rerank is None:
            return stored
        if rerank is True:
            from ..models.registry import DEFAULT_RERANKER
            return stored or DEFAULT_RERANKER
        return str(Path(rerank).resolve()) if Path(rerank).is_dir() else rerank

    @_sqlite_errors
    def set_rerank(self, model: str | None) -> None:
        """Keep `model` (a name as `reranker_name` gives it) as the index's reranker; None: no reranking.
        Searches with `rerank=None` follow it."""
        with self._store.transaction():          # one meta row: no build lock needed
            self._store.set_meta(rerank=model or "")

    def _reranker_for(self, rerank: bool | str | None) -> Reranker | None:
        """The cross-encoder for a search: the one given to `open`, else the named one, loaded once.
        A reranker asked for by the caller must load (errors raise); the index's own setting falls
        back to no reranking with a notice."""
        name = self.reranker_name(rerank)
        if name is None:
            return None
        if self._reranker is not None:
            return self._reranker
        if name not in self._rerankers and (rerank is not None or name not in self._reranker_errors):
            try:
                self._rerankers[name] = _loader().load_reranker(name, download=rerank is not None)
            except HhgError as err:
                if rerank is not None:
                    raise
                self._reranker_errors[name] = str(err)
        if name in self._rerankers:
            return self._rerankers[name]
        self._notice(f"reranking unavailable ({self._reranker_errors[name]}); showing results without it")
        return None

    @_sqlite_errors
    def similar(self, file: str, *, name: str | None = None, line: int | None = None, k: int = 10,
                filters: Filters | None = None) -> list[Hit]:
        """Blocks like the block of `file` named `name` (or containing `line`): by its stored vector
        when the index has vectors, else by a keyword query made of its identifiers."""
        block_id, block_name, text = self._find_block(file, name, line)
        vectors = self._vectors_matrix()
        vector = vectors.block_vector(block_id) if vectors is not None else None
        if vector is not None:
            return rank(self._store, "", [], k, filters, vectors=vectors, query_vector=vector, exclude=block_id)
        counts: dict[str, int] = {}
        for term in terms(f"{block_name} {text}"):
            if term not in STOP_WORDS and not term.isdigit():
                counts[term] = counts.get(term, 0) + 1
        words = sorted(counts, key=lambda t: -counts[t])[:SIMILAR_TERMS]
        return rank(self._store, "", words, k, filters, exclude=block_id)

    def _find_block(self, file: str, name: str | None, line: int | None) -> tuple[int, str, str]:
        path = self._relative(file)
        rows = self._store.conn.execute(
            "SELECT b.id, b.name, b.text, b.start_line, b.end_line FROM blocks b JOIN files f ON f.id = b.file_id "
            "WHERE f.path = ? ORDER BY b.start_line", (path,)).fetchall()
        if not rows:
            raise HhgError(f"{path} is not in the index of {self.root}")
        if name is not None:
            matches = ([r for r in rows if r[1] == name]
                       or [r for r in rows if r[1].rsplit(".", 1)[-1] == name.rsplit(".", 1)[-1]])
            if not matches:
                raise HhgError(f"{path} has no function, class or section named {name!r}")
        elif line is not None:
            matches = sorted((r for r in rows if r[3] <= line <= r[4]), key=lambda r: r[4] - r[3])
            if not matches:
                raise HhgError(f"{path} has no line {line}")
        else:
            raise HhgError("similar() needs a name or a line")
        return matches[0][0], matches[0][1], matches[0][2]

    def _relative(self, file: str) -> str:
        path = Path(file)
        if path.is_absolute():
            try:
                path = path.resolve().relative_to(self.root)
            except ValueError:
                raise HhgError(f"{file} is outside the index root {self.root}") from None
        return path.as_posix().removeprefix("./")

    # -- vectors and the encoder -----------------------------------------------------------------
    def _semantic_ready(self, *, required: bool) -> VectorMatrix | None:
        """The vector matrix when semantic search can run now, else None (hybrid) or ModelUnavailable.
        While blocks wait for vectors: a session notice says how many have them (None when none has:
        the query is not embedded for nothing)."""
        meta = self._store.meta()
        key = _vector_key(meta)
        vectors, reason = None, "this index has no embeddings; run `hhg build --model MODEL` to add them"
        if key and meta.get("embedded") != key:
            vectors = self._vectors_matrix() if meta.get("dim") else None
            self._coverage_notice(meta, len(vectors) if vectors is not None else 0)
            if vectors is None or not len(vectors):
                return None
        if meta.get("model") and meta.get("dim"):
            if self._query_encoder() is None:
                reason = self._encoder_error
            elif len(vectors := self._vectors_matrix()):
                reason = None
        if reason is None:
            return vectors
        if required:
            raise ModelUnavailable(f"semantic search unavailable: {reason}")
        self._notice(f"semantic search unavailable ({reason}); showing keyword results")
        return None

    def _coverage_notice(self, meta: dict[str, str], covered: int) -> None:
        """How much of the index semantic search covers while the embedding phase is unfinished (once
        per session); after a failure, the reason instead (once per index)."""
        if meta.get("embed_state") == "failed":
            self._notice(f"embedding failed: {meta.get('embed_error') or 'unknown reason'}; semantic search covers "
                         "the blocks embedded before (`hhg status`); `hhg build` tries again")
            return
        total = self._store.count("blocks")
        if worker.running_pid(meta) is not None:
            tail = "embedding continues in the background"
        else:
            tail = "embedding is stopped; `hhg build` resumes it"
        message = (f"semantic search covers {covered:,} of {total:,} blocks "
                   f"({100 * covered // max(total, 1)}%); {tail}")
        if message not in self.session_notices:
            self.session_notices.append(message)

    def _vectors_matrix(self) -> VectorMatrix | None:
        """The window matrix of the index's model: the memory-mapped snapshot segments when they are
        current, else read from SQLite. Reloaded whenever the index changed (an embedding batch too)."""
        meta = self._store.meta()
        model, dim = _vector_key(meta), meta.get("dim")
        if not model or not dim:
            return None
        current = meta.get("snapshot") if meta.get("snapshot_model") == model else None
        key = (model, current) if current else (model, self._store.data_version(), self._writes)
        if key != self._vectors_key:
            segments = (self._store.load_snapshot(current) if current else None) \
                or [self._store.window_vectors(model, int(dim))]
            self._vectors, self._vectors_key = VectorMatrix.of_segments(segments), key
        return self._vectors

    @property
    def vector_key(self) -> str | None:
        """What the index's vectors are keyed by in the embedding cache (model, task, precision); None
        for a keyword-only index."""
        return _vector_key(self._store.meta())

    def encoder_args(self) -> dict | None:
        """`load_encoder` keywords for the index's own model: model, task, and the backend and precision
        its vectors were made with; None for a keyword-only index. Front ends that load the model off
        their lock call `load_encoder(**args, download=False)`, then reopen with `encoder=`."""
        choice = self.model_choice()
        return encoder_args(choice) if choice else None

    def model_choice(self) -> dict | None:
        """The index's model as its builds recorded it: model, task, backend and precision (those two
        None when not recorded); None for a keyword-only index."""
        meta = self._store.meta()
        if not meta.get("model"):
            return None
        stored = _stored_choice(meta) or {}
        return {"model": meta["model"], "task": meta.get("task") or None, "backend": stored.get("backend"),
                "precision": stored.get("precision")}

    def _query_encoder(self) -> Encoder | None:
        meta = self._store.meta()
        model = meta.get("model")
        if self._encoder is None and self._encoder_error is None and model:
            try:
                self._encoder = _load_encoder(self.encoder_args(), download=False)
            except HhgError as err:
                self._encoder_error = str(err)
        if self._injected and model and self._encoder.model_id != model:
            self._encoder_error = f"the encoder is {self._encoder.model_id}, the index was built with {model}"
            return None
        if self._encoder is not None and meta.get("dim") and int(meta["dim"]) != self._encoder.dim:
            self._encoder_error = (f"the encoder gives {self._encoder.dim}-dim vectors, the index holds "
                                   f"{meta['dim']}-dim ones; run `hhg build --force`")
            return None
        if self._encoder is None and self._encoder_error is None:
            self._encoder_error = "this index has no model"
        return self._encoder

    def _notice(self, message: str) -> None:
        if message not in self.notices:
            self.notices.append(message)

    # -- status ----------------------------------------------------------------------------------
    @_sqlite_errors
    def counts(self) -> dict:
        """What the index holds, without looking at the tree: files, blocks, vectors (windows with a
        vector for the index's model), model, dim, backend."""
        store = self._store
        meta = store.meta()
        ok = store.conn.execute("SELECT COUNT(*) FROM files WHERE status = 'ok'").fetchone()[0]
        backend = _backend_label(meta) or getattr(self._encoder, "backend", None)     # e.g. onnx (int8)
        return {"files": ok, "blocks": store.count("blocks"), "vectors": store.count_vectors(_vector_key(meta)),
                "model": meta.get("model"), "dim": int(meta["dim"]) if meta.get("dim") else None,
                "backend": backend if meta.get("model") else None}

    @_sqlite_errors
    def status(self) -> dict:
        store = self._store
        meta = store.meta()
        plan = scan(self.root, store.files())
        size = sum(p.stat().st_size for p in db_path(self.root).parent.iterdir() if p.is_file())
        return {
            "root": str(self.root), **self.counts(), "rerank": meta.get("rerank") or None,
            "schema": SCHEMA_VERSION, "size_bytes": size,
            "built_at": _float(meta.get("built_at")), "updated_at": _float(meta.get("updated_at")),
            "stale": len(plan.changed) + len(plan.deleted), "skipped": skip_counts(store, plan),
            "embedding": self.embedding_status().to_json(),
        }

    @_sqlite_errors
    def embedding_status(self) -> EmbeddingStatus:
        """The embedding phase: state (none, running, done, stopped, failed), worker pid, blocks
        done/total, current rate and ETA, failure reason."""
        return worker.embedding_status(self._store, self.vector_key)

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def find_root(path: Path) -> Path | None:
    """The nearest folder at or above `path` that holds an index."""
    start = path.resolve()
    for folder in (start, *start.parents):
        if db_path(folder).is_file():
            return folder
    return None


def find_indexes(path: str | Path) -> list[Path]:
    """Every `.hhg` index directory at or below `path` (sorted); `.git` and `node_modules` are not searched."""
    found = []
    for dirpath, dirnames, _ in os.walk(path):
        if (Path(dirpath) / INDEX_DIR / DB_NAME).is_file():
            found.append(Path(dirpath) / INDEX_DIR)
        dirnames[:] = sorted(d for d in dirnames if d not in _PRUNE_DIRS)
    return sorted(found)


def clean(path: str | Path, recursive: bool = False) -> list[Path]:
    """Remove the `.hhg` directory of `path` (with `recursive`, every one below it), stopping its
    background worker first; returns what went."""
    import shutil

    targets = find_indexes(path) if recursive else [Path(path) / INDEX_DIR]
    removed = []
    for target in targets:
        if target.is_dir():
            worker.stop(target.parent)
            shutil.rmtree(target)
            removed.append(target)
    return removed


def _directory(root: str | Path) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise IndexNotFound(f"{root}: not a folder" if path.exists() else f"{root}: no such directory")
    return path.resolve()


def _float(value: str | None) -> float | None:
    return float(value) if value else None


def encoder_args(choice: dict) -> dict:
    """`load_encoder` keywords for a `model_choice()`: its backend and precision when recorded, else auto."""
    recorded = {"backend": choice["backend"], "precision": choice["precision"]} if choice["precision"] else None
    return _encoder_args(choice["model"], choice["task"], recorded)


def _encoder_args(model: str, task: str | None, choice: dict[str, str] | None) -> dict:
    """`load_encoder` keywords: the model and task on the backend and precision `choice` (None: auto)."""
    from ..loader import EncoderChoice
    return {"model": model, "task": task, **(EncoderChoice(**choice).load_args() if choice else {})}


def _loader():
    """`hhg_mlx.loader`, imported on first use; ModelUnavailable when it cannot be imported."""
    try:
        from .. import loader
    except ImportError as err:
        raise ModelUnavailable(f"no encoder backend is available ({err})") from None
    return loader


def _load_encoder(args: dict, *, download: bool) -> Encoder:
    return _loader().load_encoder(**args, download=download)


def _choose_encoder(model: str, backend: str | None, precision: str | None, *, download: bool) -> dict[str, str]:
    choice = _loader().choose_encoder(model, backend or "auto", precision or "auto", download=download)
    return {"backend": choice.backend, "precision": choice.precision}


def _stored_choice(meta: dict[str, str]) -> dict[str, str] | None:
    """The backend and precision the index's vectors were made with, if the build recorded both."""
    backend, precision = meta.get("backend"), meta.get("precision")
    return {"backend": backend, "precision": precision} if backend and precision else None


def _backend_label(meta: dict[str, str]) -> str | None:
    """"onnx (int8)": what the index's model runs on, as the build chose it."""
    backend, precision = meta.get("backend"), meta.get("precision")
    return f"{backend} ({precision})" if backend and precision else backend or None


# A precision whose vectors changed meaning is keyed by its current scheme, so vectors of an older
# scheme (stored under the plain name) are never mixed with new ones: the next build re-embeds.
# int8: 8-bit blockwise weights and per-row activations (`convert.onnx_int8.SCHEME`), not the
# per-batch dynamic int8 that earlier builds stored as "int8".
PRECISION_KEYS = {"int8": "int8/q8-block128"}


def precision_key(precision: str | None) -> str | None:
    """What vectors of `precision` are keyed by: its current scheme where it has one ("int8/q8-block128")."""
    return PRECISION_KEYS.get(precision, precision)


def _vector_key(meta: dict[str, str]) -> str | None:
    """What the index's vectors are keyed by: the model, the task when one was chosen (another task
    means other prompts, so other vectors) and the precision (int8 vectors are not fp32 vectors)."""
    model, task, precision = meta.get("model"), meta.get("task"), precision_key(meta.get("precision"))
    if not model:
        return None
    return model + (f"#task={task}" if task else "") + (f"#precision={precision}" if precision else "")


def _installed_default_model() -> str | None:
    try:
        from ..models.hub import is_installed
        from ..models.registry import DEFAULT_MODEL
    except ImportError:
        return None
    return DEFAULT_MODEL if is_installed(DEFAULT_MODEL) else None


def _local_model(model: str) -> bool:
    """`model` names a model on this disk (a folder or a GGUF file): the index records it absolute, so
    searches from other working directories find it."""
    from ..models.hub import is_gguf_file

    return Path(model).is_dir() or (is_gguf_file(model) and Path(model).is_file())


def _choose_model(meta: dict[str, str], model: str | None, accept_license: bool, task: str | None,
                  backend: str | None, precision: str | None, encoder: Encoder | None,
                  load: bool) -> tuple[dict[str, str], Encoder | None]:
    """What a build on an index with `meta` embeds with: the meta values to record (model, task,
    backend, precision; none for keyword-only) and, with `load`, the encoder loaded for an explicit
    `model` (else it is only found, downloaded if need be). Writes nothing, so a refused choice
    (unknown model, licence, backend and precision) changes nothing."""
    asked = backend is not None or precision is not None
    loaded = None
    if encoder is not None:
        chosen = encoder.model_id
        choice = {"backend": getattr(encoder, "backend", ""), "precision": getattr(encoder, "precision", "")}
    else:
        if model is not None:
            chosen = str(Path(model).resolve()) if _local_model(model) else model
            _check_license(chosen, accept_license)
        else:
            chosen = meta.get("model") or _installed_default_model()
            task = task or (meta.get("task") if chosen == meta.get("model") else None)
        choice = _stored_choice(meta) if chosen == meta.get("model") and not asked else None
        if chosen and choice is None:
            try:
                choice = _choose_encoder(chosen, backend, precision, download=model is not None)
            except ModelUnavailable:
                if model is not None:
                    raise
                choice = {"backend": "", "precision": ""}   # not on disk: the build notes it
        if model is not None and load:
            loaded = _load_encoder(_encoder_args(chosen, task, choice), download=True)
    if not chosen:
        if asked:
            raise ModelUnavailable("a backend or precision needs a model: choose one with --model")
        return {}, None
    return {"model": chosen, "task": task or "", **(choice or {})}, loaded


def _check_license(model: str, accept: bool) -> None:
    """The licence gate for a model name or folder that is an opt-in registry model."""
    from ..license import ensure_accepted
    from ..models.folder import registry_info

    info = registry_info(model)
    if info is not None:
        ensure_accepted(info, accept)
