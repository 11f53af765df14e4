"""The CPU int8 graph (`convert.onnx_int8`): its arithmetic against a numpy reference, batch
independence of encoders and rerankers, the CPU-feature rule behind `auto`, and what older int8 files and vectors become.

Bounds per kind of CPU, from `python -m hhg_mlx.bench.int8` (README "int8 on the CPU"):
with an int8 kernel (x86 AVX2/AVX-512 with or without VNNI, ARM dot product) activations are
quantised per row and 128-value block and products summed in int32, so every such CPU computes
the same int8 arithmetic (min cosine to fp32 on the fixture set: 0.99897 with AVX-512 VNNI natively,
0.99888 with AVX2 without VNNI under QEMU); without one ONNX Runtime computes in fp32 with the int8 weights.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from checkpoints import make_bert, make_jinabert, random_tokens
from onnx import TensorProto, helper, numpy_helper
from onnx_fixtures import DOCS, QUERIES, minilm, retrieval, top_k  # noqa: F401  (fixture)

import convert.onnx_export as onnx_export
import fallback.onnx_encoder as onnx_encoder
from convert.onnx_int8 import BLOCK, SCHEME, SCHEME_KEY, quantize_matmuls
from fallback.cpu_features import CpuFeatures, cpu_features, parse_cpuinfo
from fallback.onnx_reranker import ONNXReranker
from hhg_mlx import load_reranker
from hhg_mlx.index.index import PRECISION_KEYS, _vector_key
from hhg_mlx.loader import load_encoder

HAS_KERNEL = cpu_features().int8_kernel is not None


def _one_matmul(weight: np.ndarray):
    rows, cols = weight.shape
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", rows])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", cols])],
                              [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _blockwise(x: np.ndarray, block: int, bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric `bits`-bit codes and scales of `x` [..., K] per block of `block` along the last axis."""
    blocks = x.reshape(*x.shape[:-1], x.shape[-1] // block, block).astype(np.float64)
    scales = np.abs(blocks).max(-1, keepdims=True) / (2 ** (bits - 1) - 1)
    return np.round(blocks / scales), scales


@pytest.mark.parametrize("bits, block", [(8, BLOCK), (4, 32)])
def test_matmul_matches_int8_reference(bits, block):
    """y = Σ_blocks (x codes · w codes) · x scale · w scale: weights per column and block (8 bits: the CPU
    int8; 4 bits, packed two to a byte: an option of the int8 bench), activations in int8 per row and
    block, each from its own values. With an int8 kernel ORT computes exactly that (float rounding
    aside); without one it uses fp32 activations and the quantised weights."""
    rng = np.random.default_rng(0)
    rows, cols = 2 * BLOCK, 24
    weight = (rng.standard_normal((rows, cols)) * 0.1).astype(np.float32)
    x = rng.standard_normal((40, rows)).astype(np.float32)
    x[:, 3] *= 30                                           # an outlier channel, as in BERT activations
    quantized = quantize_matmuls(_one_matmul(weight), bits, block)
    assert {p.key: p.value for p in quantized.metadata_props} == {SCHEME_KEY: f"q{bits}-block{block}"}
    session = ort.InferenceSession(quantized.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x})
    w_codes, w_scales = _blockwise(weight.T, block, bits)   # [cols, blocks, block]
    x_codes, x_scales = _blockwise(x, block)                # [m, blocks, block]
    int8 = np.einsum("mbk,nbk,mb,nb->mn", x_codes, w_codes, x_scales[..., 0], w_scales[..., 0])
    weights_only = x.astype(np.float64) @ (w_codes * w_scales).reshape(cols, rows).T
    scale = np.abs(int8).max()
    assert np.abs(int8 - weights_only).max() > 1e-3 * scale   # the two cases are told apart
    want = int8 if HAS_KERNEL else weights_only
    np.testing.assert_allclose(got, want, atol=1e-5 * scale)


def test_every_weight_matmul_becomes_matmulnbits(tmp_path):
    folder = make_jinabert(tmp_path / "jina")
    path = onnx_export.export(folder, tmp_path / "model.q8.onnx", "int8")
    model = onnx.load(str(path))
    ops = [n.op_type for n in model.graph.node]
    assert "MatMul" not in ops and "DynamicQuantizeLinear" not in ops and "MatMulInteger" not in ops
    # per layer: q, k, v, output, the two GLU halves, the down projection
    assert ops.count("MatMulNBits") == 7 * 2
    assert {p.key: p.value for p in model.metadata_props} == {SCHEME_KEY: SCHEME}


CROSS_ENCODER = {"prefix": "bert.", "labels": 1}


def _run(model, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """An encoder's vectors or a reranker's logits of one batch."""
    return model.score_ids(ids, types, mask) if isinstance(model, ONNXReranker) else model.embed_ids(ids, mask)


def _padded(texts: list[list[int]], types: list[list[int]], pad: int, width: int, left: bool = False):
    ids, type_ids, mask = (np.full((len(texts), width), pad), np.zeros((len(texts), width), np.int64),
                           np.zeros((len(texts), width), np.int64))
    for row, (text, kinds) in enumerate(zip(texts, types)):
        cols = slice(width - len(text), width) if left else slice(0, len(text))
        ids[row, cols], type_ids[row, cols], mask[row, cols] = text, kinds, 1
    return ids, type_ids, mask


@pytest.mark.parametrize("make, options, load", [
    (make_bert, {}, load_encoder), (make_jinabert, {}, load_encoder),
    (make_bert, {**CROSS_ENCODER, "sentence_transformers": False}, load_reranker),
    (make_jinabert, {**CROSS_ENCODER, "variant": "base-en"}, load_reranker),
], ids=["bert", "jinabert", "bert-reranker", "jinabert-reranker"])
def test_int8_results_do_not_depend_on_the_batch(tmp_path, make, options, load):
    """The same texts (or pairs, with their token types) alone, with other batch-mates, in another order
    and with left padding: vectors and logits equal to the last bit (per-row activation scales;
    `int8_layout` gives each text the same kernel arithmetic; a cross-encoder's head stays fp32)."""
    model = load(str(make(tmp_path / "m", **options)), backend="onnx", quantize=8)
    rng = np.random.default_rng(3)
    texts = random_tokens(rng, [3, 17, 9, 30, 1, 12, 25], 60)
    types = [[0] * (len(t) // 2) + [1] * (len(t) - len(t) // 2) for t in texts]
    pad = model.spec.pad_token_id
    alone = np.concatenate([_run(model, *_padded([t], [k], pad, len(t))) for t, k in zip(texts, types)])
    mates = random_tokens(rng, [40, 2], 60)
    others = _run(model, *_padded(texts[::-1] + mates, types[::-1] + [[0] * 40, [0, 1]], pad, 40))
    for batch in (_run(model, *_padded(texts, types, pad, 30)), others[:len(texts)][::-1],
                  _run(model, *_padded(texts, types, pad, 45, left=True))):
        np.testing.assert_array_equal(batch, alone)


def test_int8_layout_moves_every_token_input_with_its_mask():
    """Attended tokens first in every [batch, seq] input, the sequence padded to the row tile: ids
    with the pad id, token types and mask with 0."""
    tokens = {"input_ids": np.array([[2, 2, 7, 8, 9], [4, 5, 2, 2, 2]]),
              "token_type_ids": np.array([[0, 0, 0, 1, 1], [0, 1, 0, 0, 0]]),
              "attention_mask": np.array([[0, 0, 1, 1, 1], [1, 1, 0, 0, 0]])}
    laid_out = onnx_encoder.int8_layout(tokens, pad_id=2, tile=4)
    np.testing.assert_array_equal(laid_out["input_ids"], [[7, 8, 9, 2, 2, 2, 2, 2], [4, 5, 2, 2, 2, 2, 2, 2]])
    np.testing.assert_array_equal(laid_out["token_type_ids"], [[0, 1, 1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(laid_out["attention_mask"], [[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0]])


def test_a_cross_encoder_head_stays_fp32(tmp_path):
    folder = make_bert(tmp_path / "rr", **CROSS_ENCODER, sentence_transformers=False)
    model = onnx.load(str(onnx_export.export(folder, tmp_path / "model.q8.onnx", "int8")))
    fp32 = {n.input[1] for n in model.graph.node if n.op_type == "MatMul"}
    assert fp32 == {"pooler.dense.weight", "classifier.weight"}
    assert [n.op_type for n in model.graph.node].count("MatMulNBits") == 6 * 2


def test_int8_minilm_vectors_do_not_depend_on_the_batch(minilm):
    encoder = load_encoder(str(minilm), backend="onnx", quantize=8)
    texts = DOCS + QUERIES
    alone = np.concatenate([encoder.embed_documents([t]) for t in texts])
    np.testing.assert_array_equal(encoder.embed_documents(texts), alone)
    np.testing.assert_array_equal(encoder.embed_documents(texts[::-1])[::-1], alone)


def test_int8_minilm_close_to_fp32(minilm):
    """Bound per kind: with an int8 kernel min cosine ≥ 0.998 (measured 0.99897 with AVX-512 VNNI natively,
    0.99888 with AVX2 under QEMU), without one (fp32 activations, int8 weights) ≥ 0.999 (measured 0.99972
    here with the kernel switched off, accuracy_level=0); top-1 unchanged."""
    fp32 = load_encoder(str(minilm), backend="onnx")
    int8 = load_encoder(str(minilm), backend="onnx", quantize=8)
    docs32, queries32 = retrieval(fp32)
    docs8, queries8 = retrieval(int8)
    cosine = np.concatenate([(docs8 * docs32).sum(1), (queries8 * queries32).sum(1)])
    assert cosine.min() >= (0.998 if HAS_KERNEL else 0.999)
    assert cosine.max() < 1 - 1e-6                          # really quantised
    np.testing.assert_array_equal(top_k(docs8, queries8, 1), top_k(docs32, queries32, 1))
    assert (top_k(docs32, queries32, 1)[:, 0] == np.arange(len(queries32))).mean() >= 0.9   # the set is sane


def test_folder_converted_with_the_old_int8_file_is_exported_again(tmp_path, monkeypatch):
    """`model.int8.onnx` (per-batch dynamic int8, from older `hhg convert --onnx-int8`) is not read:
    the int8 graph is exported from the folder's weights instead."""
    folder = make_bert(tmp_path / "bert")
    (folder / "model.int8.onnx").write_bytes(b"not a model of the current scheme")
    encoder = load_encoder(str(folder), backend="onnx", quantize=8)
    assert encoder.precision == "int8"
    assert (folder / "hhg-onnx" / onnx_export.FILENAMES["int8"]).is_file()


def test_int8_vectors_are_keyed_by_scheme():
    """Vectors stored as plain "int8" (the per-batch scheme) are never read as current int8 vectors."""
    assert PRECISION_KEYS["int8"] == f"int8/{SCHEME}"
    assert _vector_key({"model": "m", "precision": "int8"}) == f"m#precision=int8/{SCHEME}"
    assert _vector_key({"model": "m", "precision": "fp32"}) == "m#precision=fp32"


X86_FLAGS = "fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2"
AVX512 = " avx512f avx512dq avx512bw avx512vl"


@pytest.mark.parametrize("arch, flags, kernel", [
    ("x86_64", X86_FLAGS + AVX512 + " avx512_vnni", "AVX-512 VNNI"),
    ("x86_64", X86_FLAGS + AVX512, "AVX-512 (no VNNI)"),          # the reporter's EPYC
    ("x86_64", X86_FLAGS + " avx_vnni", "AVX-VNNI"),
    ("x86_64", X86_FLAGS, "AVX2 (no VNNI)"),
    ("x86_64", "fpu sse sse2 avx", None),                          # no AVX2: int8 would run in fp32
    ("arm64", "fp asimd asimddp i8mm", "NEON i8mm"),
    ("arm64", "fp asimd asimddp", "NEON dot product"),
    ("arm64", "fp asimd", None),                                   # e.g. Cortex-A72
])
def test_int8_kernel_from_cpu_flags(arch, flags, kernel):
    text = f"processor\t: 0\n{'flags' if arch == 'x86_64' else 'Features'}\t: {flags}\n\nprocessor\t: 1\n"
    assert CpuFeatures(arch, parse_cpuinfo(text)).int8_kernel == kernel


def test_auto_takes_fp32_where_int8_has_no_kernel(monkeypatch):
    monkeypatch.setattr(onnx_encoder, "cpu_features", lambda: CpuFeatures("arm64", frozenset({"asimd"})))
    assert onnx_encoder.onnx_precision("onnx", fastest=True) == "fp32"
    assert onnx_encoder.onnx_precision("onnx", quantize=8, fastest=True) == "int8"     # asked for: given
    monkeypatch.setattr(onnx_encoder, "cpu_features", lambda: CpuFeatures("arm64", frozenset({"asimddp"})))
    assert onnx_encoder.onnx_precision("onnx", fastest=True) == "int8"


def test_cpu_summary_names_the_features():
    features = CpuFeatures("x86_64", parse_cpuinfo("flags : " + X86_FLAGS + AVX512))
    assert features.summary() == "x86_64: AVX2 yes, AVX-512 yes, AVX-512 VNNI no, AVX-VNNI no, AMX no"
    assert features.int8_path() == "MatMulNBits 8-bit, AVX-512 (no VNNI) kernel"
    assert CpuFeatures("x86_64", frozenset({"avx"})).int8_path().startswith("none (int8 would compute in fp32")
