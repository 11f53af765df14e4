"""Model resolution (local folders, converted layout, the Hugging Face cache, offline errors), settings
from sentence-transformers files and the registry, token-budget batching, `hhg model`."""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from checkpoints import make_bert, make_checkpoint, make_jinabert, pad_tokens  # noqa: F401  (fixture)
from hub_fixtures import hf_cache  # noqa: F401  (fixture)
from hhg_mlx.encoder import token_budget_batches
from hhg_mlx.errors import ModelUnavailable, UnsupportedModel
from hhg_mlx.loader import load_encoder
from hhg_mlx.models import commands, hub
from reference import reference_embed

OFFLINE_MESSAGE = ("model jina-code-v2 is not installed and the Hugging Face hub cannot be reached; run "
                   "`hhg model install jina-code-v2` on a connected machine or pass a local folder")


# ---------------------------------------------------------------- resolving


def test_local_folder_resolves_to_itself(make_checkpoint):
    folder = make_checkpoint("bert")
    assert hub.resolve_model(str(folder), download=False) == folder.resolve()
    assert hub.is_installed(str(folder))


def test_bad_names_give_one_line_errors(tmp_path):
    with pytest.raises(ModelUnavailable, match="not a model folder"):
        hub.resolve_model(str(tmp_path), download=False)
    with pytest.raises(ModelUnavailable, match="no such model folder"):
        hub.resolve_model(str(tmp_path / "missing"), download=False)
    with pytest.raises(ModelUnavailable, match="unknown model 'no such model'"):
        hub.resolve_model("no such model", download=True)
    assert not hub.is_installed(str(tmp_path / "missing"))


def test_offline_without_a_copy(hf_cache):
    assert not hub.is_installed("jina-code-v2")
    with pytest.raises(ModelUnavailable) as err:
        hub.resolve_model("jina-code-v2", download=True)
    assert str(err.value) == OFFLINE_MESSAGE
    with pytest.raises(ModelUnavailable, match=r"model jina-code-v2 is not installed; run `hhg model install jina-code-v2`"):
        load_encoder("jina-code-v2", download=False)


def test_registry_id_found_in_the_hf_cache(hf_cache, tmp_path):
    # bge-small's own sentence-transformers files are absent: pooling and prefix come from the registry
    source = make_bert(tmp_path / "bge", sentence_transformers=False)
    snapshot = hf_cache("BAAI/bge-small-en-v1.5", source)
    assert hub.is_installed("bge-small") and hub.is_installed("BAAI/bge-small-en-v1.5")
    assert hub.resolve_model("bge-small", download=False) == snapshot
    encoder = load_encoder("bge-small", backend="mlx", download=False)
    assert encoder.model_id == "bge-small"
    assert encoder.spec.pooling == "cls"
    assert encoder.spec.query_prefix == "Represent this sentence for searching relevant passages: "
    ids, mask = pad_tokens(encoder.tokenize(["def f(): pass", "x"]))
    assert np.abs(encoder.embed_ids(ids, mask) - reference_embed(snapshot, ids, mask, pooling="cls")).max() < 1e-5


def test_incomplete_cache_copy_is_not_installed(hf_cache, tmp_path):
    source = make_bert(tmp_path / "m")
    (source / "tokenizer.json").unlink()
    hf_cache("sentence-transformers/all-MiniLM-L6-v2", source)
    assert not hub.is_installed("minilm")


def test_converted_layout_with_hhg_json(tmp_path):
    """Converted folders: sanitised MLX safetensors and `hhg.json` settings, which take precedence."""
    from hhg_mlx.mlx_runtime import mx
    from hhg_mlx.models.bert import sanitize

    source = make_bert(tmp_path / "src", prefix="bert.", pooling="mean", query_prefix="Q: ")
    out = tmp_path / "converted"
    out.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(source / name, out / name)
    mx.save_safetensors(str(out / "model.safetensors"), sanitize(mx.load(str(source / "model.safetensors"))))
    (out / "hhg.json").write_text(json.dumps({"architecture": "bert", "pooling": "cls", "query_prefix": "find: ",
                                              "max_length": 40, "model_id": "tiny-bert"}))
    encoder = load_encoder(str(out), backend="mlx")
    spec = encoder.spec
    assert (spec.model_id, spec.pooling, spec.query_prefix, spec.max_length) == ("tiny-bert", "cls", "find: ", 40)
    ids, mask = pad_tokens(encoder.tokenize(["retry upload", "x y z"]))
    assert np.abs(encoder.embed_ids(ids, mask) - reference_embed(source, ids, mask, pooling="cls")).max() < 1e-5


# ---------------------------------------------------------------- settings


def test_sentence_transformers_settings(make_checkpoint):
    folder = make_checkpoint("bert", pooling="cls", query_prefix="Represent: ", max_seq_length=40)
    encoder = load_encoder(str(folder), backend="mlx")
    assert (encoder.spec.pooling, encoder.spec.query_prefix, encoder.max_length) == ("cls", "Represent: ", 40)
    np.testing.assert_allclose(encoder.embed_queries(["find the retry"]),
                               encoder.embed_documents(["Represent: find the retry"]), atol=1e-6)
    assert len(encoder.tokenize(["def " * 100])[0]) == 40


def test_defaults_without_sentence_transformers_files(make_checkpoint):
    bert = load_encoder(str(make_checkpoint("bert", sentence_transformers=False)), backend="mlx")
    assert (bert.spec.pooling, bert.spec.query_prefix, bert.max_length) == ("mean", "", 128)   # max_position_embeddings
    jina = load_encoder(str(make_checkpoint("jinabert")), backend="mlx")
    assert (jina.spec.pooling, jina.max_length) == ("mean", 512)                               # 8192 → cut at 512
    assert load_encoder(str(make_checkpoint("jinabert")), backend="mlx", max_length=64).max_length == 64


def test_encoder_dim_reads_the_vector_size_without_loading(make_checkpoint, tmp_path):
    """The folder's own `dim` (hhg.json), else its hidden size: what `load_encoder` gives."""
    from hhg_mlx.loader import encoder_dim

    hidden = make_bert(tmp_path / "bert", hidden=48)
    truncated = make_bert(tmp_path / "truncated", hidden=48)
    (truncated / "hhg.json").write_text(json.dumps({"dim": 16, "matryoshka_dims": [16, 32, 48]}))
    for folder, dim in ((hidden, 48), (truncated, 16)):
        assert encoder_dim(str(folder)) == load_encoder(str(folder), download=False).dim == dim
    with pytest.raises(ModelUnavailable, match="no such model folder"):
        encoder_dim(str(tmp_path / "nowhere"))


def test_load_encoder_rejects_bad_options(make_checkpoint):
    folder = str(make_checkpoint("bert"))
    with pytest.raises(UnsupportedModel, match="unknown dtype 'float64'"):
        load_encoder(folder, dtype="float64")
    with pytest.raises(UnsupportedModel, match="unknown backend 'tpu'"):
        load_encoder(folder, backend="tpu")
    with pytest.raises(UnsupportedModel, match="quantize must be 8 or 4"):
        load_encoder(folder, quantize=3)
    with pytest.raises(UnsupportedModel, match="does not support dim=16"):
        load_encoder(folder, backend="mlx", dim=16)


def test_qwen_folders_go_to_the_qwen_loader(tmp_path, monkeypatch):
    import hhg_mlx.models.qwen as qwen

    folder = tmp_path / "qwen"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen3", "hidden_size": 64}))
    calls = []
    monkeypatch.setattr(qwen, "load_qwen_encoder", lambda *args, **kwargs: calls.append((args, kwargs)) or "encoder")
    assert load_encoder(str(folder), dtype="bfloat16", dim=32, task="nl2code", max_length=64) == "encoder"
    assert calls == [((folder.resolve(), None, "bfloat16", None, 32, "nl2code"),
                      {"model_id": str(folder.resolve()), "max_length": 64})]


def test_qwen_repo_outside_the_registry_keeps_its_id_and_length(hf_cache, tmp_path):
    """A hub repo id is the model id (not the snapshot folder's commit hash); `max_length` caps Qwen too."""
    from qwen_fixtures import make_qwen

    hf_cache("someone/tiny-qwen-embed", make_qwen(tmp_path / "qwen", append_eos=True))
    encoder = load_encoder("someone/tiny-qwen-embed", download=False, max_length=6)
    assert (encoder.model_id, encoder.max_length) == ("someone/tiny-qwen-embed", 6)
    assert max(len(ids) for ids in encoder.tokenize(["def retry_failed_uploads(queue): pass " * 4, "x"])) == 6


def test_importing_the_loader_stays_light():
    code = ("import sys, hhg_mlx.loader, hhg_mlx.models.commands; "
            "print(sorted(m for m in ('mlx.core', 'huggingface_hub', 'tokenizers', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- batching


def test_token_budget_batching_wastes_less_padding(make_checkpoint):
    """The encoder batches by token budget; on a mixed-length list that pads far less than
    fixed batches of 32 in input order."""
    encoder = load_encoder(str(make_checkpoint("bert")), backend="mlx")
    rng = np.random.default_rng(0)
    texts = [" ".join(["retry"] * int(n)) for n in np.minimum(rng.lognormal(2.5, 1.0, 200), 120)]
    shapes = []
    forward = encoder._forward
    encoder._forward = lambda ids, mask: shapes.append((ids.shape, int(mask.sum()))) or forward(ids, mask)
    encoder.token_budget = 1024
    encoder.embed_documents(texts)
    real = sum(n for _, n in shapes)
    budget_padding = sum(b * s for (b, s), _ in shapes) - real

    lengths = [len(t) for t in encoder.tokenize(texts)]
    assert real == sum(lengths) and max(b * s for (b, s), _ in shapes) <= 1024 + max(lengths)
    fixed_padding = sum(len(chunk) * max(chunk) - sum(chunk) for chunk in
                        (lengths[i:i + 32] for i in range(0, len(lengths), 32)))
    assert budget_padding < fixed_padding / 4
    assert len(token_budget_batches(lengths, 1024)) == len(shapes)


# ---------------------------------------------------------------- hhg model


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    commands.add_arguments(parser)
    return commands.run(parser.parse_args(argv))


def test_model_list(hf_cache, tmp_path, capsys):
    hf_cache("sentence-transformers/all-MiniLM-L6-v2", make_bert(tmp_path / "m"))
    assert _run(["list"]) == 0
    rows = {line.split()[0 if not line.startswith("*") else 1]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert {"jina-code-v2", "jina-base-en", "minilm", "bge-small", "arctic-s"} <= set(rows)
    assert rows["jina-code-v2"].startswith("*") and "Apache-2.0" in rows["jina-code-v2"]
    assert rows["minilm"].split()[-1] == "yes" and rows["bge-small"].split()[-1] == "no"
    assert "MIT" in rows["bge-small"]


def test_model_info_and_install(hf_cache, make_checkpoint, capsys):
    folder = make_checkpoint("bert")
    assert _run(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"folder: {folder.resolve()}" in out and "installed: yes" in out and "backend: " in out
    assert _run(["info", "arctic-s"]) == 0
    out = capsys.readouterr().out
    assert "repo: Snowflake/snowflake-arctic-embed-s" in out and "installed: no" in out and "BLAS" in out
    with pytest.raises(ModelUnavailable) as err:
        _run(["install", "jina-code-v2"])
    assert str(err.value) == OFFLINE_MESSAGE
