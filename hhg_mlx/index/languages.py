"""File names → language ids, and the name-only rules for files that are never indexed.

Pure tables and string checks: this module is on the search hot path (`-t` filters), so it imports nothing heavy.
Unknown extensions are indexed as plain `"text"` (the reader still rejects binary content); names that can never
hold useful source (binaries, archives, data dumps, lockfiles, minified bundles) map to None.
"""
from __future__ import annotations

import posixpath

_EXTENSIONS: dict[str, tuple[str, ...]] = {
    # Programming languages with a tree-sitter grammar in this project.
    "python": ("py", "pyi", "pyw"),
    "javascript": ("js", "mjs", "cjs", "jsx"),
    "typescript": ("ts", "mts", "cts"),
    "tsx": ("tsx",),
    "go": ("go",),
    "rust": ("rs",),
    "java": ("java",),
    "kotlin": ("kt", "kts"),
    "c": ("c", "h"),
    "cpp": ("cc", "cpp", "cxx", "c++", "hh", "hpp", "hxx", "h++", "inl", "ipp", "tpp"),
    "csharp": ("cs",),
    "ruby": ("rb", "rake", "gemspec", "ru"),
    "php": ("php", "phtml"),
    "swift": ("swift",),
    "scala": ("scala", "sc"),
    "lua": ("lua",),
    "bash": ("sh", "bash", "zsh", "ksh"),
    "elixir": ("ex", "exs"),
    "haskell": ("hs",),
    "zig": ("zig",),
    # Programming languages indexed as line chunks (no grammar here).
    "literate-haskell": ("lhs",),    # prose around `>` or \begin{code} lines: the Haskell grammar cannot read it
    "dart": ("dart",),
    "r": ("r",),
    "julia": ("jl",),
    "perl": ("pl", "pm"),
    "ocaml": ("ml", "mli"),
    "erlang": ("erl", "hrl"),
    "fsharp": ("fs", "fsi", "fsx"),
    "clojure": ("clj", "cljs", "cljc"),
    "groovy": ("groovy", "gradle"),
    "objc": ("m", "mm"),
    "elm": ("elm",),
    "nim": ("nim",),
    "crystal": ("cr",),
    "vue": ("vue",),
    "svelte": ("svelte",),
    "solidity": ("sol",),
    "powershell": ("ps1", "psm1"),
    "fish": ("fish",),
    "starlark": ("bzl", "star"),
    "sql": ("sql",),
    # Documentation: chunked by headings.
    "markdown": ("md", "markdown", "mdx", "mdown"),
    "rst": ("rst",),
    # Configuration, markup and styles: chunked by lines.
    "json": ("json", "jsonc", "json5", "ipynb"),
    "yaml": ("yaml", "yml"),
    "toml": ("toml",),
    "ini": ("ini", "cfg", "conf", "properties"),
    "xml": ("xml", "xsd", "xsl", "xslt", "plist", "csproj", "props", "targets"),
    "html": ("html", "htm", "xhtml"),
    "template": ("j2", "jinja", "jinja2", "tpl", "hbs", "mustache", "ejs", "erb", "twig", "liquid"),
    "css": ("css", "scss", "sass", "less"),
    "graphql": ("graphql", "gql"),
    "protobuf": ("proto",),
    "make": ("mk", "mak"),
    "cmake": ("cmake",),
    "dockerfile": ("dockerfile",),
    "latex": ("tex", "sty", "bib"),
    "text": ("txt", "text"),
}
_BY_EXTENSION = {ext: lang for lang, exts in _EXTENSIONS.items() for ext in exts}

_BY_FILENAME = {
    "makefile": "make", "gnumakefile": "make", "cmakelists.txt": "cmake", "dockerfile": "dockerfile",
    "containerfile": "dockerfile", "gemfile": "ruby", "rakefile": "ruby", "vagrantfile": "ruby",
    "podfile": "ruby", "jenkinsfile": "groovy", "build": "starlark", "build.bazel": "starlark",
    "workspace": "starlark", "justfile": "make",
}

CODE_LANGUAGES: frozenset[str] = frozenset(
    lang for lang in _EXTENSIONS
    if lang not in {"markdown", "rst", "json", "yaml", "toml", "ini", "xml", "html", "template", "css", "graphql",
                    "protobuf", "make", "cmake", "dockerfile", "latex", "text"})
"""Languages kept by `--code-only`: programming languages, with or without a grammar (SQL included)."""

PROSE_LANGUAGES = frozenset({"markdown", "rst", "text", "latex"})
"""Documentation and plain text: read with prose rules (longer lines) and ranked below code."""

BINARY_EXTENSIONS = frozenset("""
    png jpg jpeg gif bmp ico icns tif tiff webp avif heic psd xcf svgz eps ai sketch fig graffle blend
    mp3 mp4 m4a wav ogg oga flac aac opus mov avi mkv webm wmv flv
    zip tar gz tgz bz2 xz lzma lz4 zst 7z rar jar war ear whl egg apk ipa dmg iso deb rpm msi cab
    so dll dylib a lib o obj ko exe bin elf pyc pyo pyd class wasm beam elc dex
    ttf otf woff woff2 eot pfb
    pdf doc docx xls xlsx ppt pptx odt ods odp rtf epub
    db sqlite sqlite3 mdb accdb dbf shp shx prj mmdb npy npz pkl pickle joblib h5 hdf5 parquet feather arrow
    onnx safetensors pt pth ckpt gguf tflite pb mo
    """.split())
"""Extensions whose content is never text worth indexing."""

DATA_EXTENSIONS = frozenset("svg map po pot csv tsv geojson topojson kml gpx jsonl ndjson log".split())
"""Text formats that are data dumps, translations or generated maps rather than source."""

LOCKFILES = frozenset("""
    package-lock.json npm-shrinkwrap.json yarn.lock pnpm-lock.yaml bun.lockb cargo.lock poetry.lock pipfile.lock
    composer.lock gemfile.lock go.sum uv.lock pdm.lock mix.lock flake.lock packages.lock.json podfile.lock
    pubspec.lock gradle.lockfile
    """.split())


def _extension(name: str) -> str:
    dot = name.rfind(".")
    return name[dot + 1:].lower() if dot > 0 else ""


def skip_reason_for_name(name: str) -> str | None:
    """Why a file with this base name is never indexed ("binary", "data", "lockfile", "minified"), or None."""
    ext = _extension(name)
    if ext in BINARY_EXTENSIONS:
        return "binary"
    lower = name.lower()
    if lower in LOCKFILES or ext == "lock":
        return "lockfile"
    if ext in DATA_EXTENSIONS:
        return "data"
    if ext in ("js", "mjs", "cjs", "css") and lower[:-len(ext) - 1].endswith((".min", "-min")):
        return "minified"
    return None


def language_for(path: str) -> str | None:
    """Language id of a file ("python", "tsx", "markdown", "yaml", "text", ...); None = never indexed."""
    name = posixpath.basename(path)
    if skip_reason_for_name(name):
        return None
    lower = name.lower()
    if lower in _BY_FILENAME:
        return _BY_FILENAME[lower]
    ext = _extension(name)
    if lower.startswith("dockerfile.") or ext == "dockerfile":
        return "dockerfile"
    return _BY_EXTENSION.get(ext, "text")


_TYPE_GROUPS = {
    "typescript": {"typescript", "tsx"}, "ts": {"typescript", "tsx"},
    "shell": {"bash"}, "haskell": {"haskell", "literate-haskell"}, "hs": {"haskell", "literate-haskell"},
    "docs": {"markdown", "rst"}, "config": {"json", "yaml", "toml", "ini", "xml"},
}
_TYPE_ALIASES = {"py": "python", "rs": "rust", "golang": "go", "cs": "csharp", "c#": "csharp", "rb": "ruby",
                 "kt": "kotlin", "md": "markdown", "txt": "text", "yml": "yaml"}


def type_languages(type_name: str) -> frozenset[str]:
    """The language ids one `-t` item stands for: a language id, an alias, an extension or a group."""
    t = type_name.strip().lower().lstrip(".")
    if t in _TYPE_GROUPS:
        return frozenset(_TYPE_GROUPS[t])
    t = _TYPE_ALIASES.get(t, t)
    return frozenset({t, _BY_EXTENSION[t]} if t in _BY_EXTENSION else {t})


def matches_type(language: str, path: str, type_spec: str) -> bool:
    """True if a file of `language` at `path` is selected by `type_spec` ("py", "python", "ts,go", "h", ...).

    An item matches by language (so `ts` selects .ts and .tsx, `md` every markdown file) or by the file's own
    extension (so `-t h` also selects C++ headers, whose language is "c").
    """
    ext = _extension(posixpath.basename(path))
    for item in type_spec.split(","):
        item = item.strip().lower().lstrip(".")
        if item and (language in type_languages(item) or item == ext):
            return True
    return False
