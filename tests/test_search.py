"""Ranking: BM25 with code-aware boosts, filters before the top-k cut, fusion with a stub encoder."""
import math
import re

import numpy as np
import pytest

from engine_fixtures import StubEncoder, make_repo, write_files
from hhg_mlx import search as search_module
from hhg_mlx.errors import ModelUnavailable
from hhg_mlx.index.index import Index
from hhg_mlx.output import why_lines
from hhg_mlx.types import Filters, Hit

FILES = {
    "src/http/request.py": '''
        def parse_http_request(raw):
            """Split a raw request into method, target and headers."""
            head, _, body = raw.partition(b"\\r\\n\\r\\n")
            method, target, _ = head.split(b" ", 2)
            return method, target, body
        ''',
    "src/server.py": '''
        from .http.request import parse_http_request


        class ConnectionHandler:
            def handle(self, conn):
                # every request goes through parse_http_request before routing
                request = parse_http_request(conn.read())
                return self.route(request)
        ''',
    "tests/test_request.py": '''
        from src.http.request import parse_http_request


        def test_parse_http_request():
            assert parse_http_request(b"GET / HTTP/1.1\\r\\n\\r\\n")[0] == b"GET"
        ''',
    "src/retry.py": '''
        import time


        def retry_with_backoff(call, attempts=5):
            """Call again after failures, sleeping longer each time."""
            for attempt in range(attempts):
                try:
                    return call()
                except OSError:
                    time.sleep(2 ** attempt)
        ''',
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("search") / "repo", FILES)


@pytest.fixture(scope="module")
def idx(repo):
    return Index.build(repo)


def names(hits):
    return [h.name for h in hits]


def test_definition_beats_mentions(idx):
    hits = idx.search("parse http request", mode="keyword")
    assert hits[0].name == "parse_http_request" and hits[0].file == "src/http/request.py"
    assert hits[0].line == 1 and hits[0].end_line == 5 and hits[0].content.startswith("def parse_http_request")
    assert names(hits).index("ConnectionHandler.handle") > 0


def test_exact_name_is_boosted_in_any_convention(idx):
    for query in ("parse_http_request", "parseHttpRequest"):
        top = idx.search(query, mode="keyword")[0]
        assert top.name == "parse_http_request" and "exact_name" in top.explain["boosts"]


def test_tests_are_demoted_unless_asked_for(idx):
    plain = idx.search("parse http request", mode="keyword")
    test_hit = next(h for h in plain if h.file == "tests/test_request.py")
    assert "noise_path" in test_hit.explain["boosts"]
    # without the demotion the test would outrank the definition: it mentions every term more often
    assert test_hit.explain["bm25"] > plain[0].explain["bm25"]
    asked = idx.search("test parse http request", mode="keyword")
    assert asked[0].file == "tests/test_request.py" and "noise_path" not in asked[0].explain["boosts"]


def test_or_semantics_and_explain_terms(idx):
    hits = idx.search("retry zzqqxx", mode="keyword")
    assert hits[0].name == "retry_with_backoff" and hits[0].explain["terms"] == ["retry"]


@pytest.mark.parametrize("query", ['"unbalanced', "a:b", "foo-bar", "NOT", "AND OR", "(", "*", "^x", "NEAR(a b)",
                                   "col:value \"x\" -y", "'", "{}", "\\", "", "   ", "::", "-", "..."])
def test_any_query_text_is_safe(idx, query):
    """FTS5 syntax in a query is plain text: no error, every matched term is one of the query's words,
    and a query without a word matches nothing."""
    words = set(re.findall(r"\w+", query.lower()))
    hits = idx.search(query, mode="keyword")
    assert all(set(h.explain["terms"]) <= words for h in hits)
    assert words or hits == []
    assert idx.search(query) == hits             # hybrid without vectors: the keyword ranking


@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    """Many markdown sections that out-score the few Python functions for "widget"."""
    root = tmp_path_factory.mktemp("crowded") / "repo"
    docs = "\n".join(f"## Widget part {i}\n\nwidget widget widget {i}\n" for i in range(40))
    code = {f"src/w{i}.py": f"def build_part_{i}(x):\n    return x.widget\n" for i in range(10)}
    make_repo(root, {"docs/widgets.md": "# Widgets\n\n" + docs, **code}, fillers=5)
    return Index.build(root, encoder=StubEncoder())


@pytest.mark.parametrize("filters", [Filters(types=("py",)), Filters(types=("python",)), Filters(code_only=True),
                                     Filters(exclude=("*.md",)), Filters(paths=("src",))])
@pytest.mark.parametrize("mode", ["keyword", "semantic", "hybrid"])
def test_filters_apply_before_the_top_k_cut(crowded, filters, mode, monkeypatch):
    monkeypatch.setattr(search_module, "POOL", 5)     # candidates per retriever = 3k: all markdown unfiltered
    unfiltered = crowded.search("widget", k=5, mode=mode)
    assert all(h.file.endswith(".md") for h in unfiltered)
    hits = crowded.search("widget", k=5, filters=filters, mode=mode)
    assert len(hits) == 5 and all(h.file.startswith("src/w") for h in hits)


@pytest.mark.parametrize("filters", [Filters(types=("py",)), Filters(code_only=True)])
def test_filters_use_the_language_a_file_is_parsed_as(tmp_path, filters):
    """An extension-less script is Python by its `#!` line; `-t py` and `--code-only` must see it so."""
    root = make_repo(tmp_path / "repo", {
        "bin/deploy": "#!/usr/bin/env python3\ndef deploy_gizmo(target):\n    return target.gizmo\n",
        "notes/gizmo": "gizmo gizmo gizmo: how the gizmo is deployed\n"}, fillers=2)
    with Index.build(root) as idx:
        assert {h.file for h in idx.search("gizmo", mode="keyword")} == {"bin/deploy", "notes/gizmo"}
        hits = idx.search("gizmo", filters=filters, mode="keyword")
    assert [(h.file, h.name, h.language) for h in hits] == [("bin/deploy", "deploy_gizmo", "python")]


def test_c_headers_with_cpp_syntax_are_cpp_to_filters(tmp_path):
    root = make_repo(tmp_path / "repo", {"include/gizmo.h": "namespace hw {\nclass Gizmo {\npublic:\n  int spin();\n};\n}\n",
                                         "src/gizmo.c": "int gizmo_spin(void) { return 1; }\n"}, fillers=1)
    with Index.build(root) as idx:
        assert {h.file for h in idx.search("gizmo", filters=Filters(types=("cpp",)), mode="keyword")} == {"include/gizmo.h"}
        assert {h.file for h in idx.search("gizmo", filters=Filters(types=("c",)), mode="keyword")} == {"src/gizmo.c"}


def test_filters_can_exclude_everything(crowded):
    assert crowded.search("widget", filters=Filters(types=("go",))) == []
    assert crowded.search("widget", filters=Filters(paths=("nowhere",))) == []


def test_threshold_drops_low_scores(idx):
    hits = idx.search("parse http request", mode="keyword")
    cut = hits[2].score
    kept = idx.search("parse http request", mode="keyword", filters=Filters(threshold=cut))
    assert kept == [h for h in hits if h.score >= cut] and len(kept) == 3


@pytest.fixture(scope="module")
def embedded(repo, tmp_path_factory):
    root = make_repo(tmp_path_factory.mktemp("embedded") / "repo", FILES)
    enc = StubEncoder()
    return Index.build(root, encoder=enc), enc


def cosine(enc, a, b):
    va, vb = enc.vector(a), enc.vector(b)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))


def test_semantic_scores_are_cosines_of_the_stub(embedded):
    idx, enc = embedded
    query = "sleep after failures and call again"
    hits = idx.search(query, k=5, mode="semantic")
    assert hits[0].name == "retry_with_backoff"
    for hit in hits:
        assert hit.explain["cosine"] == pytest.approx(cosine(enc, query, hit.content), abs=1e-5)
        assert hit.explain["bm25"] is None
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize("query, held", [("parse the request headers", 3), ("sleep headers", 1)])
def test_hybrid_adds_the_scaled_cosine_to_the_keyword_share(embedded, query, held):
    """hybrid = keyword score / the best keyword score + weight * the cosine min-max scaled over the
    vector pool times the block's priors; weight grows with the share of the query's words that no single
    one of the best keyword blocks holds (request.py holds all of the first query's; no block holds
    both of the second's)."""
    idx, _ = embedded
    keyword = {(h.file, h.line): h.score for h in idx.search(query, k=100, mode="keyword")}
    cosine = {(h.file, h.line): h.explain["cosine"] for h in idx.search(query, k=100, mode="semantic")}
    top, low, high = max(keyword.values()), min(cosine.values()), max(cosine.values())
    words = len(query.replace(" the ", " ").split())
    weight = search_module.SEMANTIC + search_module.SEMANTIC_UNCOVERED * (1 - held / words)
    hybrid = idx.search(query, k=10)
    assert len(hybrid) >= 4
    for hit in hybrid:
        key = (hit.file, hit.line)
        priors = math.prod(v for k, v in hit.explain["boosts"].items() if k in search_module.PRIORS)
        semantic = (cosine[key] - low) / (high - low) * priors
        assert hit.explain["fusion"]["weight"] == pytest.approx(weight, abs=1e-6)
        assert hit.score == pytest.approx(keyword.get(key, 0.0) / top + weight * semantic, abs=1e-5)


@pytest.mark.parametrize("query", ["retry_with_backoff", "ConnectionHandler"])
def test_a_one_identifier_query_gives_the_cosine_the_symbol_weight(embedded, query):
    """A one-identifier query asks for a name: the cosine's weight is SEMANTIC_SYMBOL, below the weight
    the coverage rule would give (at least SEMANTIC), and the fused scores follow the same formula."""
    idx, _ = embedded
    assert search_module.SEMANTIC_SYMBOL < search_module.SEMANTIC
    keyword = {(h.file, h.line): h.score for h in idx.search(query, k=100, mode="keyword")}
    cosine = {(h.file, h.line): h.explain["cosine"] for h in idx.search(query, k=100, mode="semantic")}
    top, low, high = max(keyword.values()), min(cosine.values()), max(cosine.values())
    hybrid = idx.search(query, k=10)
    assert hybrid[0].name.rsplit(".", 1)[-1] == query
    for hit in hybrid:
        key = (hit.file, hit.line)
        priors = math.prod(v for k, v in hit.explain["boosts"].items() if k in search_module.PRIORS)
        semantic = (cosine[key] - low) / (high - low) * priors
        assert hit.explain["fusion"]["weight"] == search_module.SEMANTIC_SYMBOL
        assert hit.score == pytest.approx(keyword.get(key, 0.0) / top + search_module.SEMANTIC_SYMBOL * semantic,
                                          abs=1e-5)


_NUM = r"(-?[\d.e+-]+)"


def _product(factors: str) -> float:
    return math.prod(float(v) for v in re.findall(r"×([\d.e+-]+) \w+", factors))


@pytest.mark.parametrize("query", ["parse the request headers", "sleep headers"])
def test_explain_takes_a_fused_score_apart_exactly(embedded, query):
    """--explain in hybrid mode: `score = keyword K + W × semantic X`, `keyword K = bm25 B ×factors / best`,
    `semantic X = (cosine - low) / (high - low) ×priors`; each line's numbers recompose the one above."""
    idx, _ = embedded
    for hit in idx.search(query, k=10):
        lines = why_lines(hit)
        score, keyword, weight, semantic = map(float, re.fullmatch(
            rf"score {_NUM} = keyword {_NUM} \+ {_NUM} × semantic {_NUM}", lines[0]).groups())
        assert score == pytest.approx(keyword + weight * semantic, rel=1e-3)
        assert score == pytest.approx(hit.score, rel=1e-3)
        parts = {line.split(" ", 1)[0]: line for line in lines[1:3]}
        if hit.explain["bm25"] is not None:
            bm25, factors, best = re.fullmatch(rf"keyword {_NUM} = bm25 {_NUM}(.*) / best keyword score {_NUM}",
                                               parts["keyword"]).groups()[1:]
            assert float(bm25) * _product(factors) / float(best) == pytest.approx(keyword, rel=1e-3)
        else:
            assert keyword == 0 and "keyword" not in parts
        if semantic:
            cos, low, high, priors = re.fullmatch(rf"semantic {_NUM} = \(cosine {_NUM} - {_NUM}\) / "
                                                  rf"\({_NUM} - {_NUM}\)(.*)", parts["semantic"]).group(2, 3, 4, 6)
            assert set(re.findall(r"×[\d.e+-]+ (\w+)", priors)) <= set(search_module.PRIORS)
            assert (float(cos) - float(low)) / (float(high) - float(low)) * _product(priors) == pytest.approx(
                semantic, abs=2e-3)


def test_explain_of_a_reranked_hit_names_the_reranker_and_the_score_before():
    hit = Hit("a.py", 1, 2, "function", "f", 0.45, "def f(): pass", "python",
              {"bm25": 3.0, "boosts": {"definition": 1.2, "noise_path": 0.5}, "rerank_logit": -0.2,
               "fused_score": 3.6, "reranker": "jina-reranker-tiny"})
    assert why_lines(hit)[:2] == ["score 0.45 = sigmoid(rerank logit -0.2) ×0.5 noise_path; 3.6 before reranking "
                                  "by jina-reranker-tiny", "score 3.6 = bm25 3 ×1.2 definition ×0.5 noise_path"]


def test_hybrid_without_vectors_degrades_to_keyword_with_one_notice(idx):
    assert idx.search("parse http request") == idx.search("parse http request", mode="keyword")
    idx.search("retry")
    assert len(idx.notices) == 1 and "keyword" in idx.notices[0] and "hhg build --model" in idx.notices[0]
    with pytest.raises(ModelUnavailable, match="hhg build --model"):
        idx.search("parse", mode="semantic")


def test_hybrid_when_the_model_cannot_be_loaded(embedded):
    idx, _ = embedded
    reopened = Index.open(idx.root)      # no encoder given; "stub-bag" cannot be loaded
    assert reopened.search("retry backoff") == reopened.search("retry backoff", mode="keyword")
    assert len(reopened.notices) == 1 and "showing keyword results" in reopened.notices[0]
    with pytest.raises(ModelUnavailable):
        reopened.search("retry backoff", mode="semantic")


def test_similar_uses_the_stored_vector(embedded):
    idx, enc = embedded
    source = "src/http/request.py"
    own = idx.search("parse_http_request", k=1, mode="keyword")[0]
    hits = idx.similar(source, name="parse_http_request", k=50)
    assert hits and all((h.file, h.name) != (source, own.name) for h in hits)
    for hit in hits:
        assert hit.explain["cosine"] == pytest.approx(cosine(enc, own.content, hit.content), abs=1e-5)
    others = idx._store.conn.execute("SELECT name, text FROM blocks WHERE name != ?", (own.name,)).fetchall()
    expected = max(others, key=lambda row: cosine(enc, own.content, row[1]))[0]
    assert max(hits, key=lambda h: h.explain["cosine"]).name == expected


def test_similar_without_vectors_uses_identifiers(idx):
    hits = idx.similar("src/server.py", line=6)
    assert hits and all(h.file != "src/server.py" or h.line != 5 for h in hits)
    assert hits[0].explain["bm25"] is not None and hits[0].explain["cosine"] is None
    assert {"parse_http_request", "test_parse_http_request"} & set(names(hits[:3]))


def test_vectors_reload_after_another_build(tmp_path):
    enc = StubEncoder()
    root = make_repo(tmp_path / "repo", FILES, fillers=3)
    reader = Index.open(Index.build(root, encoder=enc).root, encoder=enc)
    assert reader.search("quux frobnicate", mode="semantic", k=1)[0].name != "quux_frobnicate"
    write_files(root, {"src/quux.py": "def quux_frobnicate(value):\n    return value\n"})
    Index.build(root, encoder=enc)
    assert reader.search("quux frobnicate", mode="semantic", k=1)[0].name == "quux_frobnicate"


def test_vectors_of_deleted_blocks_are_ignored(embedded):
    idx, enc = embedded
    stale = search_module.VectorMatrix(np.array([[10**9, 1]]), enc.embed_documents(["ghost block"]))
    assert search_module.rank(idx._store, "", [], 5, vectors=stale, query_vector=enc.embed_queries(["ghost"])[0]) == []


def test_searches_memory_map_the_build_snapshot(embedded):
    idx, enc = embedded
    reader = Index.open(idx.root, encoder=enc)
    reader.search("retry", mode="semantic")
    assert isinstance(reader._vectors.vectors, np.memmap)
    assert len(reader._vectors) == reader._store.count("blocks")
