"""`hhg build` under stress, through new processes: Ctrl-C in the middle, a second build at the same
time, a search while a build runs, and the progress bar on a terminal."""
from __future__ import annotations

import json
import os
import pty
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from cli_fixtures import HHG, assert_one_line_error, env_for, make_big_tree, make_repo, run_hhg, takes_ctrl_c

FILES = 3000


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    return env_for(tmp_path_factory.mktemp("env"))


@pytest.fixture
def big_tree(tmp_path) -> Path:
    return make_big_tree(tmp_path / "big", FILES)


def committed_files(root: Path) -> int:
    """Files the running build has committed so far (read-only look at its database)."""
    db = root / ".hhg" / "index.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    except sqlite3.Error:
        return 0


def start_build(root: Path, env) -> subprocess.Popen:
    """`hhg build` in its own process group, as a shell runs a foreground job."""
    return subprocess.Popen([*HHG, "build", "-q", str(root)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=takes_ctrl_c)


def wait_for_first_commit(proc: subprocess.Popen, root: Path) -> int:
    deadline = time.monotonic() + 120
    while (n := committed_files(root)) == 0:
        assert proc.poll() is None, f"build ended before its first commit: {proc.communicate()}"
        assert time.monotonic() < deadline, "no commit within 120 s"
        time.sleep(0.02)
    assert proc.poll() is None, "the tree is too small: the build finished before the test could interrupt it"
    return n


def status_json(root: Path, env) -> dict:
    proc = run_hhg("status", "--json", str(root), cwd=root, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_ctrl_c_during_build_then_resume(big_tree, env):
    proc = start_build(big_tree, env)
    wait_for_first_commit(proc, big_tree)
    os.killpg(proc.pid, signal.SIGINT)            # Ctrl-C reaches the whole foreground process group
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"hhg build did not stop within 60 s of Ctrl-C: {proc.communicate()}")
    assert proc.returncode == 130, (proc.returncode, err)
    assert err == "hhg: interrupted\n"             # no traceback, not even from worker processes
    done = committed_files(big_tree)
    assert 0 < done < FILES

    resumed = run_hhg("build", str(big_tree), cwd=big_tree, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    new = int(re.search(r"; ([\d,]+) new,", resumed.stdout)[1].replace(",", ""))
    assert new == FILES - done                     # finished files were not read again
    after_resume = status_json(big_tree, env)

    forced = run_hhg("build", "-q", "--force", str(big_tree), cwd=big_tree, env=env, timeout=300)
    assert forced.returncode == 0, forced.stderr
    clean = status_json(big_tree, env)
    assert after_resume["files"] == clean["files"] == FILES
    assert after_resume["blocks"] == clean["blocks"] >= FILES * 6


def test_concurrent_build_and_search(big_tree, env):
    first = start_build(big_tree, env)
    committed = wait_for_first_commit(first, big_tree)

    search = run_hhg("--json", "handler", ".", cwd=big_tree, env=env, timeout=60)
    second = run_hhg("build", "-q", str(big_tree), cwd=big_tree, env=env, timeout=300)
    first_running = first.poll() is None
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err

    # A search during the build sees what is committed; it never fails on the lock.
    assert search.returncode == 0, search.stderr
    hits = json.loads(search.stdout)
    assert len(hits) == 10 and all(h["file"].startswith("pkg") for h in hits)
    if first_running:
        assert "another build is updating this index" in search.stderr
    # The second build refuses with one clear line (or, had the first one ended meanwhile, just works).
    if second.returncode != 0:
        assert_one_line_error(second)
        assert "another hhg build" in second.stderr
    assert committed < FILES
    assert status_json(big_tree, env)["files"] == FILES


def test_progress_bar_on_a_terminal(tmp_path, env):
    repo = make_repo(tmp_path / "repo", use_git=False)
    leader, follower = pty.openpty()
    proc = subprocess.Popen([*HHG, "build", str(repo)], env={**env, "COLUMNS": "100"}, stdout=subprocess.PIPE,
                            stderr=follower, text=True)
    os.close(follower)
    drawn = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:             # the terminal closed: the build is done
            break
        if not chunk:
            break
        drawn += chunk
    out, _ = proc.communicate(timeout=60)
    os.close(leader)
    assert proc.returncode == 0 and out.startswith(f"{repo}: ")
    text = drawn.decode()
    assert re.search(r"\rextract +\[=+\] (\d+)/\1 +[\d,]+ files/s", text), text
    assert text.endswith("\r\x1b[K")               # erased before the summary


def test_no_progress_when_stderr_is_not_a_terminal(tmp_path, env):
    repo = make_repo(tmp_path / "repo", use_git=False)
    proc = run_hhg("build", str(repo), cwd=tmp_path, env=env)
    assert proc.returncode == 0 and proc.stderr == ""
