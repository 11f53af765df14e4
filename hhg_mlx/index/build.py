"""The keyword phase of a build: walk → stat compare → hash changed files → extract changed files →
write in batched transactions. The embedding phase (`embed.py`) then fills the new windows'
vectors, in the same process or in the background worker (`worker.py`).

Every batch of files is one transaction holding both the file rows (with their new stat and
hash) and their blocks, so an interrupted build leaves the last committed batch intact and the
next build skips exactly the files already written.

Extraction is serial. A process pool was measured on the Django sdist (4.2k files, 47k blocks, 2 busy
cores): 17.1 s serial vs 19.5 s with 2 fork workers; pickling the prepared blocks (70 MB) costs about
1 s of CPU, and the safe start methods (spawn/forkserver) re-import the caller's main module, which
breaks library scripts without a `__main__` guard. Serial is ~10 s of CPU for Django.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from .store import FileRow, PreparedBlock, Store, digest

if TYPE_CHECKING:
    from .walk import FileEntry

BuildProgress = Callable[[str, int, int], None]
"""Called as progress(stage, done, total); stages "scan", "extract", "embed"."""

BATCH_FILES = 200          # files per write transaction (what Ctrl-C can lose at most)


@dataclass
class BuildStats:
    added: int = 0
    modified: int = 0
    deleted: int = 0
    unchanged: int = 0
    blocks: int = 0                                   # blocks written by this build
    embedded: int = 0                                 # windows sent to the encoder (foreground embedding)
    cached: int = 0                                   # new windows whose vector was in the cache already
    skipped: dict[str, int] = field(default_factory=dict)   # reason -> files not indexed (whole tree)
    seconds: float = 0.0


@dataclass
class Plan:
    """What differs between the tree and the index, from stat alone."""

    changed: list[tuple["FileEntry", FileRow | None]]   # new (row None) or size/mtime differs
    deleted: list[FileRow]
    unchanged: int
    walk_skipped: dict[str, int]


@dataclass(slots=True)
class Outcome:
    """What `prepare` found for one changed file."""

    path: str
    hash: str | None
    status: str                           # "same" (content unchanged), "ok", or a skip reason
    language: str | None = None
    blocks: list[PreparedBlock] = field(default_factory=list)


def scan(root: Path, known: dict[str, FileRow], reparse: frozenset[str] = frozenset()) -> Plan:
    """Files new, changed (by stat) or deleted since the index saw them; files of the `reparse`
    languages count as changed whatever their stat says."""
    from .walk import walk

    result = walk(root)
    changed, seen = [], set()
    for entry in result.files:
        seen.add(entry.path)
        row = known.get(entry.path)
        if (row is None or row.size != entry.size or row.mtime_ns != entry.mtime_ns
                or row.language in reparse):
            changed.append((entry, row))
    deleted = [row for path, row in known.items() if path not in seen]
    changed.sort(key=lambda item: item[0].path)
    return Plan(changed, deleted, len(result.files) - len(changed), dict(result.skipped))


def stale_parsers(recorded: str | None, current: dict[str, int]) -> frozenset[str]:
    """Languages whose files were parsed by another grammar revision than `current` (or by none: a
    language that gained a grammar, or an index from before revisions were recorded): their files are
    parsed again, even when unchanged."""
    before = json.loads(recorded) if recorded else {}
    return frozenset(language for language in before.keys() | current.keys()
                     if before.get(language) != current.get(language))


def skip_counts(store: Store, plan: Plan) -> dict[str, int]:
    """Files not indexed, by reason: those the walk skipped and those stored with a skip status."""
    counts = Counter(plan.walk_skipped)
    counts.update(dict(store.conn.execute(
        "SELECT status, COUNT(*) FROM files WHERE status != 'ok' GROUP BY status")))
    return dict(counts)


def prepare(root: str, path: str, old_hash: str | None) -> Outcome:
    """Hash a changed file; when its content really changed, decode, extract and prepare its blocks
    (the file is read once). The language kept is the one the file is parsed as (`file_language`)."""
    from .extract import decode_source, extract, file_language, read_head
    from .languages import language_for
    from .walk import MAX_FILE_BYTES

    data = read_head(os.path.join(root, path), MAX_FILE_BYTES)
    if data is None:
        return Outcome(path, None, "unreadable")
    h = digest(data)
    if h == old_hash:
        return Outcome(path, h, "same")
    language = language_for(path)
    if language is None:
        return Outcome(path, h, "unsupported")
    if len(data) > MAX_FILE_BYTES:     # grew since the walk
        return Outcome(path, h, "too-large", language)
    text, reason = decode_source(data, os.path.basename(path))
    if text is None:
        return Outcome(path, h, reason or "unreadable", language)
    language = file_language(path, text)
    try:
        blocks = extract(path, text, language)
    except Exception:  # a parser bug must not stop the build; the file is counted as skipped
        return Outcome(path, h, "extract-error", language)
    return Outcome(path, h, "ok", language, [PreparedBlock.of(b) for b in blocks])


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def run(store: Store, root: Path, *, model: str | None = None, progress: BuildProgress | None = None) -> BuildStats:
    """Bring the keyword index in `store` (files, blocks, FTS, windows) up to date with the tree at
    `root`. With a `model` (vector key), new windows without a vector mark the index as not fully
    embedded (meta `embedded` cleared) for the embedding phase."""
    from .extract import parser_revisions

    started = time.perf_counter()
    report = progress or (lambda stage, done, total: None)
    stats = BuildStats()
    parsers = parser_revisions()
    known = store.files()
    reparse = stale_parsers(store.meta().get("parsers"), parsers) if known else frozenset()
    if not known:     # every file will be parsed by today's grammars, also if this build is interrupted
        with store.transaction():
            store.set_meta(parsers=parsers)
    plan = scan(root, known, reparse)
    report("scan", len(plan.changed) + plan.unchanged, len(plan.changed) + plan.unchanged)
    stats.unchanged = plan.unchanged
    if plan.deleted:
        with store.transaction():
            for row in plan.deleted:
                store.delete_file(row.id)
        stats.deleted = len(plan.deleted)

    entries = {entry.path: (entry, row) for entry, row in plan.changed}
    done = 0
    report("extract", 0, len(plan.changed))
    # Extraction runs in this process: worker processes did not pay off (see the module docstring).
    outcomes = (prepare(str(root), entry.path, row.hash if row and row.language not in reparse else None)
                for entry, row in plan.changed)
    for batch in _batches(outcomes, BATCH_FILES):
        with store.transaction():
            new_windows: list[str] = []
            for out in batch:
                entry, row = entries[out.path]
                if out.status == "same":
                    store.touch_file(row.id, entry.size, entry.mtime_ns)
                    stats.unchanged += 1
                    continue
                store.put_file(out.path, entry.size, entry.mtime_ns, out.hash, out.language, out.status, out.blocks)
                stats.blocks += len(out.blocks)
                new_windows += [h for b in out.blocks for h in b.windows]
                if row is None:
                    stats.added += 1
                else:
                    stats.modified += 1
            if model and new_windows:
                missing = store.still_missing(model, new_windows)
                stats.cached += sum(h not in missing for h in new_windows)
                if missing:
                    store.set_meta(embedded="")
        done += len(batch)
        report("extract", done, len(plan.changed))

    stats.skipped = skip_counts(store, plan)
    if plan.changed or plan.deleted or reparse or "updated_at" not in store.meta():
        with store.transaction():   # a no-change update writes nothing: readers keep their caches
            store.set_meta(updated_at=time.time(), parsers=parsers)
    stats.seconds = time.perf_counter() - started
    return stats
