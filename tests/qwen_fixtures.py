"""Random Qwen2 / Qwen3 embedder checkpoints in the exact Hugging Face layout.

`make_qwen` writes config.json (published field names), model.safetensors (std 0.1 weights, RMSNorm
weights 1 ± 0.1) under `model.*` keys (jina-code-embeddings, Qwen2ForCausalLM) or bare keys
(Qodo-Embed / gte-Qwen2, Qwen2Model), a byte-level BPE tokenizer.json that optionally appends
`<|endoftext|>` (its post-processor) and optionally jina's task prompts.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from checkpoints import CORPUS, write_safetensors

EOS = "<|endoftext|>"
SPECIALS = [EOS, "<|im_start|>", "<|im_end|>"]
JINA_PROMPTS = {  # as published in jina-code-embeddings' config_sentence_transformers.json
    "nl2code_query": "Find the most relevant code snippet given the following query:\n",
    "nl2code_document": "Candidate code snippet:\n",
    "qa_query": "Find the most relevant answer given the following question:\n",
    "qa_document": "Candidate answer:\n",
}


def qwen_tokenizer(append_eos: bool, vocab_size: int = 300) -> Tokenizer:
    """Qwen-style byte-level BPE; with `append_eos` its post-processor appends <|endoftext|>."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    if append_eos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, tok.token_to_id(EOS))])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def make_qwen(path: str | Path, arch: str = "qwen2", *, bare_keys: bool = False, causal: bool | None = None,
              append_eos: bool = False, prompts: dict[str, str] | None = None, hidden: int = 64, heads: int = 4,
              kv_heads: int = 2, head_dim: int | None = None, layers: int = 2, intermediate: int = 128,
              rope_theta: float = 10000.0, tied: bool = True, seed: int = 0, std: float = 0.1) -> Path:
    """A random `arch` ("qwen2" | "qwen3") checkpoint; `causal=False` writes `is_causal: false`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = qwen_tokenizer(append_eos)
    tok.save(str(path / "tokenizer.json"))
    vocab = tok.get_vocab_size()
    head_dim = head_dim or hidden // heads
    rng = np.random.default_rng(seed)

    def normal(*shape: int) -> np.ndarray:
        return rng.normal(0.0, std, shape).astype(np.float32)

    def norm(dim: int) -> np.ndarray:
        return (1.0 + rng.normal(0.0, std, dim)).astype(np.float32)

    w = {"embed_tokens.weight": normal(vocab, hidden), "norm.weight": norm(hidden)}
    for n in range(layers):
        p = f"layers.{n}."
        for name, out_dim in (("q_proj", heads * head_dim), ("k_proj", kv_heads * head_dim),
                              ("v_proj", kv_heads * head_dim)):
            w[f"{p}self_attn.{name}.weight"] = normal(out_dim, hidden)
            if arch == "qwen2":
                w[f"{p}self_attn.{name}.bias"] = normal(out_dim)
        w[f"{p}self_attn.o_proj.weight"] = normal(hidden, heads * head_dim)
        if arch == "qwen3":
            w[f"{p}self_attn.q_norm.weight"] = norm(head_dim)
            w[f"{p}self_attn.k_norm.weight"] = norm(head_dim)
        w[f"{p}mlp.gate_proj.weight"] = normal(intermediate, hidden)
        w[f"{p}mlp.up_proj.weight"] = normal(intermediate, hidden)
        w[f"{p}mlp.down_proj.weight"] = normal(hidden, intermediate)
        w[f"{p}input_layernorm.weight"] = norm(hidden)
        w[f"{p}post_attention_layernorm.weight"] = norm(hidden)
    write_safetensors(path / "model.safetensors", {(k if bare_keys else f"model.{k}"): v for k, v in w.items()})

    config = {
        "architectures": ["Qwen2ForCausalLM" if arch == "qwen2" else "Qwen3ForCausalLM"],
        "attention_dropout": 0.0, "bos_token_id": tok.token_to_id(EOS), "eos_token_id": tok.token_to_id(EOS),
        "hidden_act": "silu", "hidden_size": hidden, "initializer_range": 0.02, "intermediate_size": intermediate,
        "max_position_embeddings": 32768, "max_window_layers": layers, "model_type": arch,
        "num_attention_heads": heads, "num_hidden_layers": layers, "num_key_value_heads": kv_heads,
        "rms_norm_eps": 1e-6, "rope_scaling": None, "rope_theta": rope_theta, "sliding_window": None,
        "tie_word_embeddings": tied, "torch_dtype": "float32", "transformers_version": "4.51.3",
        "use_cache": True, "use_sliding_window": False, "vocab_size": vocab,
    }
    if arch == "qwen3":
        config |= {"head_dim": head_dim, "attention_bias": False}
    if causal is not None:
        config["is_causal"] = causal
    (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if prompts is not None:
        (path / "config_sentence_transformers.json").write_text(json.dumps(
            {"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"}, indent=2))
    return path
