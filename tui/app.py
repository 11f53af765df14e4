"""`hhg-tui`: search a codebase as you type, read the hits in context, jump into the editor."""
from __future__ import annotations

import argparse
import logging
import re
import subprocess
import threading
from pathlib import Path
from time import perf_counter

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SuspendNotSupported
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import Footer, Input, OptionList, Static
from textual.worker import get_current_worker

from hhg_mlx.errors import HhgError, IndexCorrupt, IndexNotFound, SchemaMismatch
from hhg_mlx.paths import cache_dir
from hhg_mlx.rerank import DEPTH as RERANKED
from hhg_mlx.tokens import query_terms
from hhg_mlx.types import Filters, Hit

from .editor import editor_command, resolve_editor
from .preview import render_hit
from .screens import BuildScreen, HelpScreen, WhyScreen
from .widgets import QueryInput, ResultList, StatusBar

log = logging.getLogger("hhg.tui")

MODES = ("hybrid", "keyword", "semantic")
RESULTS = 50              # hits per search; a reranked search shows the RERANKED the cross-encoder reordered
KEYWORD_DEBOUNCE = 0.03   # seconds; hybrid and semantic use the app's `debounce`
EMBEDDING_POLL = 1.0      # seconds between looks at a running embedding's progress


def log_path() -> Path:
    """Where errors are written: `$XDG_CACHE_HOME/hhg/tui.log` (default `~/.cache/hhg/tui.log`)."""
    return cache_dir() / "tui.log"


def setup_logging() -> None:
    """Send the `hhg` loggers to the log file, and nowhere else (never the terminal)."""
    path = log_path()
    logger = logging.getLogger("hhg")
    for handler in logger.handlers[:]:
        if getattr(handler, "baseFilename", None) == str(path):
            return
        logger.removeHandler(handler)
        handler.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def parse_filters(types: str, paths: str) -> Filters | None:
    """The filter boxes as `Filters` (None when both are empty). `types` lists languages or
    extensions (`py, go`). `paths` lists folders (`src lib/net`), globs (`*.py`, `src/**/test_*`) and
    exclusions (`!*_test.go`). `Filters.paths` takes folder prefixes only, so globs become gitignore
    lines: exclude everything (`*`), re-include the globs (`!glob`), then exclude the exclusions
    and everything below them (a file-level re-inclusion outranks a folder-level exclusion)."""
    type_list = tuple(t for t in re.split(r"[\s,]+", types) if t)
    folders, globs, excluded = [], [], []
    for word in filter(None, re.split(r"[\s,]+", paths)):
        if word.startswith("!"):
            if word := word[1:].rstrip("/"):
                excluded += [word, f"{word}/**"]
        elif any(c in word for c in "*?["):
            globs.append(word)
        else:
            folders.append(word)
    if not (type_list or folders or globs or excluded):
        return None
    exclude = (["*", *(f"!{g}" for g in globs)] if globs else []) + excluded
    return Filters(types=type_list, paths=tuple(folders), exclude=tuple(exclude))


class HhgApp(App[None]):
    """The explorer. All index work runs in thread workers, one at a time behind a lock, so the
    interface never waits for the model, a search or an update."""

    CSS_PATH = "app.tcss"
    TITLE = "hhg"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("slash", "focus_query", "Query"),
        Binding("ctrl+t", "cycle_mode", "Mode"),
        Binding("ctrl+r", "toggle_rerank", "Rerank"),
        Binding("s", "similar", "Similar"),
        Binding("w", "why", "Why"),
        Binding("y", "copy", "Copy"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    mode: reactive[str] = reactive("hybrid", init=False)
    rerank: reactive[bool] = reactive(False, init=False)

    def __init__(self, root: str | Path = ".", *, model: str | None = None, mode: str = "hybrid",
                 encoder=None, reranker=None, debounce: float = 0.15) -> None:
        """`model` is used when the app builds the index; `encoder` (an `Encoder`) replaces the
        index's own model, as in `Index.open(root, encoder=...)`, and `reranker` (a `Reranker`) its
        reranker; `debounce` (seconds) is how long typing must pause before a search that embeds the
        query or reranks."""
        super().__init__()
        setup_logging()
        self.root = Path(root).resolve()
        self.model = model
        self.encoder = encoder
        self.reranker = reranker
        self._foreground = encoder is not None    # a caller's encoder: new blocks are embedded here, not by a worker
        self.set_reactive(HhgApp.mode, mode)
        self.debounce = debounce
        self.index = None                      # hhg_mlx Index, once opened or built
        self.hits: list[Hit] = []
        self.search_ms: float | None = None    # the engine's time for the last search
        self._lock = threading.Lock()          # one index call at a time
        self._seq = 0                          # the newest request; older results are dropped
        self._timer: Timer | None = None
        self._info: dict = {}                 # Index.status()
        self._noticed: set[str] = set()
        self._loading = False                 # while the model loads, searches run as keyword
        self._note = "opening index…"        # what the app is busy with
        self._shown: tuple[str, str] = ("", "")  # the results on screen: (title, query) of their request
        self._model_tried = False
        self._poll: Timer | None = None        # while the background worker embeds

    def compose(self) -> ComposeResult:
        with Horizontal(id="bar"):
            yield QueryInput(placeholder="search…", id="query")
            yield Input(placeholder="py,go", id="types")
            yield Input(placeholder="src/** !*test*", id="paths")
        yield ResultList(id="results")
        with VerticalScroll(id="preview-pane"):
            yield Static(id="preview")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#query").border_title = self.mode
        self.query_one("#types").border_title = "type"
        self.query_one("#paths").border_title = "path"
        self._show_status()
        self._open()

    # -- the index --------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="open")
    def _open(self) -> None:
        """Open the index, or offer to build it: when there is none, when it cannot be read, or when
        `--model` names another model than the index's."""
        from hhg_mlx.index.index import Index

        model, encoder = self.model, self.encoder
        kept = None                                   # the index to go on with if the offer is declined
        try:
            index = Index.open(self.root, encoder=encoder)
            current = index.status()["model"] if model else None
        except IndexNotFound:
            offer = BuildScreen(self.root, f"No hhg index in {self.root}.",
                                f"Build one now{f' with {model}' if model else ''}?", model=model, encoder=encoder)
        except (IndexCorrupt, SchemaMismatch) as err:
            log.warning("unreadable index: %s", err)
            offer = BuildScreen(self.root, str(err), "Rebuild it from scratch?", model=model, encoder=encoder,
                                force=True)
        except Exception as err:
            self.call_from_thread(self.report_error, err, "cannot open the index")
            return
        else:
            if not model or current in (model, str(Path(model).expanduser().resolve())):
                self.call_from_thread(self._index_ready, index, True)
                return
            offer = BuildScreen(self.root, f"The index of {self.root} uses {current or 'no model'}.",
                                f"Embed it with {model}?", "Keep", model=model, encoder=encoder)
            kept = index
        self.call_from_thread(self.push_screen, offer, lambda new: self._built(new, kept))

    def _built(self, index, previous=None) -> None:
        """After the build offer: the new index, else the one there was, else quit."""
        if index is not None and previous is not None:
            previous.close()
        if index is None and previous is None:
            self.exit()
        else:
            self._index_ready(index or previous, index is None)

    def _index_ready(self, index, opened: bool) -> None:
        self.index = index
        # `_prepare` loads the index's model (a build in the background did not). Until then searches run
        # by keyword, or the first one would load the model itself, inside the search, under the lock.
        self._loading = self.encoder is None and not self._model_tried
        self.query_one("#query").focus()
        self._prepare(opened)
        if self.query_one("#query", Input).value.strip():
            self._search_now()

    @work(thread=True, exclusive=True, group="index")
    def _prepare(self, opened: bool) -> None:
        """Read the status; for an index opened (not just built, which loads the model) load its
        model once (`_index_ready` decides); warm the vectors; then bring stale files up to date.
        Each step takes the lock on its own, so searches slip in between."""
        self._info = self._locked("", lambda index: index.status(), "cannot read the index status") or {}
        if self._info.get("rerank"):
            self.call_from_thread(setattr, self, "rerank", True)     # the index's setting: loads its reranker
        model = self._info.get("model")
        if self._loading:
            self._model_tried = True
            self._load_model()
        if model:
            self._locked("loading vectors…", lambda index: index.search("warm up", k=1, rerank=False),
                         "cannot load the model")
        if opened:
            stats = self._locked("updating…", lambda index: index.update(wait=self._foreground), "update failed")
            log.info("update: %s", stats)
            if stats is not None and (stats.added or stats.modified or stats.deleted):
                self._info = self._locked("", lambda index: index.status(), "cannot read the index status") or {}
                self.call_from_thread(self._search_now)
        self.call_from_thread(self._show_status)
        self.call_from_thread(self._show_notices)
        self.call_from_thread(self._follow_embedding)

    def _follow_embedding(self) -> None:
        """While the background worker embeds, look at its progress every EMBEDDING_POLL seconds."""
        running = self._info.get("embedding", {}).get("state") == "running"
        if running and self._poll is None:
            self._poll = self.set_interval(EMBEDDING_POLL, self._embedding_progress)
        elif not running and self._poll is not None:
            self._poll.stop()
            self._poll = None

    @work(thread=True, exclusive=True, group="embedding")
    def _embedding_progress(self) -> None:
        """Show the embedding's progress; when it ends, search again (every block has its vector now).
        Searches meanwhile see each committed batch: the index reloads its vectors when they change."""
        embedding = self._locked("", lambda index: index.embedding_status(), "cannot read the embedding status")
        if embedding is None:
            return
        self._info = {**self._info, "embedding": embedding.to_json()}
        self.call_from_thread(self._show_status)
        if embedding.state != "running":
            self.call_from_thread(self._follow_embedding)
            self.call_from_thread(self._search_now)

    def _load_model(self) -> None:
        """Load the index's model (`Index.encoder_args()`: its task, backend and precision too) without
        the lock, searching by keyword meanwhile, then reopen the index with it. On failure the index
        says why (a notice) at the next semantic search."""
        from hhg_mlx.loader import load_encoder

        args = self._locked("", lambda index: index.encoder_args(), "cannot read the index's model")
        try:
            if args:
                self._note = "loading model… (keyword results meanwhile)"
                self.call_from_thread(self._show_status)
                self._reopen(encoder=load_encoder(**args, download=False))
        except Exception as err:
            log.warning("cannot load %s: %s", args["model"], err)
        finally:
            self._loading = False
            self._note = ""
        self.call_from_thread(self._search_now)     # the same query again, now by meaning too

    @work(thread=True, exclusive=True, group="reranker")
    def _load_reranker(self) -> None:
        """Load the index's reranker (else the default one) without the lock, searching without it
        meanwhile, then reopen the index with it; on failure, say why and turn reranking off."""
        from hhg_mlx.loader import load_reranker

        name = self._locked("", lambda index: index.reranker_name(True), "cannot read the index's reranker")
        try:
            if name:
                self._note = f"loading reranker {name}…"
                self.call_from_thread(self._show_status)
                self._reopen(reranker=load_reranker(name, download=False))
        except Exception as err:
            self.call_from_thread(self.report_error, err, f"cannot load the reranker {name}")
            self.call_from_thread(setattr, self, "rerank", False)
        finally:
            self._note = ""
        self.call_from_thread(self._search_now)

    def _reopen(self, *, encoder=None, reranker=None) -> None:
        """Reopen the index with a newly loaded encoder or reranker (and the other one already loaded),
        under the lock: no search sees an index without them."""
        from hhg_mlx.index.index import Index

        with self._lock:
            self.encoder, self.reranker = encoder or self.encoder, reranker or self.reranker
            self.index, previous = Index.open(self.root, encoder=self.encoder, reranker=self.reranker), self.index
        previous.close()

    def _locked(self, note: str, call, what: str):
        """`call(index)` under the lock, from a worker thread, with `note` in the status bar; errors
        are reported and give None."""
        self._note = note
        self.call_from_thread(self._show_status)
        try:
            with self._lock:
                return call(self.index)
        except Exception as err:
            self.call_from_thread(self.report_error, err, what)
            return None
        finally:
            self._note = ""

    def _show_status(self) -> None:
        note = " · ".join(filter(None, (self._shown[0], self._note)))
        reranker = self.reranker.model_id if self.rerank and self.reranker is not None else None
        self.query_one(StatusBar).show(self.mode, self._info, self.search_ms, note, reranker)

    # -- searching --------------------------------------------------------------------------
    @on(Input.Changed)
    def _schedule_search(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        # Keyword searches take milliseconds; only those that embed the query or rerank wait longer.
        fast = self.mode == "keyword" and not self.rerank
        delay = min(self.debounce, KEYWORD_DEBOUNCE) if fast else self.debounce
        if delay > 0:
            self._timer = self.set_timer(delay, self._search_now)
        else:
            self._search_now()

    def _search_now(self) -> None:
        self._seq += 1
        query = self.query_one("#query", Input).value.strip()
        if self.index is None:
            return
        if not query:
            self._show(self._seq, [], None, ("", ""))
            return
        filters = self._filter_boxes()
        mode = "keyword" if self._loading else self.mode
        rerank = self.rerank and self.reranker is not None        # never a load inside a search
        k = RERANKED if rerank else RESULTS
        self._run(self._seq, ("", query),
                  lambda index: index.search(query, k=k, filters=filters, mode=mode, rerank=rerank))

    def _filter_boxes(self) -> Filters | None:
        """The type and path boxes as `Filters`."""
        return parse_filters(self.query_one("#types", Input).value, self.query_one("#paths", Input).value)

    @work(thread=True, exclusive=True, group="search")
    def _run(self, seq: int, shown: tuple[str, str], call) -> None:
        """Run `call(index)` for request `seq` (`shown`: its title, when not the query's hits, and the
        query); show its hits unless a newer request came in."""
        worker = get_current_worker()
        with self._lock:
            if worker.is_cancelled or seq != self._seq:
                return
            start = perf_counter()
            try:
                hits = call(self.index)
            except Exception as err:
                self.call_from_thread(self.report_error, err, "search failed")
                hits, elapsed = [], None      # an empty list, not an older request's hits
            else:
                elapsed = (perf_counter() - start) * 1000
        if seq == self._seq:
            self.call_from_thread(self._show, seq, hits, elapsed, shown)

    def _show(self, seq: int, hits: list[Hit], elapsed: float | None, shown: tuple[str, str]) -> None:
        if seq != self._seq:
            return
        self._show_notices()
        # A refresh of the same results (model loaded, files updated) keeps the selected hit.
        keep = self.selected() if shown == self._shown else None
        self._shown = shown
        self.hits = hits
        self.search_ms = elapsed
        self.query_one(ResultList).show_hits(hits, keep)
        if not hits:
            self._preview(None)
        self._show_status()

    def _show_notices(self) -> None:
        """The index's notices (e.g. semantic search unavailable), each shown once."""
        for notice in self.index.notices:
            if notice not in self._noticed:
                self._noticed.add(notice)
                self.notify(notice, severity="warning", timeout=8)

    @on(OptionList.OptionHighlighted, "#results")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._preview(self.hits[event.option_index] if event.option_index < len(self.hits) else None)

    def _preview(self, hit: Hit | None) -> None:
        pane = self.query_one("#preview-pane")
        preview = self.query_one("#preview", Static)
        if hit is None:
            pane.border_title = ""
            preview.update("")
            return
        pane.border_title = f"{hit.file}:{hit.line}-{hit.end_line}"
        terms = query_terms(self.query_one("#query", Input).value)
        try:
            preview.update(render_hit(hit, self.root, terms, dark=self.current_theme.dark))
        except Exception as err:
            self.report_error(err, "cannot show the preview")
        pane.scroll_home(animate=False)

    def watch_mode(self, mode: str) -> None:
        self.query_one("#query").border_title = mode
        self._show_status()
        self._search_now()

    def watch_rerank(self, rerank: bool) -> None:
        if rerank and self.reranker is None:
            self._load_reranker()
        self._show_status()
        self._search_now()

    # -- actions ----------------------------------------------------------------------------
    def selected(self) -> Hit | None:
        index = self.query_one(ResultList).highlighted
        return self.hits[index] if index is not None and index < len(self.hits) else None

    def action_focus_query(self) -> None:
        self.query_one("#query").focus()

    def action_cycle_mode(self) -> None:
        self.mode = MODES[(MODES.index(self.mode) + 1) % len(MODES)]

    def action_toggle_rerank(self) -> None:
        self.rerank = not self.rerank

    def action_cursor(self, step: int) -> None:
        results = self.query_one(ResultList)
        if step > 0:
            results.action_cursor_down()
        else:
            results.action_cursor_up()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.query_one(ResultList).focus()

    @on(OptionList.OptionSelected, "#results")
    def _open_in_editor(self) -> None:
        """Run `$VISUAL`/`$EDITOR` on the selected hit's line (the app steps aside meanwhile), then
        show the file as it is now and index what changed."""
        hit = self.selected()
        if hit is None:
            return
        argv = editor_command(resolve_editor(), str(self.root / hit.file), hit.line)
        log.info("editor: %s", argv)
        try:
            if self.is_headless:
                subprocess.run(argv, cwd=self.root, check=False)
            else:
                with self.suspend():
                    subprocess.run(argv, cwd=self.root, check=False)
        except (OSError, SuspendNotSupported) as err:
            self.report_error(err, f"cannot run {argv[0]}")
            return
        self._preview(self.selected())
        if self.index is not None:
            self._prepare(True)

    def action_similar(self) -> None:
        hit = self.selected()
        if hit is None or self.index is None:
            return
        self._seq += 1
        filters = self._filter_boxes()
        query = self.query_one("#query", Input).value.strip()
        self._run(self._seq, (f"similar to {hit.file}:{hit.line}", query),
                  lambda index: index.similar(hit.file, line=hit.line, k=RESULTS, filters=filters))

    def action_why(self) -> None:
        hit = self.selected()
        if hit is not None:
            self.push_screen(WhyScreen(hit))

    def action_copy(self) -> None:
        hit = self.selected()
        if hit is not None:
            self.copy_to_clipboard(f"{hit.file}:{hit.line}")
            self.notify(f"copied {hit.file}:{hit.line}", timeout=2)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    # -- errors -----------------------------------------------------------------------------
    def report_error(self, err: BaseException, what: str) -> None:
        """Report a failure: one line on screen, the traceback in the log."""
        log.error(what, exc_info=err)
        text = str(err) if isinstance(err, HhgError) else f"{what}: {err}"
        self.notify(text, severity="error", timeout=8)

    def _fatal_error(self) -> None:
        # Last resort for a bug: keep the traceback in the log, not on the terminal.
        log.critical("unexpected error", exc_info=True)
        self._exit_renderables.append(Text(f"hhg-tui: unexpected error (details in {log_path()})"))
        self._close_messages_no_wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hhg-tui", description="Explore a codebase with hhg, interactively.")
    parser.add_argument("path", nargs="?", default=".", help="folder to search (default: .)")
    parser.add_argument("--model", help="embedding model used when building an index")
    parser.add_argument("--mode", choices=MODES, default="hybrid", help="initial search mode (ctrl+t switches)")
    args = parser.parse_args(argv)
    if not Path(args.path).is_dir():
        parser.error(f"{args.path}: not a folder")
    app = HhgApp(args.path, model=args.model, mode=args.mode)
    app.run()
    return app.return_code or 0
