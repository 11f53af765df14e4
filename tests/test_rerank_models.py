"""Cross-encoder rerankers (MLX and ONNX Runtime) against the independent float64 reference of the
classification model, on random checkpoints in the exact Hugging Face layout: `bert.` prefix,
`bert.pooler.dense`, a one-logit `classifier`, `*ForSequenceClassification` configs, tokenizers whose
TemplateProcessing post-processor gives the second segment type id 1."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from checkpoints import make_checkpoint, pad_tokens, random_tokens  # noqa: F401  (make_checkpoint: fixture)
from reference import reference_logits
from tokenizers import Tokenizer

from fallback.onnx_encoder import cuda_usable
from hhg_mlx import load_reranker
from hhg_mlx.errors import QueryTooLong, UnsupportedModel
from hhg_mlx.loader import load_encoder
from hhg_mlx.models.folder import architecture_from_config

FP32_TOL = 1e-5
LENGTHS = [3, 29, 11, 1, 17, 8]
BACKENDS = ["mlx", "onnx"]
# jina-reranker-v1 shape in miniature: base-en JinaBERT, 12 heads (non-power-of-two ALiBi), `bert.` prefix
JINA = {"variant": "base-en", "heads": 12, "hidden": 96, "intermediate": 192, "prefix": "bert.", "labels": 1}
MINILM = {"prefix": "bert.", "labels": 1, "sentence_transformers": False}
CASES = {
    "jina": ("jinabert", JINA),
    "jina-f16": ("jinabert", {**JINA, "dtype": "float16", "seed": 1}),
    "jina-bf16": ("jinabert", {**JINA, "dtype": "bfloat16", "seed": 2}),
    "minilm": ("bert", MINILM),
    "minilm-f16": ("bert", {**MINILM, "dtype": "float16", "seed": 3}),
}
QUERY = "retry a failed upload"
DOCS = ["def retry_upload(self, path, max_tries=3):", "x",
        "class HttpClient:\n    def get(self, url): return self.request('GET', url)",
        "for key, value in items.items(): print(key, value)",
        "if error is not None: raise ValueError(f'bad {name}')", "def sleep(): time.sleep(1)", ""]


@pytest.fixture(params=list(CASES), scope="module")
def folder(request, make_checkpoint):
    return case(make_checkpoint, request.param)


def case(make_checkpoint, name: str):
    kind, kwargs = CASES[name]
    return make_checkpoint(kind, **kwargs)


def pairs_batch(folder, left: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random token pairs of mixed lengths: type 0 for the first half of each row, 1 for the rest."""
    vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    tokens = random_tokens(np.random.default_rng(seed), LENGTHS, vocab)
    types = [[0] * (len(t) // 2) + [1] * (len(t) - len(t) // 2) for t in tokens]
    ids, mask = pad_tokens(tokens, left=left)
    return ids, pad_tokens(types, left=left)[0], mask


def pair_tokens(folder, query: str, docs: list[str], max_length: int | None = None):
    """What the model's own tokenizer.json makes of each (query, document) pair, as padded arrays."""
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    if max_length:
        tok.enable_truncation(max_length, strategy="only_second")
    encodings = [tok.encode(query, doc) for doc in docs]
    ids, mask = pad_tokens([e.ids for e in encodings])
    return encodings, ids, pad_tokens([e.type_ids for e in encodings])[0], mask


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("left", [False, True], ids=["right-padded", "left-padded"])
def test_fp32_logits_match_reference(folder, backend, left):
    reranker = load_reranker(str(folder), backend=backend, dtype="float32")
    assert reranker.backend == backend
    ids, types, mask = pairs_batch(folder, left)
    got = reranker.score_ids(ids, types, mask)
    assert got.dtype == np.float32 and got.shape == (len(LENGTHS),)
    np.testing.assert_allclose(got, reference_logits(folder, ids, types, mask), atol=FP32_TOL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["jina", "minilm"])
def test_score_reads_pairs_as_the_tokenizer_encodes_them(make_checkpoint, backend, kind):
    """`score` = the reference on `tokenizer.encode(query, doc)`, in input order, whatever the batching."""
    folder = case(make_checkpoint, kind)
    encodings, ids, types, mask = pair_tokens(folder, QUERY, DOCS)
    first = len(pair_tokens(folder, QUERY, [""])[0][0].ids) - 1
    assert all(e.type_ids == [0] * first + [1] * (len(e.ids) - first) for e in encodings)   # B and its [SEP]: 1
    want = reference_logits(folder, ids, types, mask)
    reranker = load_reranker(str(folder), backend=backend, dtype="float32")
    np.testing.assert_allclose(reranker.score(QUERY, DOCS), want, atol=FP32_TOL)
    reranker.token_budget = 40                                    # several length-sorted batches
    np.testing.assert_allclose(reranker.score(QUERY, DOCS), want, atol=FP32_TOL)
    np.testing.assert_allclose(reranker.score(QUERY, DOCS[::-1]), want[::-1], atol=FP32_TOL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["jina", "minilm"])
def test_token_type_ids_change_the_logit(make_checkpoint, backend, kind):
    folder = case(make_checkpoint, kind)
    _, ids, types, mask = pair_tokens(folder, QUERY, DOCS[:4])
    reranker = load_reranker(str(folder), backend=backend, dtype="float32")
    with_types, all_zero = reranker.score_ids(ids, types, mask), reranker.score_ids(ids, 0 * types, mask)
    np.testing.assert_allclose(all_zero, reference_logits(folder, ids, 0 * types, mask), atol=FP32_TOL)
    assert np.abs(with_types - all_zero).min() > 1e-3


@pytest.mark.parametrize("backend", BACKENDS)
def test_long_documents_are_cut_not_the_query(make_checkpoint, backend):
    folder = case(make_checkpoint, "jina")
    docs = [" ".join(DOCS) * 3, "def retry_upload(self): pass", "x"]
    reranker = load_reranker(str(folder), backend=backend, dtype="float32", max_length=16)
    encodings, ids, types, mask = pair_tokens(folder, QUERY, docs, max_length=16)
    query_ids = Tokenizer.from_file(str(folder / "tokenizer.json")).encode(QUERY, add_special_tokens=False).ids
    assert len(encodings[0].ids) == 16 and encodings[0].ids[1:1 + len(query_ids)] == query_ids
    np.testing.assert_allclose(reranker.score(QUERY, docs), reference_logits(folder, ids, types, mask), atol=FP32_TOL)


@pytest.mark.parametrize("words", [5, 40])            # leaves no room for a document; longer than the limit
def test_a_query_longer_than_the_pair_limit_is_refused(make_checkpoint, words):
    folder = case(make_checkpoint, "minilm")
    reranker = load_reranker(str(folder), backend="onnx", max_length=8)
    query = (["retry", "upload", "request", "response", "client"] * 8)[:words]
    with pytest.raises(QueryTooLong, match=rf"^the query is {words} tokens long; the reranker {folder} reads at "
                                           "most 8 tokens of query and document together$"):
        reranker.score(" ".join(query), ["x"])                # 5 tokens + [CLS] [SEP] [SEP] = 8: no room
    assert reranker.score("retry upload", ["x", "retry the upload " * 20]).shape == (2,)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_documents(make_checkpoint, backend):
    reranker = load_reranker(str(case(make_checkpoint, "minilm")), backend=backend)
    scores = reranker.score(QUERY, [])
    assert scores.dtype == np.float32 and scores.shape == (0,)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks = lambda x: np.argsort(np.argsort(x)).astype(float)  # noqa: E731
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


@pytest.mark.parametrize("backend, options, min_rho", [
    ("onnx", {"quantize": 8}, 0.95), ("mlx", {"quantize": 8}, 0.95), ("mlx", {"quantize": 4}, 0.7),
    ("onnx", {"dtype": "float16"}, 0.99), ("mlx", {"dtype": "bfloat16"}, 0.95),
])
def test_low_precision_keeps_the_ranking(make_checkpoint, backend, options, min_rho):
    """Rank agreement (Spearman) of 48 pairs' logits with the float64 reference, and the weights really
    changed. Measured on this random model (std-0.1 weights quantise worse than trained ones): ONNX int8
    0.9974 (MatMulNBits 8-bit, block 128; 0.993 with the per-batch int8 before it), MLX 8-bit 0.9975,
    4-bit 0.80, ONNX fp16 1.000, MLX bf16 0.9983."""
    folder = make_checkpoint("jinabert", **{**JINA, "hidden": 192, "intermediate": 384, "seed": 5})
    ids, types, mask = (np.concatenate(parts) for parts in zip(*(pairs_batch(folder, left=False, seed=s)
                                                                   for s in range(8))))
    want = reference_logits(folder, ids, types, mask)
    reranker = load_reranker(str(folder), backend=backend, **options)
    got = reranker.score_ids(ids, types, mask)
    assert spearman(got, want) >= min_rho
    assert np.abs(got - want).max() > 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_classifier_with_two_labels_is_refused(tmp_path, make_checkpoint, backend):
    folder = make_checkpoint("bert", **{**MINILM, "labels": 2})
    with pytest.raises(UnsupportedModel, match="classifier gives 2 logits; hhg rerankers read one relevance logit"):
        load_reranker(str(folder), backend=backend)


def test_embedding_models_and_rerankers_are_not_mixed_up(make_checkpoint):
    reranker, encoder = case(make_checkpoint, "minilm"), make_checkpoint("bert")
    with pytest.raises(UnsupportedModel, match=rf"^{reranker} is a cross-encoder reranker, not an embedding model; "
                                               r"use it with --rerank \(Python: load_reranker\)$"):
        load_encoder(str(reranker))
    with pytest.raises(UnsupportedModel, match=rf"^{encoder} is an embedding model, not a cross-encoder reranker"):
        load_reranker(str(encoder))
    # registry ids are told apart before anything is looked for on disk or downloaded
    with pytest.raises(UnsupportedModel, match="^jina-reranker-tiny is a cross-encoder reranker"):
        load_encoder("jina-reranker-tiny", download=False)
    with pytest.raises(UnsupportedModel, match="^minilm is an embedding model"):
        load_reranker("minilm", download=False)


def test_same_argument_errors_as_load_encoder(make_checkpoint):
    folder = str(case(make_checkpoint, "minilm"))
    with pytest.raises(UnsupportedModel, match="unknown dtype 'float8'"):
        load_reranker(folder, dtype="float8")
    with pytest.raises(UnsupportedModel, match="unknown backend 'tpu'"):
        load_reranker(folder, backend="tpu")
    with pytest.raises(UnsupportedModel, match="ONNX Runtime quantises to 8 bits only, not 4"):
        load_reranker(folder, backend="onnx", quantize=4)


def test_auto_on_this_linux_machine_is_onnx_int8(make_checkpoint):
    if sys.platform == "darwin":
        pytest.skip("auto picks MLX on macOS")
    reranker = load_reranker(str(case(make_checkpoint, "jina")))
    assert reranker.backend in ("onnx", "onnx-cuda")
    assert reranker.precision == ("int8" if reranker.backend == "onnx" else "fp16")


def test_a_reranker_config_naming_its_own_repo_is_jinabert():
    """jina-reranker-v1's auto_map names its own repo, not jina-bert-implementation (MODELS.md §1.5)."""
    config = {"architectures": ["JinaBertForSequenceClassification"], "model_type": "bert",
              "auto_map": {"AutoModelForSequenceClassification":
                           "jinaai/jina-reranker-v1-tiny-en--modeling_bert.JinaBertForSequenceClassification"}}
    assert architecture_from_config(config) == "jinabert"
    assert architecture_from_config({"architectures": ["BertForSequenceClassification"], "model_type": "bert"}) == "bert"


def test_model_list_shows_the_rerankers_with_licence_and_size():
    from hhg_mlx.models.commands import format_list
    from hhg_mlx.models.registry import REGISTRY

    rows = {cells[0]: cells[1:] for cells in (line.lstrip("* ").split() for line in format_list().splitlines()[1:])}
    assert rows["jina-reranker-tiny"] == ["reranker", "jinabert", "-", "33M", "Apache-2.0", "yes", "-", "no"]
    assert rows["jina-reranker-turbo"] == ["reranker", "jinabert", "-", "37.8M", "Apache-2.0", "yes", "-", "no"]
    assert rows["ms-marco-minilm"] == ["reranker", "bert", "-", "22.7M", "Apache-2.0", "yes", "-", "no"]
    defaults = [line.split()[1] for line in format_list().splitlines() if line.startswith("*")]
    assert defaults == ["jina-code-v2", "jina-reranker-tiny"]
    assert (REGISTRY["jina-reranker-tiny"].repo, REGISTRY["jina-reranker-turbo"].repo, REGISTRY["ms-marco-minilm"].repo) \
        == ("jinaai/jina-reranker-v1-tiny-en", "jinaai/jina-reranker-v1-turbo-en", "cross-encoder/ms-marco-MiniLM-L-6-v2")


@pytest.mark.skipif(not cuda_usable(), reason="needs onnxruntime-gpu and an NVIDIA GPU")
@pytest.mark.parametrize("kind", ["jina", "minilm"])
def test_cuda_fp16_keeps_the_ranking(make_checkpoint, kind):
    folder = case(make_checkpoint, kind)
    ids, types, mask = (np.concatenate(parts) for parts in zip(*(pairs_batch(folder, left=s % 2 == 1, seed=s)
                                                                   for s in range(8))))
    reranker = load_reranker(str(folder), backend="onnx-cuda", dtype="float16")
    assert (reranker.backend, reranker.precision) == ("onnx-cuda", "fp16")
    got, want = reranker.score_ids(ids, types, mask), reference_logits(folder, ids, types, mask)
    assert spearman(got, want) >= 0.99 and np.abs(got - want).max() < 2e-2
