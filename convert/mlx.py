"""`hhg convert` for the encoder-only models (JinaBERT, BERT, NomicBERT): MLX safetensors in float32,
float16 or bfloat16, or 8/4-bit quantised, built with the same model classes the MLX backend runs."""
from __future__ import annotations

import json
from pathlib import Path

from .qwen import copy_embedding_files


def convert_encoder(src: Path, out: Path, dtype: str = "float32", quantize: int | None = None,
                    group_size: int = 64) -> dict:
    """Write `src`'s weights to `out/model.safetensors` in MLX layout (after `sanitize`, cast or
    quantised), its config and tokenizer/sentence-transformers files; return a summary (architecture,
    dtype, quantisation, bytes before/after) in the shape `convert.qwen.convert_qwen` returns."""
    from mlx.utils import tree_flatten

    from hhg_mlx.mlx_runtime import mx
    from hhg_mlx.models.folder import architecture_from_config
    from hhg_mlx.models.mlx_encoder import DTYPES, build_model, load_weights
    from hhg_mlx.models.mlx_encoder import quantize as quantize_model

    config = json.loads((src / "config.json").read_text())
    architecture = architecture_from_config(config)
    model = build_model(architecture, config, load_weights(src))
    model.set_dtype(DTYPES[dtype])
    config = {**config, "torch_dtype": dtype}
    quantization = None
    if quantize:
        quantize_model(model, quantize, group_size)
        quantization = {"group_size": group_size, "bits": quantize}
        config["quantization"] = quantization
    out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out / "model.safetensors"), dict(tree_flatten(model.parameters())),
                        metadata={"format": "mlx"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    copy_embedding_files(src, out)
    return {
        "architecture": architecture, "dtype": dtype, "quantization": quantization,
        "bytes_before": sum(p.stat().st_size for p in src.glob("model*.safetensors")),
        "bytes_after": (out / "model.safetensors").stat().st_size,
    }
