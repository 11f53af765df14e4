"""`hhg build PATH [PATH ...]` through the CLI: --json (the summary and nothing else on stdout), --from,
repositories that fail alone (exit 2), Ctrl-C mid-batch then resume, `hhg cache`, and `--ray` without Ray."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from batch_fixtures import MINILM, contents, copies, module, needs_minilm, reference, window_texts  # noqa: F401
from cli_fixtures import HHG, SOURCE_ROOT, assert_one_line_error, env_for, run_hhg, takes_ctrl_c
from hhg_mlx.cli import main
from hhg_mlx.index.index import Index
from hhg_mlx.index.store import db_path

MODEL = ["--model", str(MINILM), "--backend", "onnx", "--precision", "fp32"]


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """The CLI environment with the shared cache on, in this test's own cache folder."""
    return {**env_for(tmp_path), "HHG_SHARED_CACHE": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}


def check_summary(summary: dict) -> None:
    """Exactly the schema of `hhg build --json`."""
    assert list(summary) == ["indexes", "texts", "seconds"] and isinstance(summary["seconds"], float)
    assert list(summary["texts"]) == ["total", "unique", "embedded", "cached"]
    assert all(type(v) is int for v in summary["texts"].values())
    for entry in summary["indexes"]:
        assert list(entry) == ["root", "ok", "error", "files", "blocks", "vectors"]
        assert isinstance(entry["root"], str) and isinstance(entry["ok"], bool)
        assert entry["error"] is None if entry["ok"] else isinstance(entry["error"], str)
        assert all(type(entry[k]) is int for k in ("files", "blocks", "vectors"))


@needs_minilm
def test_json_from_a_list_and_a_missing_repository(tmp_path, env, reference):
    roots = copies(reference, tmp_path)
    listing = tmp_path / "repos.txt"
    listing.write_text(f"# repositories\n{roots[1]}\n\n{tmp_path / 'gone'}\n{roots[0]}/.\n{roots[2]}\n")   # (a repeat)
    proc = run_hhg("build", str(roots[0]), "--from", str(listing), "--json", "--wait", *MODEL, cwd=tmp_path,
                   env=env, timeout=300)
    assert_one_line_error(proc)                                      # exit 2, one line for the missing one
    assert proc.stderr == f"hhg: {tmp_path / 'gone'}: no such directory\n"
    summary = json.loads(proc.stdout)                                # stdout is the one object, nothing else
    check_summary(summary)
    assert [e["ok"] for e in summary["indexes"]] == [True, True, False, True]
    assert [e["root"] for e in summary["indexes"]] == [str(roots[0]), str(roots[1]), str(tmp_path / "gone"),
                                                        str(roots[2])]
    for entry, root, ref in zip([summary["indexes"][i] for i in (0, 1, 3)], roots, reference):
        want = contents(ref)
        assert contents(root) == want
        assert (entry["files"], entry["blocks"], entry["vectors"]) == (len(want["files"]), len(want["blocks"]),
                                                                      want["windows"])
    texts = summary["texts"]
    assert texts["embedded"] == texts["unique"] < texts["total"] and texts["cached"] == 0

    again = subprocess.run([*HHG, "build", "--from", "-", "--json"], input=f"{roots[0]}\n{roots[2]}\n", cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stderr == "", again.stderr
    assert json.loads(again.stdout)["texts"] == {"total": 0, "unique": 0, "embedded": 0, "cached": 0}


@needs_minilm
def test_the_text_summary_of_a_batch(tmp_path, env, reference):
    roots = copies(reference, tmp_path)
    proc = run_hhg("build", *map(str, roots), "--wait", *MODEL, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 5
    for line, root in zip(lines, roots):
        assert line.startswith(f"{root}: ") and f"({MINILM} on onnx (fp32))" in line
    assert lines[3].startswith("3 of 3 indexes built in ")
    summary = lines[4]
    assert summary.endswith(" embedded") and ", 0 from the shared cache, " in summary


@needs_minilm
def test_ctrl_c_mid_batch_leaves_every_index_consistent_and_resumable(tmp_path, env, reference):
    """SIGINT while the batch embeds (chunks of 8 texts, the first index written chunk by chunk): exit 130,
    every index opens and holds only whole chunks; the next run embeds only what is missing."""
    roots = copies(reference, tmp_path)
    for i in range(12):                                              # more texts: time to interrupt
        (roots[0] / f"more/extra_{i}.py").parent.mkdir(exist_ok=True)
        (roots[0] / f"more/extra_{i}.py").write_text(module("extra", i))
    tests = SOURCE_ROOT / "tests"
    env = {**env, "HHG_STUB_BATCH": "8", "PYTHONPATH": os.pathsep.join([str(SOURCE_ROOT), str(tests / "stub_site"),
                                                                        str(tests)])}
    proc = subprocess.Popen([*HHG, "build", *map(str, roots), "--wait", *MODEL], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=takes_ctrl_c)
    deadline = time.monotonic() + 120
    while vectors_in(roots[0]) == 0 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err == "hhg: interrupted\n" and out == "", (proc.returncode, err)

    cached = cache_count(tmp_path / "cache")
    written = [vectors_in(root) for root in roots]
    assert 0 < written[0] and cached < unique_texts(reference + [roots[0]])
    for root in roots:
        if db_path(root).exists():
            with Index.open(root) as idx:
                assert idx.status()["embedding"]["state"] == "stopped"
    resumed = run_hhg("build", *map(str, roots), "--wait", "--json", *MODEL, cwd=tmp_path, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    texts = json.loads(resumed.stdout)["texts"]
    everything = unique_texts(roots)
    assert cached + texts["embedded"] == everything == cache_count(tmp_path / "cache")   # nothing twice, none lost
    assert texts["cached"] > 0                                       # the fork's shared texts, from the cache
    for root, ref in zip(roots[1:], reference[1:]):
        assert contents(root) == contents(ref)
    assert vectors_in(roots[0]) == len(contents(roots[0])["vectors"]) == len(window_texts(roots[0]))


def vectors_in(root) -> int:
    """Vectors stored in an index so far (read without taking any lock)."""
    try:
        conn = sqlite3.connect(f"file:{db_path(root)}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def cache_count(cache_home) -> int:
    stores = list((cache_home / "hhg" / "vectors").glob("*.sqlite"))
    if not stores:
        return 0
    (store,) = stores
    conn = sqlite3.connect(store)
    try:
        return conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
    finally:
        conn.close()


def unique_texts(roots) -> int:
    return len({h for root in roots if db_path(root).exists() for h in window_texts(root)})


@needs_minilm
def test_cache_status_and_clean(tmp_path, env, reference):
    roots = copies(reference[:1], tmp_path)
    empty = run_hhg("cache", cwd=tmp_path, env=env)
    assert empty.returncode == 0 and empty.stdout == f"{tmp_path / 'cache' / 'hhg' / 'vectors'}: empty\n"
    assert run_hhg("build", "-q", "--wait", *map(str, roots), *MODEL, cwd=tmp_path, env=env, timeout=300).returncode == 0
    status = json.loads(run_hhg("cache", "status", "--json", cwd=tmp_path, env=env).stdout)
    (store,) = status["stores"]
    assert store["key"] == f"{MINILM}#precision=fp32" and store["dim"] == 384
    assert store["vectors"] == len(window_texts(roots[0])) and store["size_bytes"] > 0
    text = run_hhg("cache", cwd=tmp_path, env=env).stdout.splitlines()
    assert text[0].startswith(f"{tmp_path / 'cache' / 'hhg' / 'vectors'}: 1 store, ")
    assert text[1].startswith(f"  {MINILM}#precision=fp32: {store['vectors']:,} vectors (384-dim), ")
    clean = run_hhg("cache", "clean", cwd=tmp_path, env=env)
    assert clean.stdout == f"removed 1 embedding cache store from {tmp_path / 'cache' / 'hhg' / 'vectors'}\n"
    assert json.loads(run_hhg("cache", "--json", cwd=tmp_path, env=env).stdout)["stores"] == []


def test_no_shared_cache_neither_reads_nor_fills_it(tmp_path, monkeypatch):
    from engine_fixtures import StubEncoder, make_repo
    from hhg_mlx.index.batch import build_many

    monkeypatch.setenv("HHG_SHARED_CACHE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    repo = make_repo(tmp_path / "repo", {}, fillers=4)
    off = build_many([repo], encoder=StubEncoder(), shared_cache=False)
    assert off.texts.embedded == off.texts.unique > 0 and not (tmp_path / "cache").exists()
    on = build_many([repo], encoder=StubEncoder(), force=True)
    assert on.texts.embedded == on.texts.unique and len(list((tmp_path / "cache" / "hhg" / "vectors").iterdir())) >= 1
    again = build_many([repo], encoder=StubEncoder(), force=True)
    assert (again.texts.embedded, again.texts.cached) == (0, again.texts.unique)
    monkeypatch.setenv("HHG_SHARED_CACHE", "0")                      # the switch: off
    assert build_many([repo], encoder=StubEncoder(), force=True).texts.embedded == on.texts.unique


def test_ray_without_the_extra_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)                   # as if Ray were not installed
    assert main(["build", str(tmp_path), "--ray", "auto"]) == 2
    assert capsys.readouterr().err == "hhg: --ray needs Ray, which is not installed: pip install 'hhg[ray]'\n"
    assert not (tmp_path / ".hhg").exists()


def test_a_batch_without_wait_embeds_in_one_background_process(tmp_path):
    """The keyword indexes are there when the command returns; one detached process (not one worker per
    index) then embeds every distinct text once, with one encoder (the stub of tests/stub_site)."""
    from collections import Counter

    from cli_fixtures import worker_env
    from engine_fixtures import make_repo
    from hhg_mlx.index import worker

    env = worker_env(tmp_path, delay=0.002)
    roots = [make_repo(tmp_path / name, {}, fillers=12) for name in ("one", "two")]   # the same fillers twice
    proc = run_hhg("build", *map(str, roots), "--model", "stub-slow", cwd=tmp_path, env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    line = proc.stdout.splitlines()[2]
    assert line.startswith("embedding in the background (pid ") and line.endswith("shows how far each index is")
    pid = int(line.split("pid ")[1].split(")")[0])
    deadline = time.monotonic() + 120
    while worker.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not worker.alive(pid)
    log = (tmp_path / "stub.log").read_text().splitlines()
    texts = Counter(line.split()[2] for line in log if " text " in line)
    assert {int(line.split()[0]) for line in log} == {pid} and max(texts.values()) == 1
    for root in roots:
        with Index.open(root) as idx:
            status = idx.status()
            assert status["embedding"]["state"] == "done" and status["vectors"] == idx._store.count("windows")
    assert len(texts) == len({h for root in roots for h in window_texts(root)})


def test_a_file_fails_alone_as_not_a_folder(tmp_path):
    from engine_fixtures import make_repo
    from hhg_mlx.index.batch import build_many

    repo = make_repo(tmp_path / "repo", {}, fillers=2)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a repository\n")
    result = build_many([notes, repo])
    assert [(e["ok"], e["error"]) for e in result.to_json()["indexes"]] == [(False, f"{notes}: not a folder"),
                                                                            (True, None)]
    assert result.indexes[1].files == 2 and result.loads == 0


def test_one_progress_line_counts_texts_and_repositories(tmp_path):
    import io

    from engine_fixtures import StubEncoder, make_repo
    from hhg_mlx.index.batch import build_many
    from hhg_mlx.progress import ProgressBar

    roots = [make_repo(tmp_path / name, {f"{name}.py": f"def only_in_{name}():\n    return 1\n"}, fillers=6)
             for name in ("a", "b", "c")]
    calls = []
    result = build_many(roots, encoder=StubEncoder(), progress=lambda *call: calls.append(call))
    unique = result.texts.unique
    assert {c[3] for c in calls if c[0] == "extract"} == {"repo 1/3", "repo 2/3", "repo 3/3"}
    embed = [c for c in calls if c[0] == "embed"]
    assert embed[0] == ("embed", 0, unique, "0/3 repos") and embed[-1] == ("embed", unique, unique, "3/3 repos")
    assert [c[1] for c in embed] == sorted(c[1] for c in embed)

    bar = ProgressBar(io.StringIO(), enabled=True)
    assert bar.render("embed", 400, 1000, 2.0, "3/19 repos").endswith(" 400/1,000  3/19 repos  200 blocks/s  ETA 0:03")


def test_no_shared_cache_holds_for_a_single_folder_embedded_in_the_background(tmp_path):
    """`hhg build --no-shared-cache ROOT` without --wait: whatever embeds in the background afterwards
    neither reads nor fills the per-user cache (the variable and the config would turn it on)."""
    from cli_fixtures import worker_env
    from engine_fixtures import make_repo

    env = {**worker_env(tmp_path, delay=0.001), "HHG_SHARED_CACHE": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    root = make_repo(tmp_path / "one", {}, fillers=6)
    proc = run_hhg("build", str(root), "--model", "stub-slow", "--no-shared-cache", cwd=tmp_path, env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    deadline, state = time.monotonic() + 120, None
    while state != "done" and time.monotonic() < deadline:
        time.sleep(0.05)
        with Index.open(root) as idx:
            state = idx.embedding_status().state
    with Index.open(root) as idx:
        assert state == "done" and idx.counts()["vectors"] == idx._store.count("windows") > 0
    assert not list((tmp_path / "cache").rglob("*.sqlite"))
