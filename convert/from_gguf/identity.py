"""Which model a GGUF file holds and how it pools: the registry entry its metadata names
(`general.name`, `general.basename` [+ `general.size_label`], or a Hugging Face repository URL),
and `{arch}.pooling_type`."""
from __future__ import annotations

import re

from hhg_mlx.models import registry
from hhg_mlx.models.registry import ModelInfo

from .reader import GGUFError, GGUFFile

POOLING_TYPES = {1: "mean", 2: "cls", 3: "last"}        # gguf.PoolingType; 0 NONE = not declared
_HUB_URL = re.compile(r"huggingface\.co/([\w.-]+/[\w.-]+)")


def registry_entry(gguf: GGUFFile, model_id: str | None = None) -> ModelInfo | None:
    """The registry model `model_id` names, else the one the file's metadata names, else None."""
    if model_id is not None:
        return registry.get(model_id)
    for name in _names(gguf):
        info = registry.get(name) or next(
            (i for i in registry.REGISTRY.values() if i.repo.split("/")[-1].lower() == name.lower()), None)
        if info is not None:
            return info
    return None


def _names(gguf: GGUFFile) -> list[str]:
    """Repository ids from the URLs, then the model's names as hub repository names would spell them."""
    urls = [gguf.value(key, "") for key in ("general.source.repo_url", "general.repo_url", "general.url")]
    repos = [m.group(1) for url in urls if (m := _HUB_URL.search(url))]
    basename, size = gguf.value("general.basename", ""), gguf.value("general.size_label", "")
    names = [gguf.value("general.name", ""), basename, f"{basename}-{size}" if basename and size else ""]
    return repos + [re.sub(r"[\s_]+", "-", name.strip()) for name in names if name.strip()]


def pooling(gguf: GGUFFile, architecture: str, info: ModelInfo | None, given: str | None) -> str:
    """`given` (--pooling), else the file's `pooling_type`, else the registry entry's; the Qwen
    embedders always pool their last token."""
    declared = POOLING_TYPES.get(gguf.arch_value("pooling_type", 0))
    chosen = given or declared or (info.pooling if info else None)
    if architecture in ("qwen2", "qwen3"):
        if chosen not in (None, "last"):
            raise GGUFError(f"{gguf.path}: hhg runs {architecture} embedders with last-token pooling, "
                            f"not {chosen}")
        return "last"
    if chosen is None:
        raise GGUFError(f"{gguf.path}: the GGUF file declares no pooling and names no known model; "
                        "pass --pooling mean|cls|last (and --model-id ID for a registry model's prompts)")
    return chosen
