"""The MLX backend for encoder-only models (JinaBERT, BERT): load a folder, run, pool in MLX."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..encoder import EncoderSpec, TextEncoder
from ..errors import ModelUnavailable, UnsupportedModel
from ..mlx_runtime import mx, nn
from . import bert, jinabert

DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
QUANT_BITS = (8, 4)
GROUP_SIZE = 64


def pool(hidden: mx.array, attention_mask: mx.array, pooling: str) -> mx.array:
    """(B, S, H) → (B, H) over attended tokens, in float32; any padding side."""
    hidden = hidden.astype(mx.float32)
    mask = attention_mask > 0
    if pooling == "mean":
        weights = mask.astype(mx.float32)[..., None]
        return (hidden * weights).sum(axis=1) / mx.maximum(weights.sum(axis=1), 1.0)
    if pooling == "cls":
        index = mx.argmax(mask, axis=1)
    elif pooling == "last":
        index = mask.shape[1] - 1 - mx.argmax(mask[:, ::-1], axis=1)
    else:
        raise ValueError(f"unknown pooling {pooling!r}")
    return mx.take_along_axis(hidden, index[:, None, None], axis=1)[:, 0]


class MLXEncoder(TextEncoder):
    backend = "mlx"

    def __init__(self, model: nn.Module, tokenizer, spec: EncoderSpec, token_budget: int = 8192) -> None:
        super().__init__(tokenizer, spec, token_budget)
        self.model = model

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        mask = mx.array(attention_mask.astype(np.int32))
        pooled = pool(self.model(mx.array(input_ids.astype(np.int32)), mask), mask, self.spec.pooling)
        return np.array(pooled)


def load_weights(folder: Path) -> dict[str, mx.array]:
    files = sorted(Path(folder).glob("model*.safetensors"))
    if not files:
        raise ModelUnavailable(f"{folder} has no model*.safetensors weights (PyTorch .bin checkpoints are not supported)")
    weights: dict[str, mx.array] = {}
    for path in files:
        weights.update(mx.load(str(path)))
    return weights


def build_model(architecture: str, config: dict, weights: dict[str, mx.array]) -> nn.Module:
    """The network for `architecture` with its checkpoint weights loaded (in the file's dtype)."""
    if architecture == "jinabert":
        args = jinabert.ModelArgs.from_dict({**config, "variant": jinabert.detect_variant(config, weights)})
        model: nn.Module = jinabert.Model(args)
    elif architecture == "bert":
        model = bert.Model(bert.ModelArgs.from_dict(config))
    else:
        raise UnsupportedModel(f"architecture {architecture!r} has no MLX encoder")
    weights = model.sanitize(weights)
    stored = config.get("quantization")
    if stored:       # converted, already-quantised folder (mlx-lm's `quantization` config field)
        nn.quantize(model, group_size=stored["group_size"], bits=stored["bits"],
                    class_predicate=lambda path, _: f"{path}.scales" in weights)
    model.load_weights(list(weights.items()))
    return model


def quantize(model: nn.Module, bits: int, group_size: int = GROUP_SIZE) -> None:
    """Quantise the Linear layers whose input width is a multiple of `group_size` (all of them for real models)."""
    if bits not in QUANT_BITS:
        raise UnsupportedModel(f"quantize must be one of {', '.join(map(str, QUANT_BITS))} bits, not {bits}")
    nn.quantize(model, group_size=group_size, bits=bits,
                class_predicate=lambda _, m: isinstance(m, nn.Linear) and m.weight.shape[-1] % group_size == 0)


def keep_or_dequantize(model: nn.Module, stored_bits: int | None, dtype: str, quantize_bits: int | None,
                       folder: Path) -> None:
    """The rule for a folder stored quantised (`stored_bits`), for every MLX model: MLX-CPU quantised
    matmuls bypass BLAS (12-33x slower than float32), so on the CPU (Linux) a load in the default
    float32 without `quantize_bits` dequantises the weights (same values, BLAS speed). An explicit
    `quantize_bits` (which must match) or half-precision `dtype` keeps them quantised, as does a GPU
    (Metal on Apple silicon), where quantised weights pay off."""
    if not stored_bits:
        return
    if quantize_bits and quantize_bits != stored_bits:
        raise UnsupportedModel(f"{folder} is quantised to {stored_bits}-bit; convert the original model "
                               f"to get {quantize_bits}-bit")
    if quantize_bits is None and dtype == "float32" and mx.default_device() == mx.cpu:
        from mlx_lm.utils import dequantize_model      # imported here: mlx-lm loads transformers (~1 s)

        dequantize_model(model)


def load_mlx_encoder(folder: Path, spec: EncoderSpec, architecture: str, config: dict, tokenizer,
                     dtype: str = "float32", quantize_bits: int | None = None) -> MLXEncoder:
    """An `MLXEncoder` computing in `dtype`, optionally with `quantize_bits` weight quantisation;
    a quantised folder is kept quantised or dequantised by `keep_or_dequantize`."""
    if dtype not in DTYPES:
        raise UnsupportedModel(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    model = build_model(architecture, config, load_weights(folder))
    model.set_dtype(DTYPES[dtype])
    stored = (config.get("quantization") or {}).get("bits")
    if quantize_bits and not stored:
        quantize(model, quantize_bits)
    keep_or_dequantize(model, stored, dtype, quantize_bits, folder)
    model.eval()
    mx.eval(model.parameters())
    return MLXEncoder(model, tokenizer, spec)
