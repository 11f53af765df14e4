"""NomicBERT (CodeRankEmbed, nomic-embed-text-v1.5) on MLX and ONNX Runtime against the independent
float64 NumPy reference (`reference.nomic_hidden`), on random std-0.1 checkpoints in the Hugging Face
layout with mixed lengths and both padding sides; the registry entries, prompts and Matryoshka recipe."""
from __future__ import annotations

import json

import numpy as np
import pytest

import reference
from checkpoints import make_checkpoint, make_nomic_bert, pad_tokens, random_tokens  # noqa: F401  (fixture)
from hub_fixtures import hf_cache  # noqa: F401  (fixture)
from hhg_mlx.errors import UnsupportedModel
from hhg_mlx.loader import load_encoder

FP32_TOL = 1e-5
LENGTHS = [3, 29, 11, 1, 17]
BACKENDS = ["mlx", "onnx"]
CASES = {
    "coderank-layout": {},
    "mean-pooled-biases": {"pooling": "mean", "biases": True},
    "4-heads-no-token-types": {"heads": 4, "hidden": 32, "type_vocab_size": 0},
    "12-heads-bert-prefix-f16": {"heads": 12, "hidden": 96, "prefix": "bert.", "dtype": "float16"},
    "bf16-no-extras": {"dtype": "bfloat16", "extras": False, "seed": 5},
}


def _batch(folder, left: bool = False, seed: int = 0, lengths=LENGTHS):
    vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    return pad_tokens(random_tokens(np.random.default_rng(seed), lengths, vocab), left=left)


def _max_diff(got: np.ndarray, folder, ids, mask, **reference_kwargs) -> float:
    return float(np.abs(got - reference.reference_embed(folder, ids, mask, **reference_kwargs)).max())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("left", [False, True], ids=["right-padded", "left-padded"])
def test_fp32_matches_reference(make_checkpoint, backend, case, left):
    folder = make_checkpoint("nomic_bert", **CASES[case])
    encoder = load_encoder(str(folder), backend=backend)
    assert (encoder.backend, encoder.dim) == (backend, json.loads((folder / "config.json").read_text())["n_embd"])
    ids, mask = _batch(folder, left)
    assert _max_diff(encoder.embed_ids(ids, mask), folder, ids, mask) < FP32_TOL


@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_side_and_batching_do_not_change_embeddings(make_checkpoint, backend):
    folder = make_checkpoint("nomic_bert")
    encoder = load_encoder(str(folder), backend=backend)
    tokens = random_tokens(np.random.default_rng(3), LENGTHS, 200)
    right = encoder.embed_ids(*pad_tokens(tokens))
    left = encoder.embed_ids(*pad_tokens(tokens, left=True))
    alone = np.concatenate([encoder.embed_ids(*pad_tokens([t])) for t in tokens])
    assert np.abs(left - right).max() < FP32_TOL and np.abs(alone - right).max() < FP32_TOL


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fault", [{"swap_glu": True}, {"interleaved": True}, {"rotary_base": 10_000}],
                         ids=["fc11-fc12-swapped", "interleaved-rotary", "rotary-base-10000"])
def test_tolerance_catches_wrong_details(make_checkpoint, backend, fault):
    """The reference with one detail wrong is far outside the tolerance the tests use."""
    folder = make_checkpoint("nomic_bert")
    ids, mask = _batch(folder)
    assert _max_diff(load_encoder(str(folder), backend=backend).embed_ids(ids, mask), folder, ids, mask, **fault) > 1e-3


@pytest.mark.parametrize("backend", BACKENDS)
def test_dynamic_ntk_rotary_scaling_past_the_trained_length(tmp_path, backend):
    """rotary_scaling_factor 2 with 8 trained positions: a 29-token batch uses the scaled base (and
    differs from the unscaled model by far more than the tolerance); 5-token batches do not."""
    scaled = make_nomic_bert(tmp_path / "scaled", scaling_factor=2.0, trained_positions=8)
    plain = make_nomic_bert(tmp_path / "plain")                      # same seed: same weights
    long_ids, long_mask = _batch(scaled)
    short_ids, short_mask = _batch(scaled, lengths=[5, 2, 4])
    encoder = load_encoder(str(scaled), backend=backend)
    got = encoder.embed_ids(long_ids, long_mask)
    assert _max_diff(got, scaled, long_ids, long_mask) < FP32_TOL
    assert _max_diff(got, plain, long_ids, long_mask) > 1e-3
    assert _max_diff(encoder.embed_ids(short_ids, short_mask), plain, short_ids, short_mask) < FP32_TOL


@pytest.mark.parametrize("backend,dtype", [("mlx", "float16"), ("mlx", "bfloat16"), ("onnx", "float16")])
def test_half_precision_close_to_reference(make_checkpoint, backend, dtype):
    folder = make_checkpoint("nomic_bert")
    ids, mask = _batch(folder, left=True, seed=2)
    got = load_encoder(str(folder), backend=backend, dtype=dtype).embed_ids(ids, mask)
    want = reference.reference_embed(folder, ids, mask)
    assert (got * want).sum(axis=1).min() >= 0.999
    assert np.abs(got - want).max() > 1e-6                 # really computed in half precision


@pytest.mark.parametrize("left", [False, True], ids=["right-padded", "left-padded"])
def test_onnx_int8_close_to_reference(make_checkpoint, left):
    folder = make_checkpoint("nomic_bert")
    encoder = load_encoder(str(folder), backend="onnx", quantize=8)
    assert encoder.precision == "int8"
    ids, mask = _batch(folder, left, seed=4)
    cosine = (encoder.embed_ids(ids, mask) * reference.reference_embed(folder, ids, mask)).sum(axis=1)
    assert cosine.min() >= 0.99 and cosine.max() < 1 - 1e-5          # close, and really quantised


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("field,value,message", [
    ("prenorm", True, "NomicBERT with prenorm=True is not supported (hhg runs post-norm layers: prenorm=False)"),
    ("rotary_emb_interleaved", True, "NomicBERT with rotary_emb_interleaved=True is not supported "
     "(hhg runs GPT-NeoX (rotate-half) rotary positions: rotary_emb_interleaved=False)"),
    ("rotary_emb_fraction", 0.5, "NomicBERT with rotary_emb_fraction=0.5 is not supported "
     "(hhg runs rotary positions over the whole head: rotary_emb_fraction=1.0)"),
    ("activation_function", "gelu", "NomicBERT with activation_function='gelu' is not supported "
     "(hhg runs the SwiGLU feed-forward: activation_function='swiglu')"),
])
def test_unsupported_configs_are_refused_naming_the_field(make_checkpoint, tmp_path, backend, field, value, message):
    folder = _with_config(make_checkpoint("nomic_bert"), tmp_path, {field: value})
    with pytest.raises(UnsupportedModel) as err:
        load_encoder(str(folder), backend=backend)
    assert str(err.value) == message


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_fields_mean_the_original_defaults(make_checkpoint, tmp_path, backend):
    """config.json without `rotary_emb_fraction` is NomicBertConfig's 0.0 (a position table): refused."""
    folder = _with_config(make_checkpoint("nomic_bert"), tmp_path, {"rotary_emb_fraction": None})
    with pytest.raises(UnsupportedModel, match=r"rotary_emb_fraction=0\.0 is not supported"):
        load_encoder(str(folder), backend=backend)



@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_layer_norm_epsilon_is_nomic_bert_s_default(make_checkpoint, tmp_path, backend):
    """config.json without `layer_norm_epsilon` is NomicBertConfig's 1e-5 (not BERT's 1e-12) on every
    backend. A small hidden size makes the layer-norm variance small enough for eps to show."""
    source = make_checkpoint("nomic_bert", heads=4, hidden=32, seed=7)
    folder = _with_config(source, tmp_path, {"layer_norm_epsilon": None})
    (tmp_path / "explicit").mkdir()
    explicit = _with_config(source, tmp_path / "explicit", {"layer_norm_epsilon": 1e-5})
    ids, mask = _batch(folder)
    got = load_encoder(str(folder), backend=backend).embed_ids(ids, mask)
    assert _max_diff(got, explicit, ids, mask) < FP32_TOL

def test_nomic_cross_encoder_is_refused(make_checkpoint, tmp_path):
    """NomicBERT has no reranker head here: a `*ForSequenceClassification` config is a one-line error."""
    from hhg_mlx import load_reranker

    folder = _with_config(make_checkpoint("nomic_bert"), tmp_path, {"architectures": ["NomicBertForSequenceClassification"]})
    with pytest.raises(UnsupportedModel) as err:
        load_reranker(str(folder), backend="mlx")
    assert str(err.value) == f"{folder}: cross-encoders are supported for JinaBERT and BERT, not nomic_bert"


def test_onnx_export_follows_config_changes(tmp_path):
    """The cached ONNX export is rebuilt when config.json changes, not only the weights."""
    folder = make_nomic_bert(tmp_path / "m")
    ids, mask = _batch(folder)
    load_encoder(str(folder), backend="onnx").embed_ids(ids, mask)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "rotary_emb_base": 10_000}))
    got = load_encoder(str(folder), backend="onnx").embed_ids(ids, mask)
    assert _max_diff(got, folder, ids, mask) < FP32_TOL


def _with_config(source, tmp_path, changes: dict):
    """A copy of the checkpoint `source` (its files linked) whose config.json has `changes` (None: left out)."""
    folder = tmp_path / "model"
    folder.mkdir()
    for item in source.iterdir():
        if item.is_file() and item.name != "config.json":
            (folder / item.name).symlink_to(item)
    config = {**json.loads((source / "config.json").read_text()), **changes}
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}))
    return folder


# ---------------------------------------------------------------- registry models: pooling, prompts, Matryoshka


@pytest.mark.parametrize("backend", BACKENDS)
def test_coderank_cls_pooling_and_query_prefix(hf_cache, tmp_path, backend):
    """Without sentence-transformers files the registry entry decides: CLS pooling, the query prefix."""
    folder = make_nomic_bert(tmp_path / "coderank", sentence_transformers=False)
    hf_cache("nomic-ai/CodeRankEmbed", folder)
    encoder = load_encoder("coderank", backend=backend, download=False)
    spec = encoder.spec
    assert (spec.pooling, spec.document_prefix) == ("cls", "")
    assert spec.query_prefix == "Represent this query for searching relevant code: "
    texts = ["def retry_upload(self, path):", "parse json config"]
    ids, mask = pad_tokens(encoder.tokenize(["represent this query for searching relevant code: " + t for t in texts]))
    np.testing.assert_allclose(encoder.embed_queries(texts), reference.reference_embed(folder, ids, mask, pooling="cls"),
                               atol=FP32_TOL)
    ids, mask = pad_tokens(encoder.tokenize(texts))
    np.testing.assert_allclose(encoder.embed_documents(texts), reference.reference_embed(folder, ids, mask, pooling="cls"),
                               atol=FP32_TOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nomic_v15_prefixes_and_matryoshka_recipe(hf_cache, tmp_path, backend):
    """Mean pooling and the search_query/search_document prefixes; a Matryoshka `dim` follows the model
    card: layer-norm the pooled vector (no affine), truncate, re-normalise. Without `dim`: the plain
    normalised mean. Full width (768) so that the published dims apply."""
    folder = make_nomic_bert(tmp_path / "nomic", hidden=768, heads=12, layers=1, sentence_transformers=False)
    hf_cache("nomic-ai/nomic-embed-text-v1.5", folder)
    plain = load_encoder("nomic-v1.5", backend=backend, download=False)
    assert (plain.spec.pooling, plain.spec.query_prefix, plain.spec.document_prefix) == \
        ("mean", "search_query: ", "search_document: ")
    texts = ["def retry_upload(self, path):", "parse json config"]
    ids, mask = pad_tokens(plain.tokenize(["search_document: " + t for t in texts]))
    np.testing.assert_allclose(plain.embed_documents(texts), reference.reference_embed(folder, ids, mask, pooling="mean"),
                               atol=FP32_TOL)
    ids, mask = pad_tokens(plain.tokenize(["search_query: " + t for t in texts]))
    np.testing.assert_allclose(plain.embed_queries(texts), reference.reference_embed(folder, ids, mask, pooling="mean"),
                               atol=FP32_TOL)

    ids, mask = _batch(folder, left=True)
    for dim in (64, 256, 768):
        encoder = load_encoder("nomic-v1.5", backend=backend, dim=dim, download=False)
        got = encoder.embed_ids(ids, mask)
        assert got.shape == (len(LENGTHS), dim) and encoder.dim == dim
        assert _max_diff(got, folder, ids, mask, pooling="mean", matryoshka_dim=dim) < FP32_TOL
        truncated_only = reference.reference_embed(folder, ids, mask, pooling="mean")[:, :dim]
        truncated_only /= np.linalg.norm(truncated_only, axis=1, keepdims=True)
        assert np.linalg.norm(got - truncated_only, axis=1).min() > 1e-3      # the layer norm matters
    with pytest.raises(UnsupportedModel, match=r"does not support dim=100 \(supported: 64, 128, 256, 512, 768\)"):
        load_encoder("nomic-v1.5", backend=backend, dim=100, download=False)


def test_hugging_face_snapshot_folder_gets_the_registry_settings(hf_cache, tmp_path):
    """The folder `snapshot_download` returns is recognised as its repo: prefixes and the Matryoshka
    recipe apply, while the encoder (and an index built with it) keeps naming the folder."""
    snapshot = hf_cache("nomic-ai/nomic-embed-text-v1.5",
                        make_nomic_bert(tmp_path / "nomic", hidden=768, heads=12, layers=1, sentence_transformers=False))
    encoder = load_encoder(str(snapshot), backend="mlx", dim=64)
    spec = encoder.spec
    assert (spec.pooling, spec.query_prefix, spec.document_prefix, spec.matryoshka_layer_norm) == \
        ("mean", "search_query: ", "search_document: ", True)
    assert encoder.model_id == str(snapshot.resolve())
    ids, mask = _batch(snapshot)
    assert _max_diff(encoder.embed_ids(ids, mask), snapshot, ids, mask, pooling="mean", matryoshka_dim=64) < FP32_TOL


def test_sentence_transformers_files_override_the_registry(hf_cache, tmp_path):
    """A CodeRankEmbed copy whose own files say mean pooling and other prompts is run as they say."""
    folder = make_nomic_bert(tmp_path / "coderank", pooling="mean", query_prefix="q: ", document_prefix="d: ")
    hf_cache("nomic-ai/CodeRankEmbed", folder)
    spec = load_encoder("coderank", backend="mlx", download=False).spec
    assert (spec.pooling, spec.query_prefix, spec.document_prefix) == ("mean", "q: ", "d: ")


@pytest.mark.parametrize("scaling_factor,want", [(None, 2048), (2.0, 4096)])
def test_length_limit_is_the_trained_positions_without_rotary_scaling(tmp_path, scaling_factor, want):
    """sentence_bert_config.json says 8192 (as published); without rotary scaling only the 2,048 trained
    positions are used, with it `n_positions`; the default cut stays 512."""
    folder = make_nomic_bert(tmp_path / "m", max_seq_length=8192, scaling_factor=scaling_factor)
    assert load_encoder(str(folder), backend="mlx", max_length=4096).max_length == want
    assert load_encoder(str(folder), backend="mlx").max_length == 512


def test_model_list_and_info_show_licence_size_dims_and_scores():
    from hhg_mlx.models.commands import format_info, format_list

    lines = format_list().splitlines()
    assert lines[0].split() == ["ID", "KIND", "ARCH", "DIM", "SIZE", "LICENCE", "COMMERCIAL", "PUBLISHED",
                                "INSTALLED"]
    rows = {line.split()[0]: line for line in lines[1:] if not line.startswith("*")}
    assert rows["coderank"].split()[:7] == ["coderank", "embedding", "nomic_bert", "768", "137M", "MIT", "yes"]
    assert "  CoIR 60.1, CSN MRR 77.9  " in rows["coderank"] and rows["coderank"].split()[-1] == "no"
    assert rows["nomic-v1.5"].split()[:7] == ["nomic-v1.5", "embedding", "nomic_bert", "64-768", "137M",
                                              "Apache-2.0", "yes"]
    info = format_info("coderank").splitlines()
    for line in ("license: MIT", "size: 137M", "scores: CoIR 60.1, CSN MRR 77.9", "pooling: cls",
                 "query_prefix: 'Represent this query for searching relevant code: '", "document_prefix: -"):
        assert line in info
    info = format_info("nomic-v1.5").splitlines()
    for line in ("license: Apache-2.0", "matryoshka_dims: 64, 128, 256, 512, 768", "matryoshka_layer_norm: yes",
                 "query_prefix: 'search_query: '", "document_prefix: 'search_document: '", "pooling: mean"):
        assert line in info
