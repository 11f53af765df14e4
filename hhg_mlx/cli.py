"""The `hhg` command: argument parsing and output only; the work is done by `hhg_mlx.index`.

Heavy modules (the index, MLX, ONNX Runtime, tree-sitter grammars) are imported inside the
commands that need them, so `hhg --help` and a search on a fresh index start quickly.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__
from .errors import HhgError, one_line
from .rerank import DEPTH as RERANK_DEPTH
from .types import SIMILAR

COMMANDS = ("build", "status", "stop", "list", "clean", "cache", "model", "convert", "bench", "mcp")
RERANK = "--rerank"
# Subcommands that live in other modules: name -> (module, one-line help).
DELEGATED = {
    "model": ("hhg_mlx.models.commands", "list, inspect and install embedding models"),
    "convert": ("convert.cli", "convert a checkpoint to MLX or ONNX"),
    "bench": ("hhg_mlx.bench.speed", "measure encoder speed on this machine"),
    "mcp": ("hhg_mlx.mcp.command", "serve hybrid code search to coding agents over MCP"),
}

DESCRIPTION = """\
Search a codebase for the functions, classes and sections that answer a question.
The first search in a folder builds its index (.hhg/); later searches update it in place.
With a model, blocks are embedded by a background worker: searches answer at once, semantic
search covers what is embedded so far.

commands:
  hhg [OPTIONS] QUERY [PATH]        search (PATH defaults to .)
  hhg FILE#NAME | FILE:LINE [PATH]  find code similar to a definition or to the block at a line
  hhg build [PATH ...]              build or update the index of PATH (of every PATH, with one model load)
  hhg status [PATH]                 show what the index holds, what is stale, how far embedding is
  hhg stop [PATH]                   stop the background embedding of PATH's index
  hhg list [PATH]                   list every index below PATH
  hhg clean [PATH] [-r]             delete the index of PATH (-r: and every index below it)
  hhg cache [status|clean]          show or delete the per-user embedding cache
  hhg model ...                     list, inspect and install embedding models
  hhg convert ...                   convert a checkpoint to MLX or ONNX
  hhg bench ...                     measure encoder speed
  hhg mcp [--root PATH ...]         serve search to coding agents over MCP (stdio; extra hhg[mcp])
  Run `hhg COMMAND --help` for a command's options."""

EPILOG = """\
examples:
  hhg "where do we retry failed uploads"      search the current directory
  hhg "parse config file" src -t py,go -n 5   Python and Go files under src, top 5
  hhg "token refresh" --exclude 'tests/*' --code-only
  hhg "rate limiter" --json --no-content | jq '.[0].file'
  hhg -l "database migration"                 only the files, best first
  hhg "digest auth header" --explain -n 3     why each hit ranked where it did
  hhg src/upload.py#retry_upload              code similar to a definition
  hhg src/upload.py:120                       code similar to the block at line 120
  hhg --rerank "how are failed uploads retried"   rerank the top 20 with a cross-encoder (kept)
  hhg -- build                                search for the word "build"

exit status: 0 when something was found, 1 when nothing was, 2 on error."""


def _search_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hhg", usage="hhg [OPTIONS] QUERY [PATH]\n       hhg COMMAND [OPTIONS] ...",
                                description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("query", metavar="QUERY", help="what to look for: words, a question, an identifier, "
                   "or FILE#NAME / FILE:LINE to find similar code")
    p.add_argument("path", metavar="PATH", nargs="?", help="folder or file to search (default: .)")
    out = p.add_argument_group("output")
    out.add_argument("-n", "--limit", type=_positive, default=10, metavar="N", help="show at most N hits (default 10)")
    out.add_argument("--json", action="store_true", help="print a JSON array of hits and nothing else on stdout")
    out.add_argument("--no-content", action="store_true", help="with --json, leave out each hit's source text")
    out.add_argument("-l", "--files-with-matches", action="store_true",
                     help="print only the files of the hits, best first")
    out.add_argument("-C", "--context", type=_count, default=3, metavar="N",
                     help="show the first N non-blank lines of each hit (default 3; 0: headers only)")
    out.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                     help="colour paths, names and matched words (auto: when stdout is a terminal)")
    out.add_argument("--explain", action="store_true",
                     help="show why each hit ranked where it did: BM25 per field, cosine, fusion and every factor "
                          "(with --json: a \"why\" object per hit)")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress and no notices on stderr")
    flt = p.add_argument_group("filters (applied before the top-N cut)")
    flt.add_argument("-t", "--type", action="append", default=[], metavar="TYPES",
                     help="only these languages or extensions, comma-separated: py,go,ts,markdown (repeatable)")
    flt.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                     help="skip files matching this gitignore-style glob (repeatable)")
    flt.add_argument("--code-only", action="store_true", help="skip documentation, text and config files")
    flt.add_argument("--threshold", type=float, metavar="SCORE", help="drop hits scoring below SCORE")
    rank = p.add_argument_group("ranking")
    rank.add_argument("--mode", choices=("hybrid", "semantic", "keyword"), default="hybrid",
                      help="hybrid (default; keyword only when the index has no model), semantic or keyword")
    rank.add_argument(RERANK, nargs="?", const=True, metavar="MODEL",
                      help="rerank the best candidates with a cross-encoder: MODEL (a reranker id, Hugging Face "
                      "repo or folder), else the index's reranker, else jina-reranker-tiny; kept for later "
                      "searches of this index (a word after --rerank that names no model is the query)")
    rank.add_argument("--no-rerank", dest="rerank", action="store_const", const=False,
                      help="do not rerank, now and in later searches of this index")
    rank.add_argument("--rerank-depth", type=_positive, default=RERANK_DEPTH, metavar="N",
                      help=f"how many fused candidates the cross-encoder reorders (default {RERANK_DEPTH}, "
                      "at least -n)")
    _model_options(rank, "first build only: ")
    p.add_argument("--version", action="version", version=f"hhg {__version__}")
    return p


BUILD_EPILOG = """\
examples:
  hhg build
  hhg build ~/src/project --model jina-code-v2
  hhg build --model jina-code-v2 --wait    embed now, with a progress bar
  hhg build --force
  hhg build ~/src/* --wait                 every repository, one model load, shared texts embedded once
  ls -d ~/src/*/ | hhg build --from - --json
  hhg build --from repos.txt --ray auto    embed on a Ray cluster (pip install 'hhg[ray]')

exit status: 0 when every index was built, 2 when one failed (the others are still built)."""


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hhg build", description="Build the index of PATH (.hhg/ inside it), or "
                                "bring it up to date: only new and changed files are read again, and "
                                "embeddings are reused from the caches (the index's own and the per-user shared "
                                "one). The keyword index is ready when the command returns; with a model, a "
                                "background worker embeds the blocks (`hhg status` shows how far it is, `hhg stop` "
                                "stops it). With several PATHs, one model embeds them all, each distinct text once.",
                                epilog=BUILD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", metavar="PATH", nargs="*", help="folders to index (default: .)")
    p.add_argument("--from", dest="from_file", metavar="FILE",
                   help="also index the folders listed in FILE, one a line (-: standard input)")
    p.add_argument("--force", action="store_true", help="rebuild from scratch (vectors still come from the "
                   "shared cache unless --no-shared-cache)")
    p.add_argument("--wait", action="store_true", help="embed in the foreground (progress bar on a terminal) "
                   "and return when every block has its vectors")
    p.add_argument("--json", action="store_true", help="print one JSON summary object and nothing else on stdout")
    p.add_argument("--no-shared-cache", action="store_true",
                   help="neither read nor fill the per-user embedding cache (see `hhg cache`)")
    p.add_argument("--ray", metavar="ADDRESS", help="embed on a Ray cluster: auto, ray://HOST:PORT, or local "
                   "(starts Ray on this machine); implies --wait")
    _model_options(p, "")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary")
    return p


def _model_options(group, prefix: str) -> None:
    group.add_argument("--model", metavar="MODEL", help=prefix + "embedding model: registry id, Hugging Face repo "
                       "or local folder (default: keep the index's model, else jina-code-v2 when installed, "
                       "else keyword only)")
    group.add_argument("--accept-license", action="store_true",
                       help=prefix + "accept the model's licence (needed once for opt-in models)")
    group.add_argument("--task", metavar="TASK", help=prefix + "task prompt for models that have several (nl2code, code2code, ...)")
    group.add_argument("--backend", choices=("auto", "mlx", "onnx", "onnx-cuda"),
                       help=prefix + "encoder backend (default: keep the index's, else auto: MLX on Apple silicon, "
                       "ONNX Runtime on CUDA when usable, else on the CPU)")
    group.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16", "int8", "8bit", "4bit"),
                       help=prefix + "what the encoder computes in (default: keep the index's, else auto: int8 on "
                       "the CPU, fp16 on CUDA, fp32 on MLX); int8 is ONNX Runtime's, bf16/8bit/4bit are MLX's")
    group.add_argument("--no-background", action="store_true",
                       help="embed new blocks in the foreground instead of a background worker (as HHG_BACKGROUND=0)")


def _path_parser(name: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"hhg {name}", description=description)
    p.add_argument("path", metavar="PATH", nargs="?", default=".", help="folder (default: .)")
    return p


def _status_parser() -> argparse.ArgumentParser:
    p = _path_parser("status", "Show the index that covers PATH: files, blocks, model, size, stale files.")
    p.add_argument("--json", action="store_true", help="print the status as a JSON object")
    return p


def _list_parser() -> argparse.ArgumentParser:
    return _path_parser("list", "List every index (.hhg folder) at or below PATH.")


def _stop_parser() -> argparse.ArgumentParser:
    p = _path_parser("stop", "Stop the background embedding worker of the index that covers PATH. It stays "
                     "stopped (searches use the blocks embedded so far) until the next `hhg build`. "
                     "Exit status 1 when no worker was running.")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    return p


def _cache_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hhg cache", description="The per-user embedding cache: one store per "
                                "model, task and precision holding vectors by text hash (never source text), "
                                "filled by every build, so a block embedded once in any repository is never "
                                "embedded again.", epilog="examples:\n  hhg cache\n  hhg cache status --json\n"
                                "  hhg cache clean", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", nargs="?", choices=("status", "clean"), default="status",
                   help="status (default): where it is and what it holds; clean: delete it")
    p.add_argument("--json", action="store_true", help="status as a JSON object")
    p.add_argument("-q", "--quiet", action="store_true", help="clean: print nothing")
    return p


def _clean_parser() -> argparse.ArgumentParser:
    p = _path_parser("clean", "Delete the index of PATH.")
    p.add_argument("-r", "--recursive", action="store_true", help="also delete every index below PATH")
    p.add_argument("-q", "--quiet", action="store_true", help="do not list what was deleted")
    return p


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _value_options(*parsers: argparse.ArgumentParser) -> set[str]:
    """Option strings that take a value (their value must not be mistaken for a command name)."""
    return {s for p in parsers for a in p._actions if a.option_strings and a.nargs != 0 for s in a.option_strings}


def split_command(argv: list[str], value_options: set[str]) -> tuple[str | None, list[str]]:
    """The subcommand named by the first positional argument, and the arguments without it.
    Anything else (or anything after `--`) is a search."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            break
        if arg.startswith("-") and arg != "-":
            i += 2 if arg in value_options else 1
            continue
        if arg in COMMANDS:
            return arg, argv[:i] + argv[i + 1:]
        break
    return None, argv


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    # Options may follow positionals; argparse's intermixed mode mishandles `--`, which plain mode handles.
    argv = bare_rerank_last(argv)
    return parser.parse_args(argv) if "--" in argv else parser.parse_intermixed_args(argv)


def bare_rerank_last(argv: list[str]) -> list[str]:
    """`--rerank` takes an optional MODEL: when the next word names no model (`names_model`) it is the
    query, so that `--rerank` moves behind the other arguments (before any `--`), where it takes none."""
    end = argv.index("--") if "--" in argv else len(argv)
    bare = [i for i in range(end) if argv[i] == RERANK and (i + 1 == end or not names_model(argv[i + 1]))]
    if not bare:
        return argv
    rest = [arg for i, arg in enumerate(argv[:end]) if i not in bare]
    return rest + [RERANK] + argv[end:]


def names_model(word: str) -> bool:
    """A registry id, a Hugging Face repo id (org/name), a model folder (it has a config.json) or a path
    written as one (./, ../, /, ~)."""
    from .models.hub import is_repo_id
    from .models.registry import REGISTRY

    return (word in REGISTRY or is_repo_id(word) or word.startswith(("./", "../", "/", "~"))
            or (Path(word) / "config.json").is_file())


def eprint(message: str) -> None:
    print(f"hhg: {message}", file=sys.stderr, flush=True)


def _existing(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise HhgError(f"{path}: no such file or directory")
    return p


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        raise HhgError(f"{path} is outside the index at {root}") from None


def _progress(quiet: bool):
    from .progress import ProgressBar
    return ProgressBar(enabled=False if quiet else None)


def _build_kwargs(args: argparse.Namespace) -> dict:
    """`Index.build` keywords from the model options."""
    return {"model": args.model, "accept_license": args.accept_license, "task": args.task,
            "backend": args.backend, "precision": args.precision}


def open_index(start: Path, args: argparse.Namespace):
    """The index covering `start`, updated; built first (with a notice) when there is none. New blocks
    are embedded by the background worker (`--no-background`: here). While another process builds
    the index, the search reads what that build has committed so far."""
    from .errors import IndexLocked
    from .index.index import Index, find_root
    root = find_root(start)
    bar = _progress(args.quiet)
    try:
        if root is None:
            folder = start if start.is_dir() else start.parent
            if not args.quiet:
                eprint(f"indexing {folder} (first run)…")
            try:
                return Index.build(folder.resolve(), progress=bar, wait=args.no_background, **_build_kwargs(args))
            except IndexLocked:     # another first search builds it: use what it has committed
                root = folder.resolve()
        idx = Index.open(root)
        try:
            idx.update(progress=bar, wait=args.no_background)
        except IndexLocked:
            if not args.quiet:
                eprint("another build is updating this index; results may be incomplete")
        except BaseException:
            idx.close()
            raise
        return idx
    finally:
        bar.close()


def show_once(root: Path, notices: list[str]) -> None:
    """Print each notice once per index (e.g. "semantic search unavailable"), not on every search;
    `.hhg/notices-shown` remembers what was shown."""
    from .index.store import index_dir
    seen_file = index_dir(root) / "notices-shown"
    try:
        seen = set(seen_file.read_text(encoding="utf-8").splitlines())
    except OSError:
        seen = set()
    new = [n for n in dict.fromkeys(notices) if n not in seen]
    for notice in new:
        eprint(notice)
    if new:
        try:
            with seen_file.open("a", encoding="utf-8") as f:
                f.write("".join(f"{n}\n" for n in new))
        except OSError:
            pass


def cmd_search(args: argparse.Namespace) -> int:
    from .output import PathStyle, format_files, format_hits, format_json, use_color
    from .types import Filters

    target = _existing(args.path) if args.path else None
    similar = SIMILAR.match(args.query)
    if similar and not Path(similar["file"]).is_file():
        similar = None
    if similar and target is None:
        cwd = Path.cwd().resolve()
        file = Path(similar["file"]).resolve()
        target = Path(".") if cwd in file.parents else file.parent
    target = target or Path(".")

    idx = open_index(target, args)
    try:
        root = idx.root.resolve()
        scope = _rel(target, root)
        filters = Filters(types=tuple(args.type), exclude=tuple(args.exclude), paths=() if scope == "." else (scope,),
                          code_only=args.code_only, threshold=args.threshold)
        if similar:
            line = int(similar["line"]) if similar["line"] else None
            hits = idx.similar(_rel(Path(similar["file"]), root), name=similar["name"], line=line,
                               k=args.limit, filters=filters)
        else:
            hits = idx.search(args.query, k=args.limit, filters=filters, mode=args.mode, rerank=args.rerank,
                              rerank_depth=args.rerank_depth)
            if args.rerank is not None and idx.reranker_name(args.rerank) != idx.reranker_name():
                idx.set_rerank(idx.reranker_name(args.rerank))          # kept for later searches
        notices, session_notices = list(idx.notices), list(idx.session_notices)
    finally:
        idx.close()

    if not args.quiet:
        show_once(root, notices)
        for notice in session_notices:
            eprint(notice)
    asked = args.path or (similar["file"] if similar else "")
    show = PathStyle(root, absolute=os.path.isabs(asked))
    if args.json:
        text = format_json(hits, show, content=not args.no_content, why=args.explain)
    elif args.files_with_matches:
        text = format_files(hits, show, color=use_color(args.color, sys.stdout))
    else:
        text = format_hits(hits, show, lines=args.context, color=use_color(args.color, sys.stdout), query=args.query,
                           why=args.explain)
    if hits or args.json:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0 if hits else 1


def cmd_build(args: argparse.Namespace) -> int:
    from .index.batch import build_many
    from .output import format_build
    paths = _build_paths(args)
    open_pool = _ray_pool(args.ray) if args.ray else None
    bar = _progress(args.quiet)
    try:
        result = build_many(paths, force=args.force, wait=args.wait or args.no_background or bool(args.ray),
                            shared_cache=False if args.no_shared_cache else None, open_pool=open_pool,
                            progress=bar, **_build_kwargs(args))
    finally:
        bar.close()
    if args.json:
        import json
        print(json.dumps(result.to_json()))
    if not args.quiet:
        for notice in dict.fromkeys(n for r in result.indexes for n in r.notices):
            eprint(notice)
    for failed in result.failed:
        eprint(failed.error)
    if not (args.quiet or args.json):
        sys.stdout.write(format_build(result, paths))
    return 2 if result.failed else 0


def _build_paths(args: argparse.Namespace) -> list[str]:
    """The folders of `hhg build`: the PATH arguments, then those listed in --from (default: .), each once."""
    paths = list(args.paths)
    if args.from_file:
        try:
            if args.from_file == "-":
                lines = sys.stdin.read().splitlines()
            else:
                lines = Path(args.from_file).read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise HhgError(f"{args.from_file}: {err.strerror or err}") from None
        paths += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not paths:
            raise HhgError(f"{args.from_file} lists no folders")
    unique: dict[str, str] = {}
    for path in paths or ["."]:
        unique.setdefault(os.path.realpath(path), path)
    return list(unique.values())


def _ray_pool(address: str):
    """The pool factory for `--ray ADDRESS`; a one-line error when Ray is not installed."""
    import importlib.util
    if importlib.util.find_spec("ray") is None:
        raise HhgError("--ray needs Ray, which is not installed: pip install 'hhg[ray]'")
    from .distributed import ray_pool
    return ray_pool(address)


def covering_index(path: str):
    """The open index at or above `path`; a one-line error when there is none."""
    from .index.index import Index, find_root
    root = find_root(_existing(path))
    if root is None:
        raise HhgError(f"no index at or above {path}; run `hhg build {path}`")
    return Index.open(root)


def cmd_status(args: argparse.Namespace) -> int:
    from .output import format_status
    idx = covering_index(args.path)
    try:
        status = idx.status()
        embedding = None if args.json else idx.embedding_status()     # with the token rate, for the text
    finally:
        idx.close()
    if args.json:
        import json
        print(json.dumps(status, indent=2, default=str))
    else:
        sys.stdout.write(format_status(status, embedding))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    idx = covering_index(args.path)
    try:
        pid, root = idx.stop_worker(), idx.root
    finally:
        idx.close()
    if not args.quiet:
        print(f"stopped the embedding worker of {root} (pid {pid}); `hhg build` resumes it" if pid else
              f"no embedding worker runs for {root}; searches will not start one until `hhg build`")
    return 0 if pid else 1


def cmd_cache(args: argparse.Namespace) -> int:
    from .index.vector_cache import cache_folder, clean, stores
    from .output import format_cache
    if args.action == "clean":
        removed = clean()
        if not args.quiet:
            print(f"removed {len(removed)} embedding cache store{'s' if len(removed) != 1 else ''} from {cache_folder()}")
        return 0
    found = stores()
    if args.json:
        import json
        print(json.dumps({"folder": str(cache_folder()), "stores": [info.to_json() for info in found]}, indent=2))
    else:
        sys.stdout.write(format_cache(cache_folder(), found))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .index.index import find_indexes
    found = find_indexes(_existing(args.path))
    for index_dir in found:
        print(os.path.relpath(index_dir.parent))
    return 0 if found else 1


def cmd_clean(args: argparse.Namespace) -> int:
    from .index.index import clean
    removed = clean(_existing(args.path), args.recursive)
    if not args.quiet:
        for path in removed or ():
            print(f"removed {os.path.relpath(path)}")
    return 0


def cmd_delegated(name: str, argv: list[str]) -> int:
    import importlib
    module_name, help_text = DELEGATED[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            raise HhgError(f"`hhg {name}` is not available in this installation ({module_name} is missing)") from None
        raise
    parser = argparse.ArgumentParser(prog=f"hhg {name}", description=help_text[0].upper() + help_text[1:] + ".")
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


LOCAL = {"build": (_build_parser, cmd_build), "status": (_status_parser, cmd_status), "stop": (_stop_parser, cmd_stop),
         "list": (_list_parser, cmd_list), "clean": (_clean_parser, cmd_clean), "cache": (_cache_parser, cmd_cache)}


def run(argv: list[str]) -> int:
    search = _search_parser()
    command, rest = split_command(argv, _value_options(search, _build_parser()))
    if command in DELEGATED:
        return cmd_delegated(command, rest)
    if command:
        make_parser, handler = LOCAL[command]
        return handler(parse(make_parser(), rest))
    return cmd_search(parse(search, rest))


def main(argv: list[str] | None = None) -> int:
    """Console entry point: grep's exit codes, one-line errors, no tracebacks."""
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except HhgError as err:
        eprint(one_line(err))
        return 2
    except KeyboardInterrupt:
        eprint("interrupted")
        return 130
    except BrokenPipeError:
        # The reader (e.g. `head`) went away: stop quietly and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:
        eprint(one_line(err))
        return 2
    except Exception as err:  # a bug: still one line, with a way to see the traceback
        if os.environ.get("HHG_DEBUG"):
            raise
        eprint(f"{one_line(err)} (set HHG_DEBUG=1 for a traceback)")
        return 2


if __name__ == "__main__":
    sys.exit(main())
