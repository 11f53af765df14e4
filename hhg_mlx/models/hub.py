"""Find a model on disk: a local folder (Hugging Face or converted layout), or a copy in the
standard Hugging Face cache, downloading only the files an encoder needs when allowed.
`huggingface_hub` is imported only when the cache is consulted."""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import ModelUnavailable
from . import registry

ALLOW_PATTERNS = [
    "config.json", "model*.safetensors", "model.safetensors.index.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "modules.json", "1_Pooling/*", "sentence_bert_config.json", "config_sentence_transformers.json",
]
_REPO_ID = re.compile(r"^[\w][\w.-]*/[\w][\w.-]*$")


def resolve_model(model: str, *, download: bool) -> Path:
    """A registry id, Hugging Face repo id, local folder or GGUF file → the local folder holding the
    model (a GGUF file is converted once into the user cache). Raises `ModelUnavailable` (one line,
    with the fix) when there is no usable copy."""
    if is_gguf_file(model):
        from convert.from_gguf.cache import converted_folder

        return converted_folder(model)
    folder = _local_folder(model)
    if folder is not None:
        return folder
    repo = _repo_for(model)
    cached = _cached_snapshot(repo)
    if cached is not None:
        return cached
    if not download:
        raise ModelUnavailable(f"model {model} is not installed; run `hhg model install {model}` or pass a local folder")
    return _download(model, repo)


def is_gguf_file(model: str) -> bool:
    """`model` names a GGUF file (by its suffix: llama.cpp's files are always called *.gguf)."""
    return str(model).lower().endswith(".gguf") and model not in registry.REGISTRY


def is_repo_id(name: str) -> bool:
    """`name` has the form of a Hugging Face repo id (org/name)."""
    return bool(_REPO_ID.match(name))


def is_installed(model: str) -> bool:
    """A local model folder or GGUF file, or a complete copy in the Hugging Face cache. Never touches
    the network."""
    if is_gguf_file(model):
        return Path(model).expanduser().is_file()
    try:
        return _local_folder(model) is not None or _cached_snapshot(_repo_for(model)) is not None
    except ModelUnavailable:
        return False


def _local_folder(model: str) -> Path | None:
    """The folder `model` names, if it is one (registry ids win over same-named folders)."""
    if model in registry.REGISTRY:
        return None
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelUnavailable(f"{model} is not a model folder (no config.json)")
        return path.resolve()
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ModelUnavailable(f"{model}: no such model folder")
    return None


def _repo_for(model: str) -> str:
    info = registry.get(model)
    if info is not None:
        return info.repo
    if is_repo_id(model):
        return model
    raise ModelUnavailable(f"unknown model {model!r}: not a registry id (see `hhg model list`), "
                           "a Hugging Face repo id (org/name) or a model folder")


def _complete(folder: Path) -> bool:
    """config.json, tokenizer.json and every weight shard are present."""
    if not ((folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()):
        return False
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        return bool(shards) and all((folder / shard).is_file() for shard in shards)
    return any(folder.glob("model*.safetensors"))


def _cached_snapshot(repo: str) -> Path | None:
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo, allow_patterns=ALLOW_PATTERNS, local_files_only=True))
    except Exception:       # not cached (LocalEntryNotFoundError), or an unreadable cache entry
        return None
    return folder if _complete(folder) else None


def _download(model: str, repo: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        folder = Path(snapshot_download(repo, allow_patterns=ALLOW_PATTERNS))
    except GatedRepoError:
        raise ModelUnavailable(f"{repo} is gated on the Hugging Face hub; accept its terms there and log in "
                               "(`hf auth login`)") from None
    except RepositoryNotFoundError:
        raise ModelUnavailable(f"no model {repo} on the Hugging Face hub") from None
    except Exception:
        raise ModelUnavailable(f"model {model} is not installed and the Hugging Face hub cannot be reached; "
                               f"run `hhg model install {model}` on a connected machine or pass a local folder") from None
    if not _complete(folder):
        raise ModelUnavailable(f"{repo} has no safetensors weights or tokenizer.json (not supported)")
    return folder
