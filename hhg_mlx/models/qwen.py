"""Decoder embedders on mlx-lm's Qwen2 / Qwen3 trunks: jina-code-embeddings, Qodo-Embed, Qwen3-Embedding.

mlx-lm supplies the layers; this module runs them with its own attention mask (causal plus key
padding, or bidirectional key padding when config.json says `is_causal: false`), pools the final
hidden state of the last attended token of each row, and never builds the LM head.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hhg_mlx.mlx_runtime import mx, nn

from mlx_lm.models import qwen2, qwen3  # noqa: E402  (after the OpenBLAS preload)
from mlx_lm.utils import load_model  # noqa: E402

from ..encoder import EncoderSpec, TextEncoder, last_attended
from ..errors import ModelUnavailable, UnsupportedModel
from . import registry
from .folder import encoder_spec, load_tokenizer, read_json, read_settings
from .mlx_encoder import DTYPES, keep_or_dequantize

if TYPE_CHECKING:
    from tokenizers import Tokenizer

DEFAULT_TASK = "nl2code"
TASK_PREFIXES = {  # jina-code-embeddings (query prefix, document prefix); MODELS.md §3
    "nl2code": ("Find the most relevant code snippet given the following query:\n", "Candidate code snippet:\n"),
    "qa": ("Find the most relevant answer given the following question:\n", "Candidate answer:\n"),
    "code2code": ("Find an equivalent code snippet given the following code snippet:\n", "Candidate code snippet:\n"),
    "code2nl": ("Find the most relevant comment given the following code snippet:\n", "Candidate comment:\n"),
    "code2completion": ("Find the most relevant completion given the following start of code snippet:\n",
                        "Candidate completion:\n"),
}
TASK_INSTRUCTIONS = {  # Qwen3-Embedding: queries are "Instruct: {instruction}\nQuery:{query}", documents bare
    "nl2code": "Given a code search query, retrieve relevant code snippets",
    "qa": "Given a question, retrieve relevant answers",
    "code2code": "Given a code snippet, retrieve equivalent code snippets",
    "code2nl": "Given a code snippet, retrieve comments that describe it",
    "code2completion": "Given the start of a code snippet, retrieve its completion",
}
ACTIVATION_BYTES = 1 << 30
"""Target for one layer's transient activations per batch (see `token_budget`)."""


def instruct_prompt(task: str) -> str:
    return f"Instruct: {TASK_INSTRUCTIONS[task]}\nQuery:"


# ---------------------------------------------------------------- model


@dataclass
class Qwen2Args(qwen2.ModelArgs):
    is_causal: bool = True
    rope_parameters: dict | None = None   # transformers >= 5 nests rope_theta here

    def __post_init__(self) -> None:
        if self.rope_parameters and "rope_theta" in self.rope_parameters:
            self.rope_theta = self.rope_parameters["rope_theta"]


@dataclass
class Qwen3Args(qwen3.ModelArgs):
    is_causal: bool = True


class Model(nn.Module):
    """mlx-lm's Qwen2 trunk (embeddings, decoder layers, final norm); no LM head."""

    trunk = qwen2.Qwen2Model

    def __init__(self, args: Qwen2Args | Qwen3Args) -> None:
        super().__init__()
        self.args = args
        self.model = self.trunk(args)

    def __call__(self, inputs: mx.array, attention_mask: mx.array, pool_at: mx.array) -> mx.array:
        """Final hidden state (B, hidden) of token `pool_at[b]` of each row b; mask (B, S), 1 = attended."""
        length = inputs.shape[1]
        pos = mx.arange(length)
        allowed = (attention_mask > 0)[:, None, None, :]
        if self.args.is_causal:
            allowed = allowed & (pos[None, :] <= pos[:, None])
        # A padding query keeps its own key, so no softmax row is empty; its output is never pooled.
        mask = allowed | (pos[None, :] == pos[:, None])
        h = self.model.embed_tokens(inputs)
        for layer in self.model.layers:
            h = layer(h, mask)
        return self.model.norm(h[mx.arange(h.shape[0]), pool_at])

    def sanitize(self, weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """Both layouts: `model.*` keys (Qwen2ForCausalLM) and bare ones (Qwen2Model); drop the LM head."""
        return {
            (name if name.startswith("model.") else f"model.{name}"): value
            for name, value in weights.items()
            if not name.startswith("lm_head.") and "rotary_emb.inv_freq" not in name
        }


class Qwen3(Model):
    """mlx-lm's Qwen3 trunk (per-head q/k RMSNorm, no q/k/v biases); no LM head."""

    trunk = qwen3.Qwen3Model


ARCHITECTURES = {"qwen2": (Model, Qwen2Args), "qwen3": (Qwen3, Qwen3Args)}


def load_model_folder(folder: Path) -> tuple[Model, dict]:
    """The network from an HF or mlx-lm-converted folder (weights kept in the file's dtype)."""
    def classes(config: dict) -> tuple[type[Model], type]:
        model_type = config.get("model_type")
        if model_type not in ARCHITECTURES:
            raise UnsupportedModel(f"{folder}: model_type {model_type!r} is not a Qwen2/Qwen3 embedder")
        return ARCHITECTURES[model_type]

    try:
        return load_model(Path(folder), get_model_classes=classes)
    except FileNotFoundError as err:
        raise ModelUnavailable(f"{folder}: {err}") from err


def quantize_weights(model: nn.Module, config: dict, bits: int, group_size: int = 64) -> dict:
    """Quantise every Linear/Embedding whose input width the group size divides, in place; return
    the config with mlx-lm's `quantization` entry so that `mlx_lm.utils.load_model` rebuilds it."""
    nn.quantize(model, group_size, bits,
                class_predicate=lambda _, m: hasattr(m, "to_quantized") and m.weight.shape[-1] % group_size == 0)
    entry = {"group_size": group_size, "bits": bits, "mode": "affine"}
    return {**config, "quantization": entry, "quantization_config": entry}


def token_budget(config: dict, max_length: int) -> int:
    """Tokens per batch such that one layer's transient fp32 activations stay near ACTIVATION_BYTES.

    Per token a layer holds about 7 hidden-wide vectors (residual, norm, q, k, v, attention output,
    projection), 3 intermediate-wide ones (gate, up, their product) and, for the attention scores
    and softmax, 2 x heads x S floats at padded length S <= max_length. MLX frees each layer's
    intermediates once the next layer consumed them, so the peak is weights + about one layer.
    Qwen2-1.5B at S = 512: 4 B x (7·1536 + 3·8960 + 2·12·512) ≈ 195 KiB/token → 5,376 tokens ≈ 1 GiB
    (10 rows of 512); with 0.9 GiB of 4-bit weights a build peaks near 2 GiB, which fits a 16 GB Mac
    with room to spare (half that activation memory at float16). 0.5B: 7,424 tokens; Qwen3-0.6B:
    7,680. Measured by hhg_mlx/bench/qwen_speed.py (MLX peak minus weights, float32): 0.5B 121 KiB/token at
    S = 512 (estimate 137), 1.5B 169 KiB/token at S = 128 (estimate 159).
    """
    heads, hidden = config["num_attention_heads"], config["hidden_size"]
    q_width = heads * config.get("head_dim", hidden // heads)
    per_token = 4 * (5 * hidden + 2 * q_width + 3 * config["intermediate_size"] + 2 * heads * max_length)
    return max(max_length, ACTIVATION_BYTES // per_token // 256 * 256)


# ---------------------------------------------------------------- prompts


def task_prompts(prompts: dict[str, str], model_type: str, task: str | None,
                 default: tuple[str, str]) -> tuple[str, str]:
    """(query prefix, document prefix) for `task`. In order: the shipped `{task}_query` /
    `{task}_document` prompts (jina-code-embeddings); for Qwen3 the code instruction of the task
    (its shipped `query` prompt is a web-search one); for the default task the folder's or the
    registry's prefixes (`default`); for a model using jina's prefixes, jina's published table."""
    task = task or DEFAULT_TASK
    if task not in TASK_PREFIXES:
        raise UnsupportedModel(f"unknown task {task!r} (tasks: {', '.join(TASK_PREFIXES)})")
    if f"{task}_query" in prompts:
        return prompts[f"{task}_query"], prompts.get(f"{task}_document", "")
    if model_type == "qwen3":
        return instruct_prompt(task), ""
    if task == DEFAULT_TASK:
        return default
    if default[0] == TASK_PREFIXES[DEFAULT_TASK][0]:
        return TASK_PREFIXES[task]
    raise UnsupportedModel(f"this model has no prompts for task {task!r}")


# ---------------------------------------------------------------- encoder


class QwenEncoder(TextEncoder):
    """Texts → mlx-lm Qwen trunk → last-token pooling (then the base class truncates and normalises)."""

    backend = "mlx"

    def __init__(self, model: Model, tokenizer: Tokenizer, spec: EncoderSpec, token_budget: int) -> None:
        super().__init__(tokenizer, spec, token_budget)
        self.model = model

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        pooled = self.model(mx.array(input_ids, dtype=mx.int32), mx.array(attention_mask, dtype=mx.int32),
                            mx.array(last_attended(attention_mask), dtype=mx.int32))
        return np.array(pooled.astype(mx.float32))


def load_qwen_encoder(folder: Path, info: registry.ModelInfo | None = None, dtype: str = "float32",
                      quantize: int | None = None, dim: int | None = None, task: str | None = None, *,
                      model_id: str | None = None, max_length: int | None = None,
                      group_size: int = 64) -> QwenEncoder:
    """A `QwenEncoder` for an HF or converted folder. Weights are cast to `dtype` (float32 is the
    fast choice on Linux CPU, where MLX's half-precision and quantised matmuls bypass BLAS);
    `quantize` (8/4 bits) quantises at load unless the folder is quantised already; a quantised
    folder is kept quantised or dequantised by `mlx_encoder.keep_or_dequantize`. Length, dims,
    pad id and the default prompts come from `folder.encoder_spec` (`model_id` defaults to the
    registry id or the folder's name, `max_length` caps tokens per text); `task` picks the prompts.
    A converted folder whose hhg.json names a registry model gets that entry's settings."""
    folder = Path(folder)
    if dtype not in DTYPES:
        raise UnsupportedModel(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    model, config = load_model_folder(folder)
    model.set_dtype(DTYPES[dtype])
    stored = config.get("quantization", {}).get("bits")
    if quantize and not stored:
        quantize_weights(model, config, quantize, group_size)
    keep_or_dequantize(model, stored, dtype, quantize, folder)
    mx.eval(model.parameters())

    settings = read_settings(folder)
    info = info or registry.get(settings.model_id or "")      # a converted folder names its source
    tokenizer = load_tokenizer(folder)
    spec = encoder_spec(folder, model_id or folder.name, info, tokenizer, dim=dim, max_length=max_length,
                        settings=settings)
    prompts = (read_json(folder / "config_sentence_transformers.json") or {}).get("prompts") or {}
    query, document = task_prompts(prompts, config["model_type"], task, (spec.query_prefix, spec.document_prefix))
    spec = replace(spec, pooling="last", query_prefix=query, document_prefix=document)
    return QwenEncoder(model, tokenizer, spec, token_budget(config, spec.max_length))
