"""Many indexes in one run (`hhg build PATH [PATH ...]`): the build of one index, for N indexes, with
one encoder per model.

1. The keyword phase, index by index (`Index.build(..., embed=False)`: walk, extract, write; no
   encoder). A failing index (missing, locked, unreadable, a refused model) is recorded; the others go on.
2. The plan, per vector key (model, task, precision): the windows each index still needs vectors for
   (`pending_windows`, in its own embedding order); every text hash once across the indexes (its owner
   is the first index that needs it); hashes already in the cache (the shared per-user one when it holds
   vectors of the model's size, else a temporary one for this run) are not embedded again.
3. Embedding: the unique uncached texts, index after index, cut into chunks of EMBED_BATCH texts that
   cross index boundaries; a pool (one local encoder, or Ray actors: `distributed.py`) embeds each chunk
   (in token-budget batches), then the vectors go into the cache and, in one transaction, into the
   indexes that own them (`write_batch`): an interrupted run keeps what it embedded.
4. An index whose chunks are all done finishes its own embedding phase (`embed_missing` through the
   cache: the vectors it shares with other indexes, and windows a concurrent build added meanwhile),
   holding its foreground embedding lock, and is closed. At most the indexes with texts in flight are open.
"""
from __future__ import annotations

import functools
import os
import sqlite3
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Protocol, Sequence, TypeVar

from ..config import shared_cache_enabled
from ..errors import HhgError, ModelUnavailable, one_line
from ..paths import cache_dir
from . import worker
from .embed import EMBED_BATCH, Rate, Window, embed_missing, window_texts, write_batch
from .index import Index, encoder_args
from .store import Store, database_error
from .vector_cache import CachedEmbed, VectorCache, open_shared

if TYPE_CHECKING:
    import numpy as np

    from ..encoder import Encoder, Progress

BatchProgress = Callable[[str, int, int, str], None]
"""Called as progress(stage, done, total, note): stages "scan" and "extract" (files of the index being
built; note "repo i/N"), then "embed" (texts; note "d/N repos")."""


class Pool(Protocol):
    """Runs chunks of texts through encoders: one in this process, or Ray actors (`distributed.py`)."""

    dim: int
    loads: int                 # encoders loaded

    def map(self, chunks: Iterable[tuple[int, list[str]]],
            progress: Progress | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(chunk id, vectors) for every chunk, in any order; `progress(texts_done, texts)` within a chunk."""
        ...

    def close(self) -> None: ...


T = TypeVar("T")
LOG_NAME = "batch-embed.log"     # the background batch process's stderr, in the user's cache folder
OpenPool = Callable[[dict], Pool]
"""Opens a pool for an index's `model_choice()` (model, task, backend, precision)."""


class LocalPool:
    """One encoder in this process (the model `choice`, or the `encoder` given); chunks run in order."""

    def __init__(self, choice: dict, encoder: Encoder | None = None) -> None:
        self.loads = 0 if encoder else 1
        if encoder is None:
            from ..loader import load_encoder
            encoder = load_encoder(**encoder_args(choice), download=False)
        self.encoder = encoder
        self.dim = encoder.dim

    def map(self, chunks: Iterable[tuple[int, list[str]]],
            progress: Progress | None = None) -> Iterator[tuple[int, np.ndarray]]:
        for chunk_id, texts in chunks:
            yield chunk_id, self.encoder.embed_documents(texts, progress=progress)

    def close(self) -> None:
        pass


@dataclass
class IndexResult:
    """One index of a batch, as `hhg build --json` reports it."""

    root: str
    ok: bool = True
    error: str | None = None
    files: int = 0
    blocks: int = 0
    vectors: int = 0
    notices: list[str] = field(default_factory=list)
    added: int = 0
    modified: int = 0
    deleted: int = 0
    model: str | None = None
    backend: str | None = None
    embedding: dict | None = None      # `EmbeddingStatus.to_json()` when the batch returned

    def to_json(self) -> dict:
        return {"root": self.root, "ok": self.ok, "error": self.error, "files": self.files,
                "blocks": self.blocks, "vectors": self.vectors}


@dataclass
class TextCounts:
    """Windows needing vectors: `total` over all indexes, `unique` distinct texts among them, `embedded`
    run through an encoder in this run, `cached` found in a cache."""

    total: int = 0
    unique: int = 0
    embedded: int = 0
    cached: int = 0


@dataclass
class BatchResult:
    indexes: list[IndexResult]
    texts: TextCounts
    seconds: float
    loads: int = 0                     # encoders loaded (one per model; one per actor on Ray)
    background_pid: int | None = None  # the detached process that embeds (a batch without `wait`)

    @property
    def failed(self) -> list[IndexResult]:
        return [r for r in self.indexes if not r.ok]

    def to_json(self) -> dict:
        """The `hhg build --json` summary."""
        t = self.texts
        return {"indexes": [r.to_json() for r in self.indexes],
                "texts": {"total": t.total, "unique": t.unique, "embedded": t.embedded, "cached": t.cached},
                "seconds": round(self.seconds, 3)}


def build_many(roots: Sequence[str | Path], model: str | None = None, *, force: bool = False,
               accept_license: bool = False, task: str | None = None, backend: str | None = None,
               precision: str | None = None, wait: bool = True, shared_cache: bool | None = None,
               encoder: Encoder | None = None, open_pool: OpenPool | None = None,
               progress: BatchProgress | None = None) -> BatchResult:
    """Build or update the index of every root (model options and `encoder` as `Index.build`), then embed
    what they need with one pool per vector key (`open_pool`, called only when something must be
    embedded; default: one encoder in this process, `encoder` when given).
    `shared_cache` None: as configured. `wait=False` leaves the embedding to the background: the index's
    own worker for one root, one detached batch process (`main`) for several. A root that fails is
    reported in its result; the others complete. Ctrl-C leaves every index consistent; the next run
    resumes."""
    started = time.perf_counter()
    report = progress or (lambda stage, done, total, note: None)
    results = [IndexResult(str(root)) for root in roots]
    background = not wait and worker.background_enabled()
    targets: list[Target] = []
    for i, (root, result) in enumerate(zip(roots, results)):
        note = f"repo {i + 1}/{len(roots)}" if len(roots) > 1 else ""
        options = dict(model=model, force=force, accept_license=accept_license, task=task, backend=backend,
                       precision=precision, encoder=encoder, wait=False, embed=background and len(roots) == 1,
                       shared_cache=shared_cache,
                       progress=lambda stage, done, total: report(stage, done, total, note))
        target = _failing_alone(result, lambda: _keyword_phase(Path(root), result, options))
        if target is not None:
            targets.append(target)
    texts, loads, pid = TextCounts(), 0, None
    if open_pool is None:
        open_pool = functools.partial(LocalPool, encoder=encoder)
    if not background:
        loads = embed_targets(targets, texts, len(results), shared_cache=shared_cache, open_pool=open_pool,
                              report=report)
    elif targets:
        pid = _start_background([t.result.root for t in targets], shared_cache)
    for result in results:
        if result.ok:
            _failing_alone(result, lambda: _count(result))
    return BatchResult(results, texts, time.perf_counter() - started, loads, pid)


def embed_roots(roots: Sequence[str | Path], *, shared_cache: bool | None = None,
                open_pool: OpenPool = LocalPool, progress: BatchProgress | None = None) -> BatchResult:
    """The embedding phase alone, for indexes that exist (the background half of a batch build)."""
    started = time.perf_counter()
    results = [IndexResult(str(root)) for root in roots]
    targets = [t for r in results if (t := _failing_alone(r, lambda: _target(r))) is not None]
    texts = TextCounts()
    loads = embed_targets(targets, texts, len(results), shared_cache=shared_cache, open_pool=open_pool,
                          report=progress or (lambda stage, done, total, note: None))
    for result in results:
        if result.ok:
            _failing_alone(result, lambda: _count(result))
    return BatchResult(results, texts, time.perf_counter() - started, loads)


@dataclass
class Target:
    """An index in the embedding phase: what it needs, and (while it is written) its open store."""

    result: IndexResult
    key: str
    choice: dict                       # its model (`Index.model_choice()`)
    pending: list[Window]
    waiting: int = 0                   # chunks not done yet that hold texts it needs
    finished: bool = False             # its embedding phase ended (every window has its vector)
    store: Store | None = None         # open while it is written
    hold: ExitStack | None = None      # closes the store and releases its embedding lock


def _keyword_phase(root: Path, result: IndexResult, options: dict) -> Target | None:
    """Build the keyword index of `root` (`options`: `Index.build` keywords); its embedding target."""
    with Index.build(root, **options) as idx:
        result.root = str(idx.root)
        stats = idx.last_stats
        result.notices += idx.notices
    result.added, result.modified, result.deleted = stats.added, stats.modified, stats.deleted
    return None if options["embed"] else _target(result)


def _target(result: IndexResult) -> Target | None:
    """The embedding target of the index at `result.root`; None when no window needs a vector."""
    with Index.open(result.root) as idx:
        result.root = str(idx.root)
        key, pending = idx.vector_key, idx.pending()
        return Target(result, key, idx.model_choice(), pending) if pending else None


def _failing_alone(result: IndexResult, action: Callable[[], T]) -> T | None:
    """`action()`, or None with `result` failed when it raises an HhgError or an OSError."""
    try:
        return action()
    except (HhgError, OSError) as err:
        result.ok, result.error = False, one_line(err)
        return None


def embed_targets(targets: list[Target], texts: TextCounts, repos: int, *, shared_cache: bool | None,
                  open_pool: OpenPool, report: BatchProgress) -> int:
    """The embedding phase of `targets`, one pool per vector key; `texts` counts what it did, `repos` is
    the batch's size (for the progress note). Returns the encoders loaded. A model that cannot be loaded
    leaves its indexes keyword-searchable, with a notice (as a single build does)."""
    loads = 0
    groups: dict[str, list[Target]] = {}
    for target in targets:
        groups.setdefault(target.key, []).append(target)
    progress = _Progress(report, repos, finished=repos - len(targets))
    for key, group in groups.items():
        shared = shared_cache_enabled(shared_cache)
        cache, problem = open_shared(key, _model_dim(group[0].choice)) if shared else (None, None)
        if problem:
            group[0].result.notices.append(problem)
        with cache or VectorCache.temporary(key) as store:
            run = _GroupRun(group, store, texts, open_pool, progress)
            with run:
                try:
                    run.run()
                except ModelUnavailable as err:
                    for target in group:
                        if target.result.ok and not target.finished:
                            target.result.notices.append(f"new blocks were not embedded: {err}")
            loads += run.loads
    return loads


class _Progress:
    """The batch's embedding progress: texts embedded of the texts to embed, and indexes finished."""

    def __init__(self, report: BatchProgress, repos: int, finished: int) -> None:
        self.report, self.repos, self.finished = report, repos, finished
        self.done = self.total = 0

    def __call__(self, within: int = 0) -> None:
        note = f"{self.finished}/{self.repos} repos" if self.repos > 1 else ""
        self.report("embed", self.done + within, self.total, note)


class _GroupRun:
    """The embedding phase of indexes that share a vector key (module docstring, steps 2-4). A context
    manager: leaving it closes the indexes still open (an exception marks their embedding stopped)."""

    def __init__(self, targets: list[Target], cache: VectorCache, texts: TextCounts, open_pool: OpenPool,
                 progress: _Progress) -> None:
        self.targets, self.cache, self.texts, self.open_pool = targets, cache, texts, open_pool
        self.progress = progress
        self.key = targets[0].key
        self.pool: Pool | None = None
        self.holders: dict[str, list[tuple[Target, Window]]] = {}
        self.live: dict[int, list[str]] = {}       # chunk -> hashes sent (texts found)

    def run(self) -> None:
        for target in self.targets:
            for window in target.pending:
                self.holders.setdefault(window.hash, []).append((target, window))
        self.texts.total += sum(len(t.pending) for t in self.targets)
        self.texts.unique += len(self.holders)
        known = self.cache.known(list(self.holders))
        self.texts.cached += len(known)
        stream = [h for h in self.holders if h not in known]        # in owner order: index after index
        chunks = [stream[i:i + EMBED_BATCH] for i in range(0, len(stream), EMBED_BATCH)]
        needed_by = [{id(t) for h in hashes for t, _ in self.holders[h]} for hashes in chunks]
        for target in self.targets:
            target.waiting = sum(id(target) in needing for needing in needed_by)
        self.progress.total += len(stream)
        self.progress()
        for target in self.targets:
            if not target.waiting:
                self._finish(target)
        if not chunks:
            return
        rate, started = Rate(), time.perf_counter()
        for chunk_id, vectors in self._pool().map(self._texts(chunks), progress=lambda n, _: self.progress(n)):
            hashes = self.live.pop(chunk_id)
            self.cache.put(hashes, vectors)
            self.texts.embedded += len(hashes)
            self.progress.done += len(hashes)
            meta = rate.add(time.perf_counter() - started, len(hashes), None)
            started = time.perf_counter()
            self._write_owned(hashes, vectors, meta)
            self.progress()
            for target in self.targets:
                if id(target) in needed_by[chunk_id]:
                    target.waiting -= 1
                    if not target.waiting:
                        self._finish(target)

    def _texts(self, chunks: list[list[str]]) -> Iterator[tuple[int, list[str]]]:
        """Each chunk's texts, read from the first index holding each text that can be opened (its
        owner, normally); texts whose block went away meanwhile are left out."""
        for chunk_id, hashes in enumerate(chunks):
            by_holder: dict[int, tuple[Target, list[str], list[Window]]] = {}
            for h in hashes:
                holder = next(((t, w) for t, w in self.holders[h] if self._open(t)), None)
                if holder is not None:
                    entry = by_holder.setdefault(id(holder[0]), (holder[0], [], []))
                    entry[1].append(h)
                    entry[2].append(holder[1])
            found: dict[str, str] = {}
            for target, held, windows in by_holder.values():
                found.update((h, text) for h, text in zip(held, window_texts(target.store, windows)) if text is not None)
            self.live[chunk_id] = [h for h in hashes if h in found]
            yield chunk_id, [found[h] for h in self.live[chunk_id]]

    def _write_owned(self, hashes: list[str], vectors: np.ndarray, meta: dict) -> None:
        """Write a chunk's vectors into the open indexes that own them, one transaction each."""
        rows_of: dict[int, list[int]] = {}
        for row, h in enumerate(hashes):
            rows_of.setdefault(id(self.holders[h][0][0]), []).append(row)
        for target in self.targets:
            rows = rows_of.get(id(target))
            if rows and target.store is not None:
                self._guard(target, lambda: write_batch(target.store, self.key, [hashes[r] for r in rows],
                                                        vectors[rows], embed_attempts=0, **meta))

    def _finish(self, target: Target) -> None:
        """The index's own embedding phase, through the cache (texts it shares with indexes before it,
        windows a concurrent build added), then close it."""
        if self._open(target):
            embed = CachedEmbed(self.cache, self._pool_embed)
            dim = self.cache.dim or _stored_dim(target.store) or self._pool().dim
            self._guard(target, lambda: embed_missing(target.store, self.key, embed, dim))
            self.texts.embedded += embed.embedded
            target.finished = target.result.ok
        self._close(target)
        self.progress.finished += 1
        self.progress()

    def _open(self, target: Target) -> bool:
        """Open the index for writing, holding its foreground embedding lock; False if it failed."""
        if target.store is None and target.result.ok:
            def open_it() -> None:
                root = Path(target.result.root)
                target.hold = ExitStack()
                target.store = Store.open(root)
                target.hold.callback(target.store.close)
                target.hold.enter_context(worker.foreground(target.store, root))
            self._guard(target, open_it)
        return target.store is not None and target.result.ok

    def _guard(self, target: Target, action: Callable[[], object]) -> None:
        """Run `action` on `target`; an HhgError, OSError or SQLite error fails that index alone (and
        closes it). A model that cannot be loaded fails no index: ModelUnavailable goes to
        `embed_targets`, which leaves the group's unfinished indexes keyword-searchable with a notice."""
        try:
            action()
        except ModelUnavailable:
            raise
        except (HhgError, OSError, sqlite3.DatabaseError) as err:
            if isinstance(err, sqlite3.DatabaseError):
                err = database_error(Path(target.result.root), err)
            target.result.ok, target.result.error = False, one_line(err)
            self._close(target, err)

    def _close(self, target: Target, err: BaseException | None = None) -> None:
        hold, target.hold, target.store = target.hold, None, None
        if hold is not None:
            hold.__exit__(type(err) if err else None, err, err.__traceback__ if err else None)

    def _pool(self) -> Pool:
        if self.pool is None:
            self.pool = self.open_pool(self.targets[0].choice)
        return self.pool

    def _pool_embed(self) -> Callable[..., np.ndarray]:
        """An embed function on the pool, for the texts a finishing index misses in the cache. Its texts
        join the batch's embedding progress (`progress`, the index's own count, is not reported: the
        batch reports texts embedded of texts to embed, over every index)."""
        def embed(texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
            self.progress.total += len(texts)
            self.progress()
            ((_, vectors),) = self._pool().map([(0, list(texts))], progress=lambda n, _: self.progress(n))
            self.progress.done += len(texts)
            self.progress()
            return vectors
        return embed

    def __enter__(self) -> "_GroupRun":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for target in self.targets:
            self._close(target, exc)
        if self.pool is not None:
            self.pool.close()

    @property
    def loads(self) -> int:
        """Encoders loaded for this group (none when everything was cached)."""
        return self.pool.loads if self.pool is not None else 0


def _model_dim(choice: dict) -> int | None:
    """The size of the vectors the model `choice` makes, from its folder (no weights loaded): the shared
    cache is used only when it holds vectors of that size (as `Index.embed` opens it). None when the model
    cannot be found here (a pool that must embed then says why)."""
    from ..loader import encoder_dim

    args = encoder_args(choice)
    del args["task"]                   # (prompts, not the vectors' size)
    try:
        return encoder_dim(**args, download=False)
    except HhgError:
        return None


def _stored_dim(store: Store) -> int | None:
    dim = store.meta().get("dim")
    return int(dim) if dim else None


def _count(result: IndexResult) -> None:
    """Fill in what a built index holds."""
    with Index.open(result.root) as idx:
        counts = idx.counts()
        result.embedding = idx.embedding_status().to_json()
    result.files, result.blocks, result.vectors = counts["files"], counts["blocks"], counts["vectors"]
    result.model, result.backend = counts["model"], counts["backend"]


def _start_background(roots: list[str], shared_cache: bool | None) -> int:
    """Start the detached process that embeds these indexes (`main`); returns its pid."""
    flag = {True: ["--shared-cache"], False: ["--no-shared-cache"], None: []}[shared_cache]
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return worker.spawn([__name__, *flag, "--", *roots], folder / LOG_NAME, Path(roots[0])).pid


def main(argv: list[str] | None = None) -> int:
    """The background half of a batch build: `python -m hhg_mlx.index.batch [--[no-]shared-cache] -- ROOT...`
    embeds the indexes at ROOT... with one encoder (started by `build_many(wait=False)`)."""
    import signal
    import sys

    args = sys.argv[1:] if argv is None else argv
    split = args.index("--")
    flags, roots = args[:split], args[split + 1:]
    shared = True if "--shared-cache" in flags else False if "--no-shared-cache" in flags else None
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        os.nice(worker.NICE)
    except OSError:
        pass
    try:
        result = embed_roots(roots, shared_cache=shared)
    except KeyboardInterrupt:
        return 130
    for failed in result.failed:
        print(f"{failed.root}: {failed.error}", file=sys.stderr)
    return 2 if result.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
