"""Formatting of search results (grep-like text, coloured on a terminal; file lists; JSON) and of the
build, status and cache summaries."""
from __future__ import annotations

import json
import os
import re
import textwrap
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .progress import duration
from .types import Hit

if TYPE_CHECKING:
    from .index.batch import BatchResult
    from .index.vector_cache import CacheInfo
    from .index.worker import EmbeddingStatus

RESET = "\x1b[0m"
STYLE = {"path": "\x1b[35m", "line": "\x1b[32m", "kind": "\x1b[36m", "name": "\x1b[1;33m", "match": "\x1b[1;31m"}
MAX_LINE = 240
# Words that carry no meaning for highlighting ("where do we retry uploads" highlights retry, uploads).
STOPWORDS = frozenset("a an and are as at be by can do does for from how in is it of on or the this to we what when "
                      "where which who why with".split())


def use_color(choice: str, stream) -> bool:
    """`--color auto|always|never`; auto means a terminal that is not `dumb`, and no `NO_COLOR`."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


class PathStyle:
    """Shows root-relative index paths the way they were asked for, like ripgrep: relative to the
    current directory, or absolute when the search path was given as an absolute path."""

    def __init__(self, root: Path, absolute: bool = False, cwd: Path | None = None) -> None:
        self.root = root.resolve()
        self.absolute = absolute
        self.cwd = (cwd or Path.cwd()).resolve()

    def __call__(self, rel: str) -> str:
        full = self.root / rel
        return str(full) if self.absolute else os.path.relpath(full, self.cwd)


def query_pattern(query: str) -> re.Pattern[str] | None:
    """A case-insensitive pattern matching the query's meaningful words, longest first."""
    words = {w.lower() for w in re.findall(r"\w+", query) if len(w) > 1 and w.lower() not in STOPWORDS}
    if not words:
        return None
    return re.compile("|".join(map(re.escape, sorted(words, key=len, reverse=True))), re.IGNORECASE)


def _paint(text: str, style: str, color: bool) -> str:
    return f"{STYLE[style]}{text}{RESET}" if color and text else text


def snippet(content: str, lines: int) -> list[str]:
    """The first `lines` non-blank lines of a block, dedented and cut to a readable width."""
    shown = [line.rstrip() for line in content.splitlines() if line.strip()][:lines]
    shown = textwrap.dedent("\n".join(shown)).splitlines() if shown else []
    return [line if len(line) <= MAX_LINE else line[:MAX_LINE - 1] + "…" for line in shown]


def _num(value: float) -> str:
    return f"{value:.4g}"


def why_lines(hit: Hit) -> list[str]:
    """Why a hit ranked where it did (`--explain`), from `Hit.explain`: how the score was made (BM25 or
    cosine times every factor; in hybrid mode the keyword share plus the weighted semantic share, each
    taken apart; after reranking the cross-encoder's sigmoid times the factors it keeps), the BM25 score
    with its rank and each field's share, the cosine with its rank, the query words the block holds, and
    whether it defines the query's symbol."""
    e = hit.explain or {}
    out = _score_lines(hit.score, e)
    if e.get("bm25") is not None:
        line = f"bm25 {_num(e['bm25'])}" + (f" (rank {e['bm25_rank']})" if e.get("bm25_rank") else "")
        if e.get("bm25_fields"):
            line += ": " + ", ".join(f"{k} {_num(v)}" for k, v in e["bm25_fields"].items())
        out.append(line)
    if e.get("cosine") is not None:
        out.append(f"cosine {e['cosine']:.3f}" + (f" (rank {e['cosine_rank']})" if e.get("cosine_rank") else ""))
    if e.get("terms"):
        out.append("terms " + ", ".join(e["terms"]))
    if e.get("defines_query"):
        out.append("defines the query's symbol: listed first")
    return out


def _factors(boosts: dict[str, float], keys: Iterable[str] | None = None) -> str:
    return "".join(f" ×{_num(v)} {k}" for k, v in boosts.items() if keys is None or k in keys)


def _score_lines(score: float, e: dict) -> list[str]:
    """The `score = ...` line and, for a fused score, one line for each of its two parts."""
    from .rerank import NON_TEXTUAL
    from .search import PRIORS

    boosts, fusion = e.get("boosts") or {}, e.get("fusion") or {}
    out = []
    if "rerank_logit" in e:
        out.append(f"score {_num(score)} = sigmoid(rerank logit {_num(e['rerank_logit'])})"
                   f"{_factors(boosts, NON_TEXTUAL)}; {_num(e['fused_score'])} before reranking by {e['reranker']}")
        score = e["fused_score"]
    if not fusion:
        base = f"bm25 {_num(e['bm25'])}" if e.get("bm25") is not None else f"cosine {_num(e.get('cosine') or 0.0)}"
        return out + [f"score {_num(score)} = {base}{_factors(boosts)}"]
    keyword, semantic, weight = fusion["keyword"], fusion["semantic"], fusion["weight"]
    out.append(f"score {_num(score)} = keyword {_num(keyword)} + {_num(weight)} × semantic {_num(semantic)}")
    if e.get("bm25") is not None:
        out.append(f"keyword {_num(keyword)} = bm25 {_num(e['bm25'])}{_factors(boosts)}"
                   f" / best keyword score {_num(fusion['best_keyword'])}")
    if "semantic_from" in fusion:
        out.append(f"semantic {_num(semantic)} = the keyword share (no vector yet)")
    elif e.get("cosine") is not None and semantic:
        out.append(f"semantic {_num(semantic)} = (cosine {e['cosine']:.3f} - {fusion['cosine_low']:.3f})"
                   f" / ({fusion['cosine_high']:.3f} - {fusion['cosine_low']:.3f}){_factors(boosts, PRIORS)}")
    return out


def format_hit(hit: Hit, path: str, *, lines: int = 3, color: bool = False,
               pattern: re.Pattern[str] | None = None, span: bool = False, why: bool = False) -> str:
    """`path:line kind name` (with `span`: `path:line-end_line ...`), with `why` the `why_lines` (marked
    `why:`), then the block's first lines, indented by four spaces."""
    where = f"{hit.line}-{hit.end_line}" if span else str(hit.line)
    head = f"{_paint(path, 'path', color)}:{_paint(where, 'line', color)} {_paint(hit.kind, 'kind', color)}"
    if hit.name:
        head += " " + _paint(hit.name, "name", color)
    body = snippet(hit.content, lines)
    if color and pattern is not None:
        body = [pattern.sub(lambda m: _paint(m.group(0), "match", True), line) for line in body]
    reasons = ["why: " + line for line in why_lines(hit)] if why else []
    return "\n".join([head, *("    " + line for line in reasons + body)])


def format_hits(hits: Sequence[Hit], show_path, *, lines: int = 3, color: bool = False, query: str = "",
                span: bool = False, why: bool = False) -> str:
    """Every hit via `format_hit`; a blank line separates hits that show code or reasons."""
    pattern = query_pattern(query) if color else None
    sep = "\n\n" if lines > 0 or why else "\n"
    return sep.join(format_hit(h, show_path(h.file), lines=lines, color=color, pattern=pattern, span=span, why=why)
                    for h in hits) + "\n"


def format_files(hits: Iterable[Hit], show_path, *, color: bool = False) -> str:
    """The distinct files of `hits`, in rank order, one a line (`-l`)."""
    files = dict.fromkeys(h.file for h in hits)
    return "".join(_paint(show_path(f), "path", color) + "\n" for f in files)


def hits_json(hits: Iterable[Hit], show_path, *, content: bool = True, why: bool = False) -> list[dict]:
    """`Hit.to_json()` objects with `file` shown by `show_path`: the `--json` array and the MCP tools' hits;
    with `why`, each has a `why` object: `Hit.explain`."""
    out = []
    for hit in hits:
        item = hit.to_json(content=content)
        item["file"] = show_path(hit.file)
        if why:
            item["why"] = hit.explain or {}
        out.append(item)
    return out


def format_json(hits: Iterable[Hit], show_path, *, content: bool = True, why: bool = False) -> str:
    """A JSON array of `hits_json` objects, with `file` shown like the text output."""
    return json.dumps(hits_json(hits, show_path, content=content, why=why), indent=2, ensure_ascii=False) + "\n"


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_status(status: dict, embedding: EmbeddingStatus | None = None) -> str:
    """`hhg status`: one `key: value` line per entry of `Index.status()`; `embedding` (the index's
    `embedding_status()`) describes the embedding phase."""
    lines = []
    for key, value in status.items():
        if key == "embedding" and embedding is not None:
            value = describe_embedding(embedding)
        elif key == "size_bytes" and isinstance(value, (int, float)):
            value = _human_bytes(value)
        elif key.endswith("_at") and isinstance(value, (int, float)):
            value = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in value.items()) or "none"
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        elif value is None:
            value = "-"
        lines.append(f"{key.replace('_', ' ')}: {value}")
    return "\n".join(lines) + "\n"


def describe_embedding(e: EmbeddingStatus) -> str:
    """One line: state, blocks done of total, rate and ETA while running, the reason of a failure."""
    if e.state == "none":
        return "none (keyword only)"
    counts = f"{e.done:,} of {e.total:,} blocks ({100 * e.done // max(e.total, 1)}%)"
    if e.state == "running":
        speed = [f"{e.rate:,.1f} texts/s"] if e.rate else ["measuring the rate"]
        speed += [f"{e.tokens_rate:,.0f} tokens/s"] if e.tokens_rate else []
        speed += [f"ETA {duration(e.eta_s)}"] if e.eta_s is not None else []
        return f"running (pid {e.pid}): {counts}, {', '.join(speed)}"
    if e.state == "failed":
        return f"failed: {e.error}; {counts}"
    if e.state == "stopped":
        return f"stopped: {counts}; `hhg build` resumes it"
    return f"{e.state}: {counts}"


def format_build(result: BatchResult, paths: Sequence[str]) -> str:
    """`hhg build`: a line per index built (`paths` as the user gave them), where the embedding goes on
    in the background, and for several indexes (or texts embedded) what the batch embedded."""
    lines = []
    for path, r in zip(paths, result.indexes):
        if not r.ok:
            continue
        model = " on ".join(filter(None, (r.model, r.backend))) or "keyword only"
        took = f" in {result.seconds:.1f} s" if len(paths) == 1 else ""
        lines.append(f"{path}: {r.files:,} files, {r.blocks:,} blocks ({model}); {r.added:,} new, {r.modified:,} "
                     f"changed, {r.deleted:,} deleted{took}")
        if len(paths) == 1 and r.embedding and r.embedding["state"] == "running":
            lines.append(f"embedding {r.embedding['total'] - r.embedding['done']:,} blocks in the background (pid "
                         f"{r.embedding['pid']}): `hhg status` shows how far it is, `hhg stop` stops it")
    if result.background_pid is not None and len(paths) > 1:
        lines.append(f"embedding in the background (pid {result.background_pid}): `hhg status PATH` shows how far "
                     "each index is")
    t = result.texts
    if len(paths) > 1:
        built = len(paths) - len(result.failed)
        lines.append(f"{built:,} of {len(paths):,} indexes built in {result.seconds:.1f} s")
    if t.total:
        lines.append(f"{t.total:,} blocks needed vectors: {t.unique:,} distinct texts, {t.cached:,} from the "
                     f"shared cache, {t.embedded:,} embedded")
    return "".join(line + "\n" for line in lines)


def format_cache(folder: Path, stores: Sequence[CacheInfo]) -> str:
    """`hhg cache status`: where the shared embedding cache is, and a line per store."""
    if not stores:
        return f"{folder}: empty\n"
    total = sum(info.size_bytes for info in stores)
    lines = [f"{folder}: {len(stores)} store{'s' if len(stores) != 1 else ''}, {_human_bytes(total)}"]
    for info in stores:
        dim = f"{info.dim}-dim" if info.dim else "empty"
        lines.append(f"  {info.key}: {info.vectors:,} vectors ({dim}), {_human_bytes(info.size_bytes)}")
    return "\n".join(lines) + "\n"
