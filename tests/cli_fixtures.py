"""Generated repositories and a subprocess runner for the end-to-end CLI tests."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import hhg_mlx

HHG = [sys.executable, "-m", "hhg_mlx.cli"]
SOURCE_ROOT = Path(hhg_mlx.__file__).resolve().parents[1]   # the child processes run this same code

# Words that occur nowhere else, so each test knows exactly which blocks contain them.
FILES = {
    "src/upload.py": '''
        """Upload files to the object store."""
        import time


        class Uploader:
            """Sends files and remembers which ones failed."""

            def __init__(self, client):
                self.client = client
                self.failed = []

            def retry_failed_uploads(self, attempts=3):
                """Retry every failed upload with exponential backoff."""
                for attempt in range(attempts):
                    pending, self.failed = self.failed, []
                    for path in pending:
                        self.send(path)
                    time.sleep(2 ** attempt)

            def send(self, path):
                try:
                    self.client.put(path)
                except OSError:
                    self.failed.append(path)


        def parse_config(text):
            """Parse key=value lines into a dict."""
            return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        ''',
    "lib/jobs.py": '''
        import time


        def retry_failed_jobs(queue, attempts=3):
            """Retry every failed job with exponential backoff."""
            for attempt in range(attempts):
                pending, queue.failed = queue.failed, []
                for job in pending:
                    queue.run(job)
                time.sleep(2 ** attempt)
        ''',
    "web/httpClient.js": '''
        export class HttpClient {
          constructor(baseUrl) {
            this.baseUrl = baseUrl;
          }

          async fetchWithTimeout(path, millis) {
            const controller = new AbortController();
            setTimeout(() => controller.abort(), millis);
            return fetch(this.baseUrl + path, { signal: controller.signal });
          }
        }

        export function buildQueryString(params) {
          return Object.entries(params).map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&");
        }
        ''',
    "web/lruCache.ts": '''
        export class LruCache<V> {
          private entries = new Map<string, V>();

          constructor(private capacity: number) {}

          get(key: string): V | undefined {
            const value = this.entries.get(key);
            if (value !== undefined) {
              this.entries.delete(key);
              this.entries.set(key, value);
            }
            return value;
          }
        }
        ''',
    "pkg/store/store.go": '''
        package store

        import "os"

        // Store keeps records on disk.
        type Store struct {
        \tdir string
        }

        // OpenStore opens or creates a store under dir.
        func OpenStore(dir string) (*Store, error) {
        \tif err := os.MkdirAll(dir, 0o755); err != nil {
        \t\treturn nil, err
        \t}
        \treturn &Store{dir: dir}, nil
        }
        ''',
    "crates/checksum/src/lib.rs": '''
        /// Adler-32 checksum of a byte slice.
        pub fn adler_checksum(data: &[u8]) -> u32 {
            let (mut a, mut b) = (1u32, 0u32);
            for byte in data {
                a = (a + *byte as u32) % 65521;
                b = (b + a) % 65521;
            }
            (b << 16) | a
        }
        ''',
    "docs/guide.md": '''
        # Guide

        How to install and configure the uploader.

        ## Retrying uploads

        Failed uploads are retried three times with exponential backoff.

        ## Configuration

        Settings are key=value lines.
        ''',
    "notes.txt": '''
        Release checklist: bump the version, tag, publish the build.
        ''',
}


def filter_corpus() -> dict[str, str]:
    """Files where a keyword is much stronger in files that a filter drops than in the few it keeps.

    "wombat": 8 Python files name it in their path, their function and their text; 3 Go functions
    say it once. "quokka": the same with 8 YAML files against 3 Python functions.
    """
    files = {}
    for i in range(8):
        files[f"zoo/wombat_{i}.py"] = f"def wombat_burrow_{i}():\n    return 'wombat wombat wombat wombat {i}'\n"
        files[f"config/quokka_{i}.yaml"] = f"quokka_{i}:\n  name: quokka\n  friends: [quokka, quokka, quokka]\n"
    files["zoo/burrows.go"] = "package zoo\n\n" + "".join(
        f"// Dig{i} digs.\nfunc Dig{i}(depth int) int {{\n\tname := \"wombat\"\n\treturn depth + len(name) + {i}\n}}\n\n"
        for i in range(3))
    files["zoo/smiles.py"] = "".join(
        f"def smile_{i}(x):\n    animal = 'quokka'\n    return x + {i}\n\n\n" for i in range(3))
    return files


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def make_repo(root: Path, *, use_git: bool, extra: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_tree(root, {**FILES, **filter_corpus(), **(extra or {})})
    if use_git:
        git(root, "init", "-q")
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "initial")
    return root


def make_big_tree(root: Path, files: int = 3000) -> Path:
    """Many small Python files: slow enough to index that a build can be interrupted."""
    for i in range(files):
        folder = root / f"pkg{i // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        body = "".join(
            f"def handler_{i}_{j}(request, retries={j}):\n"
            f"    \"\"\"Handle request {i}.{j} with {j} retries.\"\"\"\n"
            f"    total = sum(range(retries)) + {i}\n"
            f"    return request.respond(total, tag='h{i}x{j}')\n\n\n" for j in range(6))
        (folder / f"mod_{i:05d}.py").write_text(f'"""Module {i}."""\nimport os\n\n\n{body}', encoding="utf-8")
    return root


def env_for(tmp: Path) -> dict[str, str]:
    """No model is ever found (keyword-only, like a fresh machine) and nothing is downloaded."""
    path = os.pathsep.join(filter(None, [str(SOURCE_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp / "hf-home"),
            "HHG_CONFIG_DIR": str(tmp / "hhg-config"), "NO_COLOR": "1", "PYTHONWARNINGS": "ignore"}


def worker_env(tmp: Path, delay: float = 0.1, batch: int = 8) -> dict[str, str]:
    """`env_for` with the background worker on and the `stub-...` models of tests/stub_site loadable in
    every process: a stub that sleeps `delay` seconds per text and logs to `tmp/stub.log`, `batch`
    windows per embedding batch."""
    tests = Path(__file__).resolve().parent
    return {**env_for(tmp), "HHG_BACKGROUND": "1", "HHG_STUB_DELAY": str(delay), "HHG_STUB_BATCH": str(batch),
            "HHG_STUB_LOG": str(tmp / "stub.log"),
            "PYTHONPATH": os.pathsep.join([str(SOURCE_ROOT), str(tests / "stub_site"), str(tests)])}


def takes_ctrl_c() -> None:
    """A `preexec_fn`: the child handles SIGINT as a terminal's foreground job does, also when this test run
    was started in the background (a non-interactive shell's `&` ignores SIGINT, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_hhg(*args: str, cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*HHG, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def search_json(*args: str, cwd: Path, env: dict[str, str]) -> list[dict]:
    proc = run_hhg("--json", "-q", *args, cwd=cwd, env=env)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def assert_one_line_error(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hhg: "), proc.stderr
