"""`hhg bench`: FLOP accounting against the weight files, the JSON report, the random stand-in model."""
from __future__ import annotations

import json

import numpy as np
import pytest
from checkpoints import make_checkpoint, pad_tokens, random_tokens  # noqa: F401  (fixture)
from reference import read_safetensors

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
