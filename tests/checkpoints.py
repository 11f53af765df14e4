"""Random checkpoints in the exact Hugging Face layout, for parity tests.

Each `make_*` function writes into a folder what the hub would hold for that architecture:
`config.json` (the published field names), `model.safetensors` (std 0.1 weights; LayerNorm
weights 1 ± 0.1; float32, float16 or bfloat16 on disk), `tokenizer.json` built with the
`tokenizers` library, and optionally the sentence-transformers files. With `labels`, the
checkpoint is a cross-encoder (`*ForSequenceClassification`, MODELS.md §6): the encoder under
`bert.`, `bert.pooler.dense`, a `classifier` with `labels` outputs, and a tokenizer whose
TemplateProcessing post-processor gives the second segment of a pair type id 1.

Use from tests (the tests folder is on sys.path under pytest):

    from checkpoints import make_jinabert, make_bert, make_nomic_bert, make_checkpoint   # make_checkpoint: fixture
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

CODE_WORDS = (
    "def class return import from self if else elif for while try except finally with as lambda yield "
    "async await none true false print len range list dict set tuple str int float open read write "
    "file path name value key items append extend index count sort sorted map filter zip enumerate "
    "retry upload download request response http client server error exception raise parse json "
    "load save config token tokenizer model encode decode embed vector search query result cache "
    "user data time sleep max min sum get post put delete update create build index test assert"
).split()
CORPUS = [" ".join(CODE_WORDS[i:i + 9]) for i in range(0, len(CODE_WORDS), 3)] + [
    "def retry_upload(self, path, max_tries=3):",
    "for key, value in items.items(): print(key, value)",
    "class HttpClient:\n    def get(self, url): return self.request('GET', url)",
    "if error is not None: raise ValueError(f'bad {name}')",
]
JINA_CODE_NAME = "jinaai/jina-bert-v2-qk-post-norm"
JINA_BASE_NAME = "jinaai/jina-bert-implementation"
DTYPES = ("float32", "float16", "bfloat16")
_SAFETENSORS_DTYPE = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


# ---------------------------------------------------------------- safetensors / json


def _bfloat16_bytes(array: np.ndarray) -> bytes:
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16          # round to nearest even
    return rounded.astype("<u2").tobytes()


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str = "float32") -> None:
    """Write `tensors` to a .safetensors file: float arrays stored as `dtype` (F32/F16/BF16), integer ones as I64."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}")
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    chunks, offset = [], 0
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        if array.dtype.kind in "iu":
            data, code = np.ascontiguousarray(array, dtype="<i8").tobytes(), "I64"
        elif dtype == "bfloat16":
            data, code = _bfloat16_bytes(array), "BF16"
        else:
            data = np.ascontiguousarray(array, dtype="<f4" if dtype == "float32" else "<f2").tobytes()
            code = _SAFETENSORS_DTYPE[dtype]
        header[name] = {"dtype": code, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(head)) + head)
        for data in chunks:
            fh.write(data)


def _write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


# ---------------------------------------------------------------- random weights


class _Weights:
    """Collects std-0.1 random tensors under checkpoint names."""

    def __init__(self, seed: int, std: float = 0.1) -> None:
        self.rng = np.random.default_rng(seed)
        self.std = std
        self.tensors: dict[str, np.ndarray] = {}

    def normal(self, name: str, *shape: int) -> None:
        self.tensors[name] = self.rng.normal(0.0, self.std, shape).astype(np.float32)

    def linear(self, name: str, out_dim: int, in_dim: int, bias: bool = True) -> None:
        self.normal(f"{name}.weight", out_dim, in_dim)
        if bias:
            self.normal(f"{name}.bias", out_dim)

    def layer_norm(self, name: str, dim: int) -> None:
        self.tensors[f"{name}.weight"] = (1.0 + self.rng.normal(0.0, self.std, dim)).astype(np.float32)
        self.normal(f"{name}.bias", dim)

    def attention(self, p: str, hidden: int) -> None:
        """`p`attention.self.{query,key,value} and attention.output.{dense,LayerNorm} (BERT's block)."""
        for proj in ("query", "key", "value"):
            self.linear(p + f"attention.self.{proj}", hidden, hidden)
        self.linear(p + "attention.output.dense", hidden, hidden)
        self.layer_norm(p + "attention.output.LayerNorm", hidden)

    def extras(self, hidden: int, vocab: int, max_positions: int) -> None:
        """What real checkpoints carry and encoders must ignore."""
        self.linear("pooler.dense", hidden, hidden)
        self.linear("cls.predictions.transform.dense", hidden, hidden)
        self.normal("cls.predictions.bias", vocab)
        self.tensors["embeddings.position_ids"] = np.arange(max_positions, dtype=np.int64)[None]

    def head(self, hidden: int, labels: int) -> None:
        """A cross-encoder's pooler and classifier (MODELS.md §6)."""
        self.linear("pooler.dense", hidden, hidden)
        self.linear("classifier", labels, hidden)

    def save(self, path: Path, dtype: str, prefix: str) -> None:
        # like `BertForMaskedLM` / `BertForSequenceClassification`: the encoder under `prefix`, the MLM
        # head (`cls.*`) and the classifier at the top level
        tensors = {(name if name.startswith(("cls.", "classifier.")) else prefix + name): value
                   for name, value in self.tensors.items()}
        write_safetensors(path / "model.safetensors", tensors, dtype)


# ---------------------------------------------------------------- tokenizers


def bpe_tokenizer(vocab_size: int = 400) -> Tokenizer:
    """RoBERTa-style byte-level BPE: <s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4, encodes `<s> … </s>`."""
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True,
                                                      add_prefix_space=False)
    return tok


def wordpiece_tokenizer() -> Tokenizer:
    """Uncased BERT WordPiece: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, encodes `[CLS] … [SEP]`."""
    chars = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789_.,:;()[]{}'\"=+-*/<>!?@#%&|\\^~`$"))
    words = list(dict.fromkeys(CODE_WORDS))
    vocab_list = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars), *words]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(vocab_list))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    return tok


def pair_template(tok: Tokenizer, first: str, sep: str) -> Tokenizer:
    """`first A sep` for one text, `first A sep B:1 sep:1` for a pair: the second segment has type id 1."""
    specials = [(first, tok.token_to_id(first)), (sep, tok.token_to_id(sep))]
    tok.post_processor = processors.TemplateProcessing(single=f"{first} $A {sep}", pair=f"{first} $A {sep} $B:1 {sep}:1",
                                                       special_tokens=specials)
    return tok


def _cross_encoder_config(config: dict, architecture: str, labels: int | None) -> dict:
    """`config` as a `{architecture}ForSequenceClassification` with `labels` outputs (unchanged for None)."""
    if labels is None:
        return config
    auto = config.get("auto_map")
    if auto:
        name = auto["AutoModel"].split("--")[0]
        auto = {**auto, "AutoModelForSequenceClassification": f"{name}--modeling_bert.{architecture}ForSequenceClassification"}
    return {**config, "architectures": [f"{architecture}ForSequenceClassification"], "num_labels": labels,
            "id2label": {str(i): f"LABEL_{i}" for i in range(labels)},
            "label2id": {f"LABEL_{i}": i for i in range(labels)}, **({"auto_map": auto} if auto else {})}


# ---------------------------------------------------------------- JinaBERT


def _start_folder(path: Path, tok: Tokenizer, vocab: int | None, save_tokenizer: bool) -> int:
    """Create `path`, save the tokenizer there (if asked); the vocabulary size to use."""
    path.mkdir(parents=True, exist_ok=True)
    if save_tokenizer:
        tok.save(str(path / "tokenizer.json"))
    return max(vocab or 0, tok.get_vocab_size())


def make_jinabert(path: str | Path, variant: str = "qk-post-norm", *, hidden: int = 48, heads: int = 6,
                  layers: int = 2, intermediate: int = 96, vocab: int | None = None, dtype: str = "float32",
                  prefix: str = "", extras: bool = True, seed: int = 0, std: float = 0.1,
                  tokenizer: bool = True, labels: int | None = None) -> Path:
    """A random JinaBERT v2 checkpoint: `variant` "qk-post-norm" (jina-embeddings-v2-base-code,
    byte-level BPE tokenizer) or "base-en" (jina-embeddings-v2-base-en, WordPiece tokenizer).
    `prefix="bert."` stores every weight under `bert.`; `extras` adds pooler/cls/position_ids.
    `labels`: a `JinaBertForSequenceClassification` cross-encoder (jina-reranker-v1) instead."""
    if variant not in ("qk-post-norm", "base-en"):
        raise ValueError(f"unknown JinaBERT variant {variant!r}")
    path = Path(path)
    tok = bpe_tokenizer() if variant == "qk-post-norm" else wordpiece_tokenizer()
    if labels is not None:
        tok = pair_template(tok, *(("<s>", "</s>") if variant == "qk-post-norm" else ("[CLS]", "[SEP]")))
    vocab = _start_folder(path, tok, vocab, tokenizer)

    w = _Weights(seed, std)
    w.normal("embeddings.word_embeddings.weight", vocab, hidden)
    w.normal("embeddings.token_type_embeddings.weight", 2, hidden)
    w.layer_norm("embeddings.LayerNorm", hidden)
    for n in range(layers):
        p = f"encoder.layer.{n}."
        w.attention(p, hidden)
        if variant == "qk-post-norm":
            w.layer_norm(p + "attention.self.layer_norm_q", hidden)
            w.layer_norm(p + "attention.self.layer_norm_k", hidden)
            w.layer_norm(p + "layer_norm_1", hidden)
            w.linear(p + "mlp.up_gated_layer", 2 * intermediate, hidden, bias=False)
            w.linear(p + "mlp.down_layer", hidden, intermediate)
            w.layer_norm(p + "layer_norm_2", hidden)
        else:
            w.linear(p + "mlp.gated_layers", 2 * intermediate, hidden, bias=False)
            w.linear(p + "mlp.wo", hidden, intermediate)
            w.layer_norm(p + "mlp.layernorm", hidden)
    if extras:
        w.extras(hidden, vocab, 512)
    if labels is not None:
        w.head(hidden, labels)
    w.save(path, dtype, prefix)

    name = JINA_CODE_NAME if variant == "qk-post-norm" else JINA_BASE_NAME
    auto = {"AutoConfig": f"{name}--configuration_bert.JinaBertConfig",
            "AutoModel": f"{name}--modeling_bert.JinaBertModel",
            "AutoModelForMaskedLM": f"{name}--modeling_bert.JinaBertForMaskedLM"}
    _write_json(path / "config.json", _cross_encoder_config({
        "_name_or_path": name, "architectures": ["JinaBertForMaskedLM"], "auto_map": auto,
        "attention_probs_dropout_prob": 0.0, "classifier_dropout": None, "emb_pooler": "mean",
        "feed_forward_type": "geglu", "gradient_checkpointing": False, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0, "hidden_size": hidden, "initializer_range": 0.02,
        "intermediate_size": intermediate, "layer_norm_eps": 1e-12, "max_position_embeddings": 8192,
        "model_max_length": 8192, "model_type": "bert", "num_attention_heads": heads,
        "num_hidden_layers": layers, "pad_token_id": 0, "position_embedding_type": "alibi",
        "torch_dtype": dtype, "transformers_version": "4.39.1", "type_vocab_size": 2, "use_cache": True,
        "vocab_size": vocab,
    }, "JinaBert", labels))
    return path


# ---------------------------------------------------------------- BERT


def make_bert(path: str | Path, *, hidden: int = 48, heads: int = 6, layers: int = 2, intermediate: int = 96,
              vocab: int | None = None, max_positions: int = 128, dtype: str = "float32", prefix: str = "",
              extras: bool = True, seed: int = 0, std: float = 0.1, pooling: str = "mean",
              sentence_transformers: bool = True, query_prefix: str | None = None,
              max_seq_length: int | None = 64, tokenizer: bool = True, labels: int | None = None) -> Path:
    """A random BERT checkpoint (MiniLM / bge / arctic-embed layout) with a WordPiece tokenizer and,
    when `sentence_transformers`, the files that give its pooling (mean/cls), query prompt and max length.
    `labels`: a `BertForSequenceClassification` cross-encoder (ms-marco MiniLM) instead."""
    path = Path(path)
    tok = wordpiece_tokenizer() if labels is None else pair_template(wordpiece_tokenizer(), "[CLS]", "[SEP]")
    vocab = _start_folder(path, tok, vocab, tokenizer)

    w = _Weights(seed, std)
    w.normal("embeddings.word_embeddings.weight", vocab, hidden)
    w.normal("embeddings.position_embeddings.weight", max_positions, hidden)
    w.normal("embeddings.token_type_embeddings.weight", 2, hidden)
    w.layer_norm("embeddings.LayerNorm", hidden)
    for n in range(layers):
        p = f"encoder.layer.{n}."
        w.attention(p, hidden)
        w.linear(p + "intermediate.dense", intermediate, hidden)
        w.linear(p + "output.dense", hidden, intermediate)
        w.layer_norm(p + "output.LayerNorm", hidden)
    if extras:
        w.extras(hidden, vocab, max_positions)
    if labels is not None:
        w.head(hidden, labels)
    w.save(path, dtype, prefix)

    _write_json(path / "config.json", _cross_encoder_config({
        "_name_or_path": "random/bert", "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1,
        "classifier_dropout": None, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": hidden,
        "initializer_range": 0.02, "intermediate_size": intermediate, "layer_norm_eps": 1e-12,
        "max_position_embeddings": max_positions, "model_type": "bert", "num_attention_heads": heads,
        "num_hidden_layers": layers, "pad_token_id": 0, "position_embedding_type": "absolute",
        "torch_dtype": dtype, "transformers_version": "4.39.1", "type_vocab_size": 2, "use_cache": True,
        "vocab_size": vocab,
    }, "Bert", labels))
    if sentence_transformers:
        write_sentence_transformers(path, hidden, pooling, query_prefix, max_seq_length)
    return path


def write_sentence_transformers(path: Path, hidden: int, pooling: str = "mean", query_prefix: str | None = None,
                                max_seq_length: int | None = None, document_prefix: str | None = None) -> None:
    """modules.json, 1_Pooling/config.json, sentence_bert_config.json, config_sentence_transformers.json."""
    if pooling not in ("mean", "cls", "last"):
        raise ValueError(f"unknown pooling {pooling!r}")
    _write_json(path / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    _write_json(path / "1_Pooling" / "config.json", {
        "word_embedding_dimension": hidden, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": pooling == "last", "include_prompt": True,
    })
    if max_seq_length is not None:
        _write_json(path / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})
    prompts = {name: prompt for name, prompt in (("query", query_prefix), ("document", document_prefix)) if prompt}
    _write_json(path / "config_sentence_transformers.json", {
        "__version__": {"sentence_transformers": "3.0.1", "transformers": "4.39.1", "pytorch": "2.3.0"},
        "prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine",
    })


# ---------------------------------------------------------------- NomicBERT


NOMIC_NAME = "nomic-ai/nomic-bert-2048"


def make_nomic_bert(path: str | Path, *, hidden: int = 48, heads: int = 6, layers: int = 2, inner: int = 256,
                    vocab: int | None = None, dtype: str = "float32", prefix: str = "", extras: bool = True,
                    seed: int = 0, std: float = 0.1, pooling: str = "cls", sentence_transformers: bool = True,
                    query_prefix: str | None = None, document_prefix: str | None = None,
                    max_seq_length: int | None = None, biases: bool = False, rotary_base: float = 1000,
                    scaling_factor: float | None = None, trained_positions: int = 2048, type_vocab_size: int = 2,
                    tokenizer: bool = True) -> Path:
    """A random NomicBERT checkpoint (CodeRankEmbed / nomic-embed-text-v1.5 layout, MODELS.md §4) with an
    uncased WordPiece tokenizer. Like the published files: the word table padded to a multiple of 64
    rows (`pad_vocab_size_multiple`), an MLP width (`inner`) that is a multiple of 256, no biases
    (`biases=True` adds them and sets the three bias flags), `rotary_emb_base` 1000 and no rotary scaling
    (`scaling_factor` and `trained_positions` turn on dynamic NTK past that length). `extras` adds the
    unused pooler; `prefix="bert."` stores the encoder under `bert.` (a NomicBertForPreTraining file)."""
    path = Path(path)
    vocab = _start_folder(path, wordpiece_tokenizer(), vocab, tokenizer)
    vocab = -(-vocab // 64) * 64

    w = _Weights(seed, std)
    w.normal("embeddings.word_embeddings.weight", vocab, hidden)
    if type_vocab_size:
        w.normal("embeddings.token_type_embeddings.weight", type_vocab_size, hidden)
    w.layer_norm("emb_ln", hidden)
    for n in range(layers):
        p = f"encoder.layers.{n}."
        w.linear(p + "attn.Wqkv", 3 * hidden, hidden, bias=biases)
        w.linear(p + "attn.out_proj", hidden, hidden, bias=biases)
        w.linear(p + "mlp.fc11", inner, hidden, bias=biases)
        w.linear(p + "mlp.fc12", inner, hidden, bias=biases)
        w.linear(p + "mlp.fc2", hidden, inner, bias=biases)
        w.layer_norm(p + "norm1", hidden)
        w.layer_norm(p + "norm2", hidden)
    if extras:
        w.linear("pooler.dense", hidden, hidden)
    w.save(path, dtype, prefix)

    auto = {"AutoConfig": f"{NOMIC_NAME}--configuration_hf_nomic_bert.NomicBertConfig",
            "AutoModel": f"{NOMIC_NAME}--modeling_hf_nomic_bert.NomicBertModel",
            "AutoModelForMaskedLM": f"{NOMIC_NAME}--modeling_hf_nomic_bert.NomicBertForPreTraining"}
    _write_json(path / "config.json", {
        "_name_or_path": NOMIC_NAME, "activation_function": "swiglu", "architectures": ["NomicBertModel"],
        "attn_pdrop": 0.0, "auto_map": auto, "bos_token_id": None, "causal": False, "dense_seq_output": True,
        "embd_pdrop": 0.0, "eos_token_id": None, "fused_bias_fc": True, "fused_dropout_add_ln": True,
        "initializer_range": 0.02, "layer_norm_epsilon": 1e-12, "max_trained_positions": trained_positions,
        "mlp_fc1_bias": biases, "mlp_fc2_bias": biases, "model_type": "nomic_bert", "n_embd": hidden,
        "n_head": heads, "n_inner": inner, "n_layer": layers, "n_positions": 8192, "pad_vocab_size_multiple": 64,
        "parallel_block": False, "parallel_block_tied_norm": False, "prenorm": False, "qkv_proj_bias": biases,
        "reorder_and_upcast_attn": False, "resid_pdrop": 0.0, "rotary_emb_base": rotary_base,
        "rotary_emb_fraction": 1.0, "rotary_emb_interleaved": False, "rotary_emb_scale_base": None,
        "rotary_scaling_factor": scaling_factor, "scale_attn_by_inverse_layer_idx": False, "scale_attn_weights": True,
        "summary_activation": None, "summary_first_dropout": 0.0, "summary_proj_to_labels": True,
        "summary_type": "cls_index", "summary_use_proj": True, "torch_dtype": dtype,
        "transformers_version": "4.37.2", "type_vocab_size": type_vocab_size, "use_cache": True,
        "use_flash_attn": True, "use_rms_norm": False, "use_xentropy": True, "vocab_size": vocab,
    })
    if sentence_transformers:
        write_sentence_transformers(path, hidden, pooling, query_prefix, max_seq_length, document_prefix)
    return path


# ---------------------------------------------------------------- pytest helper

_MAKERS = {"jinabert": make_jinabert, "bert": make_bert, "nomic_bert": make_nomic_bert}


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory):
    """Session fixture: `make_checkpoint("jinabert" | "bert" | "nomic_bert", **kwargs) -> Path`, one folder per
    distinct set of arguments (built once, shared by every test that asks for it)."""
    made: dict[tuple, Path] = {}

    def make(kind: str, **kwargs) -> Path:
        key = (kind, tuple(sorted(kwargs.items())))
        if key not in made:
            made[key] = _MAKERS[kind](tmp_path_factory.mktemp(kind), **kwargs)
        return made[key]

    return make


def random_tokens(rng: np.random.Generator, lengths: list[int], vocab: int, first: int = 5) -> list[list[int]]:
    """Random token id lists of the given lengths, avoiding the special ids below `first`."""
    return [rng.integers(first, vocab, n).tolist() for n in lengths]


def pad_tokens(sequences: list[list[int]], pad_id: int = 0, left: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Pad id lists to (ids, attention_mask) int64 arrays, on the right or on the left."""
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        cols = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, cols] = seq
        mask[row, cols] = 1
    return ids, mask
