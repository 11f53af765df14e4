"""`hhg convert` for the Qwen2/Qwen3 embedders: mlx-lm weights (float32/float16/bfloat16, 8/4-bit).

The weights go through the same loader the encoder uses (so both checkpoint layouts work) and are
saved with mlx-lm's `save_model`/`save_config`, quantised in mlx-lm's format; everything that makes
the folder an embedder (tokenizer, sentence-transformers prompts and pooling, licence) is copied.
"""
from __future__ import annotations

import shutil
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".onnx_data", ".gguf", ".h5", ".msgpack")
SKIPPED_FILES = ("config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json")


def embedding_files(src: Path) -> list[Path]:
    """Everything but weights and config.json at the top level, plus sentence-transformers module
    folders (`1_Pooling`, `2_Normalize`, ...)."""
    files = [p for p in src.iterdir() if p.is_file() and not p.name.startswith(".")
             and p.name not in SKIPPED_FILES and not p.name.endswith(WEIGHT_SUFFIXES)]
    modules = [p for p in src.iterdir() if p.is_dir() and p.name[:1].isdigit() and "_" in p.name]
    return sorted(files + modules)


def copy_embedding_files(src: Path, out: Path) -> None:
    """Copy `embedding_files(src)` into `out`."""
    for path in embedding_files(src):
        if path.is_dir():
            shutil.copytree(path, out / path.name, dirs_exist_ok=True)
        else:
            shutil.copy2(path, out / path.name)


def convert_qwen(src: Path, out: Path, dtype: str = "bfloat16", quantize: int | None = None,
                 group_size: int = 64) -> dict:
    """Write the converted model to `out` (which must not hold another model); return a summary
    (architecture, pooling, dtype, quantisation, bytes before/after)."""
    from mlx_lm.utils import save_config, save_model

    from hhg_mlx.models.qwen import DTYPES, load_model_folder, quantize_weights

    src, out = Path(src), Path(out)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}")
    model, config = load_model_folder(src)
    model.set_dtype(DTYPES[dtype])
    if quantize:
        if "quantization" in config:
            raise ValueError(f"{src} is quantised already; convert the original model")
        config = quantize_weights(model, config, quantize, group_size)
    out.mkdir(parents=True, exist_ok=True)
    save_model(out, model)
    save_config({**config, "torch_dtype": dtype}, out / "config.json")
    copy_embedding_files(src, out)
    return {
        "architecture": config["model_type"], "pooling": "last", "dtype": dtype,
        "quantization": config.get("quantization"),
        "bytes_before": sum(p.stat().st_size for p in src.glob("model*.safetensors")),
        "bytes_after": sum(p.stat().st_size for p in out.glob("model*.safetensors")),
    }
