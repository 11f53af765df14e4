"""Independent float64 numpy reference of the Qwen2 / Qwen3 decoder embedders, one text at a time.

Written from the published maths, not from mlx-lm: RMSNorm, rotate-half RoPE with the config's
theta, grouped key/value heads, q/k/v biases (Qwen2) or per-head q/k RMSNorm (Qwen3), SiLU-gated
MLP, final RMSNorm, hidden state of the last token. A text is run unpadded, so its positions are
0..n-1 and no mask other than causality (or none) applies.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file


def load_checkpoint(folder: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """config.json and the float64 weights with any `model.` prefix removed."""
    config = json.loads((folder / "config.json").read_text())
    weights = {}
    for path in sorted(folder.glob("model*.safetensors")):
        for name, value in load_file(str(path)).items():
            weights[name.removeprefix("model.")] = value.astype(np.float64)
    return config, weights


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rope(x: np.ndarray, theta: float) -> np.ndarray:
    """Rotate-half rotary embedding of (heads, n, d) at positions 0..n-1."""
    n, d = x.shape[-2:]
    inv_freq = theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    angles = np.arange(n, dtype=np.float64)[:, None] * inv_freq[None, :]
    cos = np.cos(np.concatenate([angles, angles], axis=-1))
    sin = np.sin(np.concatenate([angles, angles], axis=-1))
    half = d // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def linear(x: np.ndarray, w: dict[str, np.ndarray], name: str) -> np.ndarray:
    out = x @ w[f"{name}.weight"].T
    bias = w.get(f"{name}.bias")
    return out if bias is None else out + bias


def attention(x: np.ndarray, config: dict, w: dict[str, np.ndarray], p: str) -> np.ndarray:
    n = x.shape[0]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    eps = config["rms_norm_eps"]
    q = linear(x, w, p + "q_proj").reshape(n, heads, head_dim).transpose(1, 0, 2)
    k = linear(x, w, p + "k_proj").reshape(n, kv_heads, head_dim).transpose(1, 0, 2)
    v = linear(x, w, p + "v_proj").reshape(n, kv_heads, head_dim).transpose(1, 0, 2)
    if p + "q_norm.weight" in w:                        # Qwen3: RMSNorm over each head, before RoPE
        q = rms_norm(q, w[p + "q_norm.weight"], eps)
        k = rms_norm(k, w[p + "k_norm.weight"], eps)
    theta = config.get("rope_theta") or config["rope_parameters"]["rope_theta"]
    q, k = rope(q, theta), rope(k, theta)
    group = heads // kv_heads                            # query head h reads kv head h // group
    k, v = np.repeat(k, group, axis=0), np.repeat(v, group, axis=0)
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(head_dim)
    if config.get("is_causal", True):
        scores = np.where(np.tril(np.ones((n, n), dtype=bool)), scores, -np.inf)
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs = scores / scores.sum(axis=-1, keepdims=True)
    ctx = (probs @ v).transpose(1, 0, 2).reshape(n, heads * head_dim)
    return linear(ctx, w, p + "o_proj")


def last_hidden(config: dict, w: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """Final-normed hidden state of the last token of one unpadded text."""
    eps = config["rms_norm_eps"]
    x = w["embed_tokens.weight"][np.asarray(ids)]
    for n in range(config["num_hidden_layers"]):
        p = f"layers.{n}."
        x = x + attention(rms_norm(x, w[p + "input_layernorm.weight"], eps), config, w, p + "self_attn.")
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate, up = linear(h, w, p + "mlp.gate_proj"), linear(h, w, p + "mlp.up_proj")
        x = x + linear(gate / (1.0 + np.exp(-gate)) * up, w, p + "mlp.down_proj")
    return rms_norm(x[-1], w["norm.weight"], eps)


def embed(folder: Path, token_lists: list[list[int]], dim: int | None = None) -> np.ndarray:
    """Unit embeddings (n, dim) of unpadded token id lists: last token, truncate, L2-normalise."""
    config, weights = load_checkpoint(Path(folder))
    out = np.stack([last_hidden(config, weights, ids) for ids in token_lists])
    out = out[:, :dim] if dim else out
    return out / np.linalg.norm(out, axis=-1, keepdims=True)
