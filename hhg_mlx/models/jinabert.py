"""JinaBERT v2 in MLX: jina-embeddings-v2-base-code (the "qk-post-norm" variant) and
jina-embeddings-v2-small/base-en (the "base-en" variant, `jina-bert-implementation`).

Module attribute names mirror the checkpoint keys, so `model.load_weights(list(weights.items()))`
works after `sanitize`. The maths is MODELS.md §1 / §1.5: no position table, ALiBi plus the
padding mask as one additive attention bias, exact-erf GELU in a GLU feed-forward.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable

from ..errors import UnsupportedModel
from ..mlx_runtime import mx, nn
from . import bert
from .alibi import alibi_slopes
from .bert import Attention, Encoder

QK_POST_NORM = "qk-post-norm"
BASE_EN = "base-en"
_VARIANT_MARKERS = (("jina-bert-v2-qk-post-norm", QK_POST_NORM), ("jina-bert-implementation", BASE_EN))


@dataclass
class ModelArgs(bert.ModelArgs):
    vocab_size: int = 61056
    max_position_embeddings: int = 8192      # unused: ALiBi needs no position table
    variant: str = QK_POST_NORM              # not a config.json field: set from `detect_variant`


def detect_variant(config: dict, weight_names: Iterable[str] = ()) -> str:
    """Which JinaBERT: from `_name_or_path`/`auto_map` in config.json, else from the weight names."""
    described = json.dumps([config.get("_name_or_path", ""), config.get("auto_map", {})])
    for marker, variant in _VARIANT_MARKERS:
        if marker in described:
            return variant
    for name in weight_names:
        if ".layer_norm_q." in name or ".up_gated_layer." in name:
            return QK_POST_NORM
        if ".mlp.gated_layers." in name:
            return BASE_EN
    raise UnsupportedModel("config.json and weights do not match a known JinaBERT variant "
                           "(expected jina-bert-v2-qk-post-norm or jina-bert-implementation)")


def attention_bias(attention_mask: mx.array, heads: int, dtype: mx.Dtype) -> mx.array:
    """(B, heads, S, S) additive bias: -slope·|i-j| (symmetric ALiBi) plus -1e9 on padded keys."""
    positions = mx.arange(attention_mask.shape[1])
    distance = mx.abs(positions[:, None] - positions[None, :]).astype(mx.float32)
    alibi = -mx.array(alibi_slopes(heads))[:, None, None] * distance
    return (alibi[None] + bert.padding_bias(attention_mask, mx.float32)).astype(dtype)


class Embeddings(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.word_embeddings = nn.Embedding(args.vocab_size, args.hidden_size)
        self.token_type_embeddings = nn.Embedding(args.type_vocab_size, args.hidden_size)
        self.LayerNorm = nn.LayerNorm(args.hidden_size, eps=args.layer_norm_eps)

    def __call__(self, input_ids: mx.array, token_type_ids: mx.array | None = None) -> mx.array:
        # no position table (ALiBi); token type 0 unless a cross-encoder pair gives the types
        return self.LayerNorm(self.word_embeddings(input_ids) + bert.token_types(self.token_type_embeddings, token_type_ids))


class GatedMLP(nn.Module):
    """qk-post-norm feed-forward: up_gated_layer → (first half) * GELU(second half) → down_layer."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.up_gated_layer = nn.Linear(args.hidden_size, 2 * args.intermediate_size, bias=False)
        self.down_layer = nn.Linear(args.intermediate_size, args.hidden_size)

    def __call__(self, h: mx.array) -> mx.array:
        up, gate = mx.split(self.up_gated_layer(h), 2, axis=-1)
        return self.down_layer(up * nn.gelu(gate))


class GLUMLP(nn.Module):
    """base-en feed-forward with its own residual LayerNorm: GELU(first half) * second half."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.gated_layers = nn.Linear(args.hidden_size, 2 * args.intermediate_size, bias=False)
        self.wo = nn.Linear(args.intermediate_size, args.hidden_size)
        self.layernorm = nn.LayerNorm(args.hidden_size, eps=args.layer_norm_eps)

    def __call__(self, a: mx.array) -> mx.array:
        gated, plain = mx.split(self.gated_layers(a), 2, axis=-1)
        return self.layernorm(self.wo(nn.gelu(gated) * plain) + a)


class Layer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        qk_norm = args.variant == QK_POST_NORM
        self.attention = Attention(args.hidden_size, args.num_attention_heads, args.layer_norm_eps, qk_norm)
        if qk_norm:
            self.layer_norm_1 = nn.LayerNorm(args.hidden_size, eps=args.layer_norm_eps)
            self.mlp = GatedMLP(args)
            self.layer_norm_2 = nn.LayerNorm(args.hidden_size, eps=args.layer_norm_eps)
        else:
            self.mlp = GLUMLP(args)

    def __call__(self, x: mx.array, bias: mx.array) -> mx.array:
        a = self.attention(x, bias)
        if "layer_norm_1" not in self:
            return self.mlp(a)
        h = self.layer_norm_1(x + a)            # the layer input is added a second time
        return self.layer_norm_2(h + self.mlp(h))


class Model(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.embeddings = Embeddings(args)
        self.encoder = Encoder([Layer(args) for _ in range(args.num_hidden_layers)])

    def __call__(self, input_ids: mx.array, attention_mask: mx.array, token_type_ids: mx.array | None = None) -> mx.array:
        """Last hidden states (B, S, H) for right- or left-padded ids."""
        x = self.embeddings(input_ids, token_type_ids)
        return self.encoder(x, attention_bias(attention_mask, self.args.num_attention_heads, x.dtype))

    sanitize = staticmethod(bert.sanitize)
