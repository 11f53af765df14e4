"""Open a GGUF file with llama.cpp's own reader (the `gguf` package): metadata, tensors
dequantised to float32 (F32, F16, BF16, Q8_0, Q4_0/1, Q5_0/1, the K-quants, ...), and the
checks that turn a damaged file into a one-line error instead of garbage weights.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hhg_mlx.errors import HhgError, ModelUnavailable

_MISSING = object()


class GGUFError(HhgError):
    """A GGUF file that cannot be converted (damaged, incomplete, or not a supported model)."""


@dataclass
class GGUFFile:
    """A parsed GGUF file: `fields` maps metadata keys to values, `tensors` names to the reader's
    tensors (memory-mapped; nothing is dequantised until `array` asks)."""

    path: Path
    fields: dict[str, Any]
    tensors: dict[str, Any]

    @property
    def architecture(self) -> str:
        return self.value("general.architecture")

    def value(self, key: str, default: Any = _MISSING) -> Any:
        """A metadata value; without `default`, a missing key is a one-line error."""
        if key in self.fields:
            return self.fields[key]
        if default is _MISSING:
            raise GGUFError(f"{self.path}: GGUF metadata has no {key}")
        return default

    def arch_value(self, key: str, default: Any = _MISSING) -> Any:
        """`{architecture}.{key}`, e.g. `arch_value("embedding_length")`."""
        return self.value(f"{self.architecture}.{key}", default)

    def shape(self, name: str) -> tuple[int, ...]:
        """A tensor's shape in checkpoint (row-major) order: GGUF lists dimensions reversed."""
        return tuple(int(n) for n in reversed(self.tensors[name].shape.tolist()))

    def array(self, name: str) -> np.ndarray:
        """A tensor as float32 in checkpoint order, dequantised by llama.cpp's own code."""
        from gguf.quants import dequantize

        tensor = self.tensors[name]
        return np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32).reshape(self.shape(name))

    def quantization(self) -> str:
        """The file's type as llama.cpp names it (`general.file_type`, e.g. "Q4_K_M"), else the
        type most of its matrices are stored in."""
        from gguf import GGMLQuantizationType, LlamaFileType

        file_type = self.fields.get("general.file_type")
        if file_type is not None:
            try:
                return LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
            except ValueError:
                pass
        kinds = Counter(GGMLQuantizationType(t.tensor_type).name for t in self.tensors.values() if len(t.shape) > 1)
        return kinds.most_common(1)[0][0] if kinds else "F32"


def open_gguf(path: str | Path) -> GGUFFile:
    """Parse `path`; a missing, truncated or malformed file is a `GGUFError` naming it."""
    from gguf import GGUFReader

    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelUnavailable(f"{path}: no such GGUF file")
    try:
        reader = GGUFReader(path)
    except Exception as err:        # the reader fails in many ways on cut-off or foreign data
        reason = f"{type(err).__name__}: {err}".splitlines()[0]
        raise GGUFError(f"{path}: not a GGUF file, or truncated or damaged "
                        f"({path.stat().st_size:,} bytes; {reason})") from None
    fields = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    return GGUFFile(path, fields, {tensor.name: tensor for tensor in reader.tensors})
