"""ONNX graphs built from safetensors (no PyTorch) against the float64 numpy reference and MLX,
on random std-0.1 checkpoints with mixed lengths and both padding sides."""
from __future__ import annotations

import json

import numpy as np
import pytest
from checkpoints import CORPUS, make_checkpoint, pad_tokens, random_tokens  # noqa: F401  (fixture)
from reference import reference_embed

from hhg_mlx.loader import load_encoder

CASES = {
    "jina-code": ("jinabert", {}),
    "jina-code-prefixed-f16": ("jinabert", {"prefix": "bert.", "dtype": "float16"}),
    "jina-code-8-heads-bf16": ("jinabert", {"heads": 8, "hidden": 64, "dtype": "bfloat16"}),
    "jina-base-en": ("jinabert", {"variant": "base-en"}),
    "bert-mean": ("bert", {}),
    "bert-cls-prefixed": ("bert", {"pooling": "cls", "prefix": "bert."}),
}
LENGTHS = [3, 17, 9, 1, 24]


@pytest.fixture(params=list(CASES), scope="module")
def folder(request, make_checkpoint):
    kind, kwargs = CASES[request.param]
    return make_checkpoint(kind, **kwargs)


def batch(folder, left: bool, seed: int = 0):
    vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    return pad_tokens(random_tokens(np.random.default_rng(seed), LENGTHS, vocab), left=left)


@pytest.mark.parametrize("left", [False, True], ids=["right-padded", "left-padded"])
def test_fp32_matches_reference(folder, left):
    encoder = load_encoder(str(folder), backend="onnx")
    assert (encoder.backend, encoder.precision) == ("onnx", "fp32")
    ids, mask = batch(folder, left)
    np.testing.assert_allclose(encoder.embed_ids(ids, mask), reference_embed(folder, ids, mask), atol=1e-5)


def test_tolerance_catches_swapped_glu(make_checkpoint):
    folder = make_checkpoint("jinabert")
    ids, mask = batch(folder, left=False)
    got = load_encoder(str(folder), backend="onnx").embed_ids(ids, mask)
    assert np.abs(got - reference_embed(folder, ids, mask, swap_glu=True)).max() > 1e-3


def test_fp32_matches_mlx(folder):
    ids, mask = batch(folder, left=True, seed=1)
    onnx = load_encoder(str(folder), backend="onnx")
    mlx = load_encoder(str(folder), backend="mlx")
    np.testing.assert_allclose(onnx.embed_ids(ids, mask), mlx.embed_ids(ids, mask), atol=1e-5)
    np.testing.assert_allclose(onnx.embed_documents(CORPUS), mlx.embed_documents(CORPUS), atol=1e-5)


def test_fp16_graph_close_to_reference(folder):
    """The CUDA graph (float16 weights and activations) also runs on the CPU provider."""
    encoder = load_encoder(str(folder), backend="onnx", dtype="float16")
    assert encoder.precision == "fp16"
    ids, mask = batch(folder, left=False, seed=2)
    got, want = encoder.embed_ids(ids, mask), reference_embed(folder, ids, mask)
    cosine = (got * want).sum(axis=1)
    assert cosine.min() >= 0.999
    assert np.abs(got - want).max() > 1e-6          # really computed in half precision
