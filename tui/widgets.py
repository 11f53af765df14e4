"""The main screen's widgets: the results list and the status bar."""
from __future__ import annotations

from pathlib import PurePath

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from hhg_mlx.progress import duration
from hhg_mlx.types import Hit

_EIGHTHS = " ▏▎▍▌▋▊▉"
BAR_WIDTH = 8


def score_bar(score: float, top: float, width: int = BAR_WIDTH) -> str:
    """A bar of `width` cells, full for the best hit (`top`), in eighths of a cell."""
    fraction = min(max(score / top, 0.0), 1.0) if top > 0 else 0.0
    full, part = divmod(round(fraction * width * 8), 8)
    return ("█" * full + (_EIGHTHS[part] if part else "")).ljust(width)


class HitRow:
    """One result line, laid out for the width it is drawn at: `path:line`, kind, qualified name,
    score bar. (A plain line, not a table: the list draws every row each time results arrive.)"""

    KIND_WIDTH = 8

    def __init__(self, hit: Hit, top: float) -> None:
        self.hit, self.top = hit, top

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        hit = self.hit
        room = max(options.max_width - self.KIND_WIDTH - BAR_WIDTH - 3, 10)
        where = room * 5 // 9
        location = Text.assemble((hit.file, "cyan"), (f":{hit.line}", "dim"))
        if len(location) > where:                  # keep the file name and line, drop leading folders
            location = Text("…").append_text(location[len(location) - where + 1:])
        row = Text()
        for part, width in ((location, where), (Text(hit.kind, "italic"), self.KIND_WIDTH),
                            (Text(hit.name, "bold"), room - where)):
            part.truncate(width, overflow="ellipsis", pad=True)
            row.append_text(part)
            row.append(" ")
        row.append(score_bar(hit.score, self.top), "green")
        yield row


class QueryInput(Input):
    """The query box: ↑/↓ move through the results while typing goes on."""

    BINDINGS = [
        Binding("down", "app.cursor(1)", "Next"),
        Binding("up", "app.cursor(-1)", "Previous", show=False),
        Binding("enter", "submit", "Results"),
    ]


class ResultList(OptionList):
    """The hits. j/k move as well as the arrows; a click selects, a double click opens."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]

    def show_hits(self, hits: list[Hit], keep: Hit | None = None) -> None:
        """Show `hits`, highlighting `keep` if it is among them, else the first."""
        top = max((h.score for h in hits), default=0.0)
        self.set_options(Option(HitRow(h, top)) for h in hits)
        if hits:
            same = [i for i, h in enumerate(hits) if keep and (h.file, h.line) == (keep.file, keep.line)]
            self.highlighted = same[0] if same else 0

    async def _on_click(self, event: events.Click) -> None:
        index = event.style.meta.get("option")
        if index is None:
            return
        event.prevent_default()                     # OptionList's own click handler would select
        self.focus()
        self.highlighted = index
        if event.chain >= 2:
            self.action_select()


class StatusBar(Static):
    """One line: mode, reranker, model and backend, index size and staleness, embedding progress, last
    search time."""

    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; color: $text-muted; padding: 0 1; }
    """

    def show(self, mode: str, info: dict, search_ms: float | None, note: str = "", reranker: str | None = None) -> None:
        """`info` is `Index.status()` (empty until the index is open); `reranker` the model reranking
        the results, if any."""
        parts = [mode] + ([f"reranked by {_short_model(reranker)}"] if reranker else [])
        if info:
            model = _short_model(info.get("model")) or "no model"
            backend = info.get("backend")
            parts.append(f"{model} on {backend}" if backend else model)     # e.g. minilm on onnx (int8)
            parts.append(f"{info.get('blocks', 0):,} blocks")
            stale = _stale_count(info)
            parts.append(f"{stale:,} stale" if stale else "up to date")
        if info and (embedding := embedding_note(info.get("embedding"))):
            parts.append(embedding)
        if search_ms is not None:
            parts.append(f"{search_ms:.0f} ms")
        if note:
            parts.append(note)
        self.update(" · ".join(parts))


def embedding_note(embedding: dict | None) -> str:
    """The embedding phase in a few words while it is unfinished (`Index.status()["embedding"]`)."""
    if not embedding or embedding["state"] in ("none", "done"):
        return ""
    percent = f"{100 * embedding['done'] // max(embedding['total'], 1)}%"
    if embedding["state"] != "running":
        return f"embedding {embedding['state']} at {percent}"
    eta = f" · ETA {duration(embedding['eta_s'])}" if embedding.get("eta_s") is not None else ""
    return f"embedding {percent}{eta}"


def _short_model(model: str | None) -> str | None:
    """A registry id as is; a model folder by its last two path parts."""
    if model and model.startswith("/"):
        return "…/" + "/".join(PurePath(model).parts[-2:])
    return model


def _stale_count(info: dict) -> int:
    stale = info.get("stale", 0)
    return sum(stale.values()) if isinstance(stale, dict) else int(stale or 0)
