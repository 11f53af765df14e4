"""GGUF tensors → the Hugging Face checkpoint names and layout that hhg's models load.

The names come from llama.cpp's own tables read backwards: for every weight a model expects (its
MLX module attributes mirror the checkpoint keys), `gguf.TensorNameMap` gives the GGUF name that
llama.cpp's `convert_hf_to_gguf.py` writes it under. Checked against that converter, three
spellings need more than a rename:
- `blk.N.attn_qkv`: its `--fuse-qkv` option concatenates the query, key and value rows; split back.
- jina-bert-v2 `ffn_up` + `ffn_gate`: converters before mid-2025 split the fused GEGLU matrix and
  stored the half the GELU applies to as `ffn_gate`. base-en (`mlp.gated_layers`) is [gate; up],
  the code model (`mlp.up_gated_layer`) [up; gate]; newer files keep the fused matrix as `ffn_up`.
- the converter squeezes dimensions of size 1 (one token type becomes a vector).
Qwen2/Qwen3 are stored unpermuted (llama.cpp permutes q/k only for its LLaMA-family classes), and
no other tensor is transformed. Tensors no hhg model uses (LM and classifier heads) are skipped.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .config import jina_variant
from .reader import GGUFError, GGUFFile

Tensor = tuple[tuple[int, ...], Callable[[], np.ndarray]]
"""A checkpoint tensor: its shape and how to read it (dequantised, float32) when written."""
_SUFFIXES = (".weight", ".bias")


def expected_shapes(architecture: str, config: dict) -> dict[str, tuple[int, ...]]:
    """Checkpoint name → shape of every weight hhg's model of `architecture` loads."""
    from mlx.utils import tree_flatten

    if architecture in ("qwen2", "qwen3"):
        from hhg_mlx.models.qwen import ARCHITECTURES

        model_class, args_class = ARCHITECTURES[architecture]
        model = model_class(args_class.from_dict(config))
    else:
        from hhg_mlx.models.mlx_encoder import new_model

        model = new_model(architecture, config)
    return {name: tuple(value.shape) for name, value in tree_flatten(model.parameters())}


def checkpoint_tensors(gguf: GGUFFile, architecture: str, config: dict) -> dict[str, Tensor]:
    """Every weight of the model under its checkpoint name, checked for presence and shape."""
    from gguf import MODEL_ARCH_NAMES, get_tensor_name_map

    arch = next(key for key, name in MODEL_ARCH_NAMES.items() if name == gguf.architecture)
    names = get_tensor_name_map(arch, gguf.arch_value("block_count"))
    tensors = {}
    for hf_name, shape in expected_shapes(architecture, config).items():
        mapped = names.get_type_and_name(hf_name, try_suffixes=_SUFFIXES)
        if mapped is None:
            raise GGUFError(f"{gguf.path}: llama.cpp's tables name no GGUF tensor for {hf_name}")
        tensors[hf_name] = (shape, _reader(gguf, mapped[1], shape, config))
    return tensors


def _reader(gguf: GGUFFile, name: str, shape: tuple[int, ...], config: dict) -> Callable[[], np.ndarray]:
    if name in gguf.tensors:
        stored = gguf.shape(name)
        if ".ffn_up." in name and _split_glu(gguf, name, stored, shape):
            return lambda: _fused_glu(gguf, name)
        _check_shape(gguf, name, stored, shape)
        return lambda: gguf.array(name).reshape(shape)
    *block, kind, suffix = name.split(".")
    fused = ".".join([*block, "attn_qkv", suffix])
    if kind in ("attn_q", "attn_k", "attn_v") and fused in gguf.tensors:
        rows = _qkv_rows(config)
        start = {"attn_q": 0, "attn_k": rows[0], "attn_v": rows[0] + rows[1]}[kind]
        _check_shape(gguf, fused, gguf.shape(fused), (sum(rows), *shape[1:]))
        return lambda: gguf.array(fused)[start:start + shape[0]].reshape(shape)
    raise GGUFError(f"{gguf.path}: GGUF file has no tensor {name}")


def _qkv_rows(config: dict) -> tuple[int, int, int]:
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    kv = config.get("num_key_value_heads", heads) * head_dim
    return heads * head_dim, kv, kv


def _split_glu(gguf: GGUFFile, name: str, stored: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """A jina-bert-v2 GEGLU matrix stored as two halves (`ffn_up` and `ffn_gate`)."""
    gate = name.replace(".ffn_up.", ".ffn_gate.")
    return (gguf.architecture == "jina-bert-v2" and gate in gguf.tensors and stored[0] * 2 == shape[0]
            and gguf.shape(gate) == stored)


def _fused_glu(gguf: GGUFFile, name: str) -> np.ndarray:
    up, gate = gguf.array(name), gguf.array(name.replace(".ffn_up.", ".ffn_gate."))
    return np.concatenate([up, gate] if jina_variant(gguf) == "qk-post-norm" else [gate, up])


def _check_shape(gguf: GGUFFile, name: str, stored: tuple[int, ...], shape: tuple[int, ...]) -> None:
    """Equal, or equal once dimensions of size 1 are dropped (the converter squeezes them)."""
    if stored != shape and [n for n in stored if n != 1] != [n for n in shape if n != 1]:
        raise GGUFError(f"{gguf.path}: tensor {name} has shape {list(stored)}, "
                        f"the metadata implies {list(shape)}")
