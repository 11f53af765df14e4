"""Records shared by the index, the search and the front ends."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

# The find-similar query form of the front ends: `FILE#NAME` (a definition) or `FILE:LINE` (the block at a line).
SIMILAR = re.compile(r"^(?P<file>.+?)(?:#(?P<name>[^#\s]+)|:(?P<line>\d+))$")


@dataclass(slots=True)
class Block:
    """One searchable unit of a file: a function, method, class, section or the code between them."""

    path: str          # POSIX path relative to the index root
    language: str      # language id, e.g. "python", "markdown", "text"
    kind: str          # "function" | "method" | "class" | "module" | "section" | "chunk" | ...
    name: str          # qualified name ("Class.method"), heading text, or "" for anonymous code
    start_line: int    # 1-based, inclusive
    end_line: int      # 1-based, inclusive
    text: str          # the exact source lines start_line..end_line
    doc: str = ""      # docstring or leading comments, when the extractor found them


@dataclass(slots=True)
class Hit:
    """One search result. `line`/`end_line` are 1-based and inclusive."""

    file: str
    line: int
    end_line: int
    kind: str
    name: str
    score: float
    content: str = ""
    language: str = ""
    explain: dict | None = field(default=None, compare=False)

    def to_json(self, content: bool = True) -> dict:
        """The public JSON shape of a hit (`--json`)."""
        out = {"file": self.file, "line": self.line, "end_line": self.end_line,
               "kind": self.kind, "name": self.name, "score": round(float(self.score), 6)}
        if content:
            out["content"] = self.content
        return out


@dataclass(slots=True)
class Filters:
    """Restrictions applied before the top-k cut."""

    types: tuple[str, ...] = ()      # language ids or file extensions ("py", "go", "python")
    exclude: tuple[str, ...] = ()    # gitignore-style globs
    paths: tuple[str, ...] = ()      # only files under these root-relative prefixes
    code_only: bool = False          # drop docs, text and config chunks
    threshold: float | None = None   # drop hits scoring below this
