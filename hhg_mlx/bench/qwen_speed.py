"""Speed and memory of the Qwen embedders (random weights, real shapes) on MLX.

    python -m hhg_mlx.bench.qwen_speed                        # 0.5B and 1.5B shapes, float32 / 8-bit / 4-bit / bfloat16
    python -m hhg_mlx.bench.qwen_speed --shapes 0.5b --precisions float32 4 --batch 8 --length 256

Each (shape, precision) builds the model from the same seed, warms up, then times one forward of
`batch` x `length` tokens through `QwenEncoder.embed_ids` (off macOS, everything but float32 runs
`--slow-batch` x `--slow-length`: MLX-CPU half-precision and quantised matmuls bypass BLAS). It reports texts/s, tokens/s, weight memory and MLX's peak,
whose difference is the activation memory that `qwen.token_budget` plans for. Then a small build:
`embed_documents` over mixed-length texts in token-budget batches, with MLX and process peaks.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np


from hhg_mlx.mlx_runtime import BLAS, mx
from hhg_mlx.encoder import EncoderSpec
from hhg_mlx.models.qwen import DTYPES, Model, Qwen2Args, QwenEncoder, quantize_weights, token_budget

SHAPES = {  # MODELS.md §3 (jina-code-embeddings 0.5b / 1.5b; Qodo-Embed-1-1.5B has the 1.5b shape)
    "0.5b": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                 intermediate_size=4864),
    "1.5b": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                 intermediate_size=8960),
}
VOCAB = 151936
GIB = 1 << 30


def config_for(shape: str) -> dict:
    return {"model_type": "qwen2", "vocab_size": VOCAB, "rms_norm_eps": 1e-6, "rope_theta": 1e6,
            "tie_word_embeddings": True, **SHAPES[shape]}


def build(shape: str, precision: str) -> tuple[Model, dict]:
    """Random model: `precision` is a dtype name or a bit width ("8", "4", quantised from float32)."""
    mx.random.seed(0)
    config = config_for(shape)
    model = Model(Qwen2Args.from_dict(config))
    if precision in DTYPES:
        model.set_dtype(DTYPES[precision])
    else:
        config = quantize_weights(model, config, int(precision))
    mx.eval(model.parameters())
    return model, config


def word_tokenizer(words: int = 4096):
    """Whitespace word-level tokenizer: text "w1 w2 ..." gives one token per word, no specials."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(words)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tok


def encoder(model: Model, config: dict, max_length: int = 512) -> QwenEncoder:
    spec = EncoderSpec(model_id="random", pooling="last", hidden_size=config["hidden_size"], max_length=max_length)
    return QwenEncoder(model, word_tokenizer(), spec, token_budget(config, max_length))


def weight_bytes(model: Model) -> int:
    from mlx.utils import tree_flatten
    return sum(v.nbytes for _, v in tree_flatten(model.parameters()))


def time_forward(enc: QwenEncoder, batch: int, length: int) -> tuple[float, float]:
    """Seconds for one (batch, length) forward, and MLX's peak bytes during it."""
    rng = np.random.default_rng(0)
    warm = rng.integers(1, 4096, (1, 16))
    enc.embed_ids(warm, np.ones_like(warm))
    ids = rng.integers(1, 4096, (batch, length))
    mx.reset_peak_memory()
    start = time.perf_counter()
    enc.embed_ids(ids, np.ones_like(ids))
    return time.perf_counter() - start, mx.get_peak_memory()


def small_build(shape: str, precision: str, texts: int, max_tokens: int) -> None:
    model, config = build(shape, precision)
    enc = encoder(model, config)
    rng = np.random.default_rng(1)
    lengths = rng.integers(16, max_tokens + 1, texts)
    docs = [" ".join(f"w{w}" for w in rng.integers(1, 4096, n)) for n in lengths]
    mx.reset_peak_memory()
    start = time.perf_counter()
    enc.embed_documents(docs)
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20)
    print(f"build {shape} {precision}: {texts} texts, {lengths.sum()} tokens (16-{max_tokens} each), "
          f"token budget {enc.token_budget}: {seconds:.1f} s, {texts / seconds:.2f} texts/s, "
          f"weights {weight_bytes(model) / GIB:.2f} GiB, MLX peak {mx.get_peak_memory() / GIB:.2f} GiB, "
          f"process max RSS {rss:.2f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--precisions", nargs="+", default=["float32", "8", "4", "bfloat16"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--slow-batch", type=int, default=1, help="rows for bfloat16/float16/8/4-bit")
    parser.add_argument("--slow-length", type=int, default=32, help="tokens per row for bfloat16/float16/8/4-bit")
    parser.add_argument("--build-texts", type=int, default=8, help="0 skips the small build")
    parser.add_argument("--build-shape", default="0.5b", choices=list(SHAPES))
    parser.add_argument("--build-precision", default="float32")
    args = parser.parse_args()

    print(f"MLX {mx.__version__} on {mx.default_device()}, BLAS {BLAS or 'reference/Accelerate'}")
    for shape in args.shapes:
        for precision in args.precisions:
            model, config = build(shape, precision)
            slow = precision != "float32" and sys.platform != "darwin"
            batch, length = (args.slow_batch, args.slow_length) if slow else (args.batch, args.length)
            seconds, peak = time_forward(encoder(model, config), batch, length)
            weights = weight_bytes(model)
            label = precision if precision in DTYPES else f"{precision}-bit"
            print(f"{shape} {label:>8}: {batch} x {length} tokens in {seconds:6.1f} s = "
                  f"{batch / seconds:6.2f} texts/s, {batch * length / seconds:7.1f} tokens/s; "
                  f"weights {weights / GIB:.2f} GiB, peak {peak / GIB:.2f} GiB, "
                  f"activations {(peak - weights) / (batch * length) / 1024:.0f} KiB/token", flush=True)
            del model
    if args.build_texts:
        small_build(args.build_shape, args.build_precision, args.build_texts, 256)


if __name__ == "__main__":
    main()
