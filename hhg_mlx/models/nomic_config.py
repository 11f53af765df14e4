"""NomicBERT's config.json without MLX: which of its features hhg runs, the rotary frequencies and
the input length limit. Shared by the MLX model (`models/nomic_bert.py`), the ONNX graph builder
(`convert/onnx_graph.py`) and the folder settings (`models/folder.py`); MODELS.md §4.

A field missing from config.json means what it means to the original code (`NomicBertConfig`, a
`GPT2Config`): the `DEFAULTS` below.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import UnsupportedModel

DEFAULTS = {
    "n_embd": 768, "n_head": 12, "n_inner": None, "n_layer": 12, "n_positions": 1024, "vocab_size": 50257,
    "pad_vocab_size_multiple": 1, "type_vocab_size": 2, "layer_norm_epsilon": 1e-5,
    "activation_function": "gelu_new", "prenorm": False, "causal": False,
    "qkv_proj_bias": True, "mlp_fc1_bias": True, "mlp_fc2_bias": True,
    "rotary_emb_base": 10_000, "rotary_emb_fraction": 0.0, "rotary_emb_interleaved": False,
    "rotary_emb_scale_base": None, "rotary_scaling_factor": None, "max_trained_positions": 2048,
}
# field -> (the value hhg runs, what that means); every published NomicBERT embedder uses these
SUPPORTED = {
    "prenorm": (False, "post-norm layers"),
    "causal": (False, "bidirectional attention"),
    "activation_function": ("swiglu", "the SwiGLU feed-forward"),
    "rotary_emb_fraction": (1.0, "rotary positions over the whole head"),
    "rotary_emb_interleaved": (False, "GPT-NeoX (rotate-half) rotary positions"),
    "rotary_emb_scale_base": (None, "rotary positions without xPos scaling"),
}


def field(config: Mapping, name: str):
    """`config[name]`, or the original code's default when config.json leaves it out."""
    return config.get(name, DEFAULTS[name])


def check_supported(config: Mapping) -> None:
    """Raise `UnsupportedModel` naming the first field whose value hhg does not implement."""
    for name, (wanted, meaning) in SUPPORTED.items():
        value = field(config, name)
        if value != wanted:
            raise UnsupportedModel(f"NomicBERT with {name}={value!r} is not supported "
                                   f"(hhg runs {meaning}: {name}={wanted!r})")


def rotary_base(config: Mapping, seq_len: int) -> float:
    """The rotary base for a (padded) batch of `seq_len` tokens. With `rotary_scaling_factor` f set,
    past `max_trained_positions` T it grows (dynamic NTK): base · (f·S/T − (f − 1))^(d/(d−2))."""
    base, factor = float(field(config, "rotary_emb_base")), field(config, "rotary_scaling_factor")
    trained = field(config, "max_trained_positions")
    if not factor or seq_len <= trained:
        return base
    d = head_dim(config)
    return base * (factor * seq_len / trained - (factor - 1)) ** (d / (d - 2))


def inv_freq(config: Mapping, seq_len: int) -> np.ndarray:
    """float64 (head_dim / 2,) rotary frequencies base^(−2i/d) for a batch of `seq_len` tokens."""
    d = head_dim(config)
    return rotary_base(config, seq_len) ** (-np.arange(0, d, 2, dtype=np.float64) / d)


def head_dim(config: Mapping) -> int:
    return field(config, "n_embd") // field(config, "n_head")


def max_input_length(config: Mapping) -> int:
    """The longest input hhg feeds: `n_positions` when dynamic NTK scaling extends the rotary
    positions (`rotary_scaling_factor`), else `max_trained_positions` (the published configs
    have no scaling factor: their positions past 2,048 were never trained)."""
    limit = field(config, "n_positions")
    if not field(config, "rotary_scaling_factor"):
        limit = min(limit, field(config, "max_trained_positions"))
    return limit
