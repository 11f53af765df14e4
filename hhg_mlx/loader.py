"""`load_encoder` / `load_reranker`: a model name → a ready `Encoder` / `Reranker` on the chosen backend.

Backends are imported lazily: MLX (`hhg_mlx/models/mlx_encoder.py`, `hhg_mlx/models/qwen.py`)
and ONNX Runtime (`fallback/onnx_encoder.py`, `fallback/onnx_reranker.py`).

On Linux, MLX runs on the CPU, where float16/bfloat16 and quantised matmuls bypass BLAS and
are 12-33x slower than float32: the default float32 is the fast choice there; the other dtypes
and `quantize` work everywhere (for accuracy checks, or Apple silicon where they pay off).

`choose_encoder` names a backend and precision once (an index stores it, so its queries are
embedded like its documents); `EncoderChoice.load_args()` turns it into `load_encoder` keywords.
"""
from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .encoder import Encoder
from .errors import ModelUnavailable, UnsupportedModel
from .models import registry
from .models.folder import (FolderSettings, bert_names, encoder_spec, is_cross_encoder, load_tokenizer,
                            model_architecture, read_settings)
from .models.hub import resolve_model
from .models.registry import ModelInfo

if TYPE_CHECKING:
    from .cross_encoder import Reranker

BACKENDS = ("auto", "mlx", "onnx", "onnx-cuda")
DTYPES = ("float32", "float16", "bfloat16")
QWEN_ARCHITECTURES = ("qwen2", "qwen3")
ONNX_ARCHITECTURES = ("jinabert", "bert", "nomic_bert")
RERANKER_ARCHITECTURES = ("jinabert", "bert")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8", "8bit", "4bit")
# What each backend computes in: MLX dtypes and weight quantisation, ONNX Runtime's int8 (CPU, `convert.onnx_int8`).
BACKEND_PRECISIONS = {"mlx": ("fp32", "fp16", "bf16", "8bit", "4bit"), "onnx": ("fp32", "fp16", "int8"),
                      "onnx-cuda": ("fp32", "fp16")}
_LOAD_ARGS = {"fp32": ("float32", None), "fp16": ("float16", None), "bf16": ("bfloat16", None),
              "int8": ("float32", 8), "8bit": ("float32", 8), "4bit": ("float32", 4)}


def choose_backend(requested: str, architecture: str, folder: Path | None) -> str:
    """The concrete backend for `requested`. "auto": MLX on Apple silicon (Metal), for
    architectures without an ONNX export (Qwen) and for MLX-quantised folders; ONNX Runtime on
    CUDA where onnxruntime-gpu runs on a GPU; otherwise ONNX Runtime on the CPU (2-3x MLX-CPU's
    speed there, DESIGN.md). `folder` None: a model not downloaded yet (its registry entry)."""
    if requested not in BACKENDS:
        raise UnsupportedModel(f"unknown backend {requested!r} (choose from {', '.join(BACKENDS)})")
    if requested != "auto":
        return requested
    if architecture not in ONNX_ARCHITECTURES or (sys.platform == "darwin" and platform.machine() == "arm64"):
        return "mlx"
    if folder is not None and _quantized_bits(folder) and not any(folder.glob("model*.onnx")):
        return "mlx"            # MLX-quantised converted folder: ONNX Runtime cannot run those weights
    from fallback.onnx_encoder import cuda_usable
    return "onnx-cuda" if cuda_usable() else "onnx"


@dataclass(frozen=True)
class EncoderChoice:
    """A concrete backend and the precision it computes in, e.g. onnx (int8)."""

    backend: str
    precision: str

    def __str__(self) -> str:
        return f"{self.backend} ({self.precision})"

    def load_args(self) -> dict:
        """`load_encoder` keywords that load exactly this choice."""
        dtype, quantize = _LOAD_ARGS[self.precision]
        return {"backend": self.backend, "dtype": dtype, "quantize": quantize}


def resolve_choice(backend: str, precision: str, architecture: str, folder: Path | None = None) -> EncoderChoice:
    """`backend` and `precision` ("auto" or a name) made concrete for a model. Auto precision is the
    fastest: int8 on a CPU with an int8 kernel (else fp32), fp16 on CUDA, fp32 (or the folder's own
    quantisation) on MLX. A precision only one backend has (bf16, 8bit, 4bit: MLX; int8: ONNX on the
    CPU) picks that backend under auto.
    Raises `UnsupportedModel` for unknown names and combinations that cannot run."""
    if precision not in PRECISIONS:
        raise UnsupportedModel(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if backend == "auto" and precision != "auto":
        owners = [b for b, names in BACKEND_PRECISIONS.items() if precision in names]
        backend = owners[0] if len(owners) == 1 else backend
    backend = choose_backend(backend, architecture, folder)
    if backend != "mlx" and architecture not in ONNX_ARCHITECTURES:
        raise UnsupportedModel(f"{architecture} models run on the MLX backend only, not {backend}")
    bits = _quantized_bits(folder) if backend == "mlx" and folder is not None else None
    if precision == "auto":
        if backend == "mlx":
            precision = f"{bits}bit" if bits else "fp32"
        else:
            from fallback.onnx_encoder import onnx_precision
            precision = onnx_precision(backend, fastest=True)
    if precision not in BACKEND_PRECISIONS[backend]:
        raise UnsupportedModel(f"backend {backend} does not run {precision} "
                               f"(it runs {', '.join(BACKEND_PRECISIONS[backend])})")
    if bits and precision != f"{bits}bit":
        raise UnsupportedModel(f"{folder} holds {bits}-bit MLX weights: precision {bits}bit, not {precision}")
    return EncoderChoice(backend, precision)


def choose_encoder(model: str, backend: str = "auto", precision: str = "auto", *,
                   download: bool = False) -> EncoderChoice:
    """`resolve_choice` for a model name (registry id, Hugging Face repo id or local folder); a registry
    model that is not installed (and not downloaded) is judged by its registry entry."""
    info = registry.get(model)
    try:
        folder = resolve_model(model, download=download)
    except ModelUnavailable:
        if info is None:
            raise
        return resolve_choice(backend, precision, info.architecture)
    return resolve_choice(backend, precision, model_architecture(read_settings(folder), info), folder)


def _quantized_bits(folder: Path) -> int | None:
    """The weight bits of an MLX-quantised converted folder, None for full-precision weights."""
    quantization = read_settings(folder).config.get("quantization")
    return int(quantization["bits"]) if isinstance(quantization, dict) and quantization.get("bits") else None


class _Found(NamedTuple):
    """A model resolved for loading: what `load_encoder` and `load_reranker` both need."""

    info: ModelInfo | None
    folder: Path
    settings: FolderSettings
    architecture: str
    backend: str             # concrete: "mlx" | "onnx" | "onnx-cuda"
    model_id: str


def _find(model: str, kind: str, backend: str, dtype: str, quantize: int | None, download: bool) -> _Found:
    """Check the arguments, find the folder (downloading if allowed) and choose the backend; raises
    `UnsupportedModel` when the model is of the other `kind` ("embedding" or "reranker")."""
    if dtype not in DTYPES:
        raise UnsupportedModel(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
    if quantize not in (None, 8, 4):
        raise UnsupportedModel(f"quantize must be 8 or 4 bits, not {quantize}")
    info = registry.get(model)
    if info is not None:
        _check_kind(model, info.kind, kind)
    folder = resolve_model(model, download=download)
    settings = read_settings(folder)
    _check_kind(model, "reranker" if is_cross_encoder(settings.config) else "embedding", kind,
                " (its config.json names no *ForSequenceClassification architecture)")
    architecture = model_architecture(settings, info)
    chosen = choose_backend(backend, architecture, folder)
    model_id = model if info or not Path(model).expanduser().is_dir() else str(folder)
    return _Found(info, folder, settings, architecture, chosen, model_id)


def _check_kind(model: str, found: str, wanted: str, evidence: str = "") -> None:
    """Raise `UnsupportedModel` when `model` is of kind `found` and the caller wants the other kind."""
    if found == wanted:
        return
    if found == "reranker":
        raise UnsupportedModel(f"{model} is a cross-encoder reranker, not an embedding model; "
                               "use it with --rerank (Python: load_reranker)")
    raise UnsupportedModel(f"{model} is an embedding model, not a cross-encoder reranker{evidence}")


def load_encoder(model: str, backend: str = "auto", dtype: str = "float32", quantize: int | None = None,
                 dim: int | None = None, *, download: bool = True, task: str | None = None,
                 max_length: int | None = None) -> Encoder:
    """An encoder for `model` (registry id, Hugging Face repo id, or local folder in HF or
    converted layout). `dim` truncates Matryoshka models; `task` picks the prompt pair of models
    that have several; `max_length` caps tokens per text (default 512, or the model's own lower
    limit). Raises `ModelUnavailable` (no local copy and no download) or `UnsupportedModel`."""
    found = _find(model, "embedding", backend, dtype, quantize, download)
    if found.architecture in QWEN_ARCHITECTURES:
        if found.backend != "mlx":
            raise UnsupportedModel(f"{model}: {found.architecture} models run on the MLX backend only")
        from .models.qwen import load_qwen_encoder
        return load_qwen_encoder(found.folder, found.info, dtype, quantize, dim, task, model_id=found.model_id,
                                 max_length=max_length)
    return _load_bert_family(found, "embedding", backend, dtype, quantize, dim=dim, max_length=max_length)


def encoder_dim(model: str, backend: str = "auto", dtype: str = "float32", quantize: int | None = None, *,
                download: bool = False) -> int:
    """The size of the vectors `load_encoder` with these arguments (and no `dim`) makes, read from the
    model folder's settings without loading its weights: the folder's own `dim`, else its hidden size.
    Raises as `load_encoder` does when the model cannot be found."""
    found = _find(model, "embedding", backend, dtype, quantize, download)
    return found.settings.dim or bert_names(found.settings.config)["hidden_size"]


def load_reranker(model: str, backend: str = "auto", dtype: str = "float32", quantize: int | None = None, *,
                  download: bool = True, max_length: int | None = None) -> Reranker:
    """A cross-encoder reranker for `model` (registry id, Hugging Face repo id, or local folder in HF or
    converted layout), with `load_encoder`'s backends, precisions, precedence and errors. `max_length`
    caps the tokens of a (query, document) pair (default 512, or the model's own lower limit); only
    the document is cut."""
    found = _find(model, "reranker", backend, dtype, quantize, download)
    if found.architecture not in RERANKER_ARCHITECTURES:
        raise UnsupportedModel(f"{model}: cross-encoders are supported for JinaBERT and BERT, "
                               f"not {found.architecture}")
    return _load_bert_family(found, "reranker", backend, dtype, quantize, max_length=max_length)


def _load_bert_family(found: _Found, kind: str, requested: str, dtype: str, quantize: int | None, **spec_options):
    """A JinaBERT/BERT encoder or (`kind` "reranker") cross-encoder on the found backend; `requested` is
    the backend asked for ("auto" picks the fastest ONNX precision: int8 on the CPU, fp16 on CUDA)."""
    tokenizer = load_tokenizer(found.folder)
    spec = encoder_spec(found.folder, found.model_id, found.info, tokenizer, settings=found.settings, **spec_options)
    if found.backend == "mlx":
        from .models import mlx_encoder
        load = mlx_encoder.load_mlx_reranker if kind == "reranker" else mlx_encoder.load_mlx_encoder
        return load(found.folder, spec, found.architecture, found.settings.config, tokenizer, dtype, quantize)
    try:
        from fallback import onnx_encoder, onnx_reranker
    except ImportError:
        raise UnsupportedModel(f"backend {found.backend} is not available in this installation") from None
    # auto with default dtype/quantize: the fastest precision (int8 on CPUs with an int8 kernel, fp16 on CUDA)
    precision = onnx_encoder.onnx_precision(found.backend, dtype, quantize, fastest=requested == "auto")
    load = onnx_reranker.load_onnx_reranker if kind == "reranker" else onnx_encoder.load_onnx_encoder
    return load(found.folder, spec, tokenizer=tokenizer, backend=found.backend, precision=precision)
