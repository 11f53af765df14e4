"""GGUF files (llama.cpp's format, what llama.cpp, LM Studio, GPT4All and Ollama keep models in) →
ordinary Hugging Face model folders that `hhg convert` and the loaders take, with no second download.

`identify(FILE.gguf)` reads the header and finds the registry model; `unpack` writes config.json (from the metadata), model.safetensors (every weight
dequantised to float32 under its checkpoint name), tokenizer.json (rebuilt from the vocabulary)
and an hhg.json with the pooling and the registry id the file names. The `gguf` package (llama.cpp's
own reader, dequantiser and name tables) is imported only here.

Modules: `reader` (open, check, dequantise), `config` (metadata → config.json), `tensors` (GGUF
names → checkpoint names), `vocab` (→ tokenizer.json), `identity` (registry entry, pooling),
`cache` (`--model FILE.gguf`: converted once into the user cache).
"""
from __future__ import annotations

import json
from pathlib import Path

from hhg_mlx.models.registry import ModelInfo

from ..weights import file_sha256, write_safetensors
from .config import hf_config, hhg_architecture
from .identity import pooling as choose_pooling
from .identity import registry_entry
from .reader import GGUFError, GGUFFile, open_gguf
from .tensors import checkpoint_tensors
from .vocab import build_tokenizer

__all__ = ["GGUFError", "identify", "unpack"]


def identify(path: str | Path, model_id: str | None = None) -> tuple[GGUFFile, ModelInfo | None]:
    """Open the GGUF file (header and tensor index only) and find the registry model it holds:
    the one `model_id` names, else the one its metadata names, else None."""
    gguf = open_gguf(path)
    return gguf, registry_entry(gguf, model_id)


def unpack(gguf: GGUFFile, info: ModelInfo | None, folder: Path, *, pooling: str | None = None,
           model_id: str | None = None) -> dict:
    """Write the model of `gguf` (from `identify`) into `folder` in Hugging Face layout and return
    what hhg.json records as its source (repo, format, sha256, quantisation). `pooling` overrides the
    file's; `model_id` is recorded when no registry entry is known. Raises `GGUFError` (one line)
    for files that are damaged, incomplete or hold something hhg cannot run."""
    architecture = hhg_architecture(gguf)
    config = hf_config(gguf, architecture)
    _check_vocabulary(gguf, config)
    settings = {"architecture": architecture, "pooling": choose_pooling(gguf, architecture, info, pooling),
                "model_id": info.id if info else model_id}
    tensors = checkpoint_tensors(gguf, architecture, config)
    tokenizer = build_tokenizer(gguf)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "hhg.json").write_text(json.dumps(settings, indent=2) + "\n")
    tokenizer.save(str(folder / "tokenizer.json"))
    write_safetensors(folder / "model.safetensors", tensors)
    return {"repo": info.repo if info else None, "revision": None, "format": "gguf",
            "sha256": {gguf.path.name: file_sha256(gguf.path)}, "quantization": gguf.quantization()}


def _check_vocabulary(gguf: GGUFFile, config: dict) -> None:
    """One token per row of the embedding table, as llama.cpp requires."""
    tokens = len(gguf.value("tokenizer.ggml.tokens"))
    if tokens != config["vocab_size"]:
        raise GGUFError(f"{gguf.path}: the vocabulary has {tokens:,} tokens but the embedding table "
                        f"has {config['vocab_size']:,} rows")
