"""Modal screens: the build offer, the help and the `why` view of a hit."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Label, ProgressBar, Static

from hhg_mlx.errors import HhgError
from hhg_mlx.types import Hit

log = logging.getLogger("hhg.tui")


class BuildScreen(ModalScreen["object | None"]):
    """Offers to build (`reason`, then `question`), then builds with a progress bar. Dismissed with
    the new `Index`, or None when the user declines (`decline` names that button)."""

    BINDINGS = [
        Binding("escape,n,q", "decline", "No"),
        Binding("y", "build", "Build"),
    ]

    class Progress(Message):
        def __init__(self, stage: str, done: int, total: int) -> None:
            super().__init__()
            self.stage, self.done, self.total = stage, done, total

    def __init__(self, root: Path, reason: str, question: str, decline: str = "Quit", *,
                 model: str | None = None, encoder=None, force: bool = False) -> None:
        super().__init__()
        self.root, self.reason, self.question, self.decline = root, reason, question, decline
        # the keyword index is ready at once; the background worker embeds (with an encoder given by the
        # caller, which a worker process cannot load, this process embeds)
        self.build_args = {"model": model, "encoder": encoder, "force": force, "wait": encoder is not None}
        self._building = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.reason, markup=False)
            yield Label(self.question, id="question", markup=False)
            yield Label("", id="stage")
            yield ProgressBar(id="progress", show_eta=False)
            with Horizontal(classes="buttons"):
                yield Button("Build", variant="primary", id="build")
                yield Button(self.decline, id="decline")

    def on_mount(self) -> None:
        self.query_one("#progress").display = False
        self.query_one("#build").focus()

    @on(Button.Pressed, "#build")
    def action_build(self) -> None:
        if self._building:
            return
        self._building = True
        self.query_one(".buttons").display = False
        self.query_one("#progress").display = True
        self.query_one("#question", Label).update("Indexing…")
        self._build()

    @on(Button.Pressed, "#decline")
    def action_decline(self) -> None:
        if not self._building:
            self.dismiss(None)

    @work(thread=True, exclusive=True)
    def _build(self) -> None:
        from hhg_mlx.index.index import Index

        last = 0.0

        def progress(stage: str, done: int, total: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last > 0.05 or done >= total:   # a few updates per second are plenty
                last = now
                self.post_message(self.Progress(stage, done, total))

        try:
            index = Index.build(self.root, progress=progress, **self.build_args)
        except Exception as err:  # any failure must end up in the dialog, never as a traceback
            log.exception("build failed")
            self.app.call_from_thread(self._failed, err)
        else:
            self.app.call_from_thread(self.dismiss, index)

    def on_build_screen_progress(self, message: Progress) -> None:
        self.query_one("#stage", Label).update(f"{message.stage} {message.done}/{message.total}")
        self.query_one("#progress", ProgressBar).update(total=max(message.total, 1), progress=message.done)

    def _failed(self, err: Exception) -> None:
        self._building = False
        text = str(err) if isinstance(err, HhgError) else f"build failed: {err}"
        self.notify(text, severity="error", timeout=10)
        self.query_one("#question", Label).update(Text(text))
        self.query_one("#progress").display = False
        self.query_one(".buttons").display = True


KEYS = [
    ("type", "search as you type; ↑ ↓ move through the results"),
    ("enter", "in the query: go to the results; on a result: open it in $VISUAL / $EDITOR"),
    ("/", "back to the query"),
    ("ctrl+t", "switch mode: hybrid → keyword → semantic"),
    ("ctrl+r", "rerank the top results with a cross-encoder: on / off"),
    ("type box", "languages or extensions: py, go"),
    ("path box", "folders (src), globs (*.py), exclusions (!vendor)"),
    ("↑ ↓  j k", "move (click selects, double click opens)"),
    ("s", "code similar to the selected block"),
    ("w", "why this hit ranked here"),
    ("y", "copy path:line"),
    ("?", "this help"),
    ("q  ctrl+q", "quit (q only outside the query)"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        keys = Table.grid(padding=(0, 2))
        keys.add_column(style="bold", no_wrap=True)
        keys.add_column()
        for key, text in KEYS:
            keys.add_row(key, text)
        with Vertical(classes="dialog"):
            yield Static(keys)


def explain_table(explain: dict) -> Table:
    """`Hit.explain` as a two-column table: known-empty entries are left out, a score's `_rank`
    joins the score, dicts and lists are shown inline (the boosts as factors: `definition ×1.2`)."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for key, value in explain.items():
        if value is None or (key.endswith("_rank") and key.removesuffix("_rank") in explain):
            continue
        if isinstance(value, dict):
            mark = " ×" if key == "boosts" else " "
            text = ", ".join(f"{k}{mark}{_fmt(v)}" for k, v in value.items()) or "none"
        elif isinstance(value, (list, tuple)):
            text = ", ".join(map(_fmt, value)) or "none"
        else:
            text = _fmt(value)
            if (rank := explain.get(f"{key}_rank")) is not None:
                text += f"  (rank {rank})"
        table.add_row(key, text)
    return table


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class WhyScreen(ModalScreen[None]):
    """Why a hit ranked where it did: BM25 terms, cosine, fusion, boosts (from `Hit.explain`)."""

    BINDINGS = [Binding("escape,q,w", "dismiss", "Close")]

    def __init__(self, hit: Hit) -> None:
        super().__init__()
        self.hit = hit

    def compose(self) -> ComposeResult:
        hit = self.hit
        with Vertical(classes="dialog"):
            yield Label(Text.assemble((f"{hit.file}:{hit.line}", "bold"), f" {hit.kind} {hit.name}  score {hit.score:.4g}"))
            with VerticalScroll():
                yield Static(explain_table(hit.explain) if hit.explain else "No explanation recorded for this hit.",
                             id="explain")
