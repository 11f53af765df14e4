"""Retrieval and ranking: BM25 over split identifiers, cosine over window vectors, reciprocal-rank
fusion, then code-aware boosts and file-level evidence. Filters restrict both retrievers before any
cut, so a filter never leaves fewer than k hits when k matching blocks exist.

Every ranking constant lives in the block below; each was chosen by measurement on the train split
of the semble benchmark subset (`python -m hhg_mlx.bench.quality --split train`).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .index.languages import CODE_LANGUAGES, PROSE_LANGUAGES, matches_type
from .tokens import STOP_WORDS, fts_query, split_identifier, terms
from .types import Filters, Hit

if TYPE_CHECKING:
    import numpy as np

    from .index.store import Store

# ---- ranking constants -------------------------------------------------------------------------
FIELD_WEIGHTS = (8.0, 3.0, 2.0, 1.0)   # bm25() weights of the FTS columns name, path, doc, body
POOL = 100                             # candidates taken from each retriever before boosts (at least 3k)
RRF_K = 5.0                            # reciprocal-rank fusion: score = sum(weight / (RRF_K + rank))
# (the customary 60 flattens the top ranks: hybrid with all-MiniLM-L6-v2 on the train split 0.830 at 60, 0.876 at 5)
FUSION_WEIGHTS = {"bm25": 1.0, "cosine": 1.0}
BOOSTS = {
    "exact_name": 2.0,       # the query is the block's name, in any case convention ("parse_args", "ParseArgs")
    "name_in_query": 1.5,    # an identifier of the query is the block's name
    "name_terms": 1.25,      # every part of the block's (multi-part) name is a query term
    "definition": 1.2,       # functions, methods and classes over module code, sections and chunks
    "noise_path": 0.5,       # tests, examples, vendored and generated code, unless the query asks for them
    "prose": 0.5,            # documentation and text: a query in words is more often about the code
}
# File-level evidence, applied to every block of a file (see `file_factors`): support from the file's
# other blocks (their scores, the j-th best weighted FILE_DECAY**j, over the best one's), a factor
# 1 + FILE_NAME per query word that names the file ("config" ~ config.lua), and REPEAT**j for the
# file's j-th best block so that one file's blocks rarely crowd the other files out of the top k.
FILE_DECAY = 0.8
FILE_BLOCKS = 10
FILE_NAME = 1.0
REPEAT = 0.3
DEFINITION_KINDS = frozenset({"function", "method", "class"})
NOISE_WORDS = frozenset({"test", "tests", "testing", "spec", "specs", "example", "examples", "sample", "samples",
                         "vendor", "vendored", "generated", "mock", "mocks", "fixture", "fixtures", "benchmark"})
_NOISE_DIRS = r"tests?|testing|__tests__|specs?|examples?|samples?|vendor|vendored|third_party|node_modules|" \
              r"generated|__generated__|fixtures?|mocks?|benchmarks?"
_NOISE_FILES = r"test_[^/]*|[^/]*_tests?\.[^/]*|[^/]*\.(?:test|spec)\.[^/]*|conftest\.py|[^/]*_pb2\.py|" \
               r"[^/]*\.pb\.go|[^/]*_generated\.[^/]*|[^/]*\.generated\.[^/]*"
NOISE_PATH = re.compile(rf"(?:^|/)(?:{_NOISE_DIRS})/|(?:^|/)(?:{_NOISE_FILES})$", re.IGNORECASE)
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
    boosts: dict[str, float]
    evidence: float | None       # BM25 score times the block's boosts: what a file's support adds up


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
    count = 0
    for word in map(_stem, words):
        if any(word == p or (min(len(word), len(p)) >= 4 and (word.startswith(p) or p.startswith(word)))
               for p in parts):
            count += 1
    return count


@dataclass(frozen=True)
class QueryShape:
    """What the boosts need to know about a query, computed once per search."""

    parts: tuple[str, ...]        # identifier parts of the whole query, in order
    idents: frozenset[str]        # identifiers as typed (lowercased), dotted names kept
    words: frozenset[str]         # the BM25 terms
    asks_noise: bool              # mentions tests, examples, vendored or generated code

    @classmethod
    def of(cls, query: str, words: list[str]) -> "QueryShape":
        idents = [w.strip(".") for w in _IDENT.findall(query)]
        parts = tuple(p for w in idents for p in split_identifier(w.rsplit(".", 1)[-1]))
        return cls(parts, frozenset(w.lower() for w in idents), frozenset(words), bool(NOISE_WORDS.intersection(words)))


def boosts(shape: QueryShape, path: str, kind: str, name: str, language: str) -> dict[str, float]:
    """The multiplicative boosts that apply to one block for this query (empty: none)."""
    out: dict[str, float] = {}
    short = name.rsplit(".", 1)[-1]
    parts = split_identifier(short) if short else ()
    if parts and shape.parts and kind != "module":    # a module block borrows its class's name
        if shape.parts == parts:
            out["exact_name"] = BOOSTS["exact_name"]
        elif short.lower() in shape.idents or name.lower() in shape.idents:
            out["name_in_query"] = BOOSTS["name_in_query"]
        elif len(parts) > 1 and shape.words.issuperset(parts):
            out["name_terms"] = BOOSTS["name_terms"]
    if kind in DEFINITION_KINDS:
        out["definition"] = BOOSTS["definition"]
    if language in PROSE_LANGUAGES:
        out["prose"] = BOOSTS["prose"]
    if not shape.asks_noise and NOISE_PATH.search(path):
        out["noise_path"] = BOOSTS["noise_path"]
    return out


def file_factors(scored: list[Ranked], words: list[str]) -> None:
    """Multiply each block's score by its file's evidence: keyword support from the file's other
    blocks, query words naming the file, and REPEAT**j for the file's j-th best block; the factors
    are recorded in the block's boosts. Support comes from BM25 only: cosines and fused ranks are too
    flat to tell a file that answers in several places from a merely long one."""
    by_file: dict[str, list[Ranked]] = {}
    for item in scored:
        by_file.setdefault(item.path, []).append(item)
    for path, items in by_file.items():
        items.sort(key=lambda item: (-item.score, item.id))
        evidence = sorted((item.evidence for item in items if item.evidence is not None), reverse=True)
        support = sum(e * FILE_DECAY ** j for j, e in enumerate(evidence[:FILE_BLOCKS])) / evidence[0] \
            if evidence and evidence[0] > 0 else 1.0
        named = file_name_matches(path, words)
        for j, item in enumerate(items):
            factors = {}
            if support > 1.0:
                factors["file_support"] = support
            if named:
                factors["file_name"] = 1.0 + FILE_NAME * named
            if j:
                factors["repeat"] = REPEAT ** j
            for key, factor in factors.items():
                item.score *= factor
                item.boosts[key] = factor


def rank(store: Store, query: str, words: list[str], k: int, filters: Filters | None = None, *,
         vectors: VectorMatrix | None = None, query_vector: np.ndarray | None = None,
         exclude: int | None = None) -> list[Hit]:
    """Rank blocks for `words` (BM25) and/or `query_vector` (cosine); `query` is the user's text, used
    for name boosts, compound terms and symbol lookup. With both retrievers the base score is
    reciprocal-rank fusion, otherwise the retriever's own score; block boosts multiply it, then the
    file factors (`file_factors`). A one-identifier query lists the definitions of that name first."""
    allowed = allowed_files(store, filters)
    if allowed is not None and not allowed:
        return []
    pool = max(POOL, 3 * k)
    found: dict[int, Candidate] = {}
    search_words = list(dict.fromkeys(words + compound_terms(query))) if words else []
    pinned: set[int] = set()
    if search_words:
        for i, (block_id, score) in enumerate(keyword(store, search_words, pool, allowed, exclude)):
            found[block_id] = Candidate(block_id, bm25=score, bm25_rank=i + 1)
        symbol = symbol_of(query)
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
        if words and use_vectors:
            # a pinned definition from outside the BM25 pool ranks as the pool's last
            bm25_rank = cand.bm25_rank or (pool if cand.bm25 is not None else None)
            if cand.id in unembedded:   # ranked by keyword alone, not penalised for the missing vector
                base = sum(FUSION_WEIGHTS.values()) / (RRF_K + bm25_rank)
            else:
                ranks = (("bm25", bm25_rank), ("cosine", cand.cosine_rank))
                base = sum(FUSION_WEIGHTS[key] / (RRF_K + r) for key, r in ranks if r is not None)
        else:
            base = cand.bm25 if cand.bm25 is not None else cand.cosine
        applied = boosts(shape, path, kind, name, language)
        product = 1.0
        for factor in applied.values():
            product *= factor
        scored.append(Ranked(base * product, cand.id, path, applied, cand.bm25 * product if cand.bm25 else None))
    file_factors(scored, words)
    if pinned:      # one definition per file leads; the file's other blocks rank on their scores
        lead: dict[str, Ranked] = {}
        for item in scored:
            if item.id in pinned and (item.path not in lead or item.score > lead[item.path].score):
                lead[item.path] = item
        pinned = {item.id for item in lead.values()}
    if filters is not None and filters.threshold is not None:
        scored = [item for item in scored if item.score >= filters.threshold]
    scored.sort(key=lambda item: (item.id not in pinned, -item.score, item.id))
    scored = scored[:k]

    texts = _block_rows(store, [item.id for item in scored], with_text=True)
    hits = []
    query_terms = set(search_words)
    for item in scored:
        if item.id not in texts:       # deleted by a build that committed meanwhile
            continue
        cand = found[item.id]
        path, start, end, kind, name, language, text = texts[item.id]
        matched = sorted(query_terms.intersection(terms(f"{name} {path} {text}"))) if query_terms else []
        fusion = ("rrf, keyword only: no vector yet" if item.id in unembedded else "rrf") if words and use_vectors else None
        explain = {"bm25": cand.bm25, "bm25_rank": cand.bm25_rank, "cosine": cand.cosine,
                   "cosine_rank": cand.cosine_rank, "fusion": fusion,
                   "boosts": item.boosts, "terms": matched, "defines_query": item.id in pinned}
        hits.append(Hit(path, start, end, kind, name, float(item.score), text, language, explain))
    return hits


def _block_rows(store: Store, ids: list[int], *, with_text: bool) -> dict[int, tuple]:
    columns = "b.id, f.path, b.start_line, b.end_line, b.kind, b.name, b.language" + (", b.text" if with_text else "")
    rows = store.conn.execute(
        f"SELECT {columns} FROM blocks b JOIN files f ON f.id = b.file_id "
        "WHERE b.id IN (SELECT value FROM json_each(?))", (json.dumps(ids),))
    return {r[0]: r[1:] for r in rows}
