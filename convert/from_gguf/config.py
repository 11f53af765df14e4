"""GGUF metadata → the Hugging Face `config.json` the model's own checkpoint would have.

Keys are llama.cpp's (`gguf.Keys`, written by its `convert_hf_to_gguf.py`): `{arch}.embedding_length`,
`.block_count`, `.feed_forward_length`, `.attention.head_count[_kv]`, `.attention.layer_norm_[rms_]epsilon`,
`.rope.freq_base`, `.rope.scaling.type`, `.context_length`, `.attention.causal`, `.attention.key_length`. Sizes that are
tensor dimensions (vocabulary, token types) are read from the tensors themselves.
"""
from __future__ import annotations

from .reader import GGUFError, GGUFFile

# GGUF architecture -> hhg architecture (hhg_mlx/models/registry.py's names)
ARCHITECTURES = {"bert": "bert", "jina-bert-v2": "jinabert", "nomic-bert": "nomic_bert",
                 "qwen2": "qwen2", "qwen3": "qwen3"}
JINA_NAMES = {"qk-post-norm": "jinaai/jina-bert-v2-qk-post-norm", "base-en": "jinaai/jina-bert-implementation"}


def hhg_architecture(gguf: GGUFFile) -> str:
    """The hhg architecture of the file; an unsupported one is a one-line error."""
    name = gguf.architecture
    if name not in ARCHITECTURES:
        raise GGUFError(f"{gguf.path}: cannot convert GGUF architecture {name!r} "
                        f"(supported: {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[name]


def jina_variant(gguf: GGUFFile) -> str:
    """jina-embeddings-v2-base-code ("qk-post-norm") has q/k LayerNorms; base-en has none."""
    return "qk-post-norm" if "blk.0.attn_q_norm.weight" in gguf.tensors else "base-en"


def hf_config(gguf: GGUFFile, architecture: str) -> dict:
    """config.json for `architecture` (from `hhg_architecture`) built from the file's metadata. Scaled
    rotary positions (`rope.scaling.type`: linear, YaRN, LongRoPE) are refused: hhg's models run the
    unscaled rotary embedding, as every supported checkpoint publishes it."""
    scaling = gguf.arch_value("rope.scaling.type", "none")
    if scaling != "none":
        raise GGUFError(f"{gguf.path}: cannot convert {scaling!r} rope scaling "
                        f"({gguf.architecture}.rope.scaling.type); hhg runs unscaled rotary positions")
    if architecture == "nomic_bert":
        return _nomic_config(gguf)
    common = {
        "hidden_size": gguf.arch_value("embedding_length"),
        "num_hidden_layers": gguf.arch_value("block_count"),
        "num_attention_heads": gguf.arch_value("attention.head_count"),
        "intermediate_size": gguf.arch_value("feed_forward_length"),
        "vocab_size": _rows(gguf, "token_embd.weight"),
        "torch_dtype": "float32",
    }
    if architecture in ("bert", "jinabert"):
        return {**common, **_bert_config(gguf, architecture)}
    return {**common, **_qwen_config(gguf, architecture)}


def _rows(gguf: GGUFFile, name: str, default: int | None = None) -> int:
    if name in gguf.tensors:
        return gguf.shape(name)[0] if len(gguf.shape(name)) > 1 else 1
    if default is None:
        raise GGUFError(f"{gguf.path}: GGUF file has no tensor {name}")
    return default


def _bert_config(gguf: GGUFFile, architecture: str) -> dict:
    config = {
        "model_type": "bert",
        "layer_norm_eps": gguf.arch_value("attention.layer_norm_epsilon"),
        "type_vocab_size": _rows(gguf, "token_types.weight", default=gguf.value("tokenizer.ggml.token_type_count", 2)),
        "pad_token_id": gguf.value("tokenizer.ggml.padding_token_id", 0),
        "hidden_act": "gelu",
    }
    if architecture == "bert":
        return {**config, "architectures": ["BertModel"], "position_embedding_type": "absolute",
                "max_position_embeddings": gguf.arch_value("context_length")}
    return {**config, "architectures": ["JinaBertForMaskedLM"], "_name_or_path": JINA_NAMES[jina_variant(gguf)],
            "position_embedding_type": "alibi", "feed_forward_type": "geglu",
            "max_position_embeddings": gguf.arch_value("context_length", 8192)}


def _qwen_config(gguf: GGUFFile, architecture: str) -> dict:
    heads = gguf.arch_value("attention.head_count")
    config = {
        "model_type": architecture,
        "architectures": ["Qwen2ForCausalLM" if architecture == "qwen2" else "Qwen3ForCausalLM"],
        "num_key_value_heads": gguf.arch_value("attention.head_count_kv", heads),
        "rms_norm_eps": gguf.arch_value("attention.layer_norm_rms_epsilon"),
        "rope_theta": gguf.arch_value("rope.freq_base", 10000.0),     # llama.cpp's default
        "max_position_embeddings": gguf.arch_value("context_length", 32768),
        "tie_word_embeddings": "output.weight" not in gguf.tensors,
        "is_causal": gguf.arch_value("attention.causal", True),
        "hidden_act": "silu",
        "use_sliding_window": False,
        "bos_token_id": gguf.value("tokenizer.ggml.bos_token_id", None),
        "eos_token_id": gguf.value("tokenizer.ggml.eos_token_id", None),
    }
    if architecture == "qwen3":
        hidden = gguf.arch_value("embedding_length")
        config |= {"head_dim": gguf.arch_value("attention.key_length", hidden // heads),
                   "attention_bias": "blk.0.attn_q.bias" in gguf.tensors}
    return config


def _nomic_config(gguf: GGUFFile) -> dict:
    """NomicBERT's config.json uses GPT-2's names; the fields hhg implements (`nomic_config.SUPPORTED`)
    have the values of every published model, which is what llama.cpp's converter asserts too."""
    return {
        "model_type": "nomic_bert", "architectures": ["NomicBertModel"],
        "n_embd": gguf.arch_value("embedding_length"), "n_layer": gguf.arch_value("block_count"),
        "n_head": gguf.arch_value("attention.head_count"), "n_inner": gguf.arch_value("feed_forward_length"),
        "n_positions": gguf.arch_value("context_length"), "vocab_size": _rows(gguf, "token_embd.weight"),
        "type_vocab_size": _rows(gguf, "token_types.weight", default=gguf.value("tokenizer.ggml.token_type_count", 2)),
        "layer_norm_epsilon": gguf.arch_value("attention.layer_norm_epsilon"),
        "rotary_emb_base": gguf.arch_value("rope.freq_base"),
        "qkv_proj_bias": "blk.0.attn_qkv.bias" in gguf.tensors, "mlp_fc1_bias": "blk.0.ffn_up.bias" in gguf.tensors,
        "mlp_fc2_bias": "blk.0.ffn_down.bias" in gguf.tensors,
        "activation_function": "swiglu", "prenorm": False, "causal": False, "rotary_emb_fraction": 1.0,
        "rotary_emb_interleaved": False, "rotary_emb_scale_base": None, "rotary_scaling_factor": None,
        "max_trained_positions": gguf.arch_value("context_length"),
        "pad_token_id": gguf.value("tokenizer.ggml.padding_token_id", 0), "torch_dtype": "float32",
    }
