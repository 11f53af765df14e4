"""Find the files worth indexing below a root, cheaply: names and `stat` only, never contents.

Inside a git work tree the file list comes from `git ls-files --cached --others --exclude-standard` (git applies
every `.gitignore`, `.git/info/exclude` and the global excludes); elsewhere from an `os.scandir` walk that applies
nested `.gitignore` files with git's semantics through `pathspec`. `.hhgignore` files (same syntax) apply in both
modes, after the `.gitignore` of the same folder (in git mode the root one always, nested ones when git lists them).
As in git, nothing below an ignored folder can be re-included. A root that git lists nothing for (an ignored
folder, an empty repository) is walked with scandir.

Folders never indexed, whatever the ignore files say:
- version-control and hhg's own folders (`.git`, `.hhg`, `.hg`, `.svn`, `.bzr`), silently;
- dependency and tool-cache folders (`node_modules`, `__pycache__`, `.venv`, `.tox`, `*.egg-info`, ... see
  `EXCLUDED_DIRS`) and any folder holding a `pyvenv.cfg` (a virtualenv) or a `CACHEDIR.TAG` (a tool cache such as
  Cargo's `target/`), counted as "excluded-dir" once per folder unless an ignore file already hides it.
Build outputs such as `dist/`, `build/` or `vendor/` are left to the ignore files: they are tracked source in too
many projects to drop by name. Submodules, nested repositories and symlinked folders are not followed.

Skipped files are counted by reason: "binary", "data", "lockfile", "minified" (by name, see `languages`),
"too-large", "broken-symlink", "unreadable" (files or folders), "special" (fifos, sockets, devices).
"""
from __future__ import annotations

import os
import stat
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .languages import skip_reason_for_name

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

SILENT_DIRS = frozenset({".git", ".hhg", ".hg", ".svn", ".bzr"})
EXCLUDED_DIRS = frozenset({
    "node_modules", "bower_components", "jspm_packages", "__pycache__", ".venv", ".tox", ".nox", ".eggs",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis", "site-packages", ".gradle", ".terraform",
    ".next", ".nuxt", ".svelte-kit", ".parcel-cache", ".angular", ".dart_tool",
})
MARKER_FILES = frozenset({"pyvenv.cfg", "CACHEDIR.TAG"})
IGNORE_FILES = (".gitignore", ".hhgignore")
MAX_FILE_BYTES = 2_000_000   # larger files are "too-large": never read (the reader checks again)
_GIT_LOCATION_VARS = frozenset({"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR"})


@dataclass(slots=True)
class FileEntry:
    path: str       # POSIX, relative to the walk root
    size: int
    mtime_ns: int


@dataclass
class WalkResult:
    files: list[FileEntry]
    skipped: dict[str, int]   # skip reason -> count


def walk(root: Path, max_file_bytes: int = MAX_FILE_BYTES) -> WalkResult:
    """All indexable files below `root`, sorted by path, and the count of everything skipped, by reason."""
    root = Path(root)
    skipped: Counter[str] = Counter()
    files: list[FileEntry] = []
    paths = _git_paths(root) if _has_git_dir(root) else None
    if paths:
        base = str(root)
        for rel in _filter_git_paths(root, paths, skipped):
            _add_file(f"{base}/{rel}", rel, rel.rpartition("/")[2], max_file_bytes, files, skipped)
    else:
        _scan(root, max_file_bytes, files, skipped)
    files.sort(key=lambda f: f.path)
    return WalkResult(files, dict(skipped))


def _excluded_dir(name: str) -> bool:
    return name in EXCLUDED_DIRS or name.endswith(".egg-info")


# Base names repeat across a tree (`django.po` in every locale folder): their verdicts are cached.
_skip_reason = lru_cache(maxsize=8192)(skip_reason_for_name)


def _add_file(path: str, rel: str, name: str, max_bytes: int, files: list[FileEntry], skipped: Counter[str]) -> None:
    """Stat one candidate file (base name `name`) and either keep it or count why not."""
    reason = _skip_reason(name)
    if reason is None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if os.path.islink(path):
                reason = "broken-symlink"
            else:
                return   # deleted from the work tree but still in git's index: not a file any more
        except OSError:
            reason = "unreadable"
        else:
            if stat.S_ISDIR(st.st_mode):
                return   # a submodule, a nested repository or a symlinked folder: not followed
            if not stat.S_ISREG(st.st_mode):
                reason = "special"
            elif st.st_size > max_bytes:
                reason = "too-large"
            else:
                files.append(FileEntry(rel, st.st_size, st.st_mtime_ns))
                return
    skipped[reason] += 1


# --- ignore files -------------------------------------------------------------------------------------------------

Ignores = tuple[tuple[str, "GitIgnoreSpec"], ...]   # (folder relative to the root, spec), outermost first


def _read_spec(path: Path | str) -> GitIgnoreSpec | None:
    from pathspec import GitIgnoreSpec   # only when an ignore file exists: keeps the search path light

    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    return GitIgnoreSpec.from_lines(lines) if any(line.strip() for line in lines) else None


def _ignored(ignores: Ignores, rel: str, is_dir: bool) -> bool:
    """git's verdict for `rel`: the deepest ignore file with a matching pattern decides, its last pattern wins."""
    verdict = False
    for base, spec in ignores:
        if base:
            if not rel.startswith(base + "/"):
                continue
            sub = rel[len(base) + 1:]
        else:
            sub = rel
        decision = spec.check_file(sub + "/" if is_dir else sub).include
        if decision is not None:
            verdict = decision
    return verdict


# --- inside git ---------------------------------------------------------------------------------------------------

def _has_git_dir(root: Path) -> bool:
    """Whether `root` or a folder above it holds a `.git`. Without one git finds no repository (its
    location variables are unset for it), so it is not started at all."""
    root = root.resolve()   # git looks upwards from the physical folder
    return any(os.path.lexists(os.path.join(folder, ".git")) for folder in (root, *root.parents))


def _git_paths(root: Path) -> list[str] | None:
    """Tracked and untracked-but-not-ignored files below `root`, relative to it; None outside a git work tree."""
    import subprocess   # only inside a work tree: keeps the search path light

    env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}   # e.g. set inside git hooks
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True, check=False, env=env)
    except OSError:
        return None
    if proc.returncode != 0:
        return None
    # Unmerged files are listed once per stage; nested repositories as "name/".
    return sorted({p for p in os.fsdecode(proc.stdout).split("\0") if p and not p.endswith("/")})


def _filter_git_paths(root: Path, paths: list[str], skipped: Counter[str]) -> list[str]:
    """Drop excluded folders and `.hhgignore` matches from git's list (folder verdicts computed once each)."""
    split = [p.rpartition("/") for p in paths]   # (folder, "/", name)
    markers = {folder for folder, _, name in split if name in MARKER_FILES}
    specs = [(folder, p) for (folder, _, name), p in zip(split, paths) if name == ".hhgignore"]
    if (root / ".hhgignore").is_file() and ("", ".hhgignore") not in specs:
        specs.append(("", ".hhgignore"))   # honoured even when .gitignore hides it from git's list
    ignores: Ignores = tuple(sorted(
        (base, spec) for base, rel in specs if (spec := _read_spec(root / rel)) is not None))
    excluded: set[str] = set()
    dropped: dict[str, bool] = {"": False}   # folder -> nothing below it is indexed

    def drop(folder: str) -> bool:
        if folder not in dropped:
            parent, _, name = folder.rpartition("/")
            verdict = drop(parent)
            if not verdict and name not in SILENT_DIRS and (_excluded_dir(name) or folder in markers):
                excluded.add(folder)
                verdict = True
            dropped[folder] = verdict or name in SILENT_DIRS or bool(ignores) and _ignored(ignores, folder, True)
        return dropped[folder]

    kept = [rel for (folder, _, _), rel in zip(split, paths)
            if not drop(folder) and not (ignores and _ignored(ignores, rel, False))]
    if excluded:
        skipped["excluded-dir"] += len(excluded)
    return kept


# --- outside git --------------------------------------------------------------------------------------------------

def _scan(root: Path, max_bytes: int, files: list[FileEntry], skipped: Counter[str]) -> None:
    """Depth-first `os.scandir` walk applying nested ignore files; ignored folders are never entered."""
    stack: list[tuple[str, str, Ignores]] = [("", str(root), ())]
    while stack:
        rel_dir, abs_dir, ignores = stack.pop()
        try:
            with os.scandir(abs_dir) as it:
                entries = list(it)
        except OSError:
            skipped["unreadable"] += 1
            continue
        names = {e.name for e in entries}
        if rel_dir and not names.isdisjoint(MARKER_FILES):
            skipped["excluded-dir"] += 1   # a virtualenv or a tool cache
            continue
        for name in IGNORE_FILES:
            if name in names and (spec := _read_spec(os.path.join(abs_dir, name))) is not None:
                ignores = (*ignores, (rel_dir, spec))
        prefix = f"{rel_dir}/" if rel_dir else ""
        for entry in entries:   # the hot loop of every search's stale check: no work that is not needed
            name = entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                skipped["unreadable"] += 1
                continue
            if is_dir:
                if name in SILENT_DIRS or ignores and _ignored(ignores, prefix + name, True):
                    continue   # as in git mode, an ignored folder is not counted
                if _excluded_dir(name):
                    skipped["excluded-dir"] += 1
                else:
                    stack.append((prefix + name, entry.path, ignores))
            elif not (ignores and _ignored(ignores, prefix + name, False)):
                _add_file(entry.path, prefix + name, name, max_bytes, files, skipped)
