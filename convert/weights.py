"""Read (and write) Hugging Face safetensors checkpoints with numpy, without a deep-learning framework.

NumPy has no bfloat16, so `safetensors.numpy` cannot read BF16 files; this reader widens BF16
to float32 (exactly: bfloat16 is the top half of a float32) and memory-maps everything else.
"""
from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path
from typing import Callable

import numpy as np

from hhg_mlx.errors import ModelUnavailable

_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
           "I8": "i1", "U8": "u1", "BOOL": "?"}
IGNORED_PREFIXES = ("pooler.", "classifier.", "cls.", "lm_head.")
HEAD_PREFIXES = ("pooler.", "classifier.")      # a cross-encoder's head (MODELS.md §6)


def weight_files(folder: Path) -> list[Path]:
    """The checkpoint's safetensors files (`model.safetensors` or its shards)."""
    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        raise ModelUnavailable(f"{folder} has no model*.safetensors weights (PyTorch .bin checkpoints are not supported)")
    return files


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """All tensors of one file; BF16 widened to float32, other types as stored (memory-mapped)."""
    with open(path, "rb") as fh:
        header_len = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(header_len))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = data[start:end]
        if info["dtype"] == "BF16":
            array = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] in _DTYPES:
            array = raw.view(_DTYPES[info["dtype"]])
        else:
            raise ModelUnavailable(f"{path.name}: tensor {name} has unsupported dtype {info['dtype']}")
        tensors[name] = array.reshape(info["shape"])
    return tensors


def load_encoder_weights(folder: Path, *, head: bool = False) -> dict[str, np.ndarray]:
    """The encoder's tensors under their canonical names: a leading `bert.` is dropped, heads,
    poolers and buffers (`position_ids`) are left out; with `head`, a cross-encoder's pooler and
    classifier are kept."""
    weights = {}
    for path in weight_files(folder):
        for name, array in read_safetensors(path).items():
            name = name.removeprefix("bert.")
            kept = head and name.startswith(HEAD_PREFIXES)
            if (name.startswith(IGNORED_PREFIXES) and not kept) or name.endswith("position_ids"):
                continue
            weights[name] = array
    return weights


def write_safetensors(path: Path, tensors: dict[str, tuple[tuple[int, ...], Callable[[], np.ndarray]]]) -> None:
    """Write float32 tensors one at a time (each given as its shape and a function producing it),
    so that a model larger than memory's spare room can be written from a memory-mapped source."""
    header, offset = {}, 0
    for name, (shape, _) in tensors.items():
        size = 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(head)) + head)
        for _, produce in tensors.values():
            fh.write(np.ascontiguousarray(produce(), dtype="<f4").tobytes())


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
