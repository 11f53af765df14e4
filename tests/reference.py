"""Independent float64 NumPy reference forwards for JinaBERT (qk-post-norm and base-en), BERT and
NomicBERT, and the cross-encoder heads of the first two.

Written straight from MODELS.md §1, §1.5, §2, §4 and §6; shares no code with `hhg_mlx`: it reads the
safetensors file itself, tells the architecture from config.json and the weight names, and pools
and normalises on its own. Slow and exact; meant for tiny models (and MiniLM).

    reference_embed(model_dir, input_ids, attention_mask) -> (B, H) float64 unit vectors
    reference_logits(model_dir, input_ids, token_type_ids, attention_mask) -> (B,) float64 raw logits
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a .safetensors file as float64 (integers stay int64)."""
    raw = Path(path).read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + size])
    body = memoryview(raw)[8 + size:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        buf, kind = body[start:end], info["dtype"]
        if kind == "BF16":
            array = (np.frombuffer(buf, "<u2").astype(np.uint32) << 16).view(np.float32)
        elif kind in ("F32", "F16", "F64", "I64", "I32"):
            array = np.frombuffer(buf, {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4"}[kind])
        else:
            raise ValueError(f"unsupported dtype {kind} for {name}")
        out[name] = array.astype(np.int64 if kind.startswith("I") else np.float64).reshape(info["shape"])
    return out


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU: x * Phi(x) with the error function."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def layer_norm(x: np.ndarray, w: dict, name: str, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w[f"{name}.weight"] + w[f"{name}.bias"]


def linear(x: np.ndarray, w: dict, name: str) -> np.ndarray:
    y = x @ w[f"{name}.weight"].T
    bias = w.get(f"{name}.bias")
    return y if bias is None else y + bias


def alibi_slopes(heads: int) -> np.ndarray:
    """Press et al.: geometric slopes for a power of two; otherwise the power-of-two set below
    `heads`, then every other slope of the next power of two."""
    def geometric(n: int) -> list[float]:
        return [2.0 ** (-8.0 * (k + 1) / n) for k in range(n)]
    p = 2 ** int(math.floor(math.log2(heads)))
    slopes = geometric(p)
    if p < heads:
        slopes += geometric(2 * p)[0::2][: heads - p]
    return np.array(slopes)


def attention(x: np.ndarray, q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int,
              bias: np.ndarray) -> np.ndarray:
    """Multi-head softmax(q k^T / sqrt(d) + bias) v; bias broadcasts to (B, heads, S, S)."""
    b, s, h = x.shape
    d = h // heads
    split = lambda t: t.reshape(b, s, heads, d).transpose(0, 2, 1, 3)  # noqa: E731
    scores = split(q) @ split(k).transpose(0, 1, 3, 2) / math.sqrt(d) + bias
    scores -= scores.max(-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(-1, keepdims=True)
    return (probs @ split(v)).transpose(0, 2, 1, 3).reshape(b, s, h)


def jinabert_hidden(w: dict, cfg: dict, ids: np.ndarray, mask: np.ndarray, swap_glu: bool = False,
                    types: np.ndarray | int = 0) -> np.ndarray:
    eps, heads, inter = cfg["layer_norm_eps"], cfg["num_attention_heads"], cfg["intermediate_size"]
    qk_post_norm = "encoder.layer.0.attention.self.layer_norm_q.weight" in w
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.token_type_embeddings.weight"][types]
    x = layer_norm(x, w, "embeddings.LayerNorm", eps)
    s = ids.shape[1]
    pos = np.arange(s)
    alibi = -alibi_slopes(heads)[:, None, None] * np.abs(pos[None, :, None] - pos[None, None, :])
    bias = alibi[None] + np.where(mask[:, None, None, :] > 0, 0.0, -1e9)
    for n in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{n}."
        q, k = linear(x, w, p + "attention.self.query"), linear(x, w, p + "attention.self.key")
        v = linear(x, w, p + "attention.self.value")
        if qk_post_norm:
            q = layer_norm(q, w, p + "attention.self.layer_norm_q", eps)
            k = layer_norm(k, w, p + "attention.self.layer_norm_k", eps)
        ctx = attention(x, q, k, v, heads, bias)
        a = layer_norm(linear(ctx, w, p + "attention.output.dense") + x, w, p + "attention.output.LayerNorm", eps)
        if qk_post_norm:
            h = layer_norm(x + a, w, p + "layer_norm_1", eps)          # the layer input, added again
            u = h @ w[p + "mlp.up_gated_layer.weight"].T
            up, gate = (u[..., inter:], u[..., :inter]) if swap_glu else (u[..., :inter], u[..., inter:])
            m = linear(up * gelu(gate), w, p + "mlp.down_layer")
            x = layer_norm(h + m, w, p + "layer_norm_2", eps)
        else:
            u = a @ w[p + "mlp.gated_layers.weight"].T
            gated, plain = (u[..., inter:], u[..., :inter]) if swap_glu else (u[..., :inter], u[..., inter:])
            m = linear(gelu(gated) * plain, w, p + "mlp.wo")
            x = layer_norm(m + a, w, p + "mlp.layernorm", eps)
    return x


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def rotary(t: np.ndarray, angles: np.ndarray, interleaved: bool = False) -> np.ndarray:
    """Rotate (B, S, heads, d) by `angles` (S, d/2): GPT-NeoX pairs dimension i with i + d/2;
    `interleaved` (GPT-J, which NomicBERT does not use) pairs 2i with 2i + 1."""
    cos, sin = np.cos(angles)[None, :, None, :], np.sin(angles)[None, :, None, :]
    half = t.shape[-1] // 2
    out = np.empty_like(t)
    if interleaved:
        x1, x2 = t[..., 0::2], t[..., 1::2]
        out[..., 0::2], out[..., 1::2] = x1 * cos - x2 * sin, x2 * cos + x1 * sin
    else:
        x1, x2 = t[..., :half], t[..., half:]
        out[..., :half], out[..., half:] = x1 * cos - x2 * sin, x2 * cos + x1 * sin
    return out


def nomic_hidden(w: dict, cfg: dict, ids: np.ndarray, mask: np.ndarray, *, swap_gate: bool = False,
                 interleaved: bool = False, rotary_base: float | None = None) -> np.ndarray:
    """NomicBERT (MODELS.md §4): rotary positions 0..S-1 of the padded row, fused Wqkv, post-norm,
    fc2(fc11(h) * silu(fc12(h))); dynamic NTK base past max_trained_positions when configured.
    `swap_gate`, `interleaved` and `rotary_base` deliberately get a detail wrong, for guard tests."""
    eps, heads, hidden = cfg["layer_norm_epsilon"], cfg["n_head"], cfg["n_embd"]
    b, s = ids.shape
    d = hidden // heads
    x = w["embeddings.word_embeddings.weight"][ids]
    if "embeddings.token_type_embeddings.weight" in w:
        x = x + w["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, w, "emb_ln", eps)
    base = float(rotary_base or cfg["rotary_emb_base"])
    factor, trained = cfg.get("rotary_scaling_factor"), cfg.get("max_trained_positions", 2048)
    if factor and s > trained:
        base *= (factor * s / trained - (factor - 1)) ** (d / (d - 2))
    angles = np.arange(s)[:, None] / base ** (np.arange(0, d, 2) / d)[None, :]
    bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e9)
    for n in range(cfg["n_layer"]):
        p = f"encoder.layers.{n}."
        qkv = linear(x, w, p + "attn.Wqkv")
        q, k, v = (qkv[..., i * hidden:(i + 1) * hidden] for i in range(3))
        q, k = (rotary(t.reshape(b, s, heads, d), angles, interleaved).reshape(b, s, hidden) for t in (q, k))
        h = layer_norm(x + linear(attention(x, q, k, v, heads, bias), w, p + "attn.out_proj"), w, p + "norm1", eps)
        up, gate = linear(h, w, p + "mlp.fc11"), linear(h, w, p + "mlp.fc12")
        if swap_gate:
            up, gate = gate, up
        x = layer_norm(h + linear(up * silu(gate), w, p + "mlp.fc2"), w, p + "norm2", eps)
    return x


def bert_hidden(w: dict, cfg: dict, ids: np.ndarray, mask: np.ndarray, types: np.ndarray | int = 0) -> np.ndarray:
    eps, heads = cfg["layer_norm_eps"], cfg["num_attention_heads"]
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)           # count attended tokens: padding-side free
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][positions]
         + w["embeddings.token_type_embeddings.weight"][types])
    x = layer_norm(x, w, "embeddings.LayerNorm", eps)
    bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e9)
    for n in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{n}."
        q, k, v = (linear(x, w, p + f"attention.self.{t}") for t in ("query", "key", "value"))
        ctx = attention(x, q, k, v, heads, bias)
        a = layer_norm(linear(ctx, w, p + "attention.output.dense") + x, w, p + "attention.output.LayerNorm", eps)
        m = linear(gelu(linear(a, w, p + "intermediate.dense")), w, p + "output.dense")
        x = layer_norm(m + a, w, p + "output.LayerNorm", eps)
    return x


def reference_pooling(model_dir: Path) -> str:
    """sentence-transformers' 1_Pooling/config.json if present, else the config's emb_pooler, else mean."""
    pooling_file = Path(model_dir) / "1_Pooling" / "config.json"
    if pooling_file.exists():
        flags = json.loads(pooling_file.read_text())
        for key, name in (("pooling_mode_cls_token", "cls"), ("pooling_mode_lasttoken", "last"),
                          ("pooling_mode_mean_tokens", "mean")):
            if flags.get(key):
                return name
    return json.loads((Path(model_dir) / "config.json").read_text()).get("emb_pooler", "mean")


def reference_embed(model_dir: str | Path, input_ids, attention_mask, *, pooling: str | None = None,
                    swap_glu: bool = False, matryoshka_dim: int | None = None, **nomic_faults) -> np.ndarray:
    """Pooled, L2-normalised float64 embeddings. `swap_glu` deliberately swaps the GLU halves
    (JinaBERT) or fc11 and fc12 (NomicBERT) so tests can show their tolerance catches that bug;
    `nomic_faults` are `nomic_hidden`'s other deliberate errors. `matryoshka_dim`: the
    nomic-embed-text-v1.5 recipe (layer norm without affine, eps 1e-5, then truncate)."""
    model_dir = Path(model_dir)
    cfg = json.loads((model_dir / "config.json").read_text())
    weights = read_safetensors(model_dir / "model.safetensors")
    weights = {name.removeprefix("bert."): value for name, value in weights.items()}
    ids, mask = np.asarray(input_ids, dtype=np.int64), np.asarray(attention_mask, dtype=np.int64)
    if cfg.get("model_type") == "nomic_bert":
        hidden = nomic_hidden(weights, cfg, ids, mask, swap_gate=swap_glu, **nomic_faults)
    elif cfg.get("position_embedding_type") == "alibi":
        hidden = jinabert_hidden(weights, cfg, ids, mask, swap_glu)
    else:
        hidden = bert_hidden(weights, cfg, ids, mask)
    pooling = pooling or reference_pooling(model_dir)
    rows = np.arange(len(ids))
    if pooling == "mean":
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    elif pooling == "cls":
        pooled = hidden[rows, np.argmax(mask > 0, axis=1)]
    elif pooling == "last":
        pooled = hidden[rows, mask.shape[1] - 1 - np.argmax(mask[:, ::-1] > 0, axis=1)]
    else:
        raise ValueError(f"unknown pooling {pooling!r}")
    if matryoshka_dim:
        pooled = (pooled - pooled.mean(1, keepdims=True)) / np.sqrt(pooled.var(1, keepdims=True) + 1e-5)
        pooled = pooled[:, :matryoshka_dim]
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def reference_logits(model_dir: str | Path, input_ids, token_type_ids, attention_mask) -> np.ndarray:
    """Raw float64 logits of a cross-encoder (MODELS.md §6): the encoder with the pair's token types,
    `tanh(pooler.dense(h))` of the first attended token, then the one-output `classifier`."""
    model_dir = Path(model_dir)
    cfg = json.loads((model_dir / "config.json").read_text())
    raw = read_safetensors(model_dir / "model.safetensors")
    weights = {name.removeprefix("bert."): value for name, value in raw.items()}
    ids, types, mask = (np.asarray(a, dtype=np.int64) for a in (input_ids, token_type_ids, attention_mask))
    if cfg.get("position_embedding_type") == "alibi":
        hidden = jinabert_hidden(weights, cfg, ids, mask, types=types)
    else:
        hidden = bert_hidden(weights, cfg, ids, mask, types=types)
    first = hidden[np.arange(len(ids)), np.argmax(mask > 0, axis=1)]
    pooled = np.tanh(first @ weights["pooler.dense.weight"].T + weights["pooler.dense.bias"])
    return (pooled @ weights["classifier.weight"].T + weights["classifier.bias"])[:, 0]
