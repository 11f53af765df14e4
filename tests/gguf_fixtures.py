"""GGUF files written the way llama.cpp's `convert_hf_to_gguf.py` writes them, from the random
Hugging Face checkpoints the suite builds (and the real MiniLM), with the `gguf` package's writer.

What the converter does and this repeats (read from llama.cpp's converter, not from hhg's code):
checkpoint names → GGUF names through `gguf.TensorNameMap` after dropping `bert.` and the heads;
matrices in the requested type, vectors in F32; the vocabulary as `get_vocab_base` lists it
(added tokens CONTROL when special, USER_DEFINED otherwise, [PAD{i}] UNUSED fillers up to the
config's vocab_size); BERT's vocabulary in "phantom space" form ("▁" before word-initial pieces,
"##" dropped); special ids, add_* flags and merges through `gguf.SpecialVocab`; the pooling
from sentence-transformers' 1_Pooling. Two older or optional spellings on request: `split_glu`
(jina-bert-v2 GEGLU as ffn_up + ffn_gate, converters before mid-2025) and `fuse_qkv`.
K-quants have no quantiser in `gguf`: `quantize_q4_k` below packs Q4_K blocks (llama.cpp's layout).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import numpy as np
from reference import read_safetensors
from tokenizers import Tokenizer

QK = gguf.GGMLQuantizationType
BERT_CONFIG = {"tokenizer_class": "BertTokenizer", "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
               "cls_token": "[CLS]", "mask_token": "[MASK]"}
ROBERTA_CONFIG = {"tokenizer_class": "RobertaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                  "sep_token": "</s>", "cls_token": "<s>", "pad_token": "<pad>", "mask_token": "<mask>"}
QWEN_CONFIG = {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|endoftext|>",
               "pad_token": "<|endoftext|>"}
ARCHS = {"bert": gguf.MODEL_ARCH.BERT, "jina-bert-v2": gguf.MODEL_ARCH.JINA_BERT_V2,
         "nomic-bert": gguf.MODEL_ARCH.NOMIC_BERT, "qwen2": gguf.MODEL_ARCH.QWEN2, "qwen3": gguf.MODEL_ARCH.QWEN3}
# NomicBERT's config.json uses GPT-2's names (the converter's find_hparam looks for both)
GPT2_NAMES = {"n_layer": "num_hidden_layers", "n_embd": "hidden_size", "n_head": "num_attention_heads",
              "n_inner": "intermediate_size", "layer_norm_epsilon": "layer_norm_eps", "rotary_emb_base": "rope_theta"}
POOLING = {"mean": gguf.PoolingType.MEAN, "cls": gguf.PoolingType.CLS, "last": gguf.PoolingType.LAST}


def write_gguf(src: Path, path: Path, arch: str, *, qtype: QK = QK.F32, pre: str | None = None,
               tokenizer_config: dict | None = None, name: str | None = None, pooling: str | None = None,
               split_glu: bool = False, fuse_qkv: bool = False, drop: tuple[str, ...] = (),
               weights: bool = True, bracketed: bool = False) -> Path:
    """Write the checkpoint in folder `src` as GGUF `path` for llama.cpp architecture `arch`.
    `pre` names the BPE pre-tokenizer (what llama.cpp's hash check would pick); `drop` leaves out
    metadata keys (to make broken files); `weights=False` writes the metadata and vocabulary only;
    `bracketed` spells a WordPiece vocabulary as 2024 converters did (every [...] piece unchanged)."""
    config = json.loads((src / "config.json").read_text())
    config = {**config, **{bert: config[gpt2] for gpt2, bert in GPT2_NAMES.items() if gpt2 in config}}
    if arch == "nomic-bert":        # the converter's rule: 8,192 published positions, 2,048 trained
        config["max_position_embeddings"] = min(config["n_positions"], config["max_trained_positions"])
    writer = _Writer(path, arch, drop)
    _metadata(writer, config, arch, name, pooling if pooling is not None else _st_pooling(src))
    vocab_dir = path.parent / f".{path.stem}-vocab"          # SpecialVocab reads a folder
    vocab_dir.mkdir(exist_ok=True)
    tokenizer = Tokenizer.from_file(str(src / "tokenizer.json"))
    # a hub repository's tokenizer.json lists tokenizer_config's special tokens as added tokens
    tokenizer.add_special_tokens([t for k, t in (tokenizer_config or {}).items() if k.endswith("_token") and t])
    tokenizer.save(str(vocab_dir / "tokenizer.json"))
    (vocab_dir / "config.json").write_text(json.dumps(config))
    (vocab_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config or {}))
    _vocabulary(writer, vocab_dir, config, pre, bracketed)
    shutil.rmtree(vocab_dir)
    tensors = gguf_tensors(src, config, arch, split_glu=split_glu, fuse_qkv=fuse_qkv) if weights else {}
    for gname, array in tensors.items():
        writer.tensor(gname, array, qtype)
    writer.close()
    return path


def gguf_tensors(src: Path, config: dict, arch: str, *, split_glu: bool = False,
                 fuse_qkv: bool = False) -> dict[str, np.ndarray]:
    """GGUF name → float32 array, as the converter's filter_tensors/modify_tensors produce them."""
    weights = {k.removeprefix("bert."): v.astype(np.float32) for k, v in read_safetensors(src / "model.safetensors").items()}
    layers = config["num_hidden_layers"]
    names = gguf.get_tensor_name_map(ARCHS[arch], layers)
    inter = config.get("intermediate_size")
    out = {}
    for name, array in weights.items():
        if name.startswith(("pooler.", "cls.", "lm_head.")) or name.endswith("position_ids"):
            continue
        if split_glu and ("mlp.gated_layers" in name or "mlp.up_gated_layer" in name):
            first, second = array[:inter], array[inter:]       # the old converter: GELU half -> gate
            up_gate = (first, second) if "up_gated_layer" in name else (second, first)
            base = names.get_name(name, try_suffixes=(".weight",))
            out[base] = up_gate[0]
            out[base.replace("ffn_up", "ffn_gate")] = up_gate[1]
            continue
        out[names.get_name(name, try_suffixes=(".weight", ".bias"))] = array
    if fuse_qkv:
        for n in range(layers):
            for suffix in ("weight", "bias"):
                parts = [out.pop(f"blk.{n}.attn_{x}.{suffix}") for x in "qkv"]
                out[f"blk.{n}.attn_qkv.{suffix}"] = np.concatenate(parts)
    return out


def quantize_q4_k(rows: np.ndarray) -> np.ndarray:
    """Q4_K blocks of 256: 8 sub-blocks of 32 with 6-bit scales and mins, 4-bit values:
    x = d * scale_j * q - dmin * min_j (the format `gguf.quants.Q4_K` dequantises)."""
    blocks = rows.astype(np.float32).reshape(-1, 8, 32)
    lo = np.minimum(blocks.min(axis=2), 0.0)
    step = (blocks.max(axis=2) - lo) / 15
    d = (step.max(axis=1) / 63).astype(np.float16)
    dmin = (-lo.min(axis=1) / 63).astype(np.float16)
    scale = np.clip(np.round(step / np.maximum(d.astype(np.float32), 1e-30)[:, None]), 0, 63).astype(np.uint8)
    mins = np.clip(np.round(-lo / np.maximum(dmin.astype(np.float32), 1e-30)[:, None]), 0, 63).astype(np.uint8)
    unit = (d.astype(np.float32)[:, None] * scale)[..., None]
    offset = (dmin.astype(np.float32)[:, None] * mins)[..., None]
    q = np.clip(np.round((blocks + offset) / np.where(unit > 0, unit, 1)), 0, 15).astype(np.uint8)
    packed = np.empty((len(blocks), 12), dtype=np.uint8)
    packed[:, 0:4] = scale[:, :4] | ((scale[:, 4:] >> 4) << 6)
    packed[:, 4:8] = mins[:, :4] | ((mins[:, 4:] >> 4) << 6)
    packed[:, 8:12] = (scale[:, 4:] & 0xF) | ((mins[:, 4:] & 0xF) << 4)
    nibbles = q.reshape(-1, 4, 2, 32)
    qs = (nibbles[:, :, 0] | (nibbles[:, :, 1] << 4)).reshape(-1, 128)
    out = np.concatenate([d[:, None].view(np.uint8), dmin[:, None].view(np.uint8), packed, qs], axis=1)
    return out.reshape(*rows.shape[:-1], rows.shape[-1] // 256 * 144)


class _Writer:
    def __init__(self, path: Path, arch: str, drop: tuple[str, ...]) -> None:
        self.gw = gguf.GGUFWriter(str(path), arch)
        self.arch, self.drop = arch, drop

    def add(self, method: str, key: str, *args) -> None:
        """Call `GGUFWriter.add_<method>` unless `key` (the metadata key it writes) is dropped."""
        if key.format(arch=self.arch) not in self.drop:
            getattr(self.gw, f"add_{method}")(*args)

    def tensor(self, name: str, array: np.ndarray, qtype: QK) -> None:
        block = gguf.GGML_QUANT_SIZES[qtype][0]
        if array.ndim < 2 or qtype == QK.F32 or array.shape[-1] % block:
            self.gw.add_tensor(name, array.astype(np.float32))
        elif qtype == QK.Q4_K:
            self.gw.add_tensor(name, quantize_q4_k(array), raw_dtype=qtype)
        else:
            self.gw.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)

    def close(self) -> None:
        self.gw.write_header_to_file()
        self.gw.write_kv_data_to_file()
        self.gw.write_tensors_to_file()
        self.gw.close()


def _st_pooling(src: Path) -> str | None:
    flags = src / "1_Pooling" / "config.json"
    if not flags.is_file():
        return None
    config = json.loads(flags.read_text())
    return next((p for key, p in (("pooling_mode_mean_tokens", "mean"), ("pooling_mode_cls_token", "cls"),
                                  ("pooling_mode_lasttoken", "last")) if config.get(key)), None)


def _metadata(w: _Writer, config: dict, arch: str, name: str | None, pooling: str | None) -> None:
    K = "{arch}."
    if name:
        w.add("name", "general.name", name)
    w.add("block_count", K + "block_count", config["num_hidden_layers"])
    w.add("context_length", K + "context_length", config["max_position_embeddings"])
    w.add("embedding_length", K + "embedding_length", config["hidden_size"])
    w.add("feed_forward_length", K + "feed_forward_length", config["intermediate_size"])
    w.add("head_count", K + "attention.head_count", config["num_attention_heads"])
    if "num_key_value_heads" in config:
        w.add("head_count_kv", K + "attention.head_count_kv", config["num_key_value_heads"])
    if "layer_norm_eps" in config:
        w.add("layer_norm_eps", K + "attention.layer_norm_epsilon", config["layer_norm_eps"])
    if "rms_norm_eps" in config:
        w.add("layer_norm_rms_eps", K + "attention.layer_norm_rms_epsilon", config["rms_norm_eps"])
    if "rope_theta" in config:
        w.add("rope_freq_base", K + "rope.freq_base", config["rope_theta"])
    if (config.get("rope_scaling") or {}).get("type") == "yarn":     # as llama.cpp's Qwen2 converter
        w.add("rope_scaling_type", K + "rope.scaling.type", gguf.RopeScalingType.YARN)
        w.add("rope_scaling_factor", K + "rope.scaling.factor", config["rope_scaling"]["factor"])
    if "head_dim" in config:
        w.add("key_length", K + "attention.key_length", config["head_dim"])
        w.add("value_length", K + "attention.value_length", config["head_dim"])
    if arch in ("bert", "jina-bert-v2", "nomic-bert") or config.get("is_causal") is False:
        w.add("causal_attention", K + "attention.causal", False)
    if pooling:
        w.add("pooling_type", K + "pooling_type", POOLING[pooling])


def _vocabulary(w: _Writer, folder: Path, config: dict, pre: str | None, bracketed: bool) -> None:
    """`get_vocab_base` + `set_vocab` of llama.cpp's BertModel / _set_vocab_gpt2, without transformers."""
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    vocab = {i: t for t, i in Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab(with_added_tokens=True).items()}
    added = {a["id"]: a for a in tokenizer["added_tokens"]}
    tokens, types = [], []
    for i in range(max(config["vocab_size"], len(vocab))):
        if i not in vocab:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(vocab[i])
            types.append(gguf.TokenType.CONTROL if added[i]["special"] else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(vocab[i])
            types.append(gguf.TokenType.NORMAL)
    if tokenizer["model"]["type"] == "WordPiece":
        tokens = [t if k == gguf.TokenType.CONTROL or (bracketed and t.startswith("[") and t.endswith("]"))
                  else t[2:] if t.startswith("##") else "\u2581" + t for t, k in zip(tokens, types)]
        w.add("tokenizer_model", "tokenizer.ggml.model", "bert")
        w.add("token_type_count", "tokenizer.ggml.token_type_count", config.get("type_vocab_size", 1))
        special = gguf.SpecialVocab(folder, n_vocab=len(tokens))
    else:
        w.add("tokenizer_model", "tokenizer.ggml.model", "gpt2")
        special = gguf.SpecialVocab(folder, load_merges=True)
    if pre:
        w.add("tokenizer_pre", "tokenizer.ggml.pre", pre)
    w.add("token_list", "tokenizer.ggml.tokens", tokens)
    w.add("token_types", "tokenizer.ggml.token_type", types)
    special.add_to_gguf(w.gw, quiet=True)
