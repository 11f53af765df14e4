"""A one-line progress bar for index builds, drawn on stderr only when stderr is a terminal."""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, TextIO

UNITS = {"scan": "files", "extract": "files", "embed": "blocks"}


def duration(seconds: float) -> str:
    """`m:ss`, or `XhYYm` from an hour."""
    seconds = int(seconds + 0.5)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}:{seconds % 60:02d}"


class ProgressBar:
    """Callable as a `BuildProgress`: `bar(stage, done, total)`, or a batch's `bar(stage, done, total, note)`.

    Shows `stage [=====     ] done/total  note  rate unit/s  ETA m:ss`, redrawn at most every
    `interval` seconds, and does nothing at all when the stream is not a TTY (or `enabled` is False).
    """

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None,
                 interval: float = 0.1, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.interval = interval
        self.clock = clock
        self._stage = ""
        self._started = 0.0
        self._drawn = float("-inf")
        self._visible = False

    def __call__(self, stage: str, done: int, total: int, note: str = "") -> None:
        if not self.enabled or total == 0:      # nothing to do in this stage: nothing to show
            return
        now = self.clock()
        if stage != self._stage:
            self._stage, self._started, self._drawn = stage, now, float("-inf")
        if now - self._drawn < self.interval and done < total:
            return
        self._drawn = now
        self.stream.write("\r" + self.render(stage, done, total, now - self._started, note) + "\x1b[K")
        self.stream.flush()
        self._visible = True

    def render(self, stage: str, done: int, total: int, elapsed: float, note: str = "") -> str:
        """The bar's text for `done` of `total` units after `elapsed` seconds in this stage (`note`, e.g.
        "3/19 repos", after the counts)."""
        unit = UNITS.get(stage, "items")
        rate = done / elapsed if elapsed > 0 else 0.0
        counts = f"{done:,}/{total:,}" + (f"  {note}" if note else "")
        tail = f"{rate:,.0f} {unit}/s" if rate else ""
        if rate and done < total:
            tail += f"  ETA {duration((total - done) / rate)}"
        room = self._columns() - len(stage) - len(counts) - len(tail) - 8
        bar = ""
        if room >= 10:
            cells = min(room, 30)
            filled = min(cells, cells * done // total)
            bar = "[" + "=" * filled + " " * (cells - filled) + "] "
        return f"{stage:<7} {bar}{counts}  {tail}".rstrip()

    def _columns(self) -> int:
        """The width of the stream's terminal (`$COLUMNS` first, 80 when unknown)."""
        try:
            return int(os.environ["COLUMNS"])
        except (KeyError, ValueError):
            pass
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or 80
        except (AttributeError, OSError, ValueError):
            return 80

    def close(self) -> None:
        """Erase the bar so that whatever is printed next starts on a clean line."""
        if self._visible:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._visible = False
