"""The mlx-lm Qwen2/Qwen3 embedder against the independent numpy reference (tests/reference_qwen.py)
on random checkpoints in both Hugging Face layouts."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from tokenizers import Tokenizer

import reference_qwen as ref
from checkpoints import pad_tokens, random_tokens
from qwen_fixtures import EOS, JINA_PROMPTS, make_qwen

from convert.qwen import convert_qwen
from hhg_mlx.models import registry
from hhg_mlx.errors import UnsupportedModel
from hhg_mlx.mlx_runtime import nn
from hhg_mlx.models.qwen import load_qwen_encoder

LENGTHS = [7, 1, 16, 11, 3]
TEXTS = ["retry failed uploads", "def retry_upload(self, path, max_tries=3):",
         "class HttpClient:\n    def get(self, url): return self.request('GET', url)", "x"]
CHECKPOINTS = {
    # jina-code-embeddings: model.* keys, tied, causal, prompts shipped, no EOS appended
    "jina-like": dict(arch="qwen2", prompts=JINA_PROMPTS),
    # Qodo-Embed / gte-Qwen2: bare keys, untied without lm_head, bidirectional, appends <|endoftext|>
    "qodo-like": dict(arch="qwen2", bare_keys=True, causal=False, append_eos=True, tied=False),
    # Qwen3-Embedding: bare keys, q/k norms, head_dim 32 != hidden/heads, appends <|endoftext|>
    "qwen3-like": dict(arch="qwen3", bare_keys=True, head_dim=32, append_eos=True, rope_theta=1e6),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {name: make_qwen(tmp_path_factory.mktemp(name), **kw) for name, kw in CHECKPOINTS.items()}


@pytest.fixture(scope="module")
def encoders(folders):
    return {name: load_qwen_encoder(folder, None) for name, folder in folders.items()}


def tokens(folder, texts):
    """Token ids as the shipped tokenizer.json makes them (special tokens included), untruncated."""
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return [enc.ids for enc in tok.encode_batch(texts)]


@pytest.mark.parametrize("left", [False, True], ids=["right-pad", "left-pad"])
@pytest.mark.parametrize("name", CHECKPOINTS)
def test_embed_ids_matches_reference(folders, encoders, name, left):
    enc = encoders[name]
    seqs = random_tokens(np.random.default_rng(1), LENGTHS, enc.tokenizer.get_vocab_size(), first=3)
    ids, mask = pad_tokens(seqs, pad_id=0, left=left)
    got = enc.embed_ids(ids, mask)
    want = ref.embed(folders[name], seqs)
    assert got.shape == (len(LENGTHS), 64)
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_attention_direction_changes_the_result(folders):
    """Guard: causal and bidirectional runs of the same weights differ far beyond the tolerance."""
    config, weights = ref.load_checkpoint(folders["qodo-like"])
    seq = list(range(3, 14))
    bidirectional = ref.last_hidden(config, weights, seq)
    causal = ref.last_hidden({**config, "is_causal": True}, weights, seq)
    assert np.abs(bidirectional - causal).max() > 1e-2


def test_eos_comes_from_the_tokenizer(folders, encoders):
    eos = encoders["qodo-like"].tokenizer.token_to_id(EOS)
    assert encoders["qodo-like"].tokenize(["def f"])[0][-1] == eos
    assert encoders["jina-like"].tokenize(["def f"])[0][-1] != eos


def test_texts_use_shipped_prompts(folders, encoders):
    enc = encoders["jina-like"]
    queries = enc.embed_queries(TEXTS)
    docs = enc.embed_documents(TEXTS)
    folder = folders["jina-like"]
    q_ref = ref.embed(folder, tokens(folder, [JINA_PROMPTS["nl2code_query"] + t for t in TEXTS]))
    d_ref = ref.embed(folder, tokens(folder, [JINA_PROMPTS["nl2code_document"] + t for t in TEXTS]))
    np.testing.assert_allclose(queries, q_ref, atol=2e-5)
    np.testing.assert_allclose(docs, d_ref, atol=2e-5)


def test_task_selects_other_prompts(folders):
    folder = folders["jina-like"]
    enc = load_qwen_encoder(folder, None, task="qa")
    want = ref.embed(folder, tokens(folder, [JINA_PROMPTS["qa_query"] + t for t in TEXTS]))
    np.testing.assert_allclose(enc.embed_queries(TEXTS), want, atol=2e-5)
    assert enc.spec.document_prefix == "Candidate answer:\n"
    with pytest.raises(UnsupportedModel, match="unknown task 'poetry'"):
        load_qwen_encoder(folder, None, task="poetry")


def test_jina_prompts_from_the_registry_table_without_sentence_transformers_files(folders):
    folder = folders["qodo-like"]                      # no config_sentence_transformers.json
    info = registry.get("jina-code-0.5b")
    enc = load_qwen_encoder(folder, info, task="code2nl")
    assert enc.spec.query_prefix == "Find the most relevant comment given the following code snippet:\n"
    assert enc.spec.document_prefix == "Candidate comment:\n"
    assert enc.model_id == "jina-code-0.5b"


def test_qwen3_queries_get_the_code_instruction(folders, encoders):
    folder = folders["qwen3-like"]
    prompt = "Instruct: Given a code search query, retrieve relevant code snippets\nQuery:"
    np.testing.assert_allclose(encoders["qwen3-like"].embed_queries(TEXTS),
                               ref.embed(folder, tokens(folder, [prompt + t for t in TEXTS])), atol=2e-5)
    np.testing.assert_allclose(encoders["qwen3-like"].embed_documents(TEXTS),
                               ref.embed(folder, tokens(folder, TEXTS)), atol=2e-5)


def test_batches_split_by_token_budget_give_the_same_vectors(folders):
    folder = folders["qodo-like"]
    enc = load_qwen_encoder(folder, None)
    enc.token_budget = 16                              # several batches of different widths
    want = ref.embed(folder, tokens(folder, TEXTS * 3))
    np.testing.assert_allclose(enc.embed_documents(TEXTS * 3), want, atol=2e-5)


@pytest.mark.parametrize("dim", [16, 32])
def test_matryoshka_truncates_then_renormalises(folders, dim):
    folder = folders["jina-like"]
    info = replace(registry.get("jina-code-0.5b"), matryoshka_dims=(16, 32, 64))
    enc = load_qwen_encoder(folder, info, dim=dim)
    assert enc.dim == dim
    np.testing.assert_allclose(enc.embed_documents(TEXTS),
                               ref.embed(folder, tokens(folder, [info.document_prefix + t for t in TEXTS]), dim),
                               atol=2e-5)


def test_unsupported_dim_is_rejected(folders):
    info = replace(registry.get("jina-code-0.5b"), matryoshka_dims=(16, 32, 64))
    with pytest.raises(UnsupportedModel, match=r"does not support dim=24 \(supported: 16, 32, 64\)"):
        load_qwen_encoder(folders["jina-like"], info, dim=24)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


@pytest.fixture(scope="module")
def wide_folder(tmp_path_factory):
    """Wide enough for 64-wide quantisation groups to be representative."""
    return make_qwen(tmp_path_factory.mktemp("wide"), bare_keys=True, causal=False, append_eos=True,
                     hidden=128, heads=4, kv_heads=2, intermediate=256, layers=2)


def test_reduced_precision_stays_close_to_float32(wide_folder):
    """bf16 and 8-bit stay close; 4-bit of random (structureless, std 0.1) weights drifts further
    than on trained models, so its floor is loose but it must rank behind 8-bit."""
    texts = TEXTS
    full = load_qwen_encoder(wide_folder, None).embed_documents(texts)
    floors = {("bfloat16", None): 0.99, ("float32", 8): 0.99, ("bfloat16", 8): 0.98,
              ("float32", 4): 0.6, ("bfloat16", 4): 0.6}
    mean = {}
    for (dtype, bits), floor in floors.items():
        cos = cosines(full, load_qwen_encoder(wide_folder, None, dtype=dtype, quantize=bits).embed_documents(texts))
        print(f"\n{dtype} {bits or 'no'}-bit: cosine to float32 min {cos.min():.5f} mean {cos.mean():.5f}", end="")
        assert floor <= cos.min() < 1 - 1e-7           # close, yet really computed at reduced precision
        mean[dtype, bits] = cos.mean()
    assert mean["float32", 8] > mean["float32", 4] + 0.05


@pytest.mark.parametrize("bits", [None, 8, 4])
def test_converted_folder_loads_the_same_model(tmp_path, folders, bits):
    src = folders["jina-like"]
    out = tmp_path / "converted"
    summary = convert_qwen(src, out, dtype="float32", quantize=bits, group_size=32)
    assert summary["quantization"] == (bits and {"group_size": 32, "bits": bits, "mode": "affine"})
    assert (out / "config_sentence_transformers.json").read_text() == \
        (src / "config_sentence_transformers.json").read_text()
    assert (out / "tokenizer.json").is_file()
    at_load = load_qwen_encoder(src, None, quantize=bits, group_size=32).embed_queries(TEXTS)
    converted = load_qwen_encoder(out, None)            # float32 on the CPU: dequantised at load
    assert not any(isinstance(m, nn.QuantizedLinear) for _, m in converted.model.named_modules())
    np.testing.assert_allclose(converted.embed_queries(TEXTS), at_load, atol=1e-5)
    if bits:
        kept = load_qwen_encoder(out, None, dtype="float16")          # other dtypes stay quantised
        assert any(isinstance(m, nn.QuantizedLinear) for _, m in kept.model.named_modules())
    if bits is None:
        assert summary["bytes_after"] <= summary["bytes_before"] * 1.01
    else:
        assert summary["bytes_after"] < summary["bytes_before"] / (3 if bits == 8 else 4.5)


def test_quantised_folder_refuses_another_bit_width(tmp_path, folders):
    out = tmp_path / "q4"
    convert_qwen(folders["jina-like"], out, dtype="float32", quantize=4, group_size=32)
    with pytest.raises(UnsupportedModel, match="quantised to 4-bit"):
        load_qwen_encoder(out, None, quantize=8)


def test_unknown_architecture_is_refused(tmp_path, folders):
    import json
    import shutil
    folder = shutil.copytree(folders["jina-like"], tmp_path / "llama")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(UnsupportedModel, match="model_type 'llama' is not a Qwen2/Qwen3 embedder"):
        load_qwen_encoder(folder, None)


def test_load_encoder_dispatches_qwen_folders(folders):
    from mlx.utils import tree_flatten

    from hhg_mlx.loader import load_encoder

    folder = folders["qodo-like"]
    enc = load_encoder(str(folder), download=False)
    assert enc.backend == "mlx" and enc.dim == 64
    assert not any(name.startswith("lm_head") for name, _ in tree_flatten(enc.model.parameters()))
    np.testing.assert_allclose(enc.embed_documents(TEXTS), ref.embed(folder, tokens(folder, TEXTS)), atol=2e-5)


def test_hhg_convert_command_round_trip(tmp_path, folders):
    import argparse
    import json

    from convert.cli import add_arguments, run
    from hhg_mlx.loader import load_encoder

    src, out = folders["jina-like"], tmp_path / "jina-8bit"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args([str(src), str(out), "--quantize", "8", "--group-size", "32", "-q"])) == 0
    manifest = json.loads((out / "hhg.json").read_text())
    assert (manifest["architecture"], manifest["dtype"]) == ("qwen2", "bfloat16")
    assert manifest["quantization"] == {"bits": 8, "group_size": 32}
    converted = load_encoder(str(out), download=False, dtype="bfloat16")
    want = load_qwen_encoder(src, None, dtype="bfloat16", quantize=8, group_size=32).embed_queries(TEXTS)
    np.testing.assert_allclose(converted.embed_queries(TEXTS), want, atol=1e-6)
    # a folder converted from a registry model keeps that entry's settings (here: Matryoshka dims)
    (out / "hhg.json").write_text(json.dumps({**manifest, "model_id": "jina-code-0.5b"}))
    with pytest.raises(UnsupportedModel, match="supported: 64, 128, 256, 512, 896"):
        load_encoder(str(out), download=False, dim=32)
    assert load_encoder(str(out), download=False).model_id == "jina-code-0.5b"


@pytest.mark.parametrize("hhg_json, dims, default_dim", [
    ({"model_id": "qwen3-0.6b"}, [32, 64, 128, 256, 512, 768, 1024], None),        # a registry model's folder
    ({"model_id": "my-qwen", "matryoshka_dims": [16, 32, 64], "dim": 32}, [16, 32, 64], 32),   # a custom one
], ids=["registry", "custom"])
def test_converting_a_converted_folder_keeps_its_matryoshka_dims(tmp_path, folders, hhg_json, dims, default_dim):
    import json
    import shutil

    from hhg_mlx.cli import main
    from hhg_mlx.loader import load_encoder

    src = shutil.copytree(folders["qwen3-like"], tmp_path / "src")
    (src / "hhg.json").write_text(json.dumps(hhg_json))
    first, second = tmp_path / "float32", tmp_path / "8bit"
    assert main(["convert", "-q", str(src), str(first), "--dtype", "float32"]) == 0
    assert main(["convert", "-q", str(first), str(second), "--quantize", "8", "--group-size", "32"]) == 0
    for out in (first, second):
        manifest = json.loads((out / "hhg.json").read_text())
        assert (manifest["model_id"], manifest["matryoshka_dims"], manifest["dim"]) == \
            (hhg_json["model_id"], dims, default_dim)
    assert load_encoder(str(second), download=False).dim == (default_dim or 64)
    with pytest.raises(UnsupportedModel, match="supported: " + ", ".join(map(str, dims))):
        load_encoder(str(second), download=False, dim=48)


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_rope_theta_nested_in_rope_parameters(tmp_path, arch):
    """Configs saved by transformers >= 5 keep rope_theta under rope_parameters."""
    import json
    folder = make_qwen(tmp_path, arch, rope_theta=500.0)
    config = json.loads((folder / "config.json").read_text())
    config["rope_parameters"] = {"rope_theta": config.pop("rope_theta"), "rope_type": "default"}
    del config["rope_scaling"]
    (folder / "config.json").write_text(json.dumps(config))
    seqs = random_tokens(np.random.default_rng(2), [12, 5], 300, first=3)
    ids, mask = pad_tokens(seqs)
    np.testing.assert_allclose(load_qwen_encoder(folder, None).embed_ids(ids, mask), ref.embed(folder, seqs), atol=2e-5)
