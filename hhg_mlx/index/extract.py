"""Source text → blocks: definitions from tree-sitter, sections from headings, line chunks for everything else.

Code (one tree-sitter grammar package per language, imported on first use, one cached parser per language;
extension-less scripts get their language from the `#!` line, `.h` headers with C++ syntax parse as C++):
- `function` / `method` blocks span the whole definition with its decorators, attributes and the comments right
  above it (no blank line between); methods are named `Class.method`, nested classes `Outer.Inner.method`, Go
  methods `Receiver.Method`, Rust methods `Type.method` (from `impl Type`). Functions nested in functions stay
  inside their parent's block.
- `class` blocks (classes, structs, interfaces, enums, traits, impls, TS type aliases, Rust/Ruby modules and TS
  namespaces) hold only the *header*: from the definition's first line to the line before its first nested
  definition (the signature, docstring and leading fields); a class without nested definitions is one whole block.
  So method text is never embedded twice, and a class hit shows what the class is.
- `module` blocks hold the code between definitions: top-level code (named "") and class-level code after the
  first method (named after the class). C++/C# namespaces and Java/Go packages are transparent.
Every line that holds more than blanks and closing brackets (`}`, `});`, `end`, ...) lies in some block.

Documentation: markdown by ATX/setext headings outside code fences, reStructuredText (and `.txt` files that use
its underlined headings, like Django's docs) by section titles: one `section` per heading, named by its text.
Everything else (config, markup, languages without a grammar here) is cut into `chunk`s of at most `CHUNK_LINES`
lines, preferably at blank lines; nothing is truncated (the index windows long blocks when embedding).
"""
from __future__ import annotations

import importlib
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from ..types import Block
from .languages import PROSE_LANGUAGES, language_for
from .walk import MAX_FILE_BYTES

CHUNK_LINES = 60
SNIFF_BYTES = 8192
_ASCII = bytes(range(128))


# --- reading ------------------------------------------------------------------------------------------------------

_GENERATED = re.compile(
    r"Code generated .* DO NOT EDIT|DO NOT EDIT|@generated\b"
    r"|(?i:\b(?:this|the) (?:file|code|module|source) (?:is|was|has been) (?:auto-?|automatically )?generated\b)"
    r"|(?i:\bauto-?generated (?:by|from|file|code|with|using|on)\b)")


def read_source(path: Path, max_bytes: int = MAX_FILE_BYTES) -> tuple[str | None, str | None]:
    """The file's text with universal newlines (`\\r\\n`, `\\r` → `\\n`), or `(None, reason)`.

    Reasons: "unreadable" (any OS error), "too-large", and those of `decode_source`.
    """
    path = Path(path)
    data = read_head(path, max_bytes)
    if data is None:
        return None, "unreadable"
    if len(data) > max_bytes:
        return None, "too-large"
    return decode_source(data, path.name)


def read_head(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> bytes | None:
    """At most `max_bytes + 1` bytes of a file (one byte over the limit tells it is too large), or None
    when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return fh.read(max_bytes + 1)
    except OSError:
        return None


def decode_source(data: bytes, name: str) -> tuple[str | None, str | None]:
    """`read_source` for bytes already read (`name` picks the prose rules): `(text, None)` or `(None, reason)`.

    Reasons: "binary" (a NUL byte in the first 8 KiB), "encoding", "minified" (mean line length above 250
    characters, 1000 for prose, in files over 4 KiB) and "generated" (a "Code generated ... DO NOT EDIT",
    "@generated" or "this file was generated" style marker in the first 5 lines). UTF-8 (with or without BOM)
    and BOM-marked UTF-16 decode exactly; other bytes are read as cp1252 (invalid bytes replaced) when at most
    30% of them are non-ASCII, the signature of a legacy 8-bit encoding; anything else is "encoding".
    """
    text = _decode(data)
    if text is None:
        return None, "binary" if b"\0" in data[:SNIFF_BYTES] else "encoding"
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    limit = 1000 if language_for(name) in PROSE_LANGUAGES else 250
    if len(text) > 4096 and len(text) > limit * (text.count("\n") + 1):
        return None, "minified"
    if any(_GENERATED.search(line[:300]) for line in text.split("\n", 5)[:5]):
        return None, "generated"
    return text, None


def _decode(data: bytes) -> str | None:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    if b"\0" in data[:SNIFF_BYTES]:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    high = len(data.translate(None, _ASCII))
    return data.decode("cp1252", errors="replace") if high <= 0.3 * len(data) else None


# --- entry point --------------------------------------------------------------------------------------------------

def file_language(path: str, text: str) -> str:
    """The language a file is parsed as: `language_for(path)`, except that an extension-less script takes
    its language from the `#!` line and a `.h` header with C++ syntax is C++."""
    language = language_for(path) or "text"
    if language == "text" and text.startswith("#!"):
        return _shebang_language(text.split("\n", 1)[0]) or language
    if language == "c" and path.endswith(".h") and _CPP_HEADER.search(text):
        return "cpp"
    return language


def extract(path: str, text: str, language: str | None = None) -> list[Block]:
    """Blocks of one file, in line order; `path` is root-relative POSIX and, with the content, picks the
    language (`file_language`) unless the caller has already decided it."""
    language = language or file_language(path, text)
    lines = text.split("\n")
    spans: list[tuple[int, int, str, str, str]]   # (start, end, kind, name, doc), 1-based inclusive
    if language in _GRAMMARS:
        spans = _code_spans(language, text, lines)
    elif language in ("markdown", "rst", "text"):
        heads = _markdown_headings(lines) if language == "markdown" else _rst_headings(lines)
        spans = _sections(lines, heads) if heads else _chunks(lines)
    else:
        spans = _chunks(lines)
    return [Block(path, language, kind, name, start, end, "\n".join(lines[start - 1:end]), doc)
            for start, end, kind, name, doc in spans]


_CPP_HEADER = re.compile(r"^\s*(?:class\s+\w+[^;]*$|namespace\s+[\w:]*\s*\{|template\s*<|public:|private:)", re.M)
_SHEBANG = re.compile(r"[/\s](python|node|bash|sh|zsh|ruby|lua|php)[\d.]*(?:\s|$)")
_SHEBANG_LANGUAGES = {"node": "javascript", "sh": "bash", "zsh": "bash"}


def _shebang_language(line: str) -> str | None:
    """Language of an extension-less script from its `#!` line."""
    m = _SHEBANG.search(line)
    return _SHEBANG_LANGUAGES.get(m.group(1), m.group(1)) if m else None


def _blank(line: str) -> bool:
    return not line.strip()


def _trim(lines: list[str], start: int, end: int) -> tuple[int, int]:
    """Shrink 1-based [start, end] past blank lines at both ends (start > end when all blank)."""
    while start <= end and _blank(lines[start - 1]):
        start += 1
    while end >= start and _blank(lines[end - 1]):
        end -= 1
    return start, end


# --- code ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Grammar:
    module: str
    query: str
    entry: str = "language"
    wrappers: frozenset[str] = frozenset()   # parent nodes that are part of the definition they wrap
    namespaces: frozenset[str] = frozenset()   # containers whose functions stay functions (Rust mod, TS namespace)
    leading: frozenset[str] = frozenset()      # sibling nodes above a definition that belong to it (Elixir @doc)
    clauses: bool = False                      # adjacent definitions of one name are one (Haskell equations)
    revision: int = 1                          # bump when the query changes: indexed files are parsed again


def _classes(*kinds: str, name: str = "name: (_) @name") -> str:
    """Query patterns capturing each node kind as a class named by its `name` field."""
    return "\n".join(f"({kind} {name}) @class" for kind in kinds) + "\n"


_NAMED_BODY = "name: (_) @name body: (_)"   # a definition, not a forward declaration or a type use


_JS_FUNCTIONS = """
(function_declaration name: (_) @name) @function
(generator_function_declaration name: (_) @name) @function
(method_definition name: (_) @name) @function
(variable_declarator name: (identifier) @name
                     value: [(arrow_function) (function_expression) (generator_function)]) @function
"""
_FIELD_FUNCTION = "({} {}: (_) @name value: [(arrow_function) (function_expression)]) @function\n"
_JS_WRAPPERS = frozenset({"export_statement", "lexical_declaration", "variable_declaration"})
_TS_QUERY = _JS_FUNCTIONS + _FIELD_FUNCTION.format("public_field_definition", "name") + _classes(
    "class_declaration", "abstract_class_declaration", "interface_declaration", "enum_declaration",
    "type_alias_declaration", "internal_module", "module")
_TS_WRAPPERS = _JS_WRAPPERS | {"expression_statement", "ambient_declaration"}
_TS_NAMESPACES = frozenset({"internal_module", "module"})
_C_TYPES = _classes("struct_specifier", "union_specifier", "enum_specifier", name=_NAMED_BODY) + """
(type_definition type: [(struct_specifier body: (_)) (union_specifier body: (_)) (enum_specifier body: (_))]
                 declarator: (type_identifier) @name) @class
(function_definition) @function
"""

_GRAMMARS: dict[str, _Grammar] = {
    "python": _Grammar("tree_sitter_python", """
        (function_definition name: (identifier) @name) @function
        (class_definition name: (identifier) @name) @class
        """, wrappers=frozenset({"decorated_definition"})),
    "javascript": _Grammar("tree_sitter_javascript",
                           _JS_FUNCTIONS + _FIELD_FUNCTION.format("field_definition", "property")
                           + _classes("class_declaration"),
                           wrappers=_JS_WRAPPERS),
    "typescript": _Grammar("tree_sitter_typescript", _TS_QUERY, "language_typescript", _TS_WRAPPERS, _TS_NAMESPACES),
    "tsx": _Grammar("tree_sitter_typescript", _TS_QUERY, "language_tsx", _TS_WRAPPERS, _TS_NAMESPACES),
    "go": _Grammar("tree_sitter_go", """
        (function_declaration name: (identifier) @name) @function
        (method_declaration
          receiver: (parameter_list (parameter_declaration type: [
            (type_identifier) @receiver
            (generic_type type: (type_identifier) @receiver)
            (pointer_type [(type_identifier) @receiver (generic_type type: (type_identifier) @receiver)])]))
          name: (field_identifier) @name) @function
        (type_spec name: (type_identifier) @name type: [(struct_type) (interface_type)]) @class
        """, wrappers=frozenset({"type_declaration"})),
    "rust": _Grammar("tree_sitter_rust", """
        (function_item name: (identifier) @name) @function
        (macro_definition name: (identifier) @name) @function
        (impl_item type: [(type_identifier) @name
                          (generic_type type: (type_identifier) @name)
                          (scoped_type_identifier name: (type_identifier) @name)]) @class
        (mod_item name: (identifier) @name body: (declaration_list)) @class
        """ + _classes("struct_item", "enum_item", "union_item", "trait_item"), namespaces=frozenset({"mod_item"})),
    "java": _Grammar("tree_sitter_java", """
        (method_declaration name: (identifier) @name body: (block)) @function
        (constructor_declaration name: (identifier) @name) @function
        (compact_constructor_declaration name: (identifier) @name) @function
        """ + _classes("class_declaration", "interface_declaration", "enum_declaration", "record_declaration",
                     "annotation_type_declaration")),
    "kotlin": _Grammar("tree_sitter_kotlin", """
        (function_declaration name: (identifier) @name (function_body)) @function
        """ + _classes("class_declaration", "object_declaration")),
    "c": _Grammar("tree_sitter_c", _C_TYPES),
    "cpp": _Grammar("tree_sitter_cpp", _C_TYPES + _classes("class_specifier", name=_NAMED_BODY),
                    wrappers=frozenset({"template_declaration"})),
    "csharp": _Grammar("tree_sitter_c_sharp", """
        (method_declaration name: (identifier) @name body: (_)) @function
        (constructor_declaration name: (identifier) @name) @function
        """ + _classes("class_declaration", "struct_declaration", "interface_declaration", "enum_declaration",
                     "record_declaration")),
    "ruby": _Grammar("tree_sitter_ruby", """
        (method name: (_) @name) @function
        (singleton_method name: (_) @name) @function
        """ + _classes("class", "module")),
    "php": _Grammar("tree_sitter_php", """
        (function_definition name: (name) @name) @function
        (method_declaration name: (name) @name body: (compound_statement)) @function
        """ + _classes("class_declaration", "interface_declaration", "trait_declaration", "enum_declaration"),
        "language_php"),
    "swift": _Grammar("tree_sitter_swift", """
        (function_declaration name: (simple_identifier) @name) @function
        (init_declaration "init" @name) @function
        (deinit_declaration "deinit" @name) @function
        """ + _classes("class_declaration", "protocol_declaration")),
    "scala": _Grammar("tree_sitter_scala", """
        (function_definition name: (identifier) @name) @function
        """ + _classes("class_definition", "object_definition", "trait_definition", "enum_definition")),
    "lua": _Grammar("tree_sitter_lua", """
        (function_declaration name: (_) @name) @function
        (assignment_statement (variable_list . name: (_) @name) (expression_list . value: (function_definition)))
          @function
        """),
    "bash": _Grammar("tree_sitter_bash", "(function_definition name: (word) @name) @function"),
    "elixir": _Grammar("tree_sitter_elixir", """
        (call target: (identifier) @keyword
              (arguments . [(call target: (identifier) @name)
                            (binary_operator left: (call target: (identifier) @name))
                            (identifier) @name])
              (#any-of? @keyword "def" "defp" "defmacro" "defmacrop" "defguard" "defguardp" "defdelegate"
                                 "defn" "defnp")) @function
        (call target: (identifier) @keyword (arguments . (alias) @name)
              (#any-of? @keyword "defmodule" "defprotocol" "defimpl")) @class
        """, leading=frozenset({"unary_operator"}), clauses=True),
    "haskell": _Grammar("tree_sitter_haskell", """
        (signature name: (_) @name) @function
        (function name: (_) @name) @function
        (bind name: (_) @name) @function
        """ + _classes("data_type", "newtype", "type_synonym", "type_family", "class", "instance"), clauses=True),
    "zig": _Grammar("tree_sitter_zig", """
        (function_declaration name: (identifier) @name body: (block)) @function
        (variable_declaration (identifier) @name
                              [(struct_declaration) (enum_declaration) (union_declaration) (opaque_declaration)]) @class
        """),
}


def parser_revisions() -> dict[str, int]:
    """The revision of each language's grammar query: an index records them, and a build parses the
    files of a language again when its revision differs from the recorded one (`build.stale_parsers`)."""
    return {language: grammar.revision for language, grammar in _GRAMMARS.items()}


_LEADING = frozenset({"attribute_item", "decorator", "annotation", "marker_annotation"})
_CACHE: dict[str, tuple[object, object] | None] = {}


def _parser(language: str):
    """(Parser, Query) for a language, loaded once; None when its grammar package is missing."""
    if language not in _CACHE:
        import tree_sitter as ts

        grammar = _GRAMMARS[language]
        try:
            lang = ts.Language(getattr(importlib.import_module(grammar.module), grammar.entry)())
        except ImportError:
            _CACHE[language] = None
        else:
            _CACHE[language] = (ts.Parser(lang), ts.Query(lang, grammar.query))
    return _CACHE[language]


@dataclass(slots=True, eq=False)
class _Def:
    node: object
    kind: str
    name: str
    start: int   # 1-based, decorators and leading comments included
    end: int
    doc: str
    children: list[_Def] = field(default_factory=list)
    tail: object = None   # the last node of the definition: `node`, or its last clause

    def __post_init__(self) -> None:
        self.tail = self.tail or self.node


def _code_spans(language: str, text: str, lines: list[str]) -> list[tuple[int, int, str, str, str]]:
    loaded = _parser(language)
    if loaded is None:
        return _chunks(lines)
    parser, query = loaded
    import tree_sitter as ts

    tree = parser.parse(text.encode("utf-8", errors="surrogatepass"))
    grammar = _GRAMMARS[language]
    found: dict[tuple[int, int, str], _Def] = {}
    for _, caps in ts.QueryCursor(query).matches(tree.root_node):
        kind = "function" if "function" in caps else "class"
        node = caps[kind][0]
        key = (node.start_byte, node.end_byte, node.type)
        if key not in found:
            found[key] = _definition(node, kind, caps, grammar, lines, language)
    defs = sorted(found.values(), key=lambda d: (d.node.start_byte, -d.node.end_byte))
    roots = _nest(_join_clauses(defs) if grammar.clauses else defs, grammar.namespaces)
    out: list[tuple[int, int, str, str, str]] = []
    _emit(roots, 1, len(lines), "", lines, out)
    out.sort(key=lambda s: (s[0], s[1]))
    return out


def _end_row(node) -> int:
    """0-based last row of a node, not counting a final newline it swallowed."""
    row, col = node.end_point
    return row - 1 if col == 0 and row > node.start_point.row else row


def _join_clauses(defs: list[_Def]) -> list[_Def]:
    """A definition made of sibling clauses of one name (a Haskell signature and its equations, Elixir
    `def` clauses) is one: the first absorbs the ones that follow it directly."""
    out: list[_Def] = []
    by_tail: dict[int, _Def] = {}
    for d in defs:
        prev = d.node.prev_named_sibling
        owner = by_tail.get(prev.id) if prev is not None else None
        if owner is not None and owner.kind == d.kind == "function" and owner.name == d.name:
            del by_tail[prev.id]
            owner.end, owner.tail = max(owner.end, d.end), d.node
            owner.doc = owner.doc or d.doc
        else:
            out.append(owner := d)
        by_tail[d.node.id] = owner
    return out


def _definition(node, kind: str, caps: dict, grammar: _Grammar, lines: list[str], language: str) -> _Def:
    name_nodes = caps.get("name")
    raw = name_nodes[0].text.decode("utf-8", "replace") if name_nodes else _declarator_name(node)
    if "receiver" in caps:
        raw = caps["receiver"][0].text.decode("utf-8", "replace") + "." + raw
    method = kind == "function" and ("receiver" in caps or ":" in raw)   # Go receivers, C++ A::f, Lua t:f
    name = " ".join(raw.split()).replace("::", ".").replace(":", ".").strip("'\"`")
    outer = node
    while (outer.parent is not None and outer.parent.type in grammar.wrappers
           and outer.parent.named_children[-1] == outer
           and sum(c.type == outer.type for c in outer.parent.named_children) == 1):
        outer = outer.parent
    start, above = _leading(outer, lines, grammar.leading)
    doc = _python_docstring(node) if language == "python" else ""
    if not doc and above:
        doc = "\n".join(_doc_text(n) for n in above).strip()
    return _Def(node, "method" if method else kind, name, start + 1, _end_row(outer) + 1, doc)


def _declarator_name(node) -> str:
    """C/C++ function names: follow the declarator chain (pointer, reference, function) to the identifier."""
    inner = node.child_by_field_name("declarator")
    while inner is not None:
        if inner.type == "operator_cast":   # `operator bool() const`
            target = inner.child_by_field_name("type")
            return "operator " + (target.text.decode("utf-8", "replace") if target else "")
        deeper = inner.child_by_field_name("declarator")
        if deeper is None:
            if inner.type in ("pointer_declarator", "reference_declarator") and inner.named_children:
                deeper = inner.named_children[-1]
            else:
                return inner.text.decode("utf-8", "replace")
        inner = deeper
    return ""


def _leading(node, lines: list[str], leading: frozenset[str] = frozenset()) -> tuple[int, list]:
    """0-based first row of a definition including the attached comments/attributes above it (and the
    grammar's own `leading` node types), and the comments and `leading` nodes among them."""
    start = node.start_point.row
    comments = []
    anchor = node
    while True:
        prev = anchor.prev_named_sibling
        if prev is None:
            parent = anchor.parent   # e.g. Ruby: the comment precedes the class body, not the first method
            if parent is not None and parent.start_byte == anchor.start_byte:
                anchor = parent
                continue
            break
        if prev.named_children and prev.named_children[-1].type in _DOC_COMMENTS:
            prev = prev.named_children[-1]     # Haskell: a haddock above the first declaration ends the imports
        is_comment = "comment" in prev.type or prev.type in _DOC_COMMENTS or prev.type in leading
        if not (is_comment or prev.type in _LEADING) or _end_row(prev) < start - 1:
            break
        row, col = prev.start_point
        if lines[row][:col].strip() or lines[row].startswith("#!"):   # a trailing comment, a shebang
            break
        start = row
        if is_comment:
            comments.insert(0, prev)
        anchor = prev
    return start, comments


_DOC_COMMENTS = frozenset({"haddock"})
_COMMENT_MARK = re.compile(r"^\s*(?:/\*\*?|\*/|///?!?|#+|--+(?:\s?[|^])?|;+|\*)?\s?")
_DOC_ATTRIBUTE = re.compile(r'@doc\s+(?:~[sS])?(?:"""(?P<block>.*?)"""|"(?P<line>(?:[^"\\]|\\.)*)")', re.S)


def _doc_text(node) -> str:
    """The documentation in a comment above a definition, or in an Elixir `@doc` attribute ("" for other
    attributes such as `@spec`)."""
    text = node.text.decode("utf-8", "replace")
    if "comment" in node.type or node.type in _DOC_COMMENTS:
        return _comment_text(text)
    m = _DOC_ATTRIBUTE.match(text)
    return textwrap.dedent(m.group("block") or m.group("line") or "").strip() if m else ""


def _comment_text(text: str) -> str:
    lines = (_COMMENT_MARK.sub("", line, count=1).removesuffix("*/").rstrip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line.strip())


def _python_docstring(node) -> str:
    body = node.child_by_field_name("body")
    if body is None or not body.named_children:
        return ""
    first = body.named_children[0]
    if first.type != "expression_statement" or not first.named_children or first.named_children[0].type != "string":
        return ""
    parts = [c.text.decode("utf-8", "replace") for c in first.named_children[0].named_children
             if c.type == "string_content"]
    return "".join(parts).strip()


def _nest(defs: list[_Def], namespaces: frozenset[str]) -> list[_Def]:
    """Tree of definitions by containment; qualifies names, drops definitions inside functions."""
    roots: list[_Def] = []
    stack: list[_Def] = []
    for d in defs:
        while stack and stack[-1].tail.end_byte < d.node.end_byte:
            stack.pop()
        parent = stack[-1] if stack else None
        if parent is None:
            roots.append(d)
        elif parent.kind == "class" and d.node.parent != parent.node:   # not e.g. the struct a typedef names
            d.name = f"{parent.name}.{d.name}"
            if d.kind == "function" and parent.node.type not in namespaces:
                d.kind = "method"
            parent.children.append(d)
        else:
            continue   # inside a function (or the same definition): part of the parent's block
        stack.append(d)
    return roots


_TRIVIAL = re.compile(r"[\s\])};,]*(?:end)?[\s\])};,]*")


def _emit(defs: list[_Def], lo: int, hi: int, container: str, lines: list[str],
          out: list[tuple[int, int, str, str, str]]) -> None:
    """Blocks for `defs` and the code between them, within lines [lo, hi] of a container."""
    cursor = lo
    for d in defs:
        _gap(cursor, d.start - 1, container, lines, out)
        if d.kind == "class" and d.children:
            head = max(d.start, d.children[0].start - 1)
            head = max(d.start, _trim(lines, d.start, head)[1])
            out.append((d.start, head, "class", d.name, d.doc))
            _emit(d.children, head + 1, d.end, d.name, lines, out)
        else:
            out.append((d.start, d.end, d.kind, d.name, d.doc))
        cursor = max(cursor, d.end + 1)
    _gap(cursor, hi, container, lines, out)


def _gap(start: int, end: int, container: str, lines: list[str], out: list) -> None:
    start, end = _trim(lines, start, end)
    if start <= end and not all(_TRIVIAL.fullmatch(line) for line in lines[start - 1:end]):
        out.append((start, end, "module", container, ""))


# --- documents and text -------------------------------------------------------------------------------------------

_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r" {0,3}(?:=+|-+)[ \t]*$")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_LIST_ITEM = re.compile(r"\s*(?:[-*+>]|\d+[.)])\s")
_RST_ADORNMENT = re.compile(r"""([=\-`:'"~^_*+#<>.])\1+[ \t]*$""")


def _markdown_headings(lines: list[str]) -> list[tuple[int, str]]:
    """(1-based line, text) of every heading outside code fences and front matter."""
    heads: list[tuple[int, str]] = []
    fence = ""
    i = 0
    if lines[0].strip() == "---":   # YAML front matter
        i = next((j + 1 for j in range(1, len(lines)) if lines[j].strip() in ("---", "...")), 0)
    for i in range(i, len(lines)):
        line = lines[i]
        if fence:
            if line.lstrip().startswith(fence):
                fence = ""
            continue
        if m := _FENCE.match(line):
            fence = m.group(1)
        elif m := _ATX.match(line):
            heads.append((i + 1, (m.group(2) or "").strip()))
        elif (_SETEXT.match(line) and i > 0 and not _blank(lines[i - 1]) and not _ATX.match(lines[i - 1])
              and not _FENCE.match(lines[i - 1]) and not _LIST_ITEM.match(lines[i - 1])):
            heads.append((i, lines[i - 1].strip()))
    return heads


def _rst_headings(lines: list[str]) -> list[tuple[int, str]]:
    """(1-based first line, title) of reStructuredText section titles (underlined, optionally overlined)."""
    heads: list[tuple[int, str]] = []
    for i in range(len(lines) - 1):
        title, under = lines[i], lines[i + 1]
        if _blank(title) or not (m := _RST_ADORNMENT.match(under)) or _RST_ADORNMENT.match(title):
            continue
        overlined = i > 0 and lines[i - 1].rstrip() == under.rstrip()
        if title[0].isspace() and not overlined:
            continue
        if len(under.rstrip()) >= len(title.strip()) and (i == 0 or overlined or _blank(lines[i - 1])):
            heads.append((i if overlined else i + 1, title.strip()))
    return heads


def _sections(lines: list[str], heads: list[tuple[int, str]]) -> list[tuple[int, int, str, str, str]]:
    out = []
    bounds = [(1, "")] + heads if heads[0][0] > 1 else heads
    for (start, name), nxt in zip(bounds, bounds[1:] + [(len(lines) + 1, "")]):
        first, last = _trim(lines, start, nxt[0] - 1)
        if first <= last:
            out.append((start if name else first, last, "section", name, ""))
    return out


def _chunks(lines: list[str]) -> list[tuple[int, int, str, str, str]]:
    """Chunks of at most CHUNK_LINES non-blank-edged lines, ending at a blank line in their second half if any."""
    out = []
    start, n = 1, len(lines)
    while True:
        start, _ = _trim(lines, start, n)
        if start > n:
            return out
        end = min(start + CHUNK_LINES - 1, n)
        if end < n:
            end = next((j - 1 for j in range(end + 1, start + CHUNK_LINES // 2, -1) if _blank(lines[j - 1])), end)
        out.append((start, _trim(lines, start, end)[1], "chunk", "", ""))
        start = end + 1
