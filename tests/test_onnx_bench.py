"""`hhg bench`: FLOP accounting against the weight files, the JSON report, the random stand-in model."""
from __future__ import annotations

import json

import numpy as np
import pytest
from checkpoints import make_checkpoint, pad_tokens, random_tokens  # noqa: F401  (fixture)
from reference import read_safetensors

from fallback.cpu_features import cpu_features
from hhg_mlx.bench import speed
from hhg_mlx.cli import main
from hhg_mlx.loader import load_encoder


def test_full_size_jinabert_flops_match_design_figure():
    assert speed.flops_per_text(speed.JINA_CODE_SHAPE, "jinabert", 128) / 1e9 == pytest.approx(29.6, abs=0.05)


@pytest.mark.parametrize("kind, kwargs, architecture", [
    ("jinabert", {}, "jinabert"), ("jinabert", {"variant": "base-en"}, "jinabert"), ("bert", {}, "bert"),
    ("nomic_bert", {}, "nomic_bert")])
def test_flops_count_every_weight_matrix(make_checkpoint, kind, kwargs, architecture):
    """2 x seq x (entries of every encoder-layer weight matrix) + attention's 2 x 2 x seq^2 x hidden per layer."""
    folder = make_checkpoint(kind, **kwargs)
    config = json.loads((folder / "config.json").read_text())
    weights = read_safetensors(folder / "model.safetensors")
    matrices = sum(w.size for name, w in weights.items() if name.startswith("encoder.layer") and w.ndim == 2)
    seq = 40
    layers, hidden = config.get("num_hidden_layers", config.get("n_layer")), config.get("hidden_size", config.get("n_embd"))
    attention = layers * 4 * seq * seq * hidden
    assert speed.flops_per_text(config, architecture, seq) == 2 * seq * matrices + attention


def test_json_report_compares_models(make_checkpoint, capsys):
    bert, nomic = make_checkpoint("bert"), make_checkpoint("nomic_bert")
    argv = ["bench", "--model", str(bert), "--model", str(nomic), "--backends", "onnx,onnx-int8", "--batch", "4",
            "--seq", "16", "--texts", "8", "--repeat", "1", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    fixed, mix = report["fixed"], report["mix"]
    assert [(m["model"], m["architecture"]) for m in report["models"]] == [(str(bert), "bert"), (str(nomic), "nomic_bert")]
    pairs = [(str(folder), backend) for folder in (bert, nomic) for backend in ("onnx", "onnx-int8")]
    assert [(r["model"], r["backend"]) for r in fixed["results"]] == pairs == [(r["model"], r["backend"])
                                                                                for r in mix["results"]]
    peaks = {m["model"]: m["gemm_peak_gflops"] for m in report["models"]}
    for r in fixed["results"]:
        assert r["tokens_per_s"] == pytest.approx(16 * r["texts_per_s"])
        assert r["peak_fraction"] == pytest.approx(r["gflops"] / peaks[r["model"]])
    assert mix["tokens"] == np.minimum(speed.length_mix(8), 64).sum()          # cut at the shorter model's 64 tokens
    assert report["cpu"] == {"features": cpu_features().summary(), "int8_path": cpu_features().int8_path()}


def test_unknown_backend_is_one_line_error(capsys):
    assert main(["bench", "--backends", "onnx,tpu"]) == 2
    assert "unknown bench backend tpu" in capsys.readouterr().err


def test_length_mix_looks_like_code_blocks():
    lengths = speed.length_mix(2000)
    assert lengths.min() >= 8 and lengths.max() <= 512
    assert 80 <= np.median(lengths) <= 115


def test_random_stand_in_is_a_valid_jinabert(tmp_path, monkeypatch):
    """The stand-in writer at a small shape: both backends load it and agree."""
    monkeypatch.setattr(speed, "JINA_CODE_SHAPE", {"hidden_size": 32, "num_hidden_layers": 2,
                                                   "num_attention_heads": 4, "intermediate_size": 64,
                                                   "vocab_size": 100})
    folder = speed.write_random_jinabert(tmp_path, std=0.1)
    ids, mask = pad_tokens(random_tokens(np.random.default_rng(0), [3, 12, 7], 100), pad_id=1)
    onnx = load_encoder(str(folder), backend="onnx")
    np.testing.assert_allclose(onnx.embed_ids(ids, mask), load_encoder(str(folder), backend="mlx").embed_ids(ids, mask),
                               atol=1e-5)
    assert onnx.spec.pad_token_id == 1


def test_sequence_longer_than_the_model_is_refused(make_checkpoint, capsys):
    argv = ["bench", "--model", str(make_checkpoint("bert")), "--backends", "onnx", "--seq", "65", "--texts", "0"]
    assert main(argv) == 2
    assert "--seq 65 is longer than the model's 64-token limit" in capsys.readouterr().err


def test_random_nomic_stand_in_has_coderanks_shape_and_runs(tmp_path, monkeypatch):
    """The NomicBERT stand-in at a small shape: both backends load it and agree; at full size its FLOPs
    are jina-code-v2's (both have three hidden x intermediate matrices per layer)."""
    assert speed.flops_per_text(speed.NOMIC_SHAPE, "nomic_bert", 128) == speed.flops_per_text(
        speed.JINA_CODE_SHAPE, "jinabert", 128)
    monkeypatch.setattr(speed, "NOMIC_SHAPE", {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_inner": 64, "vocab_size": 100})
    folder = speed.write_random_nomic_bert(tmp_path, std=0.1)
    ids, mask = pad_tokens(random_tokens(np.random.default_rng(0), [3, 12, 7], 100), left=True)
    onnx = load_encoder(str(folder), backend="onnx")
    np.testing.assert_allclose(onnx.embed_ids(ids, mask), load_encoder(str(folder), backend="mlx").embed_ids(ids, mask),
                               atol=1e-5)


def test_random_needs_a_jinabert_or_nomic_registry_model(capsys):
    assert main(["bench", "--model", "minilm", "--random", "--backends", "onnx"]) == 2
    assert "--random needs a registry model of a JinaBERT or NomicBERT shape, not minilm" in capsys.readouterr().err


def test_rerank_json_report(make_checkpoint, capsys):
    folder = make_checkpoint("bert", labels=1, prefix="bert.", sentence_transformers=False)
    argv = ["bench", "--rerank", str(folder), "--backends", "onnx,onnx-int8", "--pairs", "6", "--doc-tokens", "40",
            "--repeat", "1", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    documents = np.minimum(speed.length_mix(6), 40)
    assert (report["pairs"], report["query_tokens"]) == (6, 12)
    assert report["tokens"] == int((documents + 12 + 3).sum())               # <s> query </s> document </s>
    assert report["doc_tokens"] == {"min": documents.min(), "median": int(np.median(documents)),
                                    "max": documents.max()}
    assert [r["backend"] for r in report["results"]] == ["onnx", "onnx-int8"]
    for r in report["results"]:
        assert r["pairs_per_s"] == pytest.approx(6 / r["seconds"]) and r["cpu_seconds"] > 0
        assert r["tokens_per_s"] == pytest.approx(report["tokens"] / r["seconds"])


def test_rerank_pairs_are_query_then_document():
    from hhg_mlx.bench.rerank_speed import QUERY_TOKENS, pair_tokens

    ids, types = pair_tokens(np.array([5, 30]), vocab=100, limit=32)
    query = ids[0][1:1 + QUERY_TOKENS]
    for row, (pair, kinds) in enumerate(zip(ids, types)):
        assert pair[0] == 0 and pair[1:1 + QUERY_TOKENS] == query and pair[1 + QUERY_TOKENS] == 2
        assert kinds == [0] * (QUERY_TOKENS + 2) + [1] * (len(pair) - QUERY_TOKENS - 2)
    assert len(ids[0]) == QUERY_TOKENS + 5 + 3 and ids[0][-1] == 2
    assert len(ids[1]) == 32                                                  # cut at the pair limit


def test_random_stand_in_reranker_matches_the_reference(tmp_path, monkeypatch):
    """The reranker stand-in at a small shape: a base-en JinaBERT cross-encoder both backends run exactly."""
    from reference import reference_logits

    from hhg_mlx import load_reranker

    monkeypatch.setattr(speed, "JINA_RERANKER_SHAPE", {"hidden_size": 48, "num_hidden_layers": 2,
                                                       "num_attention_heads": 12, "intermediate_size": 96,
                                                       "vocab_size": 100})
    folder = speed.write_random_jinabert(tmp_path, std=0.1, reranker=True)
    ids, mask = pad_tokens(random_tokens(np.random.default_rng(0), [3, 12, 7], 100), pad_id=1, left=True)
    types = (np.cumsum(mask, axis=1) > 2).astype(np.int64) * mask
    want = reference_logits(folder, ids, types, mask)
    for backend in ("onnx", "mlx"):
        got = load_reranker(str(folder), backend=backend, dtype="float32").score_ids(ids, types, mask)
        np.testing.assert_allclose(got, want, atol=1e-5)
