"""Export a Hugging Face encoder or cross-encoder folder to ONNX files: fp32, int8 (CPU,
`convert.onnx_int8`) and fp16 (CUDA).

`onnx_model(folder, precision)` is what loaders call: it returns the folder's own ONNX file
when the folder was made by `hhg convert --onnx...`, and otherwise exports once into a cache
(`<folder>/hhg-onnx/`, or `~/.cache/hhg/onnx/<key>/` for read-only folders and Hugging Face
cache snapshots) that is reused until the weights change.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from hhg_mlx.errors import ModelUnavailable
from hhg_mlx.models.folder import is_cross_encoder, read_settings, snapshot_repo

from .weights import load_encoder_weights, weight_files

PRECISIONS = ("fp32", "int8", "fp16")
# The int8 file is named after its scheme: folders converted before it (`model.int8.onnx`, per-batch
# dynamic quantisation) are not read for int8 any more; their weights are exported again instead.
FILENAMES = {"fp32": "model.onnx", "int8": "model.q8.onnx", "fp16": "model.fp16.onnx"}
GRAPH_VERSION = 4        # bump when the exported graph changes: invalidates cached exports
CACHE_SUBDIR = "hhg-onnx"


def export(folder: Path, out: Path, precision: str) -> Path:
    """Write the ONNX file for `precision` from the checkpoint in `folder` to `out` (atomically)."""
    from .onnx_graph import build_graph, save_model   # imports onnx

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
    config = read_settings(folder).config
    model = build_graph(load_encoder_weights(folder, head=is_cross_encoder(config)), config,
                        dtype="float16" if precision == "fp16" else "float32")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export-") as tmp:
        staged = Path(tmp) / out.name
        if precision == "int8":
            from .onnx_int8 import quantize_matmuls
            model = quantize_matmuls(model)
        save_model(model, staged)
        for produced in Path(tmp).iterdir():     # the model and, for > 2 GB graphs, its .data file
            os.replace(produced, out.parent / produced.name)
    return out


def source_key(folder: Path) -> str:
    """Identifies the weights an export came from (path, size and mtime of each file), the config.json
    it was built with (the graph depends on it: sizes, epsilon, rotary base) and the graph version."""
    parts = [f"graph={GRAPH_VERSION}", hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()]
    for path in weight_files(folder):
        stat = path.stat()
        parts.append(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def cache_dir(folder: Path) -> Path:
    """Where exports of `folder` live: next to the weights when the folder is writable and not a
    Hugging Face cache snapshot (the hub library manages those), else in the user cache."""
    if os.access(folder, os.W_OK) and snapshot_repo(folder) is None:
        return folder / CACHE_SUBDIR
    from hhg_mlx.paths import cache_dir

    return cache_dir() / "onnx" / source_key(folder)


def onnx_model(folder: Path, precision: str) -> Path:
    """The ONNX file for `precision`: shipped by a converted folder, cached, or exported now (once)."""
    shipped = folder / FILENAMES[precision]
    if shipped.is_file():
        return shipped
    quantized = read_settings(folder).config.get("quantization")
    if quantized:
        raise ModelUnavailable(f"{folder} holds {quantized['bits']}-bit MLX weights, which ONNX Runtime cannot run; "
                               f"convert the original model with `hhg convert SRC OUT --onnx-int8`")
    cache = cache_dir(folder)
    path, stamp = cache / FILENAMES[precision], cache / f"{FILENAMES[precision]}.source"
    key = source_key(folder)
    if path.is_file() and stamp.is_file() and stamp.read_text() == key:
        return path
    export(folder, path, precision)
    stamp.write_text(key)
    return path
