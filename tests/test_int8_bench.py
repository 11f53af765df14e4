"""`python -m hhg_mlx.bench.int8`: the bench-only int8 options against numpy references, the graph
of JinaBERT's matrix products against the model's own, the metrics on hand-made vectors, and what
each option's file measures on a small random model (batch drift per scheme)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from checkpoints import make_bert, make_jinabert
from onnx import TensorProto, helper, numpy_helper

from convert.onnx_graph import build_graph
from convert.weights import load_encoder_weights
from hhg_mlx.bench import int8
from hhg_mlx.bench.int8_options import OPTIONS, ffn_down_projections, layer_gemms, per_row_int8
from hhg_mlx.models.folder import read_settings


def _matmul(weight: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", weight.shape[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", weight.shape[1]])],
                              [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _fp32_graph(folder):
    return build_graph(load_encoder_weights(folder), read_settings(folder).config)


@pytest.mark.parametrize("symmetric", [False, True])
def test_per_row_int8_matches_numpy(symmetric):
    """Weights: per column, codes round(w / s), s = max|w| / 127. Activations per row: asymmetric uint8
    (s = (max(x, 0) - min(x, 0)) / 255, zero point round(-min / s)) or symmetric 7-bit (s = max|x| / 63);
    y = (x codes - zero point) · w codes · s_x · s_w."""
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((64, 24)) * 0.1).astype(np.float32)
    x = rng.standard_normal((10, 64)).astype(np.float32)
    x[:, 5] *= 20
    x[3] = np.abs(x[3])                                      # a row without negative values: zero point 0
    session = ort.InferenceSession(per_row_int8(_matmul(weight), symmetric).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x})
    w_scale = np.abs(weight).max(0) / np.float32(127)
    w_codes = np.round(weight / w_scale)
    if symmetric:
        x_scale = np.abs(x).max(1, keepdims=True) / np.float32(63)
        x_codes, zero = np.round(x / x_scale), 0
    else:
        x_scale = (np.maximum(x.max(1, keepdims=True), 0) - np.minimum(x.min(1, keepdims=True), 0)) / np.float32(255)
        zero = np.round(-np.minimum(x.min(1, keepdims=True), 0) / x_scale)
        x_codes = np.clip(np.round(x / x_scale + zero), 0, 255)
    want = ((x_codes - zero).astype(np.float64) @ w_codes) * x_scale * w_scale
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())
    assert np.abs(want - x @ weight).max() > 1e-3 * np.abs(want).max()     # really quantised


def test_layer_gemms_are_a_jinabert_layers_weight_products(tmp_path):
    """Same weight shapes as layer 0 of a JinaBERT graph, and the down projection found the same way."""
    model = _fp32_graph(make_jinabert(tmp_path / "jina", hidden=48, intermediate=96))
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    layer0 = sorted(shapes[n.input[1]] for n in model.graph.node
                    if n.op_type == "MatMul" and n.input[1].startswith("encoder.layer.0."))
    gemms = layer_gemms(48, 96)
    assert sorted(tuple(t.dims) for t in gemms.graph.initializer) == layer0
    assert ffn_down_projections(gemms) == ["down"]
    down = {shapes[n.input[1]] for n in model.graph.node if n.name in ffn_down_projections(model)}
    assert down == {(96, 48)}


@pytest.mark.parametrize("make, weight", [(make_bert, "output.dense"), (make_jinabert, "mlp.down_layer")])
def test_ffn_down_projections_are_the_feed_forward_outputs(tmp_path, make, weight):
    model = _fp32_graph(make(tmp_path / "m", layers=2))
    names = {n.name: n.input[1] for n in model.graph.node if n.op_type == "MatMul"}
    assert sorted(names[name] for name in ffn_down_projections(model)) == \
        [f"encoder.layer.{i}.{weight}.weight" for i in range(2)]


def test_compare_on_hand_made_vectors():
    """Two queries over three documents: the second query's top document changes, its top 3 (all) not;
    cosines 1, 1, 0.6 (a document moved), 1, 1."""
    docs = np.eye(3)
    queries = np.array([[1.0, 0.2, 0.1], [0.5, 0.1, 0.6]])
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    moved = docs.copy()
    moved[2] = [0, 0.8, 0.6]                # still unit length; the second query now prefers document 0
    report = int8.compare({"r": (docs, queries)}, {"r": (moved, queries)})
    assert report == pytest.approx({"min_cosine": 0.6, "mean_cosine": (4 + 0.6) / 5,
                                    "top1_agreement": 0.5, "top3_agreement": 1.0})


def test_every_option_on_a_small_model(tmp_path):
    """Every option's file runs, is quantised (cosine < 1) and stays near fp32; the per-row schemes and
    the static one give a query the same vector in any batch, the per-batch dynamic ones do not."""
    folder = make_bert(tmp_path / "bert", hidden=64, heads=4, intermediate=128)
    words = "parse token stream request header value error retry upload config".split()
    rng = np.random.default_rng(0)
    sentence = lambda n: " ".join(rng.choice(words, n))      # noqa: E731
    texts = {"a": ([sentence(n) for n in (30, 5, 12, 40)], [sentence(n) for n in (2, 9, 3)]),
             "b": ([sentence(n) for n in (8, 25, 16)], [sentence(n) for n in (20, 4)])}
    report = int8.measure_model(folder, list(OPTIONS), texts, [sentence(n) for n in (10, 30, 6)], speed=False)
    rows = report["options"]
    assert list(rows) == ["fp32", *OPTIONS] and rows["fp32"]["batch_drift"] == 0
    for name, option in OPTIONS.items():
        assert 0.8 < rows[name]["min_cosine"] <= rows[name]["mean_cosine"] < 1 - 1e-6, name
        stable = option.per_row or name == "static-qdq"
        assert (rows[name]["batch_drift"] == 0) == stable, name
    assert (report["documents"], report["queries"], report["calibration_windows"]) == (7, 5, 3)


def test_unknown_option_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text('{"repos": []}')
    with pytest.raises(SystemExit) as exit_info:
        int8.main(["--options", "q8-b128,q8-b512", "--data", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "error: unknown option q8-b512 (choose from dynamic," in capsys.readouterr().err
