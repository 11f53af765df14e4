"""ONNX graphs for the BERT-family encoders (JinaBERT, BERT, NomicBERT) and their cross-encoder
rerankers, built straight from checkpoint weights (no PyTorch).

One graph per model, whatever its pooling:

    inputs   input_ids, attention_mask     int64 [batch, seq]   (either padding side)
    output   last_hidden_state             float32 [batch, seq, hidden]

A cross-encoder (config.json names `*ForSequenceClassification`, MODELS.md §6) also reads the
pair's token types and ends in its head, BERT's pooler (dense + tanh on the first attended token)
and a one-logit classifier:

    inputs   input_ids, token_type_ids, attention_mask   int64 [batch, seq]
    output   logits                                      float32 [batch]   (raw)

Pooling and normalisation stay in numpy (`hhg_mlx.encoder.pool`, shared with every backend):
measured on full-size JinaBERT, 32 x 128 tokens, it costs 0.4 ms of a ~6 s batch, and a pooled
graph output would tie the file to one pooling mode.

Activations flow as a (batch*seq, hidden) matrix, so every projection is one MatMul against a
constant weight (pre-packed by ONNX Runtime, fused with its bias Add into a Gemm, or made an
8-bit `MatMulNBits` by `onnx_int8`). ONNX Runtime's contrib operators do the rest: `MultiHeadAttention`
(key padding mask and, for JinaBERT, the ALiBi bias), `BiasGelu` and `Gelu` (both the exact erf
GELU); residuals use the standard `LayerNormalization`. NomicBERT's rotary positions are standard
operators on q and k, with cos/sin tables computed at run time for the batch's length (float32,
like the original; the dynamic NTK base too).
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hhg_mlx.cross_encoder import check_one_logit
from hhg_mlx.errors import UnsupportedModel
from hhg_mlx.models import nomic_config
from hhg_mlx.models.alibi import alibi_slopes
from hhg_mlx.models.folder import bert_names, is_cross_encoder

OPSET = 17
MS = "com.microsoft"
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "last_hidden_state"
PAIR_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
LOGITS = "logits"
PROTOBUF_LIMIT = 1_900_000_000          # bytes of initializers beyond which weights go to external data
_ONNX_FLOAT = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16}

# The first-layer weight that identifies each layer family (MODELS.md §1, §1.5, §2, §4).
VARIANT_KEYS = {
    "qk-post-norm": "encoder.layer.0.mlp.up_gated_layer.weight",      # jina-embeddings-v2-base-code
    "base-en": "encoder.layer.0.mlp.gated_layers.weight",             # jina-embeddings-v2-small/base-en
    "bert": "encoder.layer.0.intermediate.dense.weight",              # MiniLM, bge, arctic-embed
    "nomic_bert": "encoder.layers.0.attn.Wqkv.weight",                # CodeRankEmbed, nomic-embed-text-v1.5
}
ALIBI_VARIANTS = ("qk-post-norm", "base-en")


def layer_variant(weights: Mapping[str, np.ndarray]) -> str:
    for variant, key in VARIANT_KEYS.items():
        if key in weights:
            return variant
    raise UnsupportedModel("ONNX export supports JinaBERT v2 (qk-post-norm, base-en), BERT and NomicBERT "
                           "checkpoints only")


@dataclass(frozen=True)
class Dims:
    hidden: int
    heads: int
    layers: int
    intermediate: int
    eps: float

    @classmethod
    def from_config(cls, config: Mapping) -> "Dims":
        default_eps = nomic_config.field(config, "layer_norm_epsilon") if config.get("model_type") == "nomic_bert" \
            else 1e-12                                                     # each family's own config default
        config = bert_names(dict(config))
        return cls(config["hidden_size"], config["num_attention_heads"], config["num_hidden_layers"],
                   config["intermediate_size"], float(config.get("layer_norm_eps", default_eps)))

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


class _Graph:
    """Collects nodes and initializers; every `op` returns the name of its (single) output."""

    def __init__(self, weights: Mapping[str, np.ndarray], dtype: np.dtype, dims: Dims) -> None:
        self.weights = weights
        self.dtype = dtype
        self.dims = dims
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._ids = itertools.count()

    def const(self, array: np.ndarray, name: str | None = None) -> str:
        name = name or f"const_{next(self._ids)}"
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def param(self, key: str, rows: slice = slice(None), transpose: bool = False, name: str | None = None) -> str:
        array = np.asarray(self.weights[key])[rows].astype(self.dtype)
        return self.const(array.T if transpose else array, name or key)

    def op(self, op_type: str, *inputs: str, domain: str = "", **attrs) -> str:
        out = f"{op_type}_{next(self._ids)}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, domain=domain, **attrs))
        return out

    # ------------------------------------------------------------ building blocks

    def matmul(self, x: str, key: str, rows: slice = slice(None), name: str | None = None) -> str:
        """x · W[rows]ᵀ for a checkpoint Linear weight W of shape [out, in]."""
        return self.op("MatMul", x, self.param(f"{key}.weight", rows, transpose=True, name=name))

    def linear(self, x: str, key: str, rows: slice = slice(None), part: str | None = None) -> str:
        """x · W[rows]ᵀ + b[rows], the bias only where the checkpoint has one; `part` names the
        constants of a row slice (e.g. "q" of a fused qkv weight)."""
        y = self.matmul(x, key, rows, name=f"{key}.weight.{part}.T" if part else None)
        if f"{key}.bias" not in self.weights:
            return y
        return self.op("Add", y, self.param(f"{key}.bias", rows, name=f"{key}.bias.{part}" if part else None))

    def ints(self, *values: int) -> str:
        return self.const(np.array(values, np.int64))

    def scalar(self, value: float) -> str:
        return self.const(np.array(value, np.float32))

    def layer_norm(self, x: str, key: str) -> str:
        return self.op("LayerNormalization", x, self.param(f"{key}.weight"), self.param(f"{key}.bias"),
                       axis=-1, epsilon=self.dims.eps)

    def add_layer_norm(self, x: str, residual: str, key: str) -> str:
        """LayerNorm(x + residual). Plain Add + LayerNormalization: on the CPU, ONNX Runtime's fused
        SkipLayerNormalization took 5.6% of a JinaBERT forward against 2.4% for these two."""
        return self.layer_norm(self.op("Add", x, residual), key)

    def gelu(self, x: str) -> str:
        return self.op("Gelu", x, domain=MS)


@dataclass(frozen=True)
class _Rotary:
    """Rotary tables for the batch: x·cos + swap_halves(x)·sin_signed is GPT-NeoX's x·cos + (−x₂, x₁)·sin."""

    shape_bshd: str            # [batch, seq, heads, head_dim]
    cos: str                   # [1, seq, 1, head_dim]: cos of each angle, for both halves
    sin_signed: str            # [1, seq, 1, head_dim]: −sin for the first half, +sin for the second


@dataclass(frozen=True)
class _Batch:
    """Graph values every layer uses."""

    shape_bsh: str             # [batch, seq, hidden], for the attention operator's 3-D inputs
    mask: str                  # int32 [batch, seq] key padding mask
    attention_bias: str | None = None  # [1, heads, seq, seq] ALiBi bias (JinaBERT)
    rotary: _Rotary | None = None      # rotary tables (NomicBERT)


def _multi_head(g: _Graph, q: str, k: str, v: str, batch: _Batch) -> str:
    """softmax(q·kᵀ/√d + bias + key padding)·v over the heads, as a [batch*seq, hidden] matrix."""
    inputs = [g.op("Reshape", t, batch.shape_bsh) for t in (q, k, v)] + ["", batch.mask]
    if batch.attention_bias:
        inputs.append(batch.attention_bias)
    ctx = g.op("MultiHeadAttention", *inputs, domain=MS, num_heads=g.dims.heads)
    return g.op("Reshape", ctx, g.ints(-1, g.dims.hidden))


def _attention(g: _Graph, x: str, p: str, batch: _Batch, qk_norm: bool) -> str:
    """Multi-head self-attention up to (not including) the output projection."""
    q, k, v = (g.linear(x, f"{p}attention.self.{name}") for name in ("query", "key", "value"))
    if qk_norm:
        q = g.layer_norm(q, f"{p}attention.self.layer_norm_q")
        k = g.layer_norm(k, f"{p}attention.self.layer_norm_k")
    return _multi_head(g, q, k, v, batch)


def _attention_block(g: _Graph, x: str, p: str, batch: _Batch, qk_norm: bool = False) -> str:
    """LayerNorm(x + attention(x)·Woᵀ + bo)."""
    ctx = _attention(g, x, p, batch, qk_norm)
    return g.add_layer_norm(g.linear(ctx, f"{p}attention.output.dense"), x, f"{p}attention.output.LayerNorm")


def _bert_layer(g: _Graph, x: str, p: str, batch: _Batch) -> str:
    a = _attention_block(g, x, p, batch)
    inner = g.op("BiasGelu", g.matmul(a, f"{p}intermediate.dense"), g.param(f"{p}intermediate.dense.bias"), domain=MS)
    return g.add_layer_norm(g.linear(inner, f"{p}output.dense"), a, f"{p}output.LayerNorm")


def _glu(g: _Graph, x: str, key: str, gelu_first: bool) -> str:
    """The two halves of a [2I, H] gated projection as two GEMMs (no split copy); GELU on one of them."""
    i = g.dims.intermediate
    first = g.matmul(x, key, slice(0, i), name=f"{key}.weight.first.T")
    second = g.matmul(x, key, slice(i, 2 * i), name=f"{key}.weight.second.T")
    return g.op("Mul", g.gelu(first), second) if gelu_first else g.op("Mul", first, g.gelu(second))


def _jina_code_layer(g: _Graph, x: str, p: str, batch: _Batch) -> str:
    """qk-post-norm variant: up * GELU(gate), the layer input added twice (MODELS.md §1)."""
    a = _attention_block(g, x, p, batch, qk_norm=True)
    h = g.add_layer_norm(a, x, f"{p}layer_norm_1")
    m = _glu(g, h, f"{p}mlp.up_gated_layer", gelu_first=False)
    return g.add_layer_norm(g.linear(m, f"{p}mlp.down_layer"), h, f"{p}layer_norm_2")


def _jina_base_layer(g: _Graph, x: str, p: str, batch: _Batch) -> str:
    """base-en variant: GELU(first half) * second half, `mlp.layernorm` post-norm (MODELS.md §1.5)."""
    a = _attention_block(g, x, p, batch)
    m = _glu(g, a, f"{p}mlp.gated_layers", gelu_first=True)
    return g.add_layer_norm(g.linear(m, f"{p}mlp.wo"), a, f"{p}mlp.layernorm")


def _rotate(g: _Graph, x: str, rotary: _Rotary) -> str:
    """Rotary positions on a [batch*seq, hidden] q or k, returned as [batch, seq, heads, head_dim]."""
    x = g.op("Reshape", x, rotary.shape_bshd)
    half, axis = g.dims.head_dim // 2, g.ints(3)
    first = g.op("Slice", x, g.ints(0), g.ints(half), axis)
    second = g.op("Slice", x, g.ints(half), g.ints(2 * half), axis)
    swapped = g.op("Concat", second, first, axis=3)
    return g.op("Add", g.op("Mul", x, rotary.cos), g.op("Mul", swapped, rotary.sin_signed))


def _nomic_layer(g: _Graph, x: str, p: str, batch: _Batch) -> str:
    """NomicBERT block (MODELS.md §4): q, k, v as three GEMMs on the row blocks of the fused Wqkv, rotary
    q and k, post-norm, then norm2(h + fc2(fc11(h) * silu(fc12(h))))."""
    h = g.dims.hidden
    q, k, v = (g.linear(x, f"{p}attn.Wqkv", slice(i * h, (i + 1) * h), part) for i, part in enumerate("qkv"))
    q, k = (_rotate(g, t, batch.rotary) for t in (q, k))
    attended = g.linear(_multi_head(g, q, k, v, batch), f"{p}attn.out_proj")
    h = g.add_layer_norm(attended, x, f"{p}norm1")
    gate = g.linear(h, f"{p}mlp.fc12")
    m = g.op("Mul", g.linear(h, f"{p}mlp.fc11"), g.op("Mul", gate, g.op("Sigmoid", gate)))
    return g.add_layer_norm(g.linear(m, f"{p}mlp.fc2"), h, f"{p}norm2")


_LAYERS: dict[str, Callable[[_Graph, str, str, _Batch], str]] = {
    "qk-post-norm": _jina_code_layer, "base-en": _jina_base_layer, "bert": _bert_layer, "nomic_bert": _nomic_layer}


def _alibi_bias(g: _Graph, seq: str) -> str:
    """-slope_h · |i - j| as [1, heads, seq, seq], built at run time for the batch's length."""
    positions = g.op("Range", g.const(np.array(0, np.int64)), seq, g.const(np.array(1, np.int64)))
    rows = g.op("Unsqueeze", positions, g.const(np.array([1], np.int64)))
    cols = g.op("Unsqueeze", positions, g.const(np.array([0], np.int64)))
    distance = g.op("Cast", g.op("Abs", g.op("Sub", rows, cols)), to=_ONNX_FLOAT[g.dtype])
    slopes = -np.array(alibi_slopes(g.dims.heads)).reshape(1, -1, 1, 1)
    return g.op("Mul", distance, g.const(slopes.astype(g.dtype)))


def _rotary_tables(g: _Graph, shape: str, seq: str, config: Mapping) -> _Rotary:
    """cos/sin of position p times frequency i for p = 0..seq-1, computed in float32 at run time; the
    frequencies are base^(−2i/d), with the dynamic NTK base (`nomic_config.rotary_base`) when the
    config scales: base · max(1, f·S/T − (f − 1))^(d/(d−2))."""
    d = g.dims.head_dim
    exponents = np.arange(0, d, 2, dtype=np.float64) / d
    factor = nomic_config.field(config, "rotary_scaling_factor")
    if factor:
        trained = nomic_config.field(config, "max_trained_positions")
        length = g.op("Cast", seq, to=TensorProto.FLOAT)
        ratio = g.op("Max", g.op("Sub", g.op("Mul", length, g.scalar(factor / trained)), g.scalar(factor - 1)),
                     g.scalar(1))
        log_base = g.op("Add", g.op("Mul", g.op("Log", ratio), g.scalar(d / (d - 2))),
                        g.scalar(np.log(nomic_config.field(config, "rotary_emb_base"))))
        inv_freq = g.op("Exp", g.op("Mul", log_base, g.const(-exponents.astype(np.float32))))
    else:
        inv_freq = g.const(nomic_config.inv_freq(config, seq_len=0).astype(np.float32))   # no scaling: any length
    positions = g.op("Cast", g.op("Range", g.const(np.array(0, np.int64)), seq, g.const(np.array(1, np.int64))),
                     to=TensorProto.FLOAT)
    angles = g.op("Mul", g.op("Unsqueeze", positions, g.ints(1)), g.op("Unsqueeze", inv_freq, g.ints(0)))
    cos, sin = g.op("Cos", angles), g.op("Sin", angles)
    tables = (g.op("Concat", cos, cos, axis=1), g.op("Concat", g.op("Neg", sin), sin, axis=1))
    tables = [g.op("Unsqueeze", t, g.ints(0, 2)) for t in tables]
    if g.dtype != np.float32:
        tables = [g.op("Cast", t, to=_ONNX_FLOAT[g.dtype]) for t in tables]
    shape_bshd = g.op("Concat", g.op("Slice", shape, g.ints(0), g.ints(2)), g.ints(g.dims.heads, d), axis=0)
    return _Rotary(shape_bshd, *tables)


def _embeddings(g: _Graph, variant: str, token_types: bool) -> str:
    """LayerNorm(word[ids] + token_type[types] (+ position[pos])) as a [batch*seq, hidden] matrix.
    Without `token_types` every token has type 0, whose row is folded into the word table (NomicBERT
    may have no token type table)."""
    table = np.asarray(g.weights["embeddings.word_embeddings.weight"], np.float32)
    if not token_types and "embeddings.token_type_embeddings.weight" in g.weights:
        table = table + np.asarray(g.weights["embeddings.token_type_embeddings.weight"][0], np.float32)
    flat = g.const(np.array([-1], np.int64))
    x = g.op("Gather", g.const(table.astype(g.dtype), "embeddings.word_embeddings.weight"),
             g.op("Reshape", "input_ids", flat))
    if token_types:
        x = g.op("Add", x, g.op("Gather", g.param("embeddings.token_type_embeddings.weight"),
                                g.op("Reshape", "token_type_ids", flat)))
    if variant == "bert":
        # absolute positions count attended tokens, so left padding embeds like right padding
        counted = g.op("CumSum", "attention_mask", g.const(np.array(1, np.int64)))
        positions = g.op("Max", g.op("Sub", counted, g.const(np.array(1, np.int64))), g.const(np.array(0, np.int64)))
        x = g.op("Add", x, g.op("Gather", g.param("embeddings.position_embeddings.weight"),
                                g.op("Reshape", positions, flat)))
    return g.layer_norm(x, "emb_ln" if variant == "nomic_bert" else "embeddings.LayerNorm")


def _classifier(g: _Graph, x: str, batch: _Batch, shape: str, seq: str) -> str:
    """classifier(tanh(pooler.dense(h))) for h the first attended token of each row: [batch] logits."""
    first = g.op("ArgMax", batch.mask, axis=1, keepdims=0)              # first 1 of each mask row
    rows = g.op("Range", g.const(np.array(0, np.int64)), g.op("Gather", shape, g.const(np.array(0, np.int64))),
                g.const(np.array(1, np.int64)))
    pooled = g.op("Tanh", g.linear(g.op("Gather", x, g.op("Add", g.op("Mul", rows, seq), first)), "pooler.dense"))
    return g.op("Reshape", g.linear(pooled, "classifier"), g.const(np.array([-1], np.int64)))


def build_graph(weights: Mapping[str, np.ndarray], config: Mapping, dtype: str = "float32") -> onnx.ModelProto:
    """The encoder (or cross-encoder, with its head) as an ONNX model computing in `dtype` ("float32",
    or "float16" for CUDA)."""
    variant = layer_variant(weights)
    if variant == "nomic_bert":
        nomic_config.check_supported(config)
    pairs = is_cross_encoder(config)
    if pairs:
        check_one_logit(weights, config)
    g = _Graph(weights, np.dtype(dtype), Dims.from_config(config))
    shape = g.op("Shape", "input_ids")
    seq = g.op("Gather", shape, g.const(np.array(1, np.int64)))
    batch = _Batch(shape_bsh=g.op("Concat", shape, g.const(np.array([g.dims.hidden], np.int64)), axis=0),
                   mask=g.op("Cast", "attention_mask", to=TensorProto.INT32),
                   attention_bias=_alibi_bias(g, seq) if variant in ALIBI_VARIANTS else None,
                   rotary=_rotary_tables(g, shape, seq, config) if variant == "nomic_bert" else None)
    x = _embeddings(g, variant, token_types=pairs)
    layers = "encoder.layers.{}." if variant == "nomic_bert" else "encoder.layer.{}."
    for n in range(g.dims.layers):
        x = _LAYERS[variant](g, x, layers.format(n), batch)
    out = _classifier(g, x, batch, shape, seq) if pairs else g.op("Reshape", x, batch.shape_bsh)
    if g.dtype != np.float32:
        out = g.op("Cast", out, to=TensorProto.FLOAT)
    name, inputs, out_axes = (LOGITS, PAIR_INPUTS, ["batch"]) if pairs else \
        (OUTPUT, INPUTS, ["batch", "sequence", g.dims.hidden])
    g.nodes.append(helper.make_node("Identity", [out], [name], name=name))

    graph = helper.make_graph(
        g.nodes, f"hhg-{variant}" + ("-cross-encoder" if pairs else ""),
        [helper.make_tensor_value_info(i, TensorProto.INT64, ["batch", "sequence"]) for i in inputs],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, out_axes)],
        g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS, 1)],
                              producer_name="hhg")
    model.ir_version = 8
    return model


def save_model(model: onnx.ModelProto, path: Path) -> None:
    """Save, moving the weights to `<name>.data` when they would break protobuf's 2 GB limit."""
    external = sum(t.ByteSize() for t in model.graph.initializer) > PROTOBUF_LIMIT
    onnx.save_model(model, str(path), save_as_external_data=external, all_tensors_to_one_file=True,
                    location=f"{path.name}.data")
