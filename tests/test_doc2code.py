"""The doc2code builder on a small fixture repository: where documentation is, its first sentence, what
is sampled, what the indexed copy loses, where the answers land, and the split by repository."""
from __future__ import annotations

import hashlib
import json
import textwrap

import pytest

from hhg_mlx.bench import doc2code
from hhg_mlx.bench.doc2code import documented_definitions, first_sentence

FILES = {
    "pkg/core.py": '''
        import os


        @cached
        def parse_duration(text):
            """Parse a duration such as 1h30m into seconds.

            More details that are not part of the query.
            """
            value = text.strip()
            return int(value)


        class Cache:
            """A small cache that keeps recent values in memory."""

            size = 10

            def get(self, key):
                """Return the cached value for the key, when present."""
                found = self.data.get(key)
                return found

            def short(self):
                """This documented method has only one line of code."""
                return 1

            def undocumented(self):
                return os.sep
        ''',
    "pkg/twins.py": '''
        def first_twin(a):
            """Add the two numbers and return their sum."""
            b = a + 1
            return b


        def second_twin(a):
            """Add the two numbers and return their sum."""
            b = a + 2
            return b


        def test_like_name(a):
            """A function named like a test is left out of the sample."""
            b = a + 3
            return b
        ''',
    "tests/test_core.py": '''
        def check_parse():
            """Checks that durations parse into the right number of seconds."""
            assert True
            assert True
        ''',
    "mux.go": '''
        package chi

        // Mount attaches another handler along a routing path
        // below the current router.
        func (mx *Mux) Mount(pattern string, handler Handler) {
        \tmx.handle(pattern, handler)
        \tmx.count++
        }
        ''',
    "conn.ex": '''
        defmodule Plug.Conn do
          @doc """
          Assigns a value to a key in the connection.

          Longer text.
          """
          @spec assign(t, atom, term) :: t
          def assign(conn, key, value) do
            conn
          end
        end
        ''',
    "Core.hs": '''
        -- | The X monad, 'ReaderT' and 'StateT' transformers over 'IO'
        -- encapsulating the window manager state.
        newtype X a = X (ReaderT XConf (StateT XState IO) a)
        ''',
    "clap.zig": '''
        /// Takes a string and parses it into many params at comptime.
        pub fn parseParamsComptime(comptime str: []const u8) []const Param {
            return parse(str);
        }
        ''',
}


def write(root, files=FILES):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.split("\n"), 1) if needle in line)


@pytest.fixture()
def repo(tmp_path):
    return write(tmp_path / "src")


def test_python_docstrings_and_leading_comments_are_located(repo):
    text = (repo / "pkg/core.py").read_text()
    found = {d.name: d for d in documented_definitions("pkg/core.py", text)}
    assert set(found) == {"parse_duration", "Cache", "Cache.get", "Cache.short"}
    parse = found["parse_duration"]
    assert parse.line == line_of(text, "@cached")           # the definition starts at its decorator
    assert parse.doc_lines == tuple(range(line_of(text, '"""Parse'), line_of(text, "More details") + 2))
    assert parse.code_lines == 4 and parse.kind == "function"
    assert found["Cache"].doc_lines == (line_of(text, '"""A small cache'),) and found["Cache"].code_lines == 2   # the header
    assert found["Cache.short"].code_lines == 2
    go = (repo / "mux.go").read_text()
    (mount,) = documented_definitions("mux.go", go)
    assert (mount.name, mount.kind, mount.doc_lines, mount.line) == ("Mux.Mount", "method", (3, 4), 5)


@pytest.mark.parametrize("path, name, kind, doc_lines, line", [
    ("conn.ex", "assign", "function", (2, 3, 4, 5, 6), 8),           # the @spec between is kept
    ("Core.hs", "X", "class", (1, 2), 3),
    ("clap.zig", "parseParamsComptime", "function", (1,), 2),
])
def test_documentation_of_languages_without_a_grammar(repo, path, name, kind, doc_lines, line):
    (d,) = documented_definitions(path, (repo / path).read_text())
    assert (d.name, d.kind, d.doc_lines, d.line) == (name, kind, doc_lines, line)


@pytest.mark.parametrize("doc, sentence", [
    ("Parse a duration such as 1h30m into seconds.\n\nMore.", "Parse a duration such as 1h30m into seconds."),
    ("Return the :class:`Response` for e.g. a redirect. Then more.", "Return the Response for e.g. a redirect."),
    ("A deserializer over a [`Seq`] of values.", "A deserializer over a Seq of values."),
    ("Returns list[str] of names\nacross two lines", "Returns list[str] of names across two lines"),
    ("Helper for a getter on an object.\n@param {Object} obj", "Helper for a getter on an object."),
    ("Find the route\n:param path: the path", "Find the route"),
    ("See {@link Logger} for the levels used here", "See Logger for the levels used here"),
    ("TODO: document this function properly", None),
    (".. versionchanged:: 8.3 Returns None now", None),
    ("@private helper with many words here", None),
    ("Too short.", None),
    (" ".join(["word"] * 41), None),
])
def test_first_sentence(doc, sentence):
    assert first_sentence(doc) == sentence


def test_candidates_leave_out_tests_twins_and_short_bodies(repo):
    """Not candidates: tests (path or name), two definitions sharing a query, fewer than 3 lines of code
    without the documentation (Cache's header, Cache.short)."""
    names = {d.name: q for d, q in doc2code.candidates(repo)}
    assert names == {"parse_duration": "Parse a duration such as 1h30m into seconds.",
                     "Cache.get": "Return the cached value for the key, when present.",
                     "Mux.Mount": "Mount attaches another handler along a routing path below the current router.",
                     "assign": "Assigns a value to a key in the connection.",
                     "X": "The X monad, 'ReaderT' and 'StateT' transformers over 'IO' encapsulating the window manager state.",
                     "parseParamsComptime": "Takes a string and parses it into many params at comptime."}


def test_the_copy_loses_only_the_sampled_documentation_and_targets_follow(repo, tmp_path):
    dest = tmp_path / "copy"
    queries = doc2code.build_repo("r", repo, dest, per_repo=100)
    assert len(queries) == 6
    for q in queries:
        copy_line = (dest / q.target.path).read_text().split("\n")[q.target.line - 1]
        short = q.name.rsplit(".", 1)[-1]
        assert short in copy_line or copy_line.lstrip().startswith("@"), (q, copy_line)
        assert q.text not in (dest / q.target.path).read_text()
    core = (dest / "pkg/core.py").read_text()
    original = (repo / "pkg/core.py").read_text()
    assert "Parse a duration" not in core and "More details" not in core and "Return the cached" not in core
    assert "This documented method" in core and "A small cache" in core          # not sampled: kept
    doc_lines = {n for d in documented_definitions("pkg/core.py", original) if d.name in ("parse_duration", "Cache.get")
                 for n in d.doc_lines}
    assert len(doc_lines) == 5
    assert core.split("\n") == [line for n, line in enumerate(original.split("\n"), 1) if n not in doc_lines]
    assert (dest / "tests/test_core.py").read_text() == (repo / "tests/test_core.py").read_text()
    go = (dest / "mux.go").read_text()
    assert go.split("\n")[2].startswith("func (mx *Mux) Mount")
    assert next(q for q in queries if q.name == "Mux.Mount").target.line == 3


def test_sampling_is_seeded_and_keeps_other_docs(repo, tmp_path):
    one = doc2code.build_repo("r", repo, tmp_path / "a", per_repo=2)
    again = doc2code.build_repo("r", repo, tmp_path / "b", per_repo=2)
    other_seed = [doc2code.build_repo("r", repo, tmp_path / f"s{seed}", per_repo=2, seed=seed) for seed in range(6)]
    assert len(one) == 2 and one == again
    assert any([q.name for q in s] != [q.name for q in one] for s in other_seed)
    kept = {d.name for d, _ in doc2code.candidates(repo)} - {q.name for q in one}
    assert {d.name for d, _ in doc2code.candidates(tmp_path / "a")} == kept    # the copy still documents the rest


def test_build_caches_copies_until_the_rules_change(repo, tmp_path):
    work = tmp_path / "work"
    first = doc2code.build({"r": repo}, work, per_repo=3)
    marker = work / "r" / ".hhg"
    marker.mkdir()                                        # an index built in the copy survives a second build
    assert doc2code.build({"r": repo}, work, per_repo=3) == first and marker.is_dir()
    assert json.loads((work / "r.json").read_text())["stamp"]["seed"] == doc2code.SEED
    doc2code.build({"r": repo}, work, per_repo=4)
    assert not marker.exists() and len(json.loads((work / "r.json").read_text())["queries"]) == 4


def test_heldout_repositories_are_a_third_of_each_group():
    repos = {f"py{i}": "python" for i in range(9)} | {f"other{i}": lang for i, lang in enumerate("go rust lua".split())}
    held = doc2code.heldout_repos(repos)
    digest = lambda n: hashlib.sha256(n.encode()).hexdigest()   # noqa: E731
    assert held == set(sorted((r for r in repos if r.startswith("py")), key=digest)[:3]) | \
        {min((r for r in repos if r.startswith("other")), key=digest)}
