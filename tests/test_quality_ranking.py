"""The ranking signals tuned on the quality suites, each with a test that fails when the signal is broken
or inverted: symbol lookup, file evidence (lead block only), name factors, class headers, declaration
files, noise paths, prose demotion, compound terms."""
import math

import pytest

from engine_fixtures import make_repo
from hhg_mlx.index.index import Index
from hhg_mlx.search import BOOSTS, FILE_DECAY, FILE_NAME, FILE_SUPPORT, compound_terms, file_name_matches, symbol_of

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
    "src/auth.py": '''
        class DigestAuth:
            """Digest header authentication: the digest header, digest header nonce, digest header."""

            def build_digest_header(self, method, url):
                """Build the digest header from the nonce."""
                return digest_header(method, url, self.nonce)

            def header(self):
                return self.digest
        ''',
    "src/stubs.py": '''
        def load_keyring(path):
            return open(path).read()
        ''',
    "src/stubs.pyi": '''
        def load_keyring(path: str) -> str: ...
        ''',
    "app/migrations/0002_keyring.py": '''
        def load_keyring_rows(apps):
            """Load keyring rows: load the keyring model."""
            return apps.get_model("keyring")
        ''',
    "src/keyring.py": '''
        def rows(store):
            """Read every keyring row."""
            return store.keyring_rows()
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
    assert hits[0] is named and named.explain["boosts"]["file_name"] == 1.0 + FILE_NAME
    assert other.explain["bm25"] > named.explain["bm25"]      # the words alone favour views.py
    twice = by_file(idx.search("templating template rendering", k=10, mode="keyword"))["src/templating.py"]
    assert file_name_matches("src/templating.py", ["templating", "template"]) == 2
    assert twice.explain["boosts"]["file_name"] == 1.0 + FILE_NAME      # once, however many words name the file


def test_file_support_raises_only_the_lead_block(idx):
    """big.py's six blocks each match once: its lead block is raised by the others' support, by hand
    (sum of FILE_DECAY**j over the lead's score) ** FILE_SUPPORT; its other blocks keep their own score (no
    penalty for being a file's second answer), so they rank by it among other files' blocks."""
    hits = idx.search("frobnicate", k=10, mode="keyword")
    big = [h for h in hits if h.file == "src/big.py"]
    assert hits[0] is big[0] and len(big) == 6
    support = sum(FILE_DECAY ** j for j in range(6)) ** FILE_SUPPORT
    assert big[0].explain["boosts"]["file_support"] == pytest.approx(support)
    assert big[0].score == pytest.approx(big[0].explain["bm25"] * BOOSTS["definition"] * support)
    for other in big[1:]:
        assert set(other.explain["boosts"]) == {"definition"}         # no file factor, no repeat penalty
        assert other.score == pytest.approx(other.explain["bm25"] * BOOSTS["definition"])
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_name_factors_grade_how_much_of_the_name_the_query_holds(idx):
    """"digest header": build_digest_header's name has two of its three parts in the query (1.5 ** (2/3)),
    the one-word `header` is named by a query word (name_in_query), the class DigestAuth one of two parts
    (1.5 ** (1/2)) and its header (a class) is demoted below the method that does the work."""
    hits = idx.search("digest header", k=10, mode="keyword")
    found = {h.name: h for h in hits}
    build, short, cls = found["DigestAuth.build_digest_header"], found["DigestAuth.header"], found["DigestAuth"]
    assert build.explain["boosts"]["name_terms"] == pytest.approx(BOOSTS["name_terms"] ** (2 / 3))
    assert short.explain["boosts"]["name_in_query"] == BOOSTS["name_in_query"]
    assert cls.explain["boosts"]["name_terms"] == pytest.approx(BOOSTS["name_terms"] ** 0.5)
    assert cls.explain["boosts"]["class"] == BOOSTS["class"] < 1
    assert hits.index(build) < hits.index(cls) and cls.explain["bm25"] > build.explain["bm25"]


def test_exact_qualified_name(idx):
    top = idx.search("DigestAuth build_digest_header", k=5, mode="keyword")[0]
    assert top.name == "DigestAuth.build_digest_header" and top.explain["boosts"]["exact_name"] == BOOSTS["exact_name"]


def test_declaration_files_and_migrations_rank_below_the_implementation(idx):
    hits = idx.search("load keyring", k=10, mode="keyword")
    files = [h.file for h in hits]
    impl, stub, migration = (by_file(hits)[f] for f in ("src/stubs.py", "src/stubs.pyi", "app/migrations/0002_keyring.py"))
    assert stub.explain["boosts"]["declaration"] == BOOSTS["declaration"] < 1
    assert migration.explain["boosts"]["noise_path"] == BOOSTS["noise_path"] < 1
    assert "declaration" not in impl.explain["boosts"] and "noise_path" not in impl.explain["boosts"]
    assert files.index("src/stubs.py") < files.index("src/stubs.pyi")
    assert files.index("src/stubs.py") < files.index("app/migrations/0002_keyring.py")
    for hit in (stub, migration):       # the factors are applied, not only reported
        assert hit.score == pytest.approx(hit.explain["bm25"] * math.prod(hit.explain["boosts"].values()))
    asked = idx.search("keyring migrations", k=3, mode="keyword")
    assert "noise_path" not in by_file(asked)["app/migrations/0002_keyring.py"].explain["boosts"]


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
