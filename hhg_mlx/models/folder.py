"""What a model folder says about its use: architecture, pooling, prompts, max length, pad id.

One place for every backend (MLX here, ONNX in `fallback/`). Sources, first match wins:
1. `hhg.json` of a converted folder: `architecture`, `pooling`, `query_prefix`, `document_prefix`,
   `max_length`, `dim`, `matryoshka_dims`, `matryoshka_layer_norm`, `model_id` (all optional);
2. the sentence-transformers files: `1_Pooling/config.json` (pooling flags),
   `config_sentence_transformers.json` (`prompts.query` / `prompts.document`),
   `sentence_bert_config.json` (`max_seq_length`);
3. the registry entry, if the model has one;
4. `config.json` (`emb_pooler`, `max_position_embeddings`) and defaults (mean pooling, no prefix).
Documents are truncated at `DEFAULT_MAX_LENGTH` tokens unless a shorter limit or an explicit
`max_length` applies; no limit goes past what the network takes (`model_max_length`).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..encoder import EncoderSpec
from ..errors import ModelUnavailable, UnsupportedModel
from . import nomic_config, registry
from .hub import is_gguf_file
from .registry import ModelInfo

if TYPE_CHECKING:
    from tokenizers import Tokenizer

DEFAULT_MAX_LENGTH = 512
T = TypeVar("T")
_POOLING_FLAGS = (("pooling_mode_cls_token", "cls"), ("pooling_mode_lasttoken", "last"),
                  ("pooling_mode_mean_tokens", "mean"))
_PAD_TOKENS = ("<pad>", "[PAD]", "<|endoftext|>")
# BERT's config.json names for the sizes that GPT-2-style configs (NomicBERT) call otherwise
_BERT_NAMES = {"hidden_size": "n_embd", "num_hidden_layers": "n_layer", "num_attention_heads": "n_head",
               "intermediate_size": "n_inner", "layer_norm_eps": "layer_norm_epsilon"}


def read_json(path: Path) -> Any:
    """A JSON file's content, or None when the file is absent."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise ModelUnavailable(f"{path}: unreadable ({err})") from None


@dataclass(frozen=True)
class FolderSettings:
    """The settings a folder itself declares (None = not declared)."""

    config: dict
    architecture: str | None = None
    pooling: str | None = None
    query_prefix: str | None = None
    document_prefix: str | None = None
    max_length: int | None = None
    dim: int | None = None
    matryoshka_dims: tuple[int, ...] = ()
    matryoshka_layer_norm: bool | None = None
    model_id: str | None = None


def read_settings(folder: Path) -> FolderSettings:
    folder = Path(folder)
    config = read_json(folder / "config.json")
    if not isinstance(config, dict):
        raise ModelUnavailable(f"{folder} is not a model folder (no config.json)")
    hhg = read_json(folder / "hhg.json") or {}
    pooling_flags = read_json(folder / "1_Pooling" / "config.json") or {}
    st_pooling = next((name for key, name in _POOLING_FLAGS if pooling_flags.get(key)), None)
    prompts = (read_json(folder / "config_sentence_transformers.json") or {}).get("prompts") or {}
    st_max = (read_json(folder / "sentence_bert_config.json") or {}).get("max_seq_length")
    return FolderSettings(
        config=config,
        architecture=hhg.get("architecture") or architecture_from_config(config),
        pooling=hhg.get("pooling") or st_pooling,
        query_prefix=_first(hhg.get("query_prefix"), prompts.get("query")),
        document_prefix=_first(hhg.get("document_prefix"), prompts.get("document"), prompts.get("passage")),
        max_length=hhg.get("max_length") or st_max,
        dim=hhg.get("dim"),
        matryoshka_dims=tuple(hhg.get("matryoshka_dims") or ()),
        matryoshka_layer_norm=hhg.get("matryoshka_layer_norm"),
        model_id=hhg.get("model_id"),
    )


def registry_info(model: str | Path) -> ModelInfo | None:
    """The registry model that `model` is: a registry id, a Hugging Face repo id, a local folder whose
    `hhg.json` names one (a folder made by `hhg convert`), a Hugging Face cache snapshot of a registry
    repo (what `snapshot_download` returns) or a GGUF file whose metadata names one; None for anything else."""
    info = registry.get(str(model))
    folder = Path(model).expanduser()
    if info is None and folder.is_dir():
        info = registry.get((read_json(folder / "hhg.json") or {}).get("model_id") or "") \
            or registry.get(snapshot_repo(folder) or "")
    elif info is None and is_gguf_file(str(model)) and folder.is_file():
        from convert.from_gguf import identify

        info = identify(folder)[1]
    return info


def snapshot_repo(folder: Path) -> str | None:
    """"org/name" for a Hugging Face cache snapshot `…/models--org--name/snapshots/<revision>`, else None."""
    folder = folder.resolve()
    cached = folder.parent.parent.name
    if folder.parent.name != "snapshots" or not cached.startswith("models--"):
        return None
    return cached.removeprefix("models--").replace("--", "/", 1)


def _first(*values: T | None) -> T | None:
    return next((v for v in values if v is not None), None)


def architecture_from_config(config: dict) -> str | None:
    """"jinabert" | "bert" | "nomic_bert" | "qwen2" | "qwen3" from config.json, None if unrecognised."""
    model_type = config.get("model_type")
    if model_type in ("qwen2", "qwen3", "nomic_bert"):
        return model_type
    jina = "jina-bert" in json.dumps(config.get("auto_map", {})) or any(
        str(name).startswith("JinaBert") for name in config.get("architectures") or ())
    if config.get("position_embedding_type") == "alibi" or jina:
        return "jinabert"
    if model_type == "bert":
        return "bert"
    return None


def is_cross_encoder(config: Mapping[str, Any]) -> bool:
    """config.json names a `*ForSequenceClassification` architecture: a cross-encoder reranker."""
    return any(str(name).endswith("ForSequenceClassification") for name in config.get("architectures") or ())


def model_architecture(settings: FolderSettings, info: ModelInfo | None) -> str:
    architecture = settings.architecture or (info.architecture if info else None)
    if architecture is None:
        kind = settings.config.get("model_type", "unknown")
        raise UnsupportedModel(f"model type {kind!r} is not supported "
                               "(supported: JinaBERT v2, BERT, NomicBERT, Qwen2, Qwen3)")
    return architecture


def bert_names(config: dict) -> dict:
    """config.json with BERT's names for the model's sizes (`hidden_size`, `num_attention_heads`, …),
    also where it uses GPT-2's (`n_embd`, `n_head`, …: NomicBERT)."""
    return {**{bert: config[gpt] for bert, gpt in _BERT_NAMES.items() if gpt in config}, **config}


def model_max_length(config: dict) -> int | None:
    """The most tokens the network takes: `nomic_config.max_input_length` for NomicBERT (the trained
    rotary positions), else `max_position_embeddings`; None when config.json does not say."""
    if config.get("model_type") == "nomic_bert":
        return nomic_config.max_input_length(config)
    return config.get("max_position_embeddings")


def load_tokenizer(folder: Path) -> Tokenizer:
    from tokenizers import Tokenizer

    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise ModelUnavailable(f"{folder} has no tokenizer.json")
    return Tokenizer.from_file(str(path))


def pad_token_id(folder: Path, tokenizer: Tokenizer, config: dict) -> int:
    """tokenizer_config.json's pad token, the tokenizer.json padding, a conventional pad token,
    then config.json's `pad_token_id`."""
    declared = (read_json(Path(folder) / "tokenizer_config.json") or {}).get("pad_token")
    if isinstance(declared, dict):
        declared = declared.get("content")
    padding = tokenizer.padding
    names = ([declared] if isinstance(declared, str) else []) + ([padding["pad_token"]] if padding else [])
    for name in names + list(_PAD_TOKENS):
        token_id = tokenizer.token_to_id(name)
        if token_id is not None:
            return token_id
    return int(config.get("pad_token_id") or 0)


def encoder_spec(folder: Path, model_id: str, info: ModelInfo | None, tokenizer: Tokenizer, *,
                 dim: int | None = None, max_length: int | None = None,
                 settings: FolderSettings | None = None) -> EncoderSpec:
    """The `EncoderSpec` for an encoder-only model folder (pooling, prompts, length, dims, pad id).
    A folder that is a copy of a registry model (`registry_info`) gets that entry's settings where it
    declares none; its id stays `model_id` (the folder), so an index keeps using the folder."""
    s = settings or read_settings(folder)
    model_id = s.model_id or (info.id if info else model_id)
    try:
        return _spec(s, model_id, info or registry_info(folder), dim, max_length,
                     pad_token_id(folder, tokenizer, s.config))
    except ValueError as err:          # e.g. a `dim` the model does not offer
        raise UnsupportedModel(str(err)) from None


def _spec(s: FolderSettings, model_id: str, info: ModelInfo | None, dim: int | None, max_length: int | None,
          pad_id: int) -> EncoderSpec:
    config = s.config
    network_limit = model_max_length(config)
    limit = s.max_length or (info.max_length if info else None) or network_limit or DEFAULT_MAX_LENGTH
    limit = min(limit, network_limit or limit)
    return EncoderSpec(
        model_id=model_id,
        pooling=s.pooling or (info.pooling if info else None)
        or ("cls" if is_cross_encoder(config) else config.get("emb_pooler")) or "mean",   # cross-encoder: its pooler's
        hidden_size=bert_names(config)["hidden_size"],
        max_length=min(limit, max_length or DEFAULT_MAX_LENGTH),
        query_prefix=_first(s.query_prefix, info.query_prefix if info else None) or "",
        document_prefix=_first(s.document_prefix, info.document_prefix if info else None) or "",
        dim=dim if dim is not None else s.dim,
        matryoshka_dims=s.matryoshka_dims or (tuple(info.matryoshka_dims) if info else ()),
        matryoshka_layer_norm=_first(s.matryoshka_layer_norm, info.matryoshka_layer_norm if info else None) or False,
        pad_token_id=pad_id,
    )
