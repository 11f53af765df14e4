"""`load_encoder`: a model name → a ready `Encoder` on the chosen backend.

Backends are imported lazily: MLX (`hhg_mlx/models/mlx_encoder.py`, `hhg_mlx/models/qwen.py`)
and ONNX Runtime (`fallback/onnx_encoder.py`).

On Linux, MLX runs on the CPU, where float16/bfloat16 and quantised matmuls bypass BLAS and
are 12-33x slower than float32: the default float32 is the fast choice there; the other dtypes
and `quantize` work everywhere (for accuracy checks, or Apple silicon where they pay off).
"""
from __future__ import annotations

import platform
import sys
from pathlib import Path

from .encoder import Encoder
from .errors import UnsupportedModel
from .models import registry
from .models.folder import encoder_spec, load_tokenizer, model_architecture, read_settings
from .models.hub import resolve_model

BACKENDS = ("auto", "mlx", "onnx", "onnx-cuda")
DTYPES = ("float32", "float16", "bfloat16")
QWEN_ARCHITECTURES = ("qwen2", "qwen3")
ONNX_ARCHITECTURES = ("jinabert", "bert")


def choose_backend(requested: str, architecture: str, folder: Path) -> str:
    """The concrete backend for `requested`. "auto": MLX on Apple silicon (Metal), for
    architectures without an ONNX export (Qwen) and for MLX-quantised folders; ONNX Runtime on
    CUDA where onnxruntime-gpu runs on a GPU; otherwise ONNX Runtime on the CPU (2-3x MLX-CPU's
    speed there, DESIGN.md)."""
    if requested not in BACKENDS:
        raise UnsupportedModel(f"unknown backend {requested!r} (choose from {', '.join(BACKENDS)})")
    if requested != "auto":
        return requested
    if architecture not in ONNX_ARCHITECTURES or (sys.platform == "darwin" and platform.machine() == "arm64"):
        return "mlx"
    if read_settings(folder).config.get("quantization") and not any(folder.glob("model*.onnx")):
        return "mlx"            # MLX-quantised converted folder: ONNX Runtime cannot run those weights
    from fallback.onnx_encoder import cuda_usable
    return "onnx-cuda" if cuda_usable() else "onnx"


def load_encoder(model: str, backend: str = "auto", dtype: str = "float32", quantize: int | None = None,
                 dim: int | None = None, *, download: bool = True, task: str | None = None,
                 max_length: int | None = None) -> Encoder:
    """An encoder for `model` (registry id, Hugging Face repo id, or local folder in HF or
    converted layout). `dim` truncates Matryoshka models; `task` picks the prompt pair of models
    that have several; `max_length` caps tokens per text (default 512, or the model's own lower
    limit). Raises `ModelUnavailable` (no local copy and no download) or `UnsupportedModel`."""
    if dtype not in DTYPES:
        raise UnsupportedModel(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
    if quantize not in (None, 8, 4):
        raise UnsupportedModel(f"quantize must be 8 or 4 bits, not {quantize}")
    info = registry.get(model)
    folder = resolve_model(model, download=download)
    settings = read_settings(folder)
    architecture = model_architecture(settings, info)
    chosen = choose_backend(backend, architecture, folder)
    if architecture in QWEN_ARCHITECTURES:
        if chosen != "mlx":
            raise UnsupportedModel(f"{model}: {architecture} models run on the MLX backend only")
        from .models.qwen import load_qwen_encoder
        return load_qwen_encoder(folder, info, dtype, quantize, dim, task)

    tokenizer = load_tokenizer(folder)
    model_id = model if info or not Path(model).expanduser().is_dir() else str(folder)
    spec = encoder_spec(folder, model_id, info, tokenizer, dim=dim, max_length=max_length, settings=settings)
    if chosen == "mlx":
        from .models.mlx_encoder import load_mlx_encoder
        return load_mlx_encoder(folder, spec, architecture, settings.config, tokenizer, dtype, quantize)
    try:
        from fallback.onnx_encoder import load_onnx_encoder, onnx_precision
    except ImportError:
        raise UnsupportedModel(f"backend {chosen} is not available in this installation") from None
    # auto with default dtype/quantize: the fastest precision (int8 on the CPU, fp16 on CUDA)
    precision = onnx_precision(chosen, dtype, quantize, fastest=backend == "auto")
    return load_onnx_encoder(folder, spec, tokenizer=tokenizer, backend=chosen, precision=precision)
