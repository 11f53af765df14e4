"""NomicBERT in MLX: nomic-ai/CodeRankEmbed and nomic-ai/nomic-embed-text-v1.5 (MODELS.md §4).

No position table: rotary positions (GPT-NeoX rotate-half layout over the whole head, with dynamic
NTK scaling past `max_trained_positions` when `rotary_scaling_factor` is set); one fused `Wqkv`
projection; post-norm layers with a SwiGLU feed-forward, `fc2(fc11(h) * silu(fc12(h)))` (fc12 is
the gate). Module attribute names mirror the checkpoint keys (`emb_ln`, `encoder.layers.N.attn.Wqkv`,
`mlp.fc11`, `norm1`, …), so weights load by name after `sanitize`. What the published models do not
use (pre-norm, GELU feed-forwards, interleaved or partial rotary) is refused with a one-line error
naming the config field (`nomic_config.check_supported`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..mlx_runtime import mx, nn
from . import bert, nomic_config


@dataclass
class ModelArgs(bert.BaseModelArgs):
    """config.json's own fields; the defaults are the original code's (`nomic_config.DEFAULTS`)."""

    n_embd: int = 768
    n_head: int = 12
    n_inner: int | None = None           # MLP width; `checkpoint_args` takes it from the weights
    n_layer: int = 12
    vocab_size: int = 50257              # rows of the word table; `checkpoint_args` takes it from the weights
    type_vocab_size: int = 2
    layer_norm_epsilon: float = 1e-5
    n_positions: int = 1024
    max_trained_positions: int = 2048
    rotary_emb_base: float = 10_000
    rotary_emb_fraction: float = 0.0
    rotary_emb_interleaved: bool = False
    rotary_emb_scale_base: float | None = None
    rotary_scaling_factor: float | None = None
    qkv_proj_bias: bool = True
    mlp_fc1_bias: bool = True
    mlp_fc2_bias: bool = True
    prenorm: bool = False
    causal: bool = False
    activation_function: str = "gelu_new"

    def __post_init__(self) -> None:
        nomic_config.check_supported(vars(self))


def checkpoint_args(config: dict, weights: Mapping[str, mx.array]) -> ModelArgs:
    """`ModelArgs` for a checkpoint: config.json's fields, with the vocabulary and MLP widths the
    weights have (the original code pads `vocab_size` to `pad_vocab_size_multiple` and rounds
    `n_inner` up to a multiple of 256 before it builds the model; the weights already are that)."""
    weights = bert.sanitize(weights)
    return ModelArgs.from_dict({**config, "vocab_size": weights["embeddings.word_embeddings.weight"].shape[0],
                                "n_inner": weights["encoder.layers.0.mlp.fc11.weight"].shape[0]})


def rotary_tables(args: ModelArgs, seq_len: int, dtype: mx.Dtype) -> tuple[mx.array, mx.array]:
    """(cos, sin), each (seq_len, head_dim): the angle of position p and frequency i, repeated for
    the two halves of a head. Computed in float64 from positions 0..seq_len-1 of the padded row
    (rotary attention depends only on position differences, so the padding side does not matter)."""
    angles = np.outer(np.arange(seq_len, dtype=np.float64), nomic_config.inv_freq(vars(args), seq_len))
    angles = np.concatenate([angles, angles], axis=-1)
    return mx.array(np.cos(angles), dtype=dtype), mx.array(np.sin(angles), dtype=dtype)


def rotate(x: mx.array, cos: mx.array, sin: mx.array) -> mx.array:
    """GPT-NeoX rotary positions on (B, heads, S, d): x·cos + (−x₂, x₁)·sin for the halves x₁, x₂."""
    x1, x2 = mx.split(x, 2, axis=-1)
    return x * cos + mx.concatenate([-x2, x1], axis=-1) * sin


class Embeddings(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.word_embeddings = nn.Embedding(args.vocab_size, args.n_embd)
        if args.type_vocab_size > 0:
            self.token_type_embeddings = nn.Embedding(args.type_vocab_size, args.n_embd)

    def __call__(self, input_ids: mx.array) -> mx.array:
        x = self.word_embeddings(input_ids)
        if "token_type_embeddings" in self:      # every token has token type 0
            x = x + self.token_type_embeddings.weight[0]
        return x


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.heads = args.n_head
        self.Wqkv = nn.Linear(args.n_embd, 3 * args.n_embd, bias=args.qkv_proj_bias)
        self.out_proj = nn.Linear(args.n_embd, args.n_embd, bias=args.qkv_proj_bias)

    def __call__(self, x: mx.array, bias: mx.array, cos: mx.array, sin: mx.array) -> mx.array:
        b, s, h = x.shape
        d = h // self.heads
        # Wqkv rows: all heads' q, then k, then v
        q, k, v = self.Wqkv(x).reshape(b, s, 3, self.heads, d).transpose(2, 0, 3, 1, 4)
        ctx = mx.fast.scaled_dot_product_attention(rotate(q, cos, sin), rotate(k, cos, sin), v,
                                                   scale=1.0 / math.sqrt(d), mask=bias)
        return self.out_proj(ctx.transpose(0, 2, 1, 3).reshape(b, s, h))


class SwiGLU(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.fc11 = nn.Linear(args.n_embd, args.n_inner, bias=args.mlp_fc1_bias)
        self.fc12 = nn.Linear(args.n_embd, args.n_inner, bias=args.mlp_fc1_bias)
        self.fc2 = nn.Linear(args.n_inner, args.n_embd, bias=args.mlp_fc2_bias)

    def __call__(self, h: mx.array) -> mx.array:
        return self.fc2(self.fc11(h) * nn.silu(self.fc12(h)))


class Block(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attn = Attention(args)
        self.mlp = SwiGLU(args)
        self.norm1 = nn.LayerNorm(args.n_embd, eps=args.layer_norm_epsilon)
        self.norm2 = nn.LayerNorm(args.n_embd, eps=args.layer_norm_epsilon)

    def __call__(self, x: mx.array, bias: mx.array, cos: mx.array, sin: mx.array) -> mx.array:
        h = self.norm1(x + self.attn(x, bias, cos, sin))
        return self.norm2(h + self.mlp(h))


class Encoder(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.layers = [Block(args) for _ in range(args.n_layer)]


class Model(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.embeddings = Embeddings(args)
        self.emb_ln = nn.LayerNorm(args.n_embd, eps=args.layer_norm_epsilon)
        self.encoder = Encoder(args)

    def __call__(self, input_ids: mx.array, attention_mask: mx.array) -> mx.array:
        """Last hidden states (B, S, H) for right- or left-padded ids."""
        x = self.emb_ln(self.embeddings(input_ids))
        bias = bert.padding_bias(attention_mask, x.dtype)
        cos, sin = rotary_tables(self.args, input_ids.shape[1], x.dtype)
        for layer in self.encoder.layers:
            x = layer(x, bias, cos, sin)
        return x

    sanitize = staticmethod(bert.sanitize)

