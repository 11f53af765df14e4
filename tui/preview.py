"""The preview pane's content: a hit's block in its file, highlighted."""
from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from rich.syntax import Syntax

from hhg_mlx.types import Hit

CONTEXT = 3          # lines shown before and after the block
MAX_LINES = 400      # longest excerpt rendered (long blocks are cut)
TERM_STYLE = "bold black on #e5c07b"
BLOCK_STYLE = "on #2c313c"


@lru_cache(maxsize=32)
def _read_lines(path: Path, mtime_ns: int) -> tuple[str, ...]:
    return tuple(path.read_text(encoding="utf-8", errors="replace").splitlines())


def file_lines(path: Path) -> tuple[str, ...] | None:
    """The lines of `path` (cached until its mtime changes), or None when it cannot be read."""
    try:
        return _read_lines(path, path.stat().st_mtime_ns)
    except OSError:
        return None


def term_pattern(terms: Iterable[str]) -> re.Pattern[str] | None:
    """A case-insensitive pattern for the query terms as substrings, so that `retry` also marks
    `retryUpload` (the index splits identifiers the same way). Longest terms first."""
    words = sorted({t for t in terms if len(t) > 1}, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, words)), re.IGNORECASE) if words else None


def render_hit(hit: Hit, root: Path, terms: Iterable[str] = (), *, dark: bool = True) -> Syntax:
    """The hit's lines with CONTEXT lines around them, syntax-highlighted by file name, the block's
    lines marked and the query terms highlighted. Falls back to the indexed content when the file
    is gone or no longer has those lines."""
    lines = file_lines(root / hit.file)
    if lines is None or len(lines) < hit.end_line:
        lines, first = tuple(hit.content.splitlines()), hit.line
    else:
        first = max(1, hit.line - CONTEXT)
        lines = lines[first - 1:min(len(lines), hit.end_line + CONTEXT, first - 1 + MAX_LINES)]
    lines = lines[:MAX_LINES]
    code = "\n".join(lines)
    syntax = Syntax(
        code,
        Syntax.guess_lexer(hit.file),
        theme="github-dark" if dark else "github-light",
        line_numbers=True,
        start_line=first,
        highlight_lines=set(range(hit.line, hit.end_line + 1)),
        indent_guides=False,
    )
    pattern = term_pattern(terms)
    for row, text in enumerate(lines, 1):
        if hit.line <= first + row - 1 <= hit.end_line:
            syntax.stylize_range(BLOCK_STYLE, (row, 0), (row, len(text)), style_before=True)
        if pattern is not None:
            for match in pattern.finditer(text):
                syntax.stylize_range(TERM_STYLE, (row, match.start()), (row, match.end()))
    return syntax
