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
FUSION = "rrf"                         # "rrf" | "score": keyword score / its max + SEMANTIC * normalised cosine
SEMANTIC = 0.5
COSINE_FLOOR = "last"                  # the cosine that normalises to 0: "last" of the pool, or a number
PRIORS = ("definition", "noise_path", "prose", "declaration", "class")
BOOSTS = {
    "exact_name": 2.0,       # the query is the block's name, in any case convention ("parse_args", "ParseArgs")
    "name_in_query": 1.5,    # an identifier of the query is the block's name
    "name_terms": 1.25,      # every part of the block's (multi-part) name is a query term
    "definition": 1.2,       # functions, methods and classes over module code, sections and chunks
    "noise_path": 0.5,       # tests, examples, vendored and generated code, unless the query asks for them
    "prose": 0.5,            # documentation and text: a query in words is more often about the code
    "declaration": 1.0,      # type stubs and declaration files (.pyi, .d.ts): the implementation is elsewhere
    "class": 1.0,            # class headers, below the methods that do the work
}
NAME_SHARE = False             # name_terms graded: BOOSTS["name_terms"] ** (share of the name's parts the query holds)
NAME_WORDS_ONLY_CODE = False   # name_in_query only for identifier-like query words (or a one-word query)
COVERAGE = 0.0                 # keyword score times (share of the query's words the block holds) ** COVERAGE
# File-level evidence, applied to every block of a file (see `file_factors`): support from the file's
# other blocks (their scores, the j-th best weighted FILE_DECAY**j, over the best one's), a factor
# 1 + FILE_NAME per query word that names the file ("config" ~ config.lua), and REPEAT**j for the
# file's j-th best block so that one file's blocks rarely crowd the other files out of the top k.
FILE_DECAY = 0.8
FILE_BLOCKS = 10
FILE_SUPPORT_POWER = 1.0
FILE_NAME = 1.0
REPEAT = 0.3
REPEAT_FROM = 1
DECLARATION_PATH = re.compile(r"\.pyi$|\.d\.[cm]?ts$")
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
_CODE_WORD = re.compile(r"[_.\d]|[a-z][A-Z]|^[A-Z]{2}")   # snake_case, dotted, camelCase, ACRONYM
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
    """All window vectors of one model; a block's cosine is the max over its windows."""

    def __init__(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """`ids`: one (block id, file id) row per window, ordered by block; `vectors`: one row per window."""
        import numpy as np

        self.vectors = vectors
        self.starts = np.flatnonzero(np.r_[True, ids[1:, 0] != ids[:-1, 0]]) if len(ids) else np.zeros(0, np.int64)
        self.blocks = np.asarray(ids[self.starts, 0])      # sorted block ids, one per block
        self.files = np.asarray(ids[self.starts, 1])       # the file of each of them

    def __len__(self) -> int:
        return len(self.blocks)

    def block_vector(self, block_id: int) -> np.ndarray | None:
        """The normalised mean of a block's window vectors (None when it has none)."""
        import numpy as np

        pos = int(np.searchsorted(self.blocks, block_id))
        if pos >= len(self.blocks) or self.blocks[pos] != block_id:
            return None
        end = self.starts[pos + 1] if pos + 1 < len(self.starts) else len(self.vectors)
        mean = self.vectors[self.starts[pos]:end].mean(axis=0)
        return mean / max(float(np.linalg.norm(mean)), 1e-12)

    def top(self, query: np.ndarray, n: int, allowed: set[int] | None, exclude: int | None) -> list[tuple[int, float]]:
        import numpy as np

        if not len(self.blocks):
            return []
        scores = np.maximum.reduceat(self.vectors @ np.asarray(query, dtype=np.float32), self.starts)
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
    """What the boosts need to know about a query, computed once per search."""

    parts: tuple[str, ...]        # identifier parts of the whole query, in order
    idents: frozenset[str]        # identifiers as typed (lowercased), dotted names kept
    name_idents: frozenset[str]   # those that may name a block
    words: frozenset[str]         # the BM25 terms
    asks_noise: bool              # mentions tests, examples, vendored or generated code

    @classmethod
    def of(cls, query: str, words: list[str]) -> "QueryShape":
        idents = [w.strip(".") for w in _IDENT.findall(query)]
        parts = tuple(p for w in idents for p in split_identifier(w.rsplit(".", 1)[-1]))
        lowered = frozenset(w.lower() for w in idents)
        named = lowered if not NAME_WORDS_ONLY_CODE or len(idents) == 1 else \
            frozenset(w.lower() for w in idents if _CODE_WORD.search(w))
        return cls(parts, lowered, named, frozenset(words), bool(NOISE_WORDS.intersection(words)))


def boosts(shape: QueryShape, path: str, kind: str, name: str, language: str) -> dict[str, float]:
    """The multiplicative boosts that apply to one block for this query (empty: none)."""
    out: dict[str, float] = {}
    short = name.rsplit(".", 1)[-1]
    parts = split_identifier(short) if short else ()
    if parts and shape.parts and kind != "module":    # a module block borrows its class's name
        if shape.parts == parts:
            out["exact_name"] = BOOSTS["exact_name"]
        elif short.lower() in shape.name_idents or name.lower() in shape.name_idents:
            out["name_in_query"] = BOOSTS["name_in_query"]
        elif NAME_SHARE and len(parts) > 1:
            stems = [_stem(p) for p in shape.parts]
            share = sum(1 for p in parts if any(_same_word(_stem(p), q) for q in stems)) / len(parts)
            if share >= 0.5:
                out["name_terms"] = BOOSTS["name_terms"] ** share
        elif len(parts) > 1 and shape.words.issuperset(parts):
            out["name_terms"] = BOOSTS["name_terms"]
    if kind in DEFINITION_KINDS:
        out["definition"] = BOOSTS["definition"]
    if kind == "class" and BOOSTS["class"] != 1.0:
        out["class"] = BOOSTS["class"]
    if language in PROSE_LANGUAGES:
        out["prose"] = BOOSTS["prose"]
    if not shape.asks_noise and NOISE_PATH.search(path):
        out["noise_path"] = BOOSTS["noise_path"]
    if BOOSTS["declaration"] != 1.0 and DECLARATION_PATH.search(path):
        out["declaration"] = BOOSTS["declaration"]
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
                factors["file_support"] = support ** FILE_SUPPORT_POWER
            if named:
                factors["file_name"] = 1.0 + FILE_NAME * named
            if j >= REPEAT_FROM:
                factors["repeat"] = REPEAT ** (j - REPEAT_FROM + 1)
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
    held = held_words(store, words, [c.id for c in found.values() if c.bm25 is not None]) if COVERAGE and len(words) > 1 else {}
    scored = []
    for cand in found.values():
        if cand.id not in rows:        # deleted since the vector matrix was loaded
            continue
        path, start, end, kind, name, language = rows[cand.id]
        if words and use_vectors and FUSION == "score":
            base = cand.bm25 or 0.0
        elif words and use_vectors:
            # a pinned definition from outside the BM25 pool ranks as the pool's last
            ranks = (("bm25", cand.bm25_rank or (pool if cand.bm25 is not None else None)),
                     ("cosine", cand.cosine_rank))
            base = sum(FUSION_WEIGHTS[key] / (RRF_K + r) for key, r in ranks if r is not None)
        else:
            base = cand.bm25 if cand.bm25 is not None else cand.cosine
        applied = boosts(shape, path, kind, name, language)
        if held and cand.bm25 is not None:
            applied["coverage"] = (held.get(cand.id, 0) / len(words)) ** COVERAGE
        product = 1.0
        for factor in applied.values():
            product *= factor
        scored.append(Ranked(base * product, cand.id, path, applied, cand.bm25 * product if cand.bm25 else None))
    if words and use_vectors and FUSION == "score":
        keyworded = [item for item in scored if found[item.id].bm25 is not None]
        file_factors(keyworded, words)
        top = max((item.score for item in keyworded), default=0.0) or 1.0
        cosines = [c.cosine for c in found.values() if c.cosine is not None]
        hi = max(cosines, default=1.0)
        lo = min(cosines, default=0.0) if COSINE_FLOOR == "last" else COSINE_FLOOR
        for item in scored:
            cand = found[item.id]
            kw = item.score / top if cand.bm25 is not None else 0.0
            sem = 0.0
            if cand.cosine is not None and hi > lo:
                sem = max(0.0, (cand.cosine - lo) / (hi - lo))
                for key in PRIORS:
                    sem *= item.boosts.get(key, 1.0)
            item.score = kw + SEMANTIC * sem
    else:
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
        explain = {"bm25": cand.bm25, "bm25_rank": cand.bm25_rank, "cosine": cand.cosine,
                   "cosine_rank": cand.cosine_rank, "fusion": "rrf" if words and use_vectors else None,
                   "boosts": item.boosts, "terms": matched, "defines_query": item.id in pinned}
        hits.append(Hit(path, start, end, kind, name, float(item.score), text, language, explain))
    return hits


def _block_rows(store: Store, ids: list[int], *, with_text: bool) -> dict[int, tuple]:
    columns = "b.id, f.path, b.start_line, b.end_line, b.kind, b.name, b.language" + (", b.text" if with_text else "")
    rows = store.conn.execute(
        f"SELECT {columns} FROM blocks b JOIN files f ON f.id = b.file_id "
        "WHERE b.id IN (SELECT value FROM json_each(?))", (json.dumps(ids),))
    return {r[0]: r[1:] for r in rows}
