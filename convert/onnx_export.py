"""Export a Hugging Face encoder folder to ONNX files: fp32, dynamic int8 (CPU) and fp16 (CUDA).

`onnx_model(folder, precision)` is what loaders call: it returns the folder's own ONNX file
when the folder was made by `hhg convert --onnx...`, and otherwise exports once into a cache
(`<folder>/hhg-onnx/`, or `~/.cache/hhg/onnx/<key>/` for read-only folders and Hugging Face
cache snapshots) that is reused until the weights change.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from hhg_mlx.errors import ModelUnavailable
from hhg_mlx.models.folder import read_settings

from .weights import load_encoder_weights, weight_files

PRECISIONS = ("fp32", "int8", "fp16")
FILENAMES = {"fp32": "model.onnx", "int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}
GRAPH_VERSION = 2        # bump when the exported graph changes: invalidates cached exports
CACHE_SUBDIR = "hhg-onnx"


def export(folder: Path, out: Path, precision: str) -> Path:
    """Write the ONNX file for `precision` from the checkpoint in `folder` to `out` (atomically)."""
    from .onnx_graph import build_graph, save_model   # imports onnx

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
    model = build_graph(load_encoder_weights(folder), read_settings(folder).config,
                        dtype="float16" if precision == "fp16" else "float32")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export-") as tmp:
        staged = Path(tmp) / out.name
        if precision == "int8":
            quantize_int8(model, staged)
        else:
            save_model(model, staged)
        for produced in Path(tmp).iterdir():     # the model and, for > 2 GB graphs, its .data file
            os.replace(produced, out.parent / produced.name)
    return out


def quantize_int8(model, out: Path) -> None:
    """Dynamic int8 quantisation of the weight GEMMs (activations quantised per batch at run time).
    Per-channel weight scales: on MiniLM (24 code snippets and queries) the lowest cosine to fp32
    is 0.991 with them and 0.935 with one scale per tensor."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from .onnx_graph import PROTOBUF_LIMIT

    logging.disable(logging.WARNING)        # quantize_dynamic logs advice to the root logger (stderr)
    try:
        quantize_dynamic(model, out, op_types_to_quantize=["MatMul"], per_channel=True,
                         weight_type=QuantType.QInt8,
                         use_external_data_format=sum(t.ByteSize() for t in model.graph.initializer) > PROTOBUF_LIMIT,
                         extra_options={"MatMulConstBOnly": True,
                                        # contrib operators stop ONNX shape inference: their outputs are float
                                        "DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        logging.disable(logging.NOTSET)


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
    hub_snapshot = folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--")
    if os.access(folder, os.W_OK) and not hub_snapshot:
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
