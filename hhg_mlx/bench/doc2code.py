"""The `doc2code` suite (the CodeSearchNet method) built from the semble repositories.

From each repository's benchmark root, definitions whose documentation (a Python docstring, the doc
comment above a definition, an Elixir `@doc`, a Haskell `-- |` or a Zig `///` comment) has at least
`MIN_DOC_WORDS` words are sampled with a fixed seed; the query is the documentation's first sentence.
The root is copied and, from the sampled definitions only, the documentation is deleted, so the query
cannot be matched verbatim; the answer is the definition's first line in that copy. Tests, examples,
vendored code and definitions named like tests are left out (as CodeSearchNet does), as are queries that
two definitions of one repository share, and definitions with fewer than `MIN_CODE_LINES` lines of code
once their documentation is gone. The held-out split is a set of whole repositories (`heldout_repos`).
"""
from __future__ import annotations

import bisect
import io
import json
import random
import re
import shutil
import tokenize
from dataclasses import asdict, dataclass
from pathlib import Path

from ..index.extract import extract, file_language, read_source
from ..index.walk import walk
from ..search import DEFINITION_KINDS, NOISE_PATH
from .metrics import Target
from .semble import benchmark_root, load_specs, select
from .suites import Case, Corpus, heldout_by_hash

SEED = 10
PER_REPO = 80             # sampled definitions per repository (all of them when it has fewer)
MIN_DOC_WORDS = 6
MIN_QUERY_WORDS = 3
MAX_QUERY_WORDS = 40
MIN_CODE_LINES = 3        # non-blank lines a definition keeps without its documentation
BUILD_VERSION = 2         # bump when the rules or the code above change: cached copies are rebuilt


@dataclass(frozen=True, slots=True)
class Definition:
    """A documented definition of one source file, before sampling."""

    path: str
    language: str
    kind: str
    name: str
    line: int                 # 1-based first line of the definition with its documentation removed
    doc: str
    doc_lines: tuple[int, ...]   # 1-based lines that hold the documentation
    code_lines: int           # non-blank lines of the definition that are not documentation


@dataclass(frozen=True, slots=True)
class Doc2CodeQuery:
    repo: str
    text: str
    language: str
    kind: str
    name: str
    target: Target            # in the copy without the sampled documentation
    source_line: int          # the definition's first line in the original file


# --- documentation: where it is and its first sentence --------------------------------------------------------

_LINE_COMMENT = {"//": frozenset({"javascript", "typescript", "tsx", "go", "rust", "java", "kotlin", "c", "cpp",
                                  "csharp", "swift", "scala", "php"}),
                 "#": frozenset({"python", "ruby", "bash", "php"}),
                 "--": frozenset({"lua"})}
_ATTRIBUTE = re.compile(r"\s*(?:@|#\[)")


def _is_comment(line: str, language: str, in_block: bool) -> tuple[bool, bool]:
    """(is the line a comment, is a /* */ comment still open after it)."""
    s = line.strip()
    if in_block or s.startswith("/*"):
        if language not in _LINE_COMMENT["//"]:
            return False, False
        closes = "*/" in (s if in_block else s[2:])
        return True, not closes
    return any(s.startswith(mark) and language in langs for mark, langs in _LINE_COMMENT.items()), False


def leading_comment_lines(lines: list[str], start: int, end: int, language: str) -> list[int]:
    """1-based lines of the comments at the top of a definition spanning [start, end] (attributes and
    decorators between them are passed over, not collected)."""
    out, in_block = [], False
    for n in range(start, end + 1):
        comment, in_block = _is_comment(lines[n - 1], language, in_block)
        if comment:
            out.append(n)
        elif not _ATTRIBUTE.match(lines[n - 1]):
            break
    return out


def python_docstrings(text: str) -> dict[int, tuple[int, int]]:
    """Docstring statements of a Python file: (first, last) line, keyed by the line of the `:` that
    ends the header above them. Empty when the file does not tokenize."""
    try:
        toks = [t for t in tokenize.generate_tokens(io.StringIO(text).readline)
                if t.type not in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT)]
    except (tokenize.TokenError, SyntaxError):
        return {}
    out = {}
    for colon, newline, string, after in zip(toks, toks[1:], toks[2:], toks[3:]):
        if (colon.type == tokenize.OP and colon.string == ":" and newline.type == tokenize.NEWLINE
                and string.type == tokenize.STRING and after.type in (tokenize.NEWLINE, tokenize.ENDMARKER)):
            out[colon.start[0]] = (string.start[0], string.end[0])
    return out


_ROLE = re.compile(r":[\w:.-]+:(?=`)")           # reST roles: :class:`Foo`
_INLINE_TAG = re.compile(r"\{@\w+\s+([^}]*)\}")   # Javadoc/JSDoc {@link Foo}
_LINK = re.compile(r"(?<![\w\]])\[([^\[\]]+)\]")     # Rust/Markdown links: [`Foo`] -> Foo
_EMPHASIS = re.compile(r"[`*]+")
_TAGS = re.compile(r"\n\s*(?:@|:\w|\.\.\s|>>>|(?:Args|Arguments|Returns?|Raises|Parameters|Examples?|Note):)")
_SENTENCE_END = re.compile(r"[.!?](?=\s+[A-Z(\"'`]|$)")
_DIRECTIVE = re.compile(r"(?i)(?:todo|fixme|xxx|noqa|pylint|shellcheck|rubocop|eslint|spdx|copyright|license|"
                        r"deprecated)\b|type:|[@#=:]|\.\.|-{2,}")


def first_sentence(doc: str) -> str | None:
    """The documentation's first sentence (of its first paragraph, up to any tag or section line such as
    `@param` or `Args:`) without inline markup; None when it is a directive, a heading or a code line, or
    has fewer than MIN_QUERY_WORDS or more than MAX_QUERY_WORDS words."""
    paragraph = _TAGS.split(re.split(r"\n\s*\n", doc.strip(), maxsplit=1)[0], maxsplit=1)[0]
    if not paragraph or _DIRECTIVE.match(paragraph):
        return None
    text = " ".join(paragraph.split())
    end = _SENTENCE_END.search(text)
    text = text[:end.start() + 1] if end else text
    text = _EMPHASIS.sub("", _LINK.sub(r"\1", _INLINE_TAG.sub(r"\1", _ROLE.sub("", text)))).strip()
    return text if MIN_QUERY_WORDS <= len(text.split()) <= MAX_QUERY_WORDS else None


# --- definitions with documentation, per file -----------------------------------------------------------------

def documented_definitions(path: str, text: str) -> list[Definition]:
    """The definitions of one file that carry documentation of at least MIN_DOC_WORDS words."""
    language = file_language(path, text)
    lines = text.split("\n")
    if language in _PATTERNS:
        return _pattern_definitions(path, language, lines)
    docstrings = python_docstrings(text) if language == "python" else {}
    out = []
    for block in extract(path, text, language):
        if block.kind not in DEFINITION_KINDS or len(block.doc.split()) < MIN_DOC_WORDS:
            continue
        doc_lines = _python_doc_lines(block.start_line, block.end_line, lines, docstrings)
        if not doc_lines:
            doc_lines = leading_comment_lines(lines, block.start_line, block.end_line, language)
        if not doc_lines:
            continue
        first = next(n for n in range(block.start_line, block.end_line + 1) if n not in doc_lines)
        code = sum(1 for n in range(block.start_line, block.end_line + 1) if n not in doc_lines and lines[n - 1].strip())
        out.append(Definition(path, language, block.kind, block.name, first, block.doc, tuple(doc_lines), code))
    return out


def _python_doc_lines(start: int, end: int, lines: list[str], docstrings: dict[int, tuple[int, int]]) -> list[int]:
    """The docstring lines of the Python definition spanning [start, end]: the one under its header's colon."""
    for n in range(start, end + 1):
        if n in docstrings:
            first, last = docstrings[n]
            return list(range(first, last + 1))
        if lines[n - 1].rstrip().endswith(":") and not lines[n - 1].lstrip().startswith("@"):
            return []     # the header ended without a docstring below it
    return []


@dataclass(frozen=True, slots=True)
class _Pattern:
    """Documentation conventions of a language that hhg indexes as line chunks."""

    opens: re.Pattern          # the documentation's first line
    continues: re.Pattern      # each further line of it
    closes: re.Pattern | None  # its last line, when it is a delimited block (then `continues` is unused)
    between: re.Pattern        # lines allowed between the documentation and the definition
    definition: re.Pattern     # the definition line; group "name"
    marker: re.Pattern         # comment or quote syntax stripped from the documentation's lines


_PATTERNS: dict[str, _Pattern] = {
    "elixir": _Pattern(re.compile(r'\s*@doc\s+(?:~[sS])?"""\s*$'), re.compile(r"$^"), re.compile(r'\s*"""\s*$'),
                       re.compile(r"\s*@(?:spec|impl|deprecated)\b.*$|\s*$"),
                       re.compile(r"\s*(?:def|defp|defmacro|defmacrop|defguard|defdelegate)\s+(?P<name>[\w?!]+)"),
                       re.compile(r'\s*(?:@doc\s+(?:~[sS])?)?(?:""")?')),
    "haskell": _Pattern(re.compile(r"-- \|"), re.compile(r"--(?![-^|])"), None, re.compile(r"\{-#.*#-\}\s*$"),
                        re.compile(r"(?:(?:data|newtype|type|class)\s+(?:.*=>\s*)?(?P<tname>[A-Z][\w']*)"
                                   r"|(?P<name>[a-z_][\w']*)\s*::)"),
                        re.compile(r"--\s?\|?\s?")),
    "zig": _Pattern(re.compile(r"\s*///(?!/)"), re.compile(r"\s*///(?!/)"), None, re.compile(r"$^"),
                    re.compile(r"\s*(?:pub\s+)?(?:inline\s+)?(?:fn\s+(?P<name>\w+)|(?:const|var)\s+(?P<tname>\w+)\s*=)"),
                    re.compile(r"\s*///\s?")),
}


def _pattern_definitions(path: str, language: str, lines: list[str]) -> list[Definition]:
    """Documented definitions found with the language's `_Pattern` (no parser: these are indexed as chunks)."""
    pattern = _PATTERNS[language]
    out, n = [], 0
    while n < len(lines):
        if not pattern.opens.match(lines[n]):
            n += 1
            continue
        start, n = n, n + 1
        if pattern.closes is not None:
            while n < len(lines) and not pattern.closes.match(lines[n]):
                n += 1
            n += 1
        else:
            while n < len(lines) and pattern.continues.match(lines[n]):
                n += 1
        doc_end, skipped = n, 0
        while n < len(lines) and pattern.between.fullmatch(lines[n]) and skipped < 3:
            n, skipped = n + 1, skipped + 1
        m = pattern.definition.match(lines[n]) if n < len(lines) else None
        if m is None:
            continue
        doc = "\n".join(pattern.marker.sub("", line, count=1) for line in lines[start:doc_end]).strip()
        if pattern.closes is not None:
            doc = doc.removesuffix('"""').strip()
        if len(doc.split()) >= MIN_DOC_WORDS:
            groups = m.groupdict()
            kind = "function" if groups.get("name") else "class"
            name = groups.get("name") or groups["tname"]
            out.append(Definition(path, language, kind, name, n + 1, doc, tuple(range(start + 1, doc_end + 1)),
                                  MIN_CODE_LINES))
    return out


# --- sampling, the split, and the copy without the sampled documentation --------------------------------------

def candidates(root: Path) -> list[tuple[Definition, str]]:
    """(definition, query) for every usable documented definition under `root`, in path and line order."""
    found: list[tuple[Definition, str]] = []
    for entry in sorted(walk(root).files, key=lambda f: f.path):
        if NOISE_PATH.search(entry.path):
            continue
        text, _ = read_source(root / entry.path)
        if text is None:
            continue
        for d in documented_definitions(entry.path, text):
            query = first_sentence(d.doc)
            if query and d.code_lines >= MIN_CODE_LINES and "test" not in d.name.lower():
                found.append((d, query))
    counts: dict[str, int] = {}
    for _, query in found:
        counts[query.lower()] = counts.get(query.lower(), 0) + 1
    return [(d, q) for d, q in found if counts[q.lower()] == 1]


def sample(found: list[tuple[Definition, str]], repo: str, n: int = PER_REPO, seed: int = SEED) -> list[tuple[Definition, str]]:
    """`n` of a repository's candidates, the same ones on every run (seeded by `seed` and the repo name), in
    path and line order."""
    if len(found) <= n:
        return list(found)
    chosen = set(random.Random(f"{seed}:{repo}").sample(range(len(found)), n))
    return [item for i, item in enumerate(found) if i in chosen]


def heldout_repos(repos: dict[str, str]) -> frozenset[str]:
    """The held-out repositories of `repos` (name -> language): `heldout_by_hash` within the Python
    repositories and within the others, so both halves of the benchmark have unseen repositories."""
    python = [r for r, language in repos.items() if language == "python"]
    return heldout_by_hash(python) | heldout_by_hash(r for r in repos if r not in python)


def strip_lines(text: str, remove: set[int]) -> str:
    """`text` without the given 1-based lines."""
    return "\n".join(line for n, line in enumerate(text.split("\n"), 1) if n not in remove)


def shifted(line: int, removed: list[int]) -> int:
    """Where a kept 1-based line lands once the sorted `removed` lines are gone."""
    return line - bisect.bisect_left(removed, line)


def build_repo(repo: str, source: Path, dest: Path, *, per_repo: int = PER_REPO, seed: int = SEED) -> list[Doc2CodeQuery]:
    """Sample `repo`'s definitions under `source`, write the copy without their documentation to `dest`
    (replacing it) and return the queries, targets in `dest`'s lines."""
    chosen = sample(candidates(source), repo, per_repo, seed)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".hhg"), symlinks=True)
    by_path: dict[str, list[tuple[Definition, str]]] = {}
    for d, query in chosen:
        by_path.setdefault(d.path, []).append((d, query))
    out = []
    for path, items in by_path.items():
        removed = sorted({n for d, _ in items for n in d.doc_lines})
        original = read_source(source / path)[0]
        (dest / path).write_text(strip_lines(original, set(removed)), encoding="utf-8")
        out += [Doc2CodeQuery(repo, query, d.language, d.kind, d.name, Target(path, shifted(d.line, removed)), d.line)
                for d, query in items]
    return sorted(out, key=lambda q: (q.target.path, q.target.line))


def build(sources: dict[str, Path], work: Path, *, per_repo: int = PER_REPO, seed: int = SEED) -> dict[str, list[Doc2CodeQuery]]:
    """The suite's queries for `sources` (repo -> benchmark root), each repository's copy in `work/<repo>`
    with its queries in `work/<repo>.json`; a copy is made again only when its source, the seed or the
    rules change (so its index, embeddings included, survives between runs)."""
    out = {}
    for repo, root in sources.items():
        stamp = {"version": BUILD_VERSION, "seed": seed, "per_repo": per_repo, "source": str(root.resolve())}
        cache = work / f"{repo}.json"
        if cache.is_file() and (work / repo).is_dir():
            saved = json.loads(cache.read_text(encoding="utf-8"))
            if saved["stamp"] == stamp:
                out[repo] = [_query(q) for q in saved["queries"]]
                continue
        cache.unlink(missing_ok=True)
        out[repo] = build_repo(repo, root, work / repo, per_repo=per_repo, seed=seed)
        cache.write_text(json.dumps({"stamp": stamp, "queries": [asdict(q) for q in out[repo]]}, indent=1),
                         encoding="utf-8")
    return out


def _query(raw: dict) -> Doc2CodeQuery:
    return Doc2CodeQuery(**{**raw, "target": Target(**raw["target"])})


def corpora(data: Path, work: Path, repos: list[str] | None = None) -> list[Corpus]:
    """The suite over the semble repositories in `data` (sources unpacked under `work`, copies under
    `work/doc2code`), one corpus per repository; a query's kind is its language. The split is always
    made over all repositories, so choosing some does not change which are held out."""
    specs = load_specs(data)
    heldout = heldout_repos({s.name: s.language for s in specs})
    chosen = select(specs, repos)
    queries = build({s.name: benchmark_root(s, work) for s in chosen}, work / "doc2code")
    return [Corpus(s.name, s.language, work / "doc2code" / s.name,
                   tuple(Case(q.text, q.language, s.name in heldout, (q.target,),
                              f"{q.kind} {q.name}, {q.target.path}:{q.source_line}") for q in queries[s.name]))
            for s in chosen]
