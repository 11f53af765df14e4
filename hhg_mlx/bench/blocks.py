"""The `blocks` suite: hand-written queries, each answered by named definitions in a pinned open-source project.

`data/blocks/projects.json` pins each project's release archive (PyPI sdist or npm tarball: URL, exact version,
sha256) and the folder inside it that is indexed; `data/blocks/<name>.json` holds its queries, each with the
definitions that answer it (path relative to the indexed folder, 1-based first line, the name hhg's extractor
gives the block) and a note on how the query was written. The queries were written by reading the code,
never by looking at any search engine's results.

    python -m hhg_mlx.bench.blocks [--cache DIR] [--projects a,b] [--json]

downloads what is missing into the cache and checks every target against the unpacked sources and hhg's extractor.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import HhgError
from ..index.extract import extract, read_source
from ..index.walk import walk
from ..paths import cache_dir
from .archives import download, sha256_of, unpack

DATA = Path(__file__).with_name("data") / "blocks"
KINDS = ("identifier", "keyword", "paraphrase")
DEFINITIONS = frozenset({"function", "method", "class"})
CACHE_ENV = "HHG_BLOCKS_CACHE"


@dataclass(frozen=True)
class Target:
    path: str    # relative to the project's indexed root
    line: int    # 1-based first line of the definition
    name: str    # qualified as hhg names blocks: "Class.method"


@dataclass(frozen=True)
class Query:
    text: str
    kind: str    # one of KINDS
    targets: tuple[Target, ...]
    how: str     # how the query was written


@dataclass(frozen=True)
class Project:
    name: str
    root: Path   # the unpacked folder that is indexed
    languages: tuple[str, ...]
    queries: tuple[Query, ...]


@dataclass(frozen=True)
class Source:
    """One pinned release archive, as `projects.json` lists it."""

    name: str
    registry: str   # "pypi" | "npm"
    package: str
    version: str
    url: str
    sha256: str
    root: str       # the indexed folder inside the archive
    languages: tuple[str, ...]
    license: str


def default_cache() -> Path:
    """`$HHG_BLOCKS_CACHE`, else `bench/blocks` in hhg's cache folder (`~/.cache/hhg/bench/blocks`)."""
    return Path(os.environ.get(CACHE_ENV) or cache_dir() / "bench" / "blocks")


def load_sources(data: Path = DATA) -> list[Source]:
    """The pinned projects, in manifest order."""
    raw = json.loads((data / "projects.json").read_text(encoding="utf-8"))
    return [Source(**{**entry, "languages": tuple(entry["languages"])}) for entry in raw]


def load_queries(name: str, data: Path = DATA) -> tuple[Query, ...]:
    """The queries of one project."""
    raw = json.loads((data / f"{name}.json").read_text(encoding="utf-8"))
    return tuple(Query(q["query"], q["kind"], tuple(Target(**t) for t in q["targets"]), q["how"]) for q in raw)


def select(sources: list[Source], names: list[str] | None) -> list[Source]:
    """`sources` restricted to `names` (all when None), in manifest order; unknown names are an error."""
    if names is None:
        return sources
    unknown = sorted(set(names) - {s.name for s in sources})
    if unknown:
        raise HhgError(f"unknown blocks project: {', '.join(unknown)} (known: {', '.join(s.name for s in sources)})")
    return [s for s in sources if s.name in names]


def unpacked_folder(source: Source, cache: Path) -> Path:
    return cache / f"{source.name}-{source.version}"


def archive_path(source: Source, cache: Path) -> Path:
    return cache / "archives" / source.url.rsplit("/", 1)[-1]


def fetch(source: Source, cache: Path) -> Path:
    """The indexed root of `source`, downloaded (once) and unpacked (once) under `cache`.

    The archive's sha256 is checked before unpacking; a mismatching archive is deleted. Unpacking goes to a
    temporary folder renamed into place at the end, so an interrupted run never leaves a half-unpacked project.
    """
    folder = unpacked_folder(source, cache)
    if not folder.is_dir():
        archive = archive_path(source, cache)
        if not archive.is_file():
            download(source.url, archive, source.sha256)
        elif (got := sha256_of(archive)) != source.sha256:
            archive.unlink()
            raise HhgError(f"{archive}: sha256 {got} does not match the pinned {source.sha256} (deleted; run again)")
        partial = folder.with_name(f".{folder.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            unpack(archive, partial)
        except HhgError:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        partial.rename(folder)
    root = folder / source.root
    if not root.is_dir():
        raise HhgError(f"{source.name}: {source.root} is not a folder of {source.url.rsplit('/', 1)[-1]}")
    return root


def load_blocks_suite(cache: Path, projects: list[str] | None = None, data: Path = DATA) -> list[Project]:
    """Download (once, into `cache`), verify sha256, unpack, return the projects with their queries."""
    return [Project(s.name, fetch(s, Path(cache)), s.languages, load_queries(s.name, data))
            for s in select(load_sources(data), projects)]


# --- checking the targets -----------------------------------------------------------------------------------------

def _shows_definition(lines: list[str], line: int, name: str) -> bool:
    """Whether 1-based `line` shows the short name (last dotted part) as a whole word, or starts the decorators
    or attributes (`@...`, `#[...]`) of a line that does."""
    word = re.compile(rf"(?<![\w$]){re.escape(name.rsplit('.', 1)[-1])}(?![\w$])")
    index = line - 1
    while index + 1 < len(lines) and lines[index].lstrip().startswith(("@", "#[")):
        index += 1
    return bool(word.search(lines[index]))


def check_targets(project: Project) -> list[str]:
    """Problems with the project's targets, one line each (none when all is well): the file must be one hhg's
    walk indexes, the line must show the definition's name, and hhg's extractor must give a function, method
    or class block of exactly that name whose span holds the line, so that a hit is possible at all."""
    indexed = {f.path for f in walk(project.root).files}
    files: dict[str, tuple[list[str], list]] = {}
    problems = []
    for query in project.queries:
        for t in query.targets:
            where = f"{project.name}: {query.text!r}: {t.path}:{t.line} {t.name}"
            if t.path not in indexed:
                problems.append(f"{where}: not a file hhg indexes")
                continue
            if t.path not in files:
                text, _ = read_source(project.root / t.path)
                files[t.path] = (text.split("\n"), extract(t.path, text)) if text is not None else ([], [])
            lines, blocks = files[t.path]
            if not (0 < t.line <= len(lines) and _shows_definition(lines, t.line, t.name)):
                problems.append(f"{where}: line {t.line} does not show {t.name.rsplit('.', 1)[-1]}")
            elif not any(b.kind in DEFINITIONS and b.name == t.name and b.start_line <= t.line <= b.end_line
                         for b in blocks):
                problems.append(f"{where}: no {'/'.join(sorted(DEFINITIONS))} block named {t.name} spans the line")
    return problems


def definition_count(root: Path) -> Counter[str]:
    """Function, method and class blocks per language over the files hhg indexes under `root`."""
    counts: Counter[str] = Counter()
    for entry in walk(root).files:
        text, _ = read_source(root / entry.path)
        if text is not None:
            counts.update(b.language for b in extract(entry.path, text) if b.kind in DEFINITIONS)
    return counts


def summary(project: Project, source: Source) -> dict:
    """A project's row for the suite's description: version, languages, definitions, queries per kind."""
    kinds = Counter(q.kind for q in project.queries)
    return {"name": project.name, "version": source.version, "registry": source.registry,
            "languages": list(project.languages), "definitions": dict(definition_count(project.root)),
            "queries": {k: kinds[k] for k in KINDS}, "problems": check_targets(project)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hhg_mlx.bench.blocks", description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, default=default_cache(),
                   help=f"where archives are downloaded and unpacked (default: ${CACHE_ENV} or %(default)s)")
    p.add_argument("--projects", help="comma-separated project names (default: all)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = p.parse_args(argv)
    try:
        sources = {s.name: s for s in load_sources()}
        projects = load_blocks_suite(args.cache, args.projects.split(",") if args.projects else None)
    except HhgError as err:
        print(f"blocks: {err}", file=sys.stderr)
        return 1
    rows = [summary(project, sources[project.name]) for project in projects]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{'project':<12} {'version':<10} {'languages':<22} {'definitions':>11} "
              + " ".join(f"{k:>10}" for k in KINDS) + f" {'problems':>8}")
        for r in rows:
            print(f"{r['name']:<12} {r['version']:<10} {','.join(r['languages']):<22} "
                  f"{sum(r['definitions'].values()):>11} " + " ".join(f"{r['queries'][k]:>10}" for k in KINDS)
                  + f" {len(r['problems']):>8}")
        for r in rows:
            for problem in r["problems"]:
                print(problem)
    return 1 if any(r["problems"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
