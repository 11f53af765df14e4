"""`hhg convert`: round trip through the command line, converted folders loading and matching their
source (half precision; 8/4-bit on the real MiniLM), and one-line errors for bad input."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from checkpoints import CORPUS, make_bert, make_jinabert, make_nomic_bert, pad_tokens, random_tokens
from hub_fixtures import hf_cache  # noqa: F401  (fixture)
from onnx_fixtures import minilm, retrieval, top_k  # noqa: F401  (fixture)
from reference import reference_embed

from hhg_mlx.cli import main
from hhg_mlx.loader import load_encoder


def convert(*argv: str) -> int:
    return main(["convert", "-q", *map(str, argv)])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


@pytest.fixture(scope="module")
def minilm_vectors(minilm) -> tuple[np.ndarray, np.ndarray]:
    """The retrieval set embedded by the unconverted MiniLM (MLX, float32)."""
    return retrieval(load_encoder(str(minilm), backend="mlx"))


def test_round_trip_through_the_command_line(tmp_path):
    src = make_jinabert(tmp_path / "src", dtype="bfloat16", prefix="bert.")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "hhg_mlx.cli", "convert", str(src), str(out),
                           "--dtype", "float16", "--onnx"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "exporting model.onnx" in done.stderr
    assert "MLX weights" in done.stdout and "(float16)" in done.stdout and "model.onnx" in done.stdout

    manifest = json.loads((out / "hhg.json").read_text())
    sha = hashlib.sha256((src / "model.safetensors").read_bytes()).hexdigest()
    assert manifest["architecture"] == "jinabert" and manifest["variant"] == "qk-post-norm"
    assert manifest["dtype"] == "float16" and manifest["quantization"] is None
    assert manifest["pooling"] == "mean" and manifest["onnx"] == {"fp32": "model.onnx"}
    assert manifest["source"]["sha256"] == {"model.safetensors": sha}
    assert (out / "tokenizer.json").is_file()

    mlx = load_encoder(str(out), backend="mlx")
    assert mlx.backend == "mlx"
    want = load_encoder(str(src), backend="mlx").embed_documents(CORPUS)
    assert cosines(mlx.embed_documents(CORPUS), want).min() >= 0.999
    onnx = load_encoder(str(out), backend="onnx")                  # the shipped model.onnx
    assert not (out / "hhg-onnx").exists()
    ids, mask = np.array([[0, 7, 9, 33, 2], [0, 12, 2, 1, 1]]), np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    np.testing.assert_allclose(onnx.embed_ids(ids, mask), reference_embed(src, ids, mask), atol=1e-5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("kind", ["jina-base-en", "bert-cls"])
def test_half_precision_folders_match_the_source(tmp_path, kind, dtype):
    if kind == "bert-cls":
        src = make_bert(tmp_path / "src", pooling="cls", query_prefix="query: ")
    else:
        src = make_jinabert(tmp_path / "src", variant="base-en")
    assert convert(src, tmp_path / "out", "--dtype", dtype) == 0
    stored = load_encoder(str(tmp_path / "out"), backend="mlx", dtype=dtype)
    source = load_encoder(str(src), backend="mlx")
    assert (stored.spec.pooling, stored.spec.query_prefix) == (source.spec.pooling, source.spec.query_prefix)
    got, want = stored.embed_queries(CORPUS), source.embed_queries(CORPUS)
    assert cosines(got, want).min() >= 0.999
    assert np.abs(got - want).max() > 1e-6                      # computed in half precision


@pytest.mark.parametrize("bits, min_cosine, top1, top3", [(8, 0.999, 1.0, 1.0), (4, 0.95, 0.9, 0.75)])
def test_quantised_minilm(tmp_path, minilm, minilm_vectors, bits, min_cosine, top1, top3):
    """Measured here: 8-bit cosine >= 0.9998, same top-1 and top-3; 4-bit >= 0.965, same top-1,
    top-3 overlap 0.83 (the 4-bit MLX folder is also what `auto` picks: ONNX cannot run it)."""
    out = tmp_path / f"minilm-{bits}"
    assert convert(minilm, out, "--quantize", bits) == 0
    assert json.loads((out / "hhg.json").read_text())["quantization"] == {"bits": bits, "group_size": 64}
    quantised = load_encoder(str(out))
    assert quantised.backend == "mlx"
    docs, queries = retrieval(quantised)
    docs0, queries0 = minilm_vectors
    assert np.concatenate([cosines(docs, docs0), cosines(queries, queries0)]).min() >= min_cosine
    assert (top_k(docs, queries, 1) == top_k(docs0, queries0, 1)).mean() >= top1
    overlap = [len(set(a) & set(b)) / 3 for a, b in zip(top_k(docs, queries, 3), top_k(docs0, queries0, 3))]
    assert np.mean(overlap) >= top3


def test_quantised_folder_is_dequantised_for_float32_on_the_cpu(tmp_path):
    """MLX-CPU quantised matmuls bypass BLAS: the default float32 load dequantises (same values), while an
    explicit `quantize` or half-precision dtype keeps the weights quantised (the rule Qwen folders follow too)."""
    from hhg_mlx.errors import UnsupportedModel
    from hhg_mlx.mlx_runtime import nn

    def quantised_layers(encoder) -> int:
        return sum(isinstance(m, nn.QuantizedLinear) for _, m in encoder.model.named_modules())

    out = tmp_path / "bert-8bit"
    src = make_bert(tmp_path / "src", hidden=64, heads=4, intermediate=128)
    assert convert(src, out, "--quantize", 8, "--group-size", 32) == 0
    dequantised = load_encoder(str(out), backend="mlx")
    kept = load_encoder(str(out), backend="mlx", quantize=8)
    assert quantised_layers(dequantised) == 0
    assert quantised_layers(kept) == 2 * 6 and quantised_layers(load_encoder(str(out), backend="mlx", dtype="float16"))
    got, want = dequantised.embed_documents(CORPUS), kept.embed_documents(CORPUS)
    assert cosines(got, want).min() >= 0.999
    with pytest.raises(UnsupportedModel, match="quantised to 8-bit; convert the original model to get 4-bit"):
        load_encoder(str(out), backend="mlx", quantize=4)


def test_onnx_int8_file_in_converted_folder(tmp_path, minilm, minilm_vectors):
    out = tmp_path / "minilm"
    assert convert(minilm, out, "--onnx-int8") == 0
    encoder = load_encoder(str(out))                            # auto on Linux: the shipped int8 graph
    if encoder.backend == "onnx":
        assert encoder.precision == "int8" and not (out / "hhg-onnx").exists()
    docs, queries = retrieval(encoder)
    assert np.concatenate([cosines(docs, minilm_vectors[0]), cosines(queries, minilm_vectors[1])]).min() >= 0.99


def test_folders_own_matryoshka_layer_norm_wins_over_the_registry_entry(tmp_path):
    """A folder naming nomic-v1.5 but saying `matryoshka_layer_norm: false` converts and loads without it."""
    src = make_nomic_bert(tmp_path / "src", sentence_transformers=False)
    (src / "hhg.json").write_text(json.dumps({"model_id": "nomic-v1.5", "matryoshka_layer_norm": False}))
    out = tmp_path / "out"
    assert convert(str(src), out) == 0
    assert json.loads((out / "hhg.json").read_text())["matryoshka_layer_norm"] is False
    assert load_encoder(str(out), backend="mlx").spec.matryoshka_layer_norm is False


def test_nomic_registry_model_converts_with_its_settings(tmp_path, hf_cache):
    """nomic-v1.5 from the (offline) Hugging Face cache → float16 MLX weights, int8 and fp32 ONNX files,
    and an hhg.json that carries the registry's pooling, prefixes and Matryoshka recipe, so the folder
    embeds like the model card says on its own (768 wide, one layer: the published dims apply)."""
    src = make_nomic_bert(tmp_path / "src", hidden=768, heads=12, layers=1, sentence_transformers=False)
    hf_cache("nomic-ai/nomic-embed-text-v1.5", src)
    out = tmp_path / "out"
    assert convert("nomic-v1.5", out, "--dtype", "float16", "--onnx", "--onnx-int8") == 0
    manifest = json.loads((out / "hhg.json").read_text())
    assert {k: manifest[k] for k in ("architecture", "variant", "model_id", "pooling", "query_prefix",
                                     "document_prefix", "matryoshka_dims", "matryoshka_layer_norm")} == {
        "architecture": "nomic_bert", "variant": None, "model_id": "nomic-v1.5", "pooling": "mean",
        "query_prefix": "search_query: ", "document_prefix": "search_document: ",
        "matryoshka_dims": [64, 128, 256, 512, 768], "matryoshka_layer_norm": True}
    assert manifest["onnx"] == {"fp32": "model.onnx", "int8": "model.q8.onnx"}

    ids, mask = pad_tokens(random_tokens(np.random.default_rng(0), [9, 2, 21], 200), left=True)
    want = reference_embed(src, ids, mask, pooling="mean", matryoshka_dim=256)
    onnx = load_encoder(str(out), backend="onnx", dim=256)                # the shipped fp32 graph
    np.testing.assert_allclose(onnx.embed_ids(ids, mask), want, atol=1e-5)
    mlx = load_encoder(str(out), backend="mlx", dtype="float16", dim=256)
    assert cosines(mlx.embed_ids(ids, mask), want).min() >= 0.999
    int8 = load_encoder(str(out), backend="onnx", quantize=8, dim=256)
    assert cosines(int8.embed_ids(ids, mask), want).min() >= 0.99
    assert not (out / "hhg-onnx").exists()


def test_quantised_nomic_folder(tmp_path):
    src = make_nomic_bert(tmp_path / "src", hidden=64, heads=4, inner=256)
    assert convert(src, tmp_path / "out", "--quantize", 8) == 0
    ids, mask = pad_tokens(random_tokens(np.random.default_rng(1), [5, 17, 30], 200))
    want = reference_embed(src, ids, mask)
    for encoder in (load_encoder(str(tmp_path / "out"), backend="mlx"),           # dequantised for the CPU
                    load_encoder(str(tmp_path / "out"), backend="mlx", quantize=8)):
        got = encoder.embed_ids(ids, mask)
        assert cosines(got, want).min() >= 0.999 and np.abs(got - want).max() > 1e-5


@pytest.mark.parametrize("kind", ["jinabert", "bert"])
def test_rerankers_convert_with_their_head(tmp_path, kind):
    """MLX fp16/bf16/8/4-bit and ONNX fp32/int8 reranker folders: fp16 and the ONNX fp32 graph match the
    float64 reference of the source, the lower precisions keep its ranking of 48 pairs."""
    from reference import reference_logits
    from test_rerank_models import pairs_batch, spearman

    from hhg_mlx import load_reranker

    make = make_jinabert if kind == "jinabert" else make_bert
    options = {"variant": "base-en", "heads": 12} if kind == "jinabert" else {"sentence_transformers": False}
    src = make(tmp_path / "src", hidden=192, intermediate=384, prefix="bert.", labels=1, seed=4, **options)
    ids, types, mask = (np.concatenate(parts) for parts in zip(*(pairs_batch(src, left=s % 2 == 1, seed=s)
                                                                   for s in range(8))))
    want = reference_logits(src, ids, types, mask)
    for flags, load, check in [
        (["--dtype", "float16", "--onnx", "--onnx-int8"], {"backend": "mlx", "dtype": "float16"}, 2e-2),
        ([], {"backend": "onnx"}, 1e-5),                                  # from "--onnx": model.onnx
        ([], {"backend": "onnx", "quantize": 8}, 0.95),                   # model.q8.onnx
        (["--dtype", "bfloat16"], {"backend": "mlx", "dtype": "bfloat16"}, 0.95),
        (["--quantize", "8"], {"backend": "mlx", "quantize": 8}, 0.95),
        (["--quantize", "4"], {"backend": "mlx", "quantize": 4}, 0.7),
    ]:
        out = tmp_path / ("out-" + "-".join(flags)) if flags else out
        if flags:
            assert convert(src, out, *flags) == 0
            manifest = json.loads((out / "hhg.json").read_text())
            assert (manifest["kind"], manifest["pooling"]) == ("reranker", "cls")
        reranker = load_reranker(str(out), **load)
        got = reranker.score_ids(ids, types, mask)
        if check < 0.5:
            np.testing.assert_allclose(got, want, atol=check)
        else:
            assert spearman(got, want) >= check and np.abs(got - want).max() > 1e-4
    assert not (tmp_path / "out---dtype-float16---onnx---onnx-int8" / "hhg-onnx").exists()   # shipped files used


# ---------------------------------------------------------------- errors


def test_existing_out_needs_force(tmp_path, capsys):
    src = make_bert(tmp_path / "src")
    out = tmp_path / "out"
    assert convert(src, out) == 0
    (out / "marker").write_text("old")
    assert convert(src, out) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert convert(src, out, "--force") == 0
    assert not (out / "marker").exists() and (out / "hhg.json").is_file()


def test_force_never_replaces_a_folder_that_is_not_a_model(tmp_path, capsys):
    out = tmp_path / "documents"
    out.mkdir()
    (out / "thesis.txt").write_text("keep me")
    assert convert(make_bert(tmp_path / "src"), out, "--force") == 2
    assert "not a model folder" in capsys.readouterr().err
    assert (out / "thesis.txt").read_text() == "keep me"


@pytest.mark.parametrize("damage, message", [
    ("weights", "no model*.safetensors"),
    ("tokenizer", "no tokenizer.json"),
    ("config", "no config.json"),
])
def test_missing_files(tmp_path, capsys, damage, message):
    src = make_bert(tmp_path / "src")
    (src / {"weights": "model.safetensors", "tokenizer": "tokenizer.json", "config": "config.json"}[damage]).unlink()
    assert convert(src, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))   # nothing half-written


def test_group_sizes_mlx_cannot_quantise_are_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:          # MLX would fail deep inside quantisation
        convert(make_bert(tmp_path / "src"), tmp_path / "out", "--quantize", 8, "--group-size", 16)
    assert stop.value.code == 2
    assert "--group-size: invalid choice: 16 (choose from 32, 64, 128)" in capsys.readouterr().err


def test_missing_source(tmp_path, capsys):
    assert convert(tmp_path / "nowhere", tmp_path / "out") == 2
    assert "no such model folder" in capsys.readouterr().err


def test_unsupported_architecture(tmp_path, capsys):
    src = tmp_path / "t5"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 512}))
    assert convert(src, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "'t5' is not supported" in err and "JinaBERT" in err and "BERT" in err


def test_onnx_export_of_a_decoder_is_refused(tmp_path, capsys):
    src = tmp_path / "qwen"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": "qwen2", "hidden_size": 64}))
    assert convert(src, tmp_path / "out", "--onnx") == 2
    assert "ONNX export supports jinabert, bert, nomic_bert models, not qwen2" in capsys.readouterr().err


@pytest.mark.parametrize("refusal", ["missing source", "unsupported architecture", "ctrl-c"])
def test_a_refused_convert_leaves_no_folder_it_created(tmp_path, capsys, monkeypatch, refusal):
    src = tmp_path / "nowhere"
    if refusal == "unsupported architecture":
        src.mkdir()
        (src / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 512}))
    elif refusal == "ctrl-c":
        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt
        src = make_bert(tmp_path / "src")
        monkeypatch.setattr("convert.mlx.convert_encoder", interrupted)
    work = tmp_path / "work"
    work.mkdir()
    assert convert(src, work / "a" / "b" / "out") == (130 if refusal == "ctrl-c" else 2)
    assert capsys.readouterr().err.startswith("hhg: ")
    assert list(work.iterdir()) == []                           # no OUT, no a/ nor a/b/ made for it
