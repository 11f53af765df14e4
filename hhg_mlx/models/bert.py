"""BERT encoders in MLX (all-MiniLM-L6-v2, bge-small, snowflake-arctic-embed, …), MODELS.md §2.

Module attribute names mirror the checkpoint keys; `sanitize` maps a Hugging Face state dict
onto them. The attention blocks here are shared with `jinabert.py`.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

from ..mlx_runtime import mx, nn


class BaseModelArgs:
    """`from_dict`: a dataclass of config.json fields, built from the whole config (other keys ignored)."""

    @classmethod
    def from_dict(cls, params: dict):
        fields = inspect.signature(cls).parameters
        return cls(**{k: v for k, v in params.items() if k in fields})


@dataclass
class ModelArgs(BaseModelArgs):
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    vocab_size: int = 30522
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0


def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    """Checkpoint names → module names: strip `bert.`, drop the pooler, MLM head and position_ids."""
    out = {}
    for name, value in weights.items():
        name = name.removeprefix("bert.")
        if name.startswith(("pooler.", "cls.")) or name.endswith("position_ids"):
            continue
        out[name] = value
    return out


def token_types(table: nn.Embedding, token_type_ids: mx.array | None) -> mx.array:
    """The token type embeddings to add: row 0 for every token of a single text (`None`), else the
    rows the ids name (a cross-encoder pair: the tokenizer gives the second segment its own type)."""
    return table.weight[0] if token_type_ids is None else table(token_type_ids)


def padding_bias(attention_mask: mx.array, dtype: mx.Dtype) -> mx.array:
    """(B, 1, 1, S) additive bias that hides padded keys."""
    return mx.where(attention_mask[:, None, None, :] > 0, 0.0, -1e9).astype(dtype)


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, eps: float, qk_norm: bool = False):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        if qk_norm:
            # JinaBERT qk-post-norm: q and k normalised over the full width, before the head split
            self.layer_norm_q = nn.LayerNorm(hidden, eps=eps)
            self.layer_norm_k = nn.LayerNorm(hidden, eps=eps)

    def __call__(self, x: mx.array, bias: mx.array) -> mx.array:
        q, k, v = self.query(x), self.key(x), self.value(x)
        if "layer_norm_q" in self:
            q, k = self.layer_norm_q(q), self.layer_norm_k(k)
        b, s, h = x.shape
        d = h // self.heads
        q, k, v = (t.reshape(b, s, self.heads, d).transpose(0, 2, 1, 3) for t in (q, k, v))
        # sdpa adds `mask` after the 1/sqrt(d) scaling, so an ALiBi bias stays unscaled
        ctx = mx.fast.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(d), mask=bias)
        return ctx.transpose(0, 2, 1, 3).reshape(b, s, h)


class DenseLayerNorm(nn.Module):
    """`LayerNorm(dense(x) + residual)`: BERT's attention.output and output blocks."""

    def __init__(self, in_dim: int, hidden: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(in_dim, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def __call__(self, x: mx.array, residual: mx.array) -> mx.array:
        return self.LayerNorm(self.dense(x) + residual)


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, eps: float, qk_norm: bool = False):
        super().__init__()
        self.self = SelfAttention(hidden, heads, eps, qk_norm)
        self.output = DenseLayerNorm(hidden, hidden, eps)

    def __call__(self, x: mx.array, bias: mx.array) -> mx.array:
        return self.output(self.self(x, bias), x)


class Intermediate(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.dense = nn.Linear(args.hidden_size, args.intermediate_size)

    def __call__(self, x: mx.array) -> mx.array:
        return nn.gelu(self.dense(x))          # exact erf GELU


class Layer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention = Attention(args.hidden_size, args.num_attention_heads, args.layer_norm_eps)
        self.intermediate = Intermediate(args)
        self.output = DenseLayerNorm(args.intermediate_size, args.hidden_size, args.layer_norm_eps)

    def __call__(self, x: mx.array, bias: mx.array) -> mx.array:
        a = self.attention(x, bias)
        return self.output(self.intermediate(a), a)


class Embeddings(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.word_embeddings = nn.Embedding(args.vocab_size, args.hidden_size)
        self.position_embeddings = nn.Embedding(args.max_position_embeddings, args.hidden_size)
        self.token_type_embeddings = nn.Embedding(args.type_vocab_size, args.hidden_size)
        self.LayerNorm = nn.LayerNorm(args.hidden_size, eps=args.layer_norm_eps)

    def __call__(self, input_ids: mx.array, attention_mask: mx.array, token_type_ids: mx.array | None = None) -> mx.array:
        # positions count attended tokens, so left and right padding give the same result
        positions = mx.maximum(mx.cumsum(attention_mask.astype(mx.int32), axis=1) - 1, 0)
        x = (self.word_embeddings(input_ids) + self.position_embeddings(positions)
             + token_types(self.token_type_embeddings, token_type_ids))
        return self.LayerNorm(x)


class Encoder(nn.Module):
    """`encoder.layer.N`: the stack of layers, each called as layer(x, attention_bias)."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layer = layers

    def __call__(self, x: mx.array, bias: mx.array) -> mx.array:
        for layer in self.layer:
            x = layer(x, bias)
        return x


class Model(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.embeddings = Embeddings(args)
        self.encoder = Encoder([Layer(args) for _ in range(args.num_hidden_layers)])

    def __call__(self, input_ids: mx.array, attention_mask: mx.array, token_type_ids: mx.array | None = None) -> mx.array:
        """Last hidden states (B, S, H)."""
        x = self.embeddings(input_ids, attention_mask, token_type_ids)
        return self.encoder(x, padding_bias(attention_mask, x.dtype))

    sanitize = staticmethod(sanitize)
