"""Retrieval and ranking: BM25 over split identifiers, cosine over window vectors, code-aware block
factors, file-level evidence for each file's lead block, and score fusion of the keyword ranking with
the cosine. Filters restrict both retrievers before any cut, so a filter never leaves fewer than k hits
when k matching blocks exist.

Every ranking constant lives in the block below; each was chosen by measurement on the train splits of
all quality suites at once (`python -m hhg_mlx.bench.quality --split train`): the semble subset (file
level), doc2code and blocks (block level), each beside a plain BM25 over the same blocks.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .index.languages import CODE_LANGUAGES, PROSE_LANGUAGES, matches_type
from .tokens import STOP_WORDS, fts_query, split_identifier, terms
from .types import Filters, Hit

if TYPE_CHECKING:
    import numpy as np

    from .index.store import Store

# ---- ranking constants -------------------------------------------------------------------------
FIELD_WEIGHTS = (8.0, 3.0, 2.0, 1.0)   # bm25() weights of the FTS columns name, path, doc, body
FIELDS = ("name", "path", "doc", "body")
POOL = 100                             # candidates taken from each retriever before any factor (at least 3k)
# Block factors multiply a block's BM25 score (the keyword score); the PRIORS among them also its cosine.
BOOSTS = {
    "exact_name": 2.0,       # the query is the block's name, in any case convention ("parse_args", "ParseArgs"),
                             # or its qualified name ("HTTPHeaders parse_line")
    "name_in_query": 1.5,    # an identifier of the query is the block's name
    "name_terms": 1.5,       # raised to the share (>= 1/2) of the parts of a multi-part name that the query holds
    "definition": 1.2,       # functions, methods and classes over module code, sections and chunks
    "class": 0.8,            # class headers, below the methods that do the work
    "noise_path": 0.5,       # tests (files or test modules), examples, vendored, generated code and migrations,
                             # unless the query asks for them
    "prose": 0.5,            # documentation and text: a query in words is more often about the code
    "declaration": 0.5,      # type stubs and declaration files (.pyi, .d.ts): the implementation is elsewhere
}
PRIORS = ("definition", "class", "noise_path", "prose", "declaration")
# File-level evidence raises each file's lead block (its best keyword score), never the file's other blocks,
# so a file that answers in several places leads while its second block keeps its own rank (`file_factors`):
# support from the file's other blocks (their scores, the j-th weighted FILE_DECAY**j, over the lead's)
# to the power FILE_SUPPORT, and 1 + FILE_NAME when a query word names the file ("config" ~ config.lua; once,
# however many words do: "cache capacity, 0 disables caching" must not lift every block of cache.rs twice).
FILE_DECAY = 0.8
FILE_BLOCKS = 10
FILE_SUPPORT = 0.35
FILE_NAME = 0.5
# Hybrid: keyword score / the best keyword score + weight * the cosine min-max scaled over the vector pool,
# weight = SEMANTIC + SEMANTIC_UNCOVERED * (1 - the largest share of the query's words that one of the
# best keyword blocks holds): the fewer of its words the code holds, the more the query's meaning counts.
# A one-identifier query (`Router`, `parse_args`) asks for a name: its weight is SEMANTIC_SYMBOL, so the
# cosine orders the blocks the keywords do not and breaks near-ties, but never outvotes the names.
SEMANTIC = 0.15
SEMANTIC_UNCOVERED = 0.6
SEMANTIC_SYMBOL = 0.05
COVERAGE_BLOCKS = 10
DEFINITION_KINDS = frozenset({"function", "method", "class"})
NOISE_WORDS = frozenset({"test", "tests", "testing", "spec", "specs", "example", "examples", "sample", "samples",
                         "vendor", "vendored", "generated", "mock", "mocks", "fixture", "fixtures", "benchmark",
                         "migration", "migrations"})
_NOISE_DIRS = r"tests?|testing|__tests__|specs?|examples?|samples?|vendor|vendored|third_party|node_modules|" \
              r"generated|__generated__|fixtures?|mocks?|benchmarks?|migrations"
_NOISE_FILES = r"test_[^/]*|[^/]*_tests?\.[^/]*|[^/]*\.(?:test|spec)\.[^/]*|conftest\.py|[^/]*_pb2\.py|" \
               r"[^/]*\.pb\.go|[^/]*_generated\.[^/]*|[^/]*\.generated\.[^/]*"
NOISE_PATH = re.compile(rf"(?:^|/)_?(?:{_NOISE_DIRS})/|(?:^|/)(?:{_NOISE_FILES})$", re.IGNORECASE)
NOISE_NAME = re.compile(r"(?:^|\.)tests?\.", re.IGNORECASE)     # inside a test module (Rust's `mod tests`)
DECLARATION_PATH = re.compile(r"\.pyi$|\.d\.[cm]?ts$")
_IDENT = re.compile(r"[^\W\d][\w.]*")
_ALNUM = re.compile(r"[^\W_]+")
_NAME = re.compile(r"[^\W\d]\w*[?!]?")             # one identifier; Ruby's may end in ? or !
_QUALIFIER = re.compile(r"::|\.|#|->|/")
_SUFFIXES = ("ations", "ation", "ions", "ion", "ings", "ing", "ers", "er", "ies", "ied", "ed", "es", "ity", "ly", "s")


@dataclass(slots=True)
class Candidate:
    id: int
    bm25: float | None = None
    bm25_rank: int | None = None
    cosine: float | None = None
    cosine_rank: int | None = None


@dataclass(slots=True)
class Ranked:
    """A candidate block with its score so far and the factors that made it."""

    score: float
    id: int
    path: str
    factors: dict[str, float]
    keyword: float | None = None                          # BM25 times the block factors (and file factors)
    fusion: dict[str, float | str] = field(default_factory=dict)


class VectorMatrix:
    """All window vectors of one model; a block's cosine is the max over its windows. The vectors may
    come in segments (the snapshot's, memory-mapped): they are scored in place, never copied."""

    def __init__(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """`ids`: one (block id, file id) row per window, ordered by block; `vectors`: one row per window."""
        self._set([(ids, vectors)])

    @classmethod
    def of_segments(cls, segments: list[tuple[np.ndarray, np.ndarray]]) -> "VectorMatrix":
        """From (ids, vectors) segments in any block order; a block's windows may span segments."""
        matrix = cls.__new__(cls)
        matrix._set(segments)
        return matrix

    def _set(self, segments: list[tuple[np.ndarray, np.ndarray]]) -> None:
        import numpy as np

        self.segments = [vectors for _, vectors in segments]
        self.offsets = np.cumsum([0] + [len(vectors) for vectors in self.segments])
        ids = np.concatenate([np.asarray(ids).reshape(-1, 2) for ids, _ in segments])
        # windows grouped by block: `order` maps a grouped position to a row of the segments
        self.order = None if np.all(ids[1:, 0] >= ids[:-1, 0]) else np.argsort(ids[:, 0], kind="stable")
        if self.order is not None:
            ids = ids[self.order]
        self.starts = np.flatnonzero(np.r_[True, ids[1:, 0] != ids[:-1, 0]]) if len(ids) else np.zeros(0, np.int64)
        self.blocks = np.asarray(ids[self.starts, 0])      # sorted block ids, one per block
        self.files = np.asarray(ids[self.starts, 1])       # the file of each of them

    @property
    def vectors(self) -> np.ndarray:
        """Every window vector in segment order (the one segment itself when there is one)."""
        import numpy as np

        return self.segments[0] if len(self.segments) == 1 else np.concatenate(self.segments)

    def __len__(self) -> int:
        return len(self.blocks)

    def has_vectors(self, block_ids: list[int]) -> np.ndarray:
        """Whether each of `block_ids` has at least one window vector."""
        import numpy as np

        pos = np.minimum(np.searchsorted(self.blocks, block_ids), max(len(self.blocks) - 1, 0))
        return self.blocks[pos] == block_ids if len(self.blocks) else np.zeros(len(block_ids), bool)

    def block_vector(self, block_id: int) -> np.ndarray | None:
        """The normalised mean of a block's window vectors (None when it has none)."""
        import numpy as np

        pos = int(np.searchsorted(self.blocks, block_id))
        if pos >= len(self.blocks) or self.blocks[pos] != block_id:
            return None
        end = self.starts[pos + 1] if pos + 1 < len(self.starts) else int(self.offsets[-1])
        rows = np.arange(self.starts[pos], end)
        if self.order is not None:
            rows = self.order[rows]
        segment = np.searchsorted(self.offsets, rows, side="right") - 1
        mean = np.mean([self.segments[s][r - self.offsets[s]] for s, r in zip(segment, rows)], axis=0)
        return mean / max(float(np.linalg.norm(mean)), 1e-12)

    def top(self, query: np.ndarray, n: int, allowed: set[int] | None, exclude: int | None) -> list[tuple[int, float]]:
        import numpy as np

        if not len(self.blocks):
            return []
        query = np.asarray(query, dtype=np.float32)
        cosines = np.concatenate([vectors @ query for vectors in self.segments])
        if self.order is not None:
            cosines = cosines[self.order]
        scores = np.maximum.reduceat(cosines, self.starts)
        if allowed is not None:
            scores[~np.isin(self.files, np.fromiter(allowed, dtype=np.int64))] = -np.inf
        if exclude is not None:
            scores[self.blocks == exclude] = -np.inf
        n = min(n, len(scores))
        best = np.argpartition(-scores, n - 1)[:n]
        best = best[np.lexsort((self.blocks[best], -scores[best]))]      # ties: lower block id first
        return [(int(self.blocks[i]), float(scores[i])) for i in best if np.isfinite(scores[i])]


def allowed_files(store: Store, filters: Filters | None) -> set[int] | None:
    """Ids of the files that pass `filters` (None: no restriction)."""
    if filters is None or not (filters.types or filters.exclude or filters.paths or filters.code_only):
        return None
    types = [t.strip() for spec in filters.types for t in spec.split(",") if t.strip()]
    excluded = None
    if filters.exclude:
        import pathspec

        excluded = pathspec.GitIgnoreSpec.from_lines(filters.exclude)
    prefixes = [p.strip("/").removeprefix("./") for p in filters.paths]
    keep = set()
    for file_id, path, language in store.conn.execute("SELECT id, path, language FROM files WHERE status = 'ok'"):
        language = language or ""
        if types and not any(matches_type(language, path, t) for t in types):
            continue
        if filters.code_only and language not in CODE_LANGUAGES:
            continue
        if prefixes and not any(p in ("", ".") or path == p or path.startswith(p + "/") for p in prefixes):
            continue
        if excluded is not None and excluded.match_file(path):
            continue
        keep.add(file_id)
    return keep


def keyword(store: Store, words: list[str], n: int, allowed: set[int] | None,
            exclude: int | None, only: list[int] | None = None) -> list[tuple[int, float]]:
    """Top `n` (block id, BM25 score) for OR-ed `words`, higher is better; filters inside the SQL.
    `only` restricts the result to those block ids."""
    sql = ["SELECT f.rowid, -bm25(fts, ?, ?, ?, ?) AS s FROM fts f"]
    args: list = [*FIELD_WEIGHTS]
    if allowed is not None:
        sql.append("JOIN blocks b ON b.id = f.rowid")
    sql.append("WHERE fts MATCH ?")
    args.append(fts_query(words))
    if allowed is not None:
        sql.append("AND b.file_id IN (SELECT value FROM json_each(?))")
        args.append(json.dumps(sorted(allowed)))
    if exclude is not None:
        sql.append("AND f.rowid != ?")
        args.append(exclude)
    if only is not None:
        sql.append("AND f.rowid IN (SELECT value FROM json_each(?))")
        args.append(json.dumps(only))
    sql.append("ORDER BY s DESC, f.rowid LIMIT ?")
    args.append(n)
    return store.conn.execute(" ".join(sql), args).fetchall()


def field_scores(store: Store, words: list[str], ids: list[int]) -> dict[int, dict[str, float]]:
    """Each block's BM25 from one FTS column at a time (its FIELD_WEIGHTS weight, the others 0): what each
    field contributes to the block's `bm25` (the parts do not add up to it: BM25 saturates)."""
    if not words or not ids:
        return {}
    columns = ", ".join(f"-bm25(fts, {', '.join(str(w if i == j else 0.0) for j, w in enumerate(FIELD_WEIGHTS))})"
                        for i in range(len(FIELDS)))
    rows = store.conn.execute(f"SELECT rowid, {columns} FROM fts WHERE fts MATCH ? AND rowid IN "
                              "(SELECT value FROM json_each(?))", (fts_query(words), json.dumps(ids)))
    return {r[0]: {field: round(max(score, 0.0), 6) for field, score in zip(FIELDS, r[1:])} for r in rows}


def held_words(store: Store, words: list[str], ids: list[int]) -> dict[int, int]:
    """How many of `words` each of the blocks `ids` holds (in any column)."""
    out: dict[int, int] = {}
    pool = json.dumps(ids)
    for word in words:
        for (block_id,) in store.conn.execute("SELECT rowid FROM fts WHERE fts MATCH ? AND rowid IN "
                                              "(SELECT value FROM json_each(?))", (fts_query([word]), pool)):
            out[block_id] = out.get(block_id, 0) + 1
    return out


def compound_terms(query: str) -> list[str]:
    """Adjacent query words run together ("type adapter" -> "typeadapter"): they match the whole
    lowercased identifiers that the index holds next to their parts (TypeAdapter)."""
    words = [w.lower() for w in _ALNUM.findall(query)]
    return [a + b for a, b in zip(words, words[1:]) if a not in STOP_WORDS and b not in STOP_WORDS]


def symbol_of(query: str) -> str | None:
    """The name a one-identifier query asks for: `Sinatra::Helpers` -> `Helpers`, `res.send` -> `send`."""
    query = query.strip()
    if not query or any(c.isspace() for c in query):
        return None
    last = _QUALIFIER.split(query)[-1]
    return last if _NAME.fullmatch(last) else None


def definitions(store: Store, symbol: str, allowed: set[int] | None) -> list[int]:
    """Ids of the functions, methods and classes named exactly `symbol` (the last part of their name)."""
    rows = store.conn.execute(
        "SELECT b.id, b.name, b.kind, b.file_id FROM fts f JOIN blocks b ON b.id = f.rowid WHERE fts MATCH ?",
        ("name : " + fts_query([symbol.lower()]),))
    return sorted(block_id for block_id, name, kind, file_id in rows
                  if kind in DEFINITION_KINDS and name.rsplit(".", 1)[-1] == symbol
                  and (allowed is None or file_id in allowed))


def _stem(word: str) -> str:
    """`word` without one plural, verb or noun ending (a light stemmer for file names)."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[:-len(suffix)]
    return word


def file_name_matches(path: str, words: list[str]) -> int:
    """How many query words name the file: equal to a part of its name up to a plural or verb ending,
    or, from 4 letters, a prefix of one or the other ("config" ~ configuration.py, "recover" ~ recoverer.go)."""
    stem = path.rsplit("/", 1)[-1].split(".", 1)[0]
    parts = {_stem(p) for p in (*split_identifier(stem), stem.lower()) if p}
    return sum(1 for word in map(_stem, words) if any(_same_word(word, p) for p in parts))


def _same_word(a: str, b: str) -> bool:
    """Two stemmed words are one: equal, or from 4 letters one a prefix of the other."""
    return a == b or (min(len(a), len(b)) >= 4 and (a.startswith(b) or b.startswith(a)))


@dataclass(frozen=True)
class QueryShape:
    """What the block factors need to know about a query, computed once per search."""

    parts: tuple[str, ...]        # identifier parts of the whole query, in order
    idents: frozenset[str]        # identifiers as typed (lowercased), dotted names kept
    stems: tuple[str, ...]        # `parts`, lightly stemmed
    asks_noise: bool              # mentions tests, examples, vendored or generated code, or migrations

    @classmethod
    def of(cls, query: str, words: list[str]) -> "QueryShape":
        idents = [w.strip(".") for w in _IDENT.findall(query)]
        parts = tuple(p for w in idents for p in split_identifier(w.rsplit(".", 1)[-1]))
        return cls(parts, frozenset(w.lower() for w in idents), tuple(map(_stem, parts)),
                   bool(NOISE_WORDS.intersection(words)))


def block_factors(shape: QueryShape, path: str, kind: str, name: str, language: str) -> dict[str, float]:
    """The multiplicative factors (BOOSTS) that apply to one block for this query (empty: none)."""
    out: dict[str, float] = {}
    short = name.rsplit(".", 1)[-1]
    parts = split_identifier(short) if short else ()
    if parts and shape.parts and kind != "module":    # a module block borrows its class's name
        qualified = tuple(p for segment in name.split(".") for p in split_identifier(segment))
        if shape.parts in (parts, qualified):
            out["exact_name"] = BOOSTS["exact_name"]
        elif short.lower() in shape.idents or name.lower() in shape.idents:
            out["name_in_query"] = BOOSTS["name_in_query"]
        elif len(parts) > 1:
            share = sum(1 for p in parts if any(_same_word(_stem(p), q) for q in shape.stems)) / len(parts)
            if share >= 0.5:
                out["name_terms"] = BOOSTS["name_terms"] ** share
    if kind in DEFINITION_KINDS:
        out["definition"] = BOOSTS["definition"]
    if kind == "class":
        out["class"] = BOOSTS["class"]
    if language in PROSE_LANGUAGES:
        out["prose"] = BOOSTS["prose"]
    if not shape.asks_noise and (NOISE_PATH.search(path) or NOISE_NAME.search(name)):
        out["noise_path"] = BOOSTS["noise_path"]
    if DECLARATION_PATH.search(path):
        out["declaration"] = BOOSTS["declaration"]
    return out


def file_factors(scored: list[Ranked], words: list[str]) -> None:
    """Raise each file's lead block (its best keyword score) by its file's evidence: keyword support from
    the file's other blocks, and query words that name the file. The file's other blocks keep their own
    scores, so a second answer in the same file is not buried. The factors are recorded in `factors`."""
    by_file: dict[str, list[Ranked]] = {}
    for item in scored:
        if item.keyword is not None:
            by_file.setdefault(item.path, []).append(item)
    for path, items in by_file.items():
        lead = min(items, key=lambda item: (-item.keyword, item.id))
        evidence = sorted((item.keyword for item in items), reverse=True)[:FILE_BLOCKS]
        support = sum(e * FILE_DECAY ** j for j, e in enumerate(evidence)) / evidence[0] if evidence[0] > 0 else 1.0
        named = file_name_matches(path, words) > 0
        factors = {}
        if support > 1.0:
            factors["file_support"] = support ** FILE_SUPPORT
        if named:
            factors["file_name"] = 1.0 + FILE_NAME
        for key, factor in factors.items():
            lead.keyword *= factor
            lead.score *= factor
            lead.factors[key] = factor


def fuse(store: Store, scored: list[Ranked], found: dict[int, Candidate], words: list[str],
         unembedded: set[int], *, one_identifier: bool = False) -> None:
    """Hybrid scores: keyword score / the best keyword score + weight * the block's cosine, min-max scaled
    over the vector pool and multiplied by its PRIORS (see SEMANTIC; SEMANTIC_SYMBOL for a `one_identifier`
    query); the parts go to `fusion`. A block still `unembedded` (no vector yet) is not pushed down for it:
    its keyword share stands in for the cosine."""
    top = max((item.keyword for item in scored if item.keyword is not None), default=0.0) or 1.0
    cosines = [c.cosine for c in found.values() if c.cosine is not None]
    low, high = min(cosines, default=0.0), max(cosines, default=0.0)
    if one_identifier:
        weight = SEMANTIC_SYMBOL
    else:
        best = sorted((item for item in scored if item.keyword is not None), key=lambda i: (-i.keyword, i.id))
        held = held_words(store, words, [item.id for item in best[:COVERAGE_BLOCKS]])
        weight = SEMANTIC + SEMANTIC_UNCOVERED * (1.0 - max(held.values(), default=0) / len(words))
    for item in scored:
        cosine = found[item.id].cosine
        keyword = item.keyword / top if item.keyword is not None else 0.0
        semantic = 0.0
        if item.id in unembedded:
            semantic = keyword
        elif cosine is not None and high > low:
            semantic = (cosine - low) / (high - low) * math.prod(item.factors.get(k, 1.0) for k in PRIORS)
        item.score = keyword + weight * semantic
        item.fusion = {"keyword": round(keyword, 6), "semantic": round(semantic, 6), "weight": round(weight, 6),
                       "best_keyword": round(top, 6), "cosine_low": round(low, 6), "cosine_high": round(high, 6)}
        if item.id in unembedded:
            item.fusion["semantic_from"] = "keyword: no vector yet"


def rank(store: Store, query: str, words: list[str], k: int, filters: Filters | None = None, *,
         vectors: VectorMatrix | None = None, query_vector: np.ndarray | None = None,
         exclude: int | None = None) -> list[Hit]:
    """Rank blocks for `words` (BM25) and/or `query_vector` (cosine); `query` is the user's text, used
    for name factors, compound terms and symbol lookup. A block's keyword score is its BM25 score times
    its block factors, each file's lead block then times its file factors; with both retrievers the
    score fuses that with the cosine (`fuse`), with vectors alone it is the cosine times the block
    factors. A one-identifier query lists the definitions of that name first, one per file."""
    allowed = allowed_files(store, filters)
    if allowed is not None and not allowed:
        return []
    pool = max(POOL, 3 * k)
    found: dict[int, Candidate] = {}
    search_words = list(dict.fromkeys(words + compound_terms(query))) if words else []
    pinned: set[int] = set()
    symbol = symbol_of(query) if search_words else None
    if search_words:
        for i, (block_id, score) in enumerate(keyword(store, search_words, pool, allowed, exclude)):
            found[block_id] = Candidate(block_id, bm25=score, bm25_rank=i + 1)
        if symbol:
            pinned = set(definitions(store, symbol, allowed)) - {exclude}
            missing = sorted(pinned - found.keys())
            if missing:
                for block_id, score in keyword(store, search_words, len(missing), allowed, exclude, only=missing):
                    found[block_id] = Candidate(block_id, bm25=score)
    use_vectors = vectors is not None and query_vector is not None
    if use_vectors:
        for i, (block_id, score) in enumerate(vectors.top(query_vector, pool, allowed, exclude)):
            cand = found.setdefault(block_id, Candidate(block_id))
            cand.cosine, cand.cosine_rank = score, i + 1
    if not found:
        return []

    rows = _block_rows(store, list(found), with_text=False)
    shape = QueryShape.of(query, words)
    unembedded: set[int] = set()
    if words and use_vectors:      # blocks still waiting for vectors (embedding in progress)
        ids = [c.id for c in found.values() if c.cosine_rank is None]
        unembedded = {i for i, has in zip(ids, vectors.has_vectors(ids)) if not has}
    scored = []
    for cand in found.values():
        if cand.id not in rows:        # deleted since the vector matrix was loaded
            continue
        path, start, end, kind, name, language = rows[cand.id]
        factors = block_factors(shape, path, kind, name, language)
        product = math.prod(factors.values())
        keyword_score = cand.bm25 * product if cand.bm25 is not None else None
        base = cand.bm25 if cand.bm25 is not None else cand.cosine
        scored.append(Ranked(base * product, cand.id, path, factors, keyword_score))
    file_factors(scored, words)
    if words and use_vectors:
        fuse(store, scored, found, words, unembedded, one_identifier=symbol is not None)
    if pinned:      # one definition per file leads; the file's other blocks rank on their scores
        lead: dict[str, Ranked] = {}
        for item in scored:
            if item.id in pinned and (item.path not in lead or item.score > lead[item.path].score):
                lead[item.path] = item
        pinned = {item.id for item in lead.values()}
    if filters is not None and filters.threshold is not None:
        scored = [item for item in scored if item.score >= filters.threshold]
    scored.sort(key=lambda item: (item.id not in pinned, -item.score, item.id))
    return _hits(store, scored[:k], found, search_words, pinned)


def _hits(store: Store, scored: list[Ranked], found: dict[int, Candidate], search_words: list[str],
          pinned: set[int]) -> list[Hit]:
    """The hits of the ranked blocks, each with its `explain`: what made its score (see README, --explain)."""
    texts = _block_rows(store, [item.id for item in scored], with_text=True)
    fields = field_scores(store, search_words, [item.id for item in scored if found[item.id].bm25 is not None])
    query_terms = set(search_words)
    hits = []
    for item in scored:
        if item.id not in texts:       # deleted by a build that committed meanwhile
            continue
        cand = found[item.id]
        path, start, end, kind, name, language, text = texts[item.id]
        matched = sorted(query_terms.intersection(terms(f"{name} {path} {text}"))) if query_terms else []
        explain = {"bm25": cand.bm25, "bm25_rank": cand.bm25_rank, "bm25_fields": fields.get(item.id),
                   "cosine": cand.cosine, "cosine_rank": cand.cosine_rank, "fusion": item.fusion or None,
                   "boosts": item.factors, "terms": matched, "defines_query": item.id in pinned}
        hits.append(Hit(path, start, end, kind, name, float(item.score), text, language, explain))
    return hits


def _block_rows(store: Store, ids: list[int], *, with_text: bool) -> dict[int, tuple]:
    columns = "b.id, f.path, b.start_line, b.end_line, b.kind, b.name, b.language" + (", b.text" if with_text else "")
    rows = store.conn.execute(
        f"SELECT {columns} FROM blocks b JOIN files f ON f.id = b.file_id "
        "WHERE b.id IN (SELECT value FROM json_each(?))", (json.dumps(ids),))
    return {r[0]: r[1:] for r in rows}
