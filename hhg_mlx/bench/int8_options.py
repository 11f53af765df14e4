"""Bench-only: the int8 options that `python -m hhg_mlx.bench.int8` compares, each a way to make an
ONNX file from an fp32 graph. The product's CPU int8 is `convert.onnx_int8` (option `q8-b128`);
nothing here runs outside the benchmark.

The weight quantisers are ONNX Runtime's (`quantize_dynamic`, `quantize_static`) and
`convert.onnx_int8`'s; the per-row options write their activation quantisation into the graph
with standard ONNX operators around `MatMulInteger`. Also here: `layer_gemms`, one JinaBERT layer's
weight products as a graph, on which the bench times each option's matrix products alone.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from convert.onnx_graph import OPSET, save_model
from convert.onnx_int8 import quantize_blockwise, quantize_matmuls

Feeds = dict[str, np.ndarray]
Calibration = Callable[[], list[Feeds]]      # the fp32 graph's inputs for static calibration, made on demand
Writer = Callable[[onnx.ModelProto, Path, Calibration], None]


@dataclass(frozen=True)
class Option:
    label: str              # the README table's row
    write: Writer           # fp32 graph -> the option's file
    per_row: bool = False   # activation scales per row: run in the int8 layout, as the product's int8


def _ort_quantize(quantize: Callable, model: onnx.ModelProto, path: Path, *args, **kwargs) -> None:
    """Run one of ONNX Runtime's quantisers on a copy of `model` (they may move its weights to external
    data) without the advice they log on every call: the bench prints its own report."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    logging.disable(logging.WARNING)
    try:
        quantize(copy, path, *args, **kwargs)
    finally:
        logging.disable(logging.NOTSET)


# MatMuls against constant weights only; activations of other types stay float
_ORT_OPTIONS = {"MatMulConstBOnly": True, "DefaultTensorType": TensorProto.FLOAT}


def ffn_down_projections(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMuls that read a feed-forward's activation (GELU, or a GLU's product): the
    down projections, whose inputs have the widest range."""
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    return [node.name for node in model.graph.node
            if node.op_type == "MatMul" and producers.get(node.input[0]) in ("Gelu", "BiasGelu", "Mul")]


def dynamic(*, reduce_range: bool = False, weight_type: str = "QInt8", fp32_down: bool = False) -> Writer:
    """Per-batch dynamic quantisation (`quantize_dynamic`, per-channel weights): each activation
    matrix is scaled by the range of the whole batch."""
    def write(model: onnx.ModelProto, path: Path, calibration: Calibration) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        _ort_quantize(quantize_dynamic, model, path, op_types_to_quantize=["MatMul"], per_channel=True,
                 reduce_range=reduce_range, weight_type=getattr(QuantType, weight_type),
                 nodes_to_exclude=ffn_down_projections(model) if fp32_down else None, extra_options=_ORT_OPTIONS)
    return write


def static_qdq(model: onnx.ModelProto, path: Path, calibration: Calibration) -> None:
    """Static QDQ quantisation (`quantize_static`): activation ranges fixed by MinMax calibration,
    uint8 activations, per-channel int8 weights."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(calibration())

        def get_next(self) -> Feeds | None:
            return next(self.feeds, None)

    _ort_quantize(quantize_static, model, path, Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
             per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
             extra_options=_ORT_OPTIONS)


def matmulnbits(bits: int, block: int) -> Writer:
    """`convert.onnx_int8`'s MatMulNBits graph at `bits` and `block`."""
    def write(model: onnx.ModelProto, path: Path, calibration: Calibration) -> None:
        save_model(quantize_matmuls(model, bits, block), path)
    return write


def per_row(symmetric: bool) -> Writer:
    """Weights per column in int8; activations quantised per row in the graph, then `MatMulInteger`:
    asymmetric uint8 (zero point per row, corrected with the weights' column sums), or symmetric
    7-bit (|code| ≤ 63, shifted by 64 into uint8), whose u8×s8 pair sums fit 16 bits on AVX2."""
    def write(model: onnx.ModelProto, path: Path, calibration: Calibration) -> None:
        save_model(per_row_int8(model, symmetric), path)
    return write


def per_row_int8(model: onnx.ModelProto, symmetric: bool) -> onnx.ModelProto:
    weights = {t.name: t for t in model.graph.initializer}
    nodes, added, replaced = [], [], set()
    quantized: dict[str, tuple[str, str, str]] = {}      # activation -> (uint8 codes, row scales, zero points)
    count = iter(range(1 << 30))

    def const(value: np.ndarray) -> str:
        added.append(numpy_helper.from_array(np.asarray(value), f"per_row.c{next(count)}"))
        return added[-1].name

    def op(op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        out = out or f"per_row.{op_type}{next(count)}"
        nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def quantize_rows(x: str) -> tuple[str, str, str]:
        tiny, zero = const(np.float32(1e-30)), const(np.float32(0))
        if symmetric:
            scale = op("Div", op("Max", op("ReduceMax", op("Abs", x), axes=[-1]), tiny), const(np.float32(63)))
            codes = op("Cast", op("Add", op("Round", op("Div", x, scale)), const(np.float32(64))), to=TensorProto.UINT8)
            return codes, scale, const(np.uint8(64))
        high = op("Max", op("ReduceMax", x, axes=[-1]), zero)
        low = op("Min", op("ReduceMin", x, axes=[-1]), zero)
        scale = op("Div", op("Max", op("Sub", high, low), tiny), const(np.float32(255)))
        zero_point = op("Round", op("Div", op("Neg", low), scale))
        codes = op("Clip", op("Round", op("Add", op("Div", x, scale), zero_point)), zero, const(np.float32(255)))
        return op("Cast", codes, to=TensorProto.UINT8), scale, zero_point

    for node in model.graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or len(weight.dims) != 2:
            nodes.append(node)
            continue
        x = node.input[0]
        if x not in quantized:
            quantized[x] = quantize_rows(x)
        codes, scale, zero_point = quantized[x]
        w = numpy_helper.to_array(weight).astype(np.float32)
        w_codes, w_scales = quantize_blockwise(w, block=w.shape[0])        # one block per column
        w_int8 = (w_codes[:, 0].astype(np.int16) - 128).astype(np.int8).T  # [K, N]
        if symmetric:
            products = op("Cast", op("MatMulInteger", codes, const(w_int8), zero_point), to=TensorProto.FLOAT)
        else:
            products = op("Sub", op("Cast", op("MatMulInteger", codes, const(w_int8)), to=TensorProto.FLOAT),
                          op("Mul", zero_point, const(w_int8.astype(np.float32).sum(0))))
        op("Mul", op("Mul", products, scale), const(w_scales), out=node.output[0])
        replaced.add(weight.name)
    graph = helper.make_graph(nodes, model.graph.name, list(model.graph.input), list(model.graph.output),
                              [t for t in model.graph.initializer if t.name not in replaced] + added)
    rewritten = helper.make_model(graph, opset_imports=list(model.opset_import))
    rewritten.ir_version = model.ir_version
    return rewritten


OPTIONS: dict[str, Option] = {
    "dynamic": Option("per-batch dynamic, per-channel QInt8 (hhg before issue 17)", dynamic()),
    "dynamic-reduce-range": Option("per-batch dynamic, `reduce_range`", dynamic(reduce_range=True)),
    "dynamic-u8u8": Option("per-batch dynamic, QUInt8 weights", dynamic(weight_type="QUInt8")),
    "dynamic-fp32-down": Option("per-batch dynamic, FFN down-projection in fp32", dynamic(fp32_down=True)),
    "static-qdq": Option("static QDQ, calibrated on code windows of four other repositories", static_qdq),
    "per-row-u8": Option("per-row int8 in the graph (`MatMulInteger`, asymmetric u8)", per_row(False), True),
    "per-row-sym7": Option("per-row int8 in the graph, symmetric 7-bit (safe on AVX2)", per_row(True), True),
    "q4-b32": Option("`MatMulNBits` 4-bit, block 32", matmulnbits(4, 32), True),
    **{f"q8-b{block}": Option(f"`MatMulNBits` 8-bit, block {block}" + (" (the CPU int8)" if block == 128 else ""),
                              matmulnbits(8, block), True) for block in (32, 64, 128, 256)},
}


def layer_gemms(hidden: int, intermediate: int, seed: int = 0) -> onnx.ModelProto:
    """One JinaBERT (qk-post-norm) layer's weight products: q, k and v of one input, the attention
    output of another, the two GLU halves of a third and, from their product, the down projection
    (where `ffn_down_projections` finds it, as in the model). Random weights: speed does not depend
    on their values."""
    rng = np.random.default_rng(seed)
    nodes, weights = [], []

    def matmul(x: str, name: str, rows: int, cols: int) -> str:
        weights.append(numpy_helper.from_array((rng.standard_normal((rows, cols)) * 0.05).astype(np.float32), name))
        nodes.append(helper.make_node("MatMul", [x, name], [f"{name}.out"], name=name))
        return f"{name}.out"

    outputs = [matmul("attention_in", name, hidden, hidden) for name in ("query", "key", "value")]
    outputs.append(matmul("context", "attention_output", hidden, hidden))
    halves = [matmul("ffn_in", name, hidden, intermediate) for name in ("up_gated.first", "up_gated.second")]
    nodes.append(helper.make_node("Mul", halves, ["glu"], name="glu"))
    outputs.append(matmul("glu", "down", intermediate, hidden))
    value = lambda name, cols: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["rows", cols])  # noqa: E731
    graph = helper.make_graph(nodes, "layer-gemms", [value(x, hidden) for x in ("attention_in", "context", "ffn_in")],
                              [value(out, None) for out in outputs], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model
