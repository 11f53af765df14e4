"""MLX JinaBERT / BERT against the independent float64 NumPy reference, on random checkpoints."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import reference
from checkpoints import make_checkpoint, pad_tokens, random_tokens  # noqa: F401  (make_checkpoint: fixture)
from hhg_mlx.errors import UnsupportedModel
from hhg_mlx.loader import load_encoder
from hhg_mlx.mlx_runtime import mx, nn
from hhg_mlx.models import jinabert
from hhg_mlx.models.alibi import alibi_slopes
from hhg_mlx.models.bert import sanitize

FP32_TOL = 1e-5
LENGTHS = [3, 29, 11, 1, 17]


def _batch(lengths=LENGTHS, seed=0, pad_id=0, left=False, vocab=200):
    tokens = random_tokens(np.random.default_rng(seed), lengths, vocab)
    return tokens, pad_tokens(tokens, pad_id, left)


def _max_diff(encoder, folder, ids, mask, **ref_kwargs) -> float:
    return float(np.abs(encoder.embed_ids(ids, mask) - reference.reference_embed(folder, ids, mask, **ref_kwargs)).max())


@pytest.mark.parametrize("variant", ["qk-post-norm", "base-en"])
@pytest.mark.parametrize("heads", [6, 4, 12])
def test_jinabert_matches_reference(make_checkpoint, variant, heads):
    folder = make_checkpoint("jinabert", variant=variant, heads=heads, hidden=8 * heads)
    encoder = load_encoder(str(folder), backend="mlx")
    _, (ids, mask) = _batch(pad_id=encoder.spec.pad_token_id)
    assert _max_diff(encoder, folder, ids, mask) < FP32_TOL


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
@pytest.mark.parametrize("heads", [6, 4])
def test_bert_matches_reference(make_checkpoint, pooling, heads):
    folder = make_checkpoint("bert", pooling=pooling, heads=heads, hidden=8 * heads)
    encoder = load_encoder(str(folder), backend="mlx")
    assert encoder.spec.pooling == pooling
    tokens, (ids, mask) = _batch()
    assert _max_diff(encoder, folder, ids, mask) < FP32_TOL
    assert _max_diff(encoder, folder, *pad_tokens(tokens, left=True)) < FP32_TOL


@pytest.mark.parametrize("kind", ["jinabert", "bert"])
def test_padding_side_and_batching_do_not_change_embeddings(make_checkpoint, kind):
    folder = make_checkpoint(kind)
    encoder = load_encoder(str(folder), backend="mlx")
    tokens, (ids, mask) = _batch(pad_id=encoder.spec.pad_token_id)
    right = encoder.embed_ids(ids, mask)
    left = encoder.embed_ids(*pad_tokens(tokens, encoder.spec.pad_token_id, left=True))
    alone = np.concatenate([encoder.embed_ids(*pad_tokens([t])) for t in tokens])
    assert np.abs(left - right).max() < FP32_TOL
    assert np.abs(alone - right).max() < FP32_TOL
    assert np.abs(right - reference.reference_embed(folder, ids, mask)).max() < FP32_TOL


@pytest.mark.parametrize("kind,variant", [("jinabert", "qk-post-norm"), ("jinabert", "base-en"), ("bert", None)])
@pytest.mark.parametrize("dtype,prefix,extras", [("float16", "bert.", False), ("bfloat16", "", True),
                                                 ("float32", "bert.", True)])
def test_checkpoint_layouts(make_checkpoint, kind, variant, dtype, prefix, extras):
    """Half-precision files, a `bert.` prefix, with and without pooler/cls/position_ids."""
    kwargs = {"variant": variant} if variant else {}
    folder = make_checkpoint(kind, dtype=dtype, prefix=prefix, extras=extras, seed=3, **kwargs)
    encoder = load_encoder(str(folder), backend="mlx")
    _, (ids, mask) = _batch(seed=1)
    assert _max_diff(encoder, folder, ids, mask) < FP32_TOL


@pytest.mark.parametrize("variant", ["qk-post-norm", "base-en"])
def test_tolerance_catches_swapped_glu_halves(make_checkpoint, variant):
    folder = make_checkpoint("jinabert", variant=variant)
    encoder = load_encoder(str(folder), backend="mlx")
    _, (ids, mask) = _batch()
    assert _max_diff(encoder, folder, ids, mask, swap_glu=True) > 1e-3


def test_tolerance_catches_power_of_two_alibi_rule(make_checkpoint, monkeypatch):
    """With 6 heads, the plain 2^(-8(k+1)/n) formula is wrong; the test must notice."""
    folder = make_checkpoint("jinabert", heads=6)
    encoder = load_encoder(str(folder), backend="mlx")
    _, (ids, mask) = _batch()
    monkeypatch.setattr(reference, "alibi_slopes", lambda n: np.array([2.0 ** (-8.0 * (k + 1) / n) for k in range(n)]))
    assert _max_diff(encoder, folder, ids, mask) > 1e-3


def test_alibi_slopes_follow_press_et_al():
    published_12 = [2 ** -1, 2 ** -2, 2 ** -3, 2 ** -4, 2 ** -5, 2 ** -6, 2 ** -7, 2 ** -8,
                    2 ** -0.5, 2 ** -1.5, 2 ** -2.5, 2 ** -3.5]           # MODELS.md §1
    assert alibi_slopes(12) == pytest.approx(published_12)
    assert alibi_slopes(8) == pytest.approx([2.0 ** -(k + 1) for k in range(8)])
    assert alibi_slopes(6) == pytest.approx([2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3])


def test_onnx_graph_builder_shares_the_slopes_without_importing_mlx():
    code = ("import sys, convert.onnx_graph as g, hhg_mlx.models.alibi as a; "
            "print(g.alibi_slopes is a.alibi_slopes, 'mlx.core' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False"]


def test_tokenizers_and_pad_ids(make_checkpoint):
    jina = load_encoder(str(make_checkpoint("jinabert")), backend="mlx")
    bert = load_encoder(str(make_checkpoint("bert")), backend="mlx")
    assert jina.spec.pad_token_id == 1                           # <pad>
    assert bert.spec.pad_token_id == 0                           # [PAD]
    ids = jina.tokenize(["def retry_upload(self):"])[0]
    assert ids[0] == 0 and ids[-1] == 2                          # <s> … </s>
    ids = bert.tokenize(["def retry_upload(self):"])[0]
    cls, sep = bert.tokenizer.token_to_id("[CLS]"), bert.tokenizer.token_to_id("[SEP]")
    assert ids[0] == cls and ids[-1] == sep


def test_embed_documents_matches_reference_on_text(make_checkpoint):
    folder = make_checkpoint("jinabert")
    encoder = load_encoder(str(folder), backend="mlx")
    texts = ["def retry_upload(self, path):\n    return self.client.put(path)", "x", "class HttpClient: pass"]
    tokens = encoder.tokenize(texts)
    expected = reference.reference_embed(folder, *pad_tokens(tokens, encoder.spec.pad_token_id))
    got = encoder.embed_documents(texts)
    assert got.dtype == np.float32 and got.shape == (3, 48)
    assert np.abs(got - expected).max() < FP32_TOL


def test_quantized_model_stays_close_and_is_quantized(make_checkpoint):
    folder = make_checkpoint("jinabert", hidden=64, heads=4, intermediate=128)
    _, (ids, mask) = _batch()
    expected = reference.reference_embed(folder, ids, mask)
    for bits, min_cosine in ((8, 0.999), (4, 0.95)):
        encoder = load_encoder(str(folder), backend="mlx", quantize=bits)
        linears = [m for _, m in encoder.model.named_modules() if isinstance(m, (nn.Linear, nn.QuantizedLinear))]
        assert linears and all(isinstance(m, nn.QuantizedLinear) and m.bits == bits for m in linears)
        got = encoder.embed_ids(ids, mask)
        cosine = (got * expected).sum(axis=1)
        assert cosine.min() >= min_cosine
        assert np.abs(got - expected).max() > 1e-5               # the weights really changed


def test_variant_detection():
    assert jinabert.detect_variant({"_name_or_path": "jinaai/jina-bert-v2-qk-post-norm"}) == "qk-post-norm"
    auto = {"AutoModel": "jinaai/jina-bert-implementation--modeling_bert.JinaBertModel"}
    assert jinabert.detect_variant({"auto_map": auto}) == "base-en"
    assert jinabert.detect_variant({}, ["encoder.layer.0.attention.self.layer_norm_q.weight"]) == "qk-post-norm"
    assert jinabert.detect_variant({}, ["bert.encoder.layer.0.mlp.gated_layers.weight"]) == "base-en"
    with pytest.raises(UnsupportedModel, match="JinaBERT variant"):
        jinabert.detect_variant({}, ["encoder.layer.0.mlp.fc1.weight"])


def test_sanitize_maps_checkpoint_names():
    w = {name: mx.zeros((1,)) for name in ("bert.embeddings.word_embeddings.weight", "bert.pooler.dense.weight",
                                           "cls.predictions.bias", "bert.embeddings.position_ids",
                                           "encoder.layer.0.mlp.wo.bias")}
    assert sorted(sanitize(w)) == ["embeddings.word_embeddings.weight", "encoder.layer.0.mlp.wo.bias"]
