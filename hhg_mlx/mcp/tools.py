"""The MCP tools: what a model reads about them (descriptions, JSON schemas), which `Workspace` method
does each one's work, and the compact text each result is also given as, for clients that do not
read structured content."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..output import format_hits, format_status
from ..types import Hit
from .workspace import Workspace

TEXT_LINES = 6         # lines of each hit's code in the text rendering (the structured hit has all of them)
MAX_K = 100
PATH = {"type": "string", "description": "A folder or file, absolute or relative to the first root (default: the "
        "first root). Paths outside the roots this server may read are refused."}
K = {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 10, "description": "How many hits to return."}
HIT = {
    "type": "object",
    "properties": {
        "file": {"type": "string", "description": "relative to the first root when inside it, else absolute"},
        "line": {"type": "integer", "description": "first line of the block, 1-based"},
        "end_line": {"type": "integer", "description": "last line of the block, 1-based, inclusive"},
        "kind": {"type": "string", "description": "function, method, class, module, section or chunk"},
        "name": {"type": "string", "description": "qualified name (Class.method) or heading; empty for anonymous code"},
        "score": {"type": "number", "description": "ranking score, higher is better, comparable within one call"},
        "content": {"type": "string", "description": "the block's source, lines line..end_line exactly"},
    },
    "required": ["file", "line", "end_line", "kind", "name", "score", "content"],
}
NOTICES = {"type": "array", "items": {"type": "string"},
           "description": "what the caller should know about these results, e.g. that they are keyword-only"}
HITS = {"type": "object", "properties": {"hits": {"type": "array", "items": HIT}, "notices": NOTICES},
        "required": ["hits", "notices"]}
STATUS_FIELDS = {
    "root": {"type": "string", "description": "the indexed folder"},
    "files": {"type": "integer"}, "blocks": {"type": "integer"}, "vectors": {"type": "integer"},
    "model": {"type": ["string", "null"], "description": "the embedding model; null: keyword search only"},
    "stale": {"type": "integer", "description": "files changed since the last update (any search updates them)"},
    "embedding": {"type": "object", "description": "the embedding phase, run by a background worker after a build",
                  "properties": {
                      "state": {"type": "string", "enum": ["none", "running", "done", "stopped", "failed"]},
                      "pid": {"type": ["integer", "null"], "description": "the worker's process id while it runs"},
                      "done": {"type": "integer", "description": "blocks with vectors"},
                      "total": {"type": "integer", "description": "blocks in the index"},
                      "rate": {"type": ["number", "null"], "description": "windows embedded per second"},
                      "eta_s": {"type": ["number", "null"], "description": "seconds left, estimated"},
                      "error": {"type": ["string", "null"], "description": "why the embedding failed"}},
                  "required": ["state", "pid", "done", "total", "rate", "eta_s", "error"]},
}
STATUS = {"type": "object", "properties": STATUS_FIELDS, "required": list(STATUS_FIELDS)}
BUILT = {"type": "object", "properties": {**STATUS_FIELDS, "notices": NOTICES},
         "required": [*STATUS_FIELDS, "notices"]}


def _object(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


def render_hits(result: dict) -> str:
    """Grep-like: `file:line-end_line kind name` and the block's first lines, then the notices."""
    hits = [Hit(**item) for item in result["hits"]]
    text = format_hits(hits, str, lines=TEXT_LINES, span=True) if hits else "no hits\n"
    return text + _notes(result["notices"])


def render_status(result: dict) -> str:
    """`hhg status`'s `key: value` lines, then the notices (of a build)."""
    status = {key: value for key, value in result.items() if key != "notices"}
    return format_status(status) + _notes(result.get("notices", ()))


def _notes(notices) -> str:
    return "".join(f"note: {notice}\n" for notice in notices)


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its schemas, the `Workspace` method that does its work (called as
    `run(workspace, roots, **arguments)`, returning the structured result) and its text rendering."""

    name: str
    title: str
    description: str
    input_schema: dict
    output_schema: dict
    read_only: bool
    run: Callable[..., dict]
    render: Callable[[dict], str]


SEARCH = ToolSpec(
    name="search",
    title="Search code",
    description=(
        "Find the functions, methods, classes and documentation sections that answer a question or match "
        "an identifier, best first. Use it instead of grep to learn where something is implemented or how a "
        "feature works: describe the behaviour in words ('where are failed uploads retried') or name the "
        "identifier ('parseConfig', 'Uploader.retry'). Ranking fuses keyword matching over split identifiers "
        "(`http request` finds parseHTTPRequest) with semantic similarity when the index has an embedding "
        "model. Each hit is one whole block with its file, 1-based first and last line, kind, name and source. "
        "The index (a .hhg folder) is built by the first search in a folder and brought up to date by every "
        "call, so results reflect the files as they are now."),
    input_schema=_object({
        "query": {"type": "string", "minLength": 1, "description": "What to look for: a question or description "
                  "in words, an identifier, or both."},
        "path": {**PATH, "description": "Search only under this folder or file. " + PATH["description"]},
        "k": K,
        "mode": {"type": "string", "enum": ["hybrid", "keyword", "semantic"], "default": "hybrid",
                 "description": "hybrid: keyword and semantic ranking fused (keyword only when the index has no "
                 "model); keyword: words and identifiers only; semantic: meaning only (needs a model)."},
        "types": {"type": "array", "items": {"type": "string"}, "description": "Only these languages or file "
                  "extensions, e.g. [\"py\", \"go\"], [\"typescript\"], [\"docs\"] (Markdown and reStructuredText)."},
        "exclude": {"type": "array", "items": {"type": "string"}, "description": "Skip files matching these "
                    "gitignore-style globs, e.g. [\"tests/*\", \"*_test.go\"]."},
        "code_only": {"type": "boolean", "default": False, "description": "Skip documentation, plain text and "
                      "configuration files."},
        "rerank": {"type": ["boolean", "string"], "description": "Have a cross-encoder reorder the best 20 "
                   "candidates: slower, and better for questions in words. true: the index's reranker, else the "
                   "default one (jina-reranker-tiny); a string names the reranker (registry id, Hugging Face repo "
                   "id or local folder); false: no reranking. Default: the index's own setting."},
    }, required=("query",)),
    output_schema=HITS,
    read_only=True,
    run=Workspace.search,
    render=render_hits,
)

FIND_SIMILAR = ToolSpec(
    name="find_similar",
    title="Find similar code",
    description=(
        "Find code similar to one definition or block: other implementations of the same idea, near "
        "duplicates, code to change together with it. Name the block as FILE#NAME (a function, a class, or a "
        "method as Class.method) or FILE:LINE (the block that holds that 1-based line). Compares embeddings "
        "when the index has a model, else the block's identifiers. The block itself is not returned."),
    input_schema=_object({
        "target": {"type": "string", "minLength": 3, "description": "FILE#NAME or FILE:LINE, e.g. "
                   "\"src/upload.py#Uploader.retry_failed_uploads\" or \"src/upload.py:42\"; FILE is absolute or "
                   "relative to the first root."},
        "path": {**PATH, "description": "Return only blocks under this folder or file (default: the root that "
                 "holds FILE). " + PATH["description"]},
        "k": K,
    }, required=("target",)),
    output_schema=HITS,
    read_only=True,
    run=Workspace.find_similar,
    render=render_hits,
)

INDEX_STATUS = ToolSpec(
    name="index_status",
    title="Index status",
    description=(
        "Describe the index that covers a path: its root folder, files, blocks and vectors, the embedding "
        "model and backend, its size, when it was built and updated, how many files changed since, which "
        "files were skipped and why, and how far the background embedding is (state, blocks done of total, "
        "rate, seconds left). Semantic search covers the blocks embedded so far."),
    input_schema=_object({"path": PATH}),
    output_schema=STATUS,
    read_only=True,
    run=Workspace.index_status,
    render=render_status,
)

BUILD = ToolSpec(
    name="build",
    title="Build index",
    description=(
        "Create the index of a folder or bring it up to date, optionally with an embedding model for semantic "
        "search (kept for later builds and searches). Returns when the keyword index is ready, with the "
        "index's status; a background worker then embeds the blocks, and index_status shows how far it is. "
        "Searching builds a missing index by itself (keyword-only unless a default model is installed), so "
        "call this to add or change the model or to index a folder ahead of time."),
    input_schema=_object({
        "path": {**PATH, "description": "The folder to index. " + PATH["description"]},
        "model": {"type": "string", "description": "Embedding model: a registry id (minilm, bge-small, "
                  "jina-code-v2, ...), a Hugging Face repo id or a local model folder. Default: the index's "
                  "current model, else the default model when installed, else keyword only."},
    }),
    output_schema=BUILT,
    read_only=False,
    run=Workspace.build,
    render=render_status,
)

TOOLS = {tool.name: tool for tool in (SEARCH, FIND_SIMILAR, INDEX_STATUS, BUILD)}
