"""The MLX backend for encoder-only models (JinaBERT, BERT, NomicBERT) and the cross-encoder rerankers
of the first two: load a folder, run; pooling is the shared numpy `encoder.pool`, as for every backend."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from ..cross_encoder import PairScorer, check_one_logit
from ..encoder import EncoderSpec, TextEncoder, pool
from ..errors import ModelUnavailable, UnsupportedModel
from ..mlx_runtime import mx, nn
from . import bert, cross_encoder, jinabert, nomic_bert
from .folder import is_cross_encoder

DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
QUANT_BITS = (8, 4)
GROUP_SIZE = 64


class MLXEncoder(TextEncoder):
    backend = "mlx"

    def __init__(self, model: nn.Module, tokenizer, spec: EncoderSpec, token_budget: int = 8192) -> None:
        super().__init__(tokenizer, spec, token_budget)
        self.model = model

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        hidden = self.model(mx.array(input_ids.astype(np.int32)), mx.array(attention_mask.astype(np.int32)))
        return pool(np.array(hidden.astype(mx.float32)), attention_mask, self.spec.pooling)


class MLXReranker(PairScorer):
    backend = "mlx"

    def __init__(self, model: nn.Module, tokenizer, spec: EncoderSpec, **options) -> None:
        super().__init__(tokenizer, spec, **options)
        self.model = model

    def _forward(self, input_ids: np.ndarray, token_type_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        as_mx = (mx.array(a.astype(np.int32)) for a in (input_ids, attention_mask, token_type_ids))
        return np.array(self.model(*as_mx).astype(mx.float32))


def load_weights(folder: Path) -> dict[str, mx.array]:
    files = sorted(Path(folder).glob("model*.safetensors"))
    if not files:
        raise ModelUnavailable(f"{folder} has no model*.safetensors weights (PyTorch .bin checkpoints are not supported)")
    weights: dict[str, mx.array] = {}
    for path in files:
        weights.update(mx.load(str(path)))
    return weights


def new_model(architecture: str, config: dict, weights: Mapping[str, mx.array] | None = None) -> nn.Module:
    """The network for `architecture` and config.json, freshly initialised (MLX evaluates lazily,
    so this costs no compute); the checkpoint's `weights`, when given, tell a JinaBERT variant
    apart and give NomicBERT's padded widths."""
    if architecture == "jinabert":
        args = jinabert.ModelArgs.from_dict({**config, "variant": jinabert.detect_variant(config, weights or ())})
        return jinabert.Model(args)
    if architecture == "bert":
        return bert.Model(bert.ModelArgs.from_dict(config))
    if architecture == "nomic_bert":
        args = nomic_bert.checkpoint_args(config, weights) if weights else nomic_bert.ModelArgs.from_dict(config)
        return nomic_bert.Model(args)
    raise UnsupportedModel(f"architecture {architecture!r} has no MLX encoder")


def build_model(architecture: str, config: dict, weights: dict[str, mx.array]) -> nn.Module:
    """The network for `architecture` with its checkpoint weights loaded (in the file's dtype): the
    encoder, or for a cross-encoder config (`*ForSequenceClassification`) the encoder with its
    pooler and one-logit classifier."""
    model = new_model(architecture, config, weights)
    if is_cross_encoder(config):
        check_one_logit(weights, config)
        model = cross_encoder.Model(model, config["hidden_size"])
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


def load_mlx_model(folder: Path, architecture: str, config: dict, dtype: str = "float32",
                   quantize_bits: int | None = None) -> nn.Module:
    """`build_model` for a folder, computing in `dtype`, optionally with `quantize_bits` weight
    quantisation; a quantised folder is kept quantised or dequantised by `keep_or_dequantize`."""
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
    return model


def load_mlx_encoder(folder: Path, spec: EncoderSpec, architecture: str, config: dict, tokenizer,
                     dtype: str = "float32", quantize_bits: int | None = None) -> MLXEncoder:
    """An `MLXEncoder` for the folder's encoder (`load_mlx_model`)."""
    return MLXEncoder(load_mlx_model(folder, architecture, config, dtype, quantize_bits), tokenizer, spec)


def load_mlx_reranker(folder: Path, spec: EncoderSpec, architecture: str, config: dict, tokenizer,
                      dtype: str = "float32", quantize_bits: int | None = None) -> MLXReranker:
    """An `MLXReranker` for the folder's cross-encoder (`load_mlx_model`)."""
    return MLXReranker(load_mlx_model(folder, architecture, config, dtype, quantize_bits), tokenizer, spec)
