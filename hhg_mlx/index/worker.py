"""The background embedding worker: one detached process per index that embeds the windows the
keyword phase left without vectors, then exits.

- `start(store, root)` spawns it, unless one runs, background embedding is off (`HHG_BACKGROUND=0`),
  `hhg stop` held it, or it failed. The starter takes `.hhg/worker.lock` without waiting and hands the
  locked file to the child, which holds it until it exits, however it exits: of two searches racing
  to start a worker, exactly one does.
- The worker runs in a session of its own (it outlives the command and the terminal) at a lowered
  priority (`os.nice(NICE)`) and embeds through `Index.embed`: one committed batch at a time, so a
  SIGKILL loses at most one batch and the next search starts a worker that resumes.
- `stop(root)` ends a worker (SIGTERM, then SIGKILL) and returns once its lock is free;
  `foreground(store, root)` lets this process embed instead (`hhg build --wait`).
- Meta records the state: `embed_state` (running, done, stopped, failed), `embed_pid`, `embed_error`,
  `embed_held` (stopped by `hhg stop`: searches do not restart it), `embed_attempts` (starts without a
  committed batch: after MAX_ATTEMPTS, e.g. a worker killed for memory, it counts as failed), and the
  rate that each batch records. An explicit build (`reset`) clears the hold and the failure.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..config import SHARED_CACHE_ENV
from ..errors import HhgError, IndexLocked
from .store import Store, index_dir, try_lock

NICE = 10                  # added to the worker's niceness: searches and editors keep the CPU they need
MAX_ATTEMPTS = 3           # worker starts in a row without a committed batch before it counts as failed
STOP_WAIT_S = 10.0         # SIGTERM, then SIGKILL after this long
EXITING_WAIT_S = 1.0       # how long a starter waits for a worker that is finishing (or another starter)
LOCK_NAME = "worker.lock"
LOG_NAME = "worker.log"
_children: list[subprocess.Popen] = []      # workers this process started (polled, so none stays a zombie)


@dataclass(frozen=True)
class EmbeddingStatus:
    """The embedding phase of an index. `done`/`total` count blocks (done: every window has a vector);
    `rate` is windows (texts) per second and `tokens_rate` tokens per second while it runs."""

    state: str                   # "none" (no model), "running", "done", "stopped", "failed"
    pid: int | None
    done: int
    total: int
    rate: float | None
    tokens_rate: float | None
    eta_s: float | None
    error: str | None

    def to_json(self) -> dict:
        """The `embedding` object of `hhg status --json`."""
        return {"state": self.state, "pid": self.pid, "done": self.done, "total": self.total, "rate": self.rate,
                "eta_s": self.eta_s, "error": self.error}


def background_enabled() -> bool:
    """False when `HHG_BACKGROUND` is 0 (or false, no, off): builds and searches embed in the foreground."""
    return os.environ.get("HHG_BACKGROUND", "1").strip().lower() not in ("0", "false", "no", "off")


def lock_path(root: Path) -> Path:
    return index_dir(root) / LOCK_NAME


def record(store: Store, **values: object) -> None:
    """Write `values` into the index's meta in one transaction."""
    with store.transaction():
        store.set_meta(**values)


def reset(store: Store) -> None:
    """An explicit build: forget a failure, a hold and the failed attempts, so a worker may start again."""
    meta = store.meta()
    failed = meta.get("embed_state") == "failed"
    if failed or meta.get("embed_held") or int(meta.get("embed_attempts") or 0):
        record(store, embed_held="", embed_attempts=0, embed_error="",
               embed_state="stopped" if failed else meta.get("embed_state", ""))


def running_pid(meta: dict[str, str]) -> int | None:
    """The pid of the live embedder that meta names, else None."""
    if meta.get("embed_state") == "running" and meta.get("embed_pid"):
        pid = int(meta["embed_pid"])
        return pid if alive(pid) else None
    return None


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie does not)."""
    _reap()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True           # no /proc (macOS): orphans are reaped by launchd
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def embedding_status(store: Store, model: str | None) -> EmbeddingStatus:
    """Where the embedding of `model` (the index's vector key; None: keyword-only) stands."""
    if not model:
        return EmbeddingStatus("none", None, 0, 0, None, None, None, None)
    meta = store.meta()
    total, done, missing = store.embedding_counts(model)
    pid = running_pid(meta)
    if pid is not None:
        state = "running"
    elif missing and meta.get("embed_state") == "failed":
        state = "failed"
    else:
        state = "stopped" if missing else "done"
    rate = _float(meta.get("embed_rate")) if pid is not None else None
    tokens_rate = _float(meta.get("embed_token_rate")) if pid is not None else None
    return EmbeddingStatus(state, pid, done, total, rate, tokens_rate, missing / rate if rate else None,
                           meta.get("embed_error") or None if state == "failed" else None)


def start(store: Store, root: Path, shared_cache: bool | None = None) -> int | None:
    """Start the worker for the index at `root` unless one runs, background embedding is off, `hhg stop`
    held it or it failed; it uses the shared embedding cache as `shared_cache` says (None: as configured).
    Returns the new worker's pid, or None. The caller knows windows are missing."""
    _reap()
    meta = store.meta()
    if not background_enabled() or meta.get("embed_held") or meta.get("embed_state") == "failed":
        return None
    fd = _lock(root, store)
    if fd is None:
        return None
    try:
        _write_owner(fd, os.getpid(), "starter")
        attempts = int(store.meta().get("embed_attempts") or 0)
        if attempts >= MAX_ATTEMPTS:
            record(store, embed_state="failed", embed_error=f"the embedding worker stopped {attempts} times before it "
                   "stored a batch (out of memory?)")
            return None
        env = None if shared_cache is None else {**os.environ, SHARED_CACHE_ENV: "1" if shared_cache else "0"}
        proc = spawn(["hhg_mlx.index.worker", str(root), str(fd)], index_dir(root) / LOG_NAME, root, pass_fds=(fd,),
                     env=env)
        _write_owner(fd, proc.pid, "worker")
        record(store, embed_state="running", embed_pid=proc.pid, embed_error="", embed_attempts=attempts + 1,
               embed_rate="", embed_token_rate="")
        return proc.pid
    finally:
        os.close(fd)           # the worker holds the lock through its own copy


def spawn(args: list[str], log: Path, cwd: Path, pass_fds: tuple[int, ...] = (),
          env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `python -m ARGS` detached: a session of its own (it outlives the command and the terminal),
    no input or output, its stderr (tracebacks of its failures) into `log`; `env` None: this process's."""
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=fh, pass_fds=pass_fds, start_new_session=True, cwd=cwd, env=env)
    _children.append(proc)
    return proc


def stop(root: Path, timeout: float = STOP_WAIT_S) -> int | None:
    """End the background worker of the index at `root`: SIGTERM, SIGKILL after `timeout` seconds.
    Returns its pid once its lock is free; None when no worker runs."""
    path = lock_path(root)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        if try_lock(fd, path):
            return None
        pid = _worker_pid(fd)
        if pid is None:            # a foreground embedder (`hhg build --wait`, a library caller) or a starter
            return None
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while not try_lock(fd, path):
            if time.monotonic() > deadline:
                _signal(pid, signal.SIGKILL)
                deadline = float("inf")
            time.sleep(0.02)
        return pid
    finally:
        os.close(fd)


@contextmanager
def foreground(store: Store, root: Path) -> Iterator[None]:
    """Embed in this process: stop a background worker first and hold the worker lock meanwhile (no
    worker starts); meta names this process as the running embedder until the body ends."""
    path = lock_path(root)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + STOP_WAIT_S
        while not try_lock(fd, path):
            if time.monotonic() > deadline:
                raise IndexLocked(f"another process is embedding the index in {root}; try again later")
            stop(root)
            time.sleep(0.02)
        _write_owner(fd, os.getpid(), "foreground")
        record(store, embed_state="running", embed_pid=os.getpid(), embed_error="", embed_rate="", embed_token_rate="")
        try:
            yield
        except BaseException:
            record(store, embed_state="stopped")
            raise
        record(store, embed_state="done")
    finally:
        os.close(fd)


def _reap() -> None:
    """Collect the exit status of this process's finished workers (no zombies in a long-lived caller)."""
    _children[:] = [p for p in _children if p.poll() is None]


def _lock(root: Path, store: Store) -> int | None:
    """The worker lock's fd, locked; None when a live worker holds it. A holder that is finishing (meta
    no longer says it runs) or another starter gets EXITING_WAIT_S to let go."""
    path = lock_path(root)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + EXITING_WAIT_S
    while not try_lock(fd, path):
        if running_pid(store.meta()) is not None or time.monotonic() > deadline:
            os.close(fd)
            return None
        time.sleep(0.02)
    return fd


def _write_owner(fd: int, pid: int, kind: str) -> None:
    """Name the lock's holder in the lock file: `PID KIND` (worker, foreground or starter)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{pid} {kind}\n".encode(), 0)


def _worker_pid(fd: int) -> int | None:
    """The pid of the background worker that the lock file names; None for another kind of holder."""
    pid, _, kind = os.pread(fd, 64, 0).decode(errors="replace").strip().partition(" ")
    return int(pid) if pid.isdigit() and kind == "worker" else None


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _float(value: str | None) -> float | None:
    return float(value) if value else None


def _reason(err: BaseException) -> str:
    """A one-line reason for the status and the search notice."""
    if isinstance(err, HhgError):
        return str(err)
    if isinstance(err, MemoryError):
        return "out of memory"
    return f"{type(err).__name__}: {err}"


def main(argv: list[str] | None = None) -> int:
    """The worker process: `python -m hhg_mlx.index.worker ROOT LOCK_FD` (started by `start`)."""
    import traceback

    from .index import Index

    root, lock_fd = argv or sys.argv[1:]
    signal.signal(signal.SIGTERM, signal.SIG_DFL)      # `stop`: end now; the open batch is rolled back
    try:
        os.nice(NICE)
    except OSError:
        pass
    try:
        store = Store.open(Path(root))
    except HhgError:                                   # the index went away meanwhile
        return 1
    store.conn.execute("PRAGMA busy_timeout = 60000")  # a build's snapshot may hold the write lock a while
    try:
        Index(Path(root), store).embed()
        record(store, embed_state="done")
        return 0
    except KeyboardInterrupt:
        record(store, embed_state="stopped")
        return 130
    except Exception as err:
        traceback.print_exc()
        record(store, embed_state="failed", embed_error=_reason(err))
        return 1
    finally:
        store.close()
        os.close(int(lock_fd))


if __name__ == "__main__":
    sys.exit(main())
