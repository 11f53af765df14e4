"""Identifier splitting and query processing."""
import pytest

from hhg_mlx.tokens import fts_query, index_text, query_terms, split_identifier, terms


@pytest.mark.parametrize("word, parts", [
    ("parseHTTPRequest", ("parse", "http", "request")),
    ("parse_http_request", ("parse", "http", "request")),
    ("ParseHttpRequest", ("parse", "http", "request")),
    ("HTTPServer", ("http", "server")),
    ("XMLHttpRequest", ("xml", "http", "request")),
    ("MAX_RETRY_COUNT", ("max", "retry", "count")),
    ("utf8Decode", ("utf", "8", "decode")),
    ("sha256", ("sha", "256")),
    ("getX", ("get", "x")),
    ("__init__", ("init",)),
    ("x", ("x",)),
    ("größe_berechnen", ("größe", "berechnen")),
])
def test_split_identifier(word, parts):
    assert split_identifier(word) == parts


def test_terms_keep_the_whole_identifier_after_its_parts():
    assert terms("def parseHTTPRequest(raw_bytes):") == [
        "def", "parse", "http", "request", "parsehttprequest", "raw", "bytes", "raw_bytes"]


def test_both_conventions_share_their_terms():
    camel, snake = set(terms("parseHTTPRequest")), set(terms("parse_http_request"))
    assert {"parse", "http", "request"} <= camel & snake
    assert index_text("a.b-c") == "a b c"


def test_query_terms_drop_stop_words_and_duplicates():
    assert query_terms("where do we retry the failed uploads, retry?") == ["retry", "failed", "uploads"]
    assert query_terms("how is it") == ["how", "is", "it"]          # nothing but stop words: keep them
    assert query_terms("parseHTTPRequest") == ["parse", "http", "request", "parsehttprequest"]
    assert query_terms("zeta the eta theta iota kappa", limit=3) == ["zeta", "eta", "theta"]


def test_fts_query_quotes_every_term():
    assert fts_query(["a", 'b"c']) == '"a" OR "b""c"'
