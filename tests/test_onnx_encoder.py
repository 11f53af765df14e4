"""The ONNX Runtime backend: export-once caching, precision and backend choice, and CUDA fp16 parity
where a GPU is present (int8: test_onnx_int8.py)."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
from checkpoints import make_bert, make_jinabert, make_nomic_bert, pad_tokens, random_tokens
from reference import reference_embed

import convert.onnx_export as onnx_export
import fallback.onnx_encoder as onnx_encoder
from fallback.cpu_features import cpu_features
from hhg_mlx import loader
from hhg_mlx.errors import ModelUnavailable, UnsupportedModel
from hhg_mlx.loader import choose_backend, load_encoder


@pytest.fixture
def exports(monkeypatch):
    """Counts real exports: a list of (folder name, precision) per export."""
    calls = []
    real = onnx_export.export

    def counting(folder, out, precision, **kwargs):
        calls.append((folder.name, precision))
        return real(folder, out, precision, **kwargs)

    monkeypatch.setattr(onnx_export, "export", counting)
    return calls


def test_exports_once_next_to_the_model(tmp_path, exports):
    folder = make_bert(tmp_path / "bert")
    first = load_encoder(str(folder), backend="onnx", quantize=8)
    second = load_encoder(str(folder), backend="onnx", quantize=8)
    assert exports == [("bert", "int8")]
    assert (folder / "hhg-onnx" / onnx_export.FILENAMES["int8"]).is_file()
    texts = ["def f(x): return x", "retry upload"]
    np.testing.assert_array_equal(first.embed_documents(texts), second.embed_documents(texts))


def test_changed_weights_are_exported_again(tmp_path, exports):
    folder = make_bert(tmp_path / "bert")
    load_encoder(str(folder), backend="onnx")
    make_bert(folder, seed=7)                               # new weights, same place
    encoder = load_encoder(str(folder), backend="onnx")
    assert exports == [("bert", "fp32"), ("bert", "fp32")]
    ids, mask = pad_tokens(random_tokens(np.random.default_rng(0), [4, 11], 60))
    np.testing.assert_allclose(encoder.embed_ids(ids, mask), reference_embed(folder, ids, mask), atol=1e-5)


def test_hub_snapshots_are_cached_in_the_user_cache(tmp_path, monkeypatch, exports):
    folder = make_jinabert(tmp_path / "hub" / "models--org--jina" / "snapshots" / "abc123")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    load_encoder(str(folder), backend="onnx")
    load_encoder(str(folder), backend="onnx")
    assert exports == [("abc123", "fp32")]
    assert not (folder / "hhg-onnx").exists()
    assert list((tmp_path / "cache" / "hhg" / "onnx").glob("*/model.onnx"))


def test_shipped_onnx_file_is_used_without_export(tmp_path, exports):
    folder = make_bert(tmp_path / "bert")
    onnx_export.export(folder, folder / "model.onnx", "fp32")
    exports.clear()
    encoder = load_encoder(str(folder), backend="onnx")
    assert exports == [] and not (folder / "hhg-onnx").exists()
    ids, mask = pad_tokens(random_tokens(np.random.default_rng(1), [5, 2, 9], 60), left=True)
    np.testing.assert_allclose(encoder.embed_ids(ids, mask), reference_embed(folder, ids, mask), atol=1e-5)


def test_mlx_quantised_folder_has_no_onnx_export(tmp_path):
    folder = make_bert(tmp_path / "bert")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "quantization": {"group_size": 64, "bits": 4}}))
    with pytest.raises(ModelUnavailable, match="4-bit MLX weights.*--onnx-int8"):
        load_encoder(str(folder), backend="onnx")
    assert choose_backend("auto", "bert", folder) == "mlx"


@pytest.mark.parametrize("args, want", [
    (("onnx",), "fp32"), (("onnx", "float32", 8), "int8"), (("onnx", "float16"), "fp16"),
    (("onnx-cuda",), "fp32"), (("onnx-cuda", "bfloat16"), "fp16"),
])
def test_precision_follows_dtype_and_quantize(args, want):
    assert onnx_encoder.onnx_precision(*args) == want


def test_automatic_choice_takes_the_fastest_precision():
    assert onnx_encoder.onnx_precision("onnx", fastest=True) == "int8"
    assert onnx_encoder.onnx_precision("onnx-cuda", fastest=True) == "fp16"
    assert onnx_encoder.onnx_precision("onnx", "float16", fastest=True) == "fp16"   # an explicit dtype wins


@pytest.mark.parametrize("backend, quantize", [("onnx", 4), ("onnx-cuda", 8)])
def test_unsupported_quantisation(backend, quantize):
    with pytest.raises(UnsupportedModel):
        onnx_encoder.onnx_precision(backend, quantize=quantize)


@pytest.mark.parametrize("platform_, machine, cuda, architecture, want", [
    ("darwin", "arm64", True, "jinabert", "mlx"),
    ("linux", "x86_64", True, "jinabert", "onnx-cuda"),
    ("linux", "x86_64", False, "bert", "onnx"),
    ("darwin", "x86_64", False, "bert", "onnx"),
    ("linux", "x86_64", True, "qwen2", "mlx"),
])
def test_auto_backend(monkeypatch, tmp_path, platform_, machine, cuda, architecture, want):
    monkeypatch.setattr(sys, "platform", platform_)
    monkeypatch.setattr(loader.platform, "machine", lambda: machine)
    monkeypatch.setattr(onnx_encoder, "cuda_usable", lambda: cuda)
    folder = make_bert(tmp_path / "m", tokenizer=False, sentence_transformers=False)
    assert choose_backend("auto", architecture, folder) == want
    assert choose_backend("mlx", architecture, folder) == "mlx"


def test_auto_on_this_linux_machine_is_onnx_int8(tmp_path):
    """int8 where the CPU has an int8 kernel (`cpu_features`), else fp32; fp16 on CUDA."""
    if sys.platform == "darwin":
        pytest.skip("auto picks MLX on macOS")
    encoder = load_encoder(str(make_bert(tmp_path / "bert")))
    assert encoder.backend in ("onnx", "onnx-cuda")
    cpu = "int8" if cpu_features().int8_kernel else "fp32"
    assert encoder.precision == (cpu if encoder.backend == "onnx" else "fp16")


def test_unknown_backend():
    with pytest.raises(UnsupportedModel, match="unknown backend"):
        choose_backend("tpu", "bert", None)


def test_threads_are_physical_cores():
    assert 1 <= onnx_encoder.physical_cores() <= (os.cpu_count() or 1)


@pytest.mark.skipif(not onnx_encoder.cuda_usable(), reason="needs onnxruntime-gpu and an NVIDIA GPU")
@pytest.mark.parametrize("kind", ["jinabert", "bert", "nomic_bert"])
def test_cuda_fp16_matches_cpu_fp32(tmp_path, kind):
    folder = {"jinabert": make_jinabert, "bert": make_bert, "nomic_bert": make_nomic_bert}[kind](tmp_path / kind)
    ids, mask = pad_tokens(random_tokens(np.random.default_rng(3), [7, 30, 2, 18], 60), left=True)
    cpu = load_encoder(str(folder), backend="onnx").embed_ids(ids, mask)
    cuda = load_encoder(str(folder), backend="onnx-cuda", dtype="float16")
    assert (cuda.backend, cuda.precision) == ("onnx-cuda", "fp16")
    assert (cuda.embed_ids(ids, mask) * cpu).sum(1).min() >= 0.999
