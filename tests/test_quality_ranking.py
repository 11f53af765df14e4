"""The ranking signals tuned on the benchmark: symbol lookup, file evidence, compounds, prose demotion."""
import pytest

from engine_fixtures import make_repo
from hhg_mlx.index.index import Index
from hhg_mlx.search import compound_terms, file_name_matches, symbol_of

FILES = {
    "src/session.py": '''
        class Session:
            """Keeps cookies between calls."""
            timeout = 10
        ''',
    "src/client.py": '''
        def open_pool(session):
            # session session session: the session is passed to every session hook
            return [session, session, session]


        def Session():
            return None
        ''',
    "src/templating.py": '''
        def render(name, context):
            return name.format(**context)
        ''',
    "src/views.py": '''
        def show(page):
            """Template rendering for pages: each template goes through rendering twice."""
            template = rendering = page  # template rendering, template rendering, template rendering
            return template, rendering
        ''',
    "src/big.py": "\n\n".join(f"def widget_step_{i}(w):\n    return frobnicate(w, {i})\n" for i in range(6)),
    "src/small.py": '''
        def tidy(w):
            return frobnicate(w)
        ''',
    "docs/guide.md": "# Cookies\n\nThe session keeps cookies. Cookies, cookies, cookies expire.\n",
    "src/jar.py": '''
        def store_cookies(jar, cookies):
            jar.update(cookies)
        ''',
}


@pytest.fixture(scope="module")
def idx(tmp_path_factory):
    return Index.build(make_repo(tmp_path_factory.mktemp("ranking") / "repo", FILES))


def by_file(hits):
    return {h.file: h for h in hits}


@pytest.mark.parametrize("query", ["Session", "requests.Session", "pkg::Session"])
def test_symbol_query_lists_one_definition_per_file_first(idx, query):
    hits = idx.search(query, k=10, mode="keyword")
    leading = [h for h in hits if h.explain["defines_query"]]
    assert [(h.file, h.name) for h in leading] == [(h.file, h.name) for h in hits[:len(leading)]]
    assert {h.file for h in leading} == {"src/session.py", "src/client.py"}
    assert all(h.name == "Session" for h in leading)
    assert "src/client.py" not in {h.file for h in hits[len(leading):] if h.explain["defines_query"]}


def test_file_named_by_the_query_rises(idx):
    hits = idx.search("template rendering", k=10, mode="keyword")
    named, other = by_file(hits)["src/templating.py"], by_file(hits)["src/views.py"]
    assert hits[0] is named and named.explain["boosts"]["file_name"] == 2.0
    assert other.explain["bm25"] > named.explain["bm25"]      # the words alone favour views.py


def test_one_file_does_not_crowd_out_the_others(idx):
    hits = idx.search("frobnicate", k=3, mode="keyword")
    assert hits[0].file == "src/big.py" and hits[1].file == "src/small.py"
    assert hits[0].explain["boosts"]["file_support"] > 1.0     # six matching blocks support big.py
    second_big = hits[2]
    assert second_big.file == "src/big.py" and second_big.explain["boosts"]["repeat"] == pytest.approx(0.3)


def test_prose_is_demoted_below_code(idx):
    hits = idx.search("cookies", k=10, mode="keyword")
    doc, code = by_file(hits)["docs/guide.md"], by_file(hits)["src/jar.py"]
    assert doc.explain["boosts"]["prose"] == 0.5 and "prose" not in code.explain["boosts"]
    assert hits.index(code) < hits.index(doc) and doc.explain["bm25"] > code.explain["bm25"]


def test_compound_terms_join_adjacent_words():
    assert compound_terms("how the type adapter works") == ["typeadapter", "adapterworks"]
    assert compound_terms("Session") == []


@pytest.mark.parametrize("query, symbol", [("Sinatra::Helpers", "Helpers"), ("res.send", "send"), ("valid?", "valid?"),
                                           ("Foo#bar", "bar"), ("g", "g"), ("two words", None), ("::", None),
                                           ("", None), ("3d", None)])
def test_symbol_of(query, symbol):
    assert symbol_of(query) == symbol


@pytest.mark.parametrize("path, words, count", [
    ("lua/diff.lua", ["git", "diff"], 1),
    ("middleware/recoverer.go", ["panic", "recovery"], 1),       # shared stem "recover"
    ("src/configuration.py", ["config"], 1),                      # prefix from 4 letters
    ("src/templating.py", ["template", "rendering"], 1),
    ("src/web_urldispatcher.py", ["web", "dispatch"], 1),         # a part of a snake_case name
    ("src/io.py", ["iox"], 0),                                    # short words must match exactly
    ("src/app.py", ["application"], 0),
])
def test_file_name_matches(path, words, count):
    assert file_name_matches(path, words) == count
