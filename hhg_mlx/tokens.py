"""Identifier-aware tokenisation shared by indexing and querying.

`parseHTTPRequest` and `parse_http_request` both become `parse http request` (plus the whole
identifier, lowercased), so a query in words finds code written in either convention and an
exact identifier still scores higher than its parts.
"""
from __future__ import annotations

import re
from functools import lru_cache

# A word: letters, digits and underscores (any script). Everything else separates words.
_WORD = re.compile(r"[^\W_]+(?:_+[^\W_]+)*", re.UNICODE)
# The parts of one underscore-free word: acronyms (HTTP in HTTPServer), Capitalised or lower words, numbers.
_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")

MAX_QUERY_TERMS = 64

STOP_WORDS = frozenset("""
a an and are as at be been but by can could did do does doing for from had has have how i if in into is it
its me my of on or our should so than that the their them then there these they this those to was we were
what when where which who whom why will with would you your
""".split())


@lru_cache(maxsize=1 << 16)
def split_identifier(word: str) -> tuple[str, ...]:
    """Lowercased parts of one identifier: `HTTPServer2_go` -> ('http', 'server', '2', 'go').
    Case boundaries are only looked for in ASCII words; other words split on underscores only."""
    pieces = word.split("_")
    if not word.isascii():
        return tuple(p.lower() for p in pieces if p)
    return tuple(part.lower() for piece in pieces for part in _PART.findall(piece))


@lru_cache(maxsize=1 << 17)
def _word_terms(word: str) -> str:
    parts = split_identifier(word)
    return " ".join((*parts, word.lower()) if len(parts) > 1 else parts)


def index_text(text: str) -> str:
    """The index terms of `text`, space-separated: each word's identifier parts, then the whole word
    (lowercased) when it has more than one part. Order follows the text; repeats count for BM25."""
    return " ".join(filter(None, map(_word_terms, _WORD.findall(text))))


def terms(text: str) -> list[str]:
    """`index_text` as a list."""
    return index_text(text).split()


def query_terms(query: str, limit: int = MAX_QUERY_TERMS) -> list[str]:
    """Distinct terms of a user query, stop words dropped (kept when nothing else is left), at most
    `limit` of them (a pasted block of code stays a fast query)."""
    all_terms = list(dict.fromkeys(terms(query)))
    kept = [t for t in all_terms if t not in STOP_WORDS]
    return (kept or all_terms)[:limit]


def fts_query(words: list[str]) -> str:
    """An FTS5 MATCH expression that ORs the given terms, each quoted so no user input is syntax."""
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)
