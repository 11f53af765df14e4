"""The CPU int8 graph: every weight MatMul of an fp32 encoder graph (a cross-encoder's head aside)
becomes ONNX Runtime's `MatMulNBits` with 8-bit weights and `accuracy_level=4`.

- Weights: symmetric int8 per output column and block of `BLOCK` input rows (scale = max|w| / 127).
- Activations: quantised to int8 inside the kernel, per row (token) and block of `BLOCK` values,
  from that row's own values. A text's vector therefore depends on the text alone, not on its
  batch-mates or the batch's padding (the per-tensor dynamic quantisation used before scaled each
  activation matrix by the whole batch's range).
- Integer products are summed in int32 by kernels without 16-bit intermediate sums (MLAS on
  AVX2, AVX-512 with or without VNNI, AVX-VNNI, ARM dot product), so the same file gives the same
  accuracy on every CPU that has a kernel for it (see `fallback.cpu_features`). Where none has,
  ONNX Runtime dequantises the weights and computes in fp32: correct, but slower than fp32.
- A cross-encoder's head (pooler and classifier, one row per pair) stays in fp32: the int8 kernel
  rounds a row differently with the number of rows it shares the call with (3.6e-7 on a pooler
  output between a batch of 1 and of 8), the layers' rows are laid out to avoid that
  (`fallback.onnx_encoder.int8_layout`), the head's rows cannot be; its cost is negligible.

Measured on all-MiniLM-L6-v2 against fp32 (README "int8 on the CPU"): minimum cosine 0.9967 with
128-row blocks, 0.9990 with 32 and 0.9945 with 256; GEMM speed grows with the block up to 128
(1.52x fp32 at 32, 1.74x at 64, 2.07x at 128, 2.05x at 256 on JinaBERT's shapes, AVX-512 VNNI, one
run of `python -m hhg_mlx.bench.int8`): 128 is the trade.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

BLOCK = 128
BITS = 8


def scheme(bits: int = BITS, block: int = BLOCK) -> str:
    """The name written into a quantised model's metadata, e.g. "q8-block128"."""
    return f"q{bits}-block{block}"


SCHEME = scheme()               # the CPU int8's; names the vectors it makes
SCHEME_KEY = "hhg_int8_scheme"
_MS = "com.microsoft"
HEAD = ("pooler.", "classifier.")      # a cross-encoder's head weights (checkpoint keys): kept in fp32


def quantize_blockwise(weight: np.ndarray, block: int = BLOCK, bits: int = BITS) -> tuple[np.ndarray, np.ndarray]:
    """A [K, N] MatMul weight as MatMulNBits wants it: symmetric `bits`-bit codes, shifted by the
    operator's default zero point 2^(bits-1) into uint8 [N, K/block, block * bits/8] (4-bit codes two
    to a byte, the first in the low nibble), and float32 scales [N * K/block] = max|w| / (2^(bits-1) - 1)
    per column and block. K is zero-padded to a whole number of blocks."""
    rows, cols = weight.shape
    blocks = -(-rows // block)
    padded = np.zeros((blocks * block, cols), np.float32)
    padded[:rows] = weight
    grouped = padded.T.reshape(cols, blocks, block)
    largest = 2 ** (bits - 1) - 1
    scales = np.abs(grouped).max(axis=-1) / largest
    scales[scales == 0] = 1.0
    codes = (np.clip(np.round(grouped / scales[..., None]), -largest, largest) + largest + 1).astype(np.uint8)
    if bits == 4:
        codes = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return codes, scales.reshape(-1).astype(np.float32)


def quantize_matmuls(model: onnx.ModelProto, bits: int = BITS, block: int = BLOCK) -> onnx.ModelProto:
    """A copy of `model` whose MatMuls against constant 2-D weights, but those of a cross-encoder's
    head, run as `MatMulNBits` with `bits`-bit weights (8: the CPU int8; 4 is compared in the int8 bench)."""
    if bits not in (4, 8):
        raise ValueError(f"MatMulNBits weights have 4 or 8 bits here, not {bits}")
    weights = {t.name: t for t in model.graph.initializer}
    nodes, replaced, added = [], set(), []
    for node in model.graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or len(weight.dims) != 2 or weight.name.startswith(HEAD):
            nodes.append(node)
            continue
        rows, cols = weight.dims
        codes, scales = quantize_blockwise(numpy_helper.to_array(weight).astype(np.float32), block, bits)
        names = f"{weight.name}.q{bits}", f"{weight.name}.scale"
        added += [numpy_helper.from_array(codes, names[0]), numpy_helper.from_array(scales, names[1])]
        replaced.add(weight.name)
        nodes.append(helper.make_node("MatMulNBits", [node.input[0], *names], list(node.output), name=node.name,
                                      domain=_MS, K=rows, N=cols, bits=bits, block_size=block, accuracy_level=4))
    graph = helper.make_graph(nodes, model.graph.name, list(model.graph.input), list(model.graph.output),
                              [t for t in model.graph.initializer if t.name not in replaced] + added)
    quantized = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name=model.producer_name)
    quantized.ir_version = model.ir_version
    helper.set_model_props(quantized, {SCHEME_KEY: scheme(bits, block)})
    return quantized
