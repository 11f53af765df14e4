"""ONNX Runtime on an NVIDIA GPU: parity with the CPU path and throughput, on a random full-size
JinaBERT (jina-code-v2's shape) written to a temporary folder. Needs no model download.

    pip install -e '.[cuda]'        # onnxruntime-gpu; uninstall plain onnxruntime first, they clash
    python -m hhg_mlx.bench.cuda_check [--batch 32] [--seq 128] [--long 512]

Checks (exit status 1 if one fails, 2 if CUDA is not usable):
- CUDA fp32 (TF32 off) vs CPU fp32: max |difference| of unit embeddings <= 1e-4 (the exactness check);
- CUDA fp16 vs CPU fp32: mean cosine >= 0.999 and every text >= 0.995 (mixed lengths up to 511 tokens,
  left and right padding). A random std-0.1 12-layer model is chaotic (rounding its weights alone to
  half precision moves embeddings to cosine ~0.97-0.99), so the fp16 bound is looser than on trained
  weights; the same fp16 graph run on the CPU is printed beside it for comparison.
Then prints texts/s for CUDA fp16, CUDA fp32 and CPU fp32 at BATCH x SEQ and BATCH x LONG tokens.
Only numpy, onnx, onnxruntime(-gpu), safetensors and tokenizers are used (no MLX, no PyTorch).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


import numpy as np

from fallback.onnx_encoder import cuda_usable
from hhg_mlx.bench.speed import JINA_CODE_SHAPE, flops_per_text, write_random_jinabert
from hhg_mlx.loader import load_encoder

LENGTHS = [1, 7, 64, 130, 300, 511, 33, 250]


def padded(rng: np.random.Generator, lengths: list[int], left: bool) -> tuple[np.ndarray, np.ndarray]:
    width = max(lengths)
    ids = np.ones((len(lengths), width), np.int64)                     # pad id 1, as jina-code-v2
    mask = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        cols = slice(width - n, width) if left else slice(0, n)
        ids[row, cols] = rng.integers(5, JINA_CODE_SHAPE["vocab_size"], n)
        mask[row, cols] = 1
    return ids, mask


def texts_per_second(encoder, batch: int, seq: int, tries: int = 5) -> float:
    ids = np.random.default_rng(0).integers(5, JINA_CODE_SHAPE["vocab_size"], (batch, seq))
    mask = np.ones_like(ids)
    encoder.embed_ids(ids, mask)                                        # warm-up (kernel selection)
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        encoder.embed_ids(ids, mask)
        best = min(best, time.perf_counter() - start)
    return batch / best


def gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20).stdout.strip() or "unknown GPU"
    except (OSError, subprocess.SubprocessError):
        return "unknown GPU (no nvidia-smi)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--long", type=int, default=512)
    args = parser.parse_args()

    import onnxruntime as ort

    print(f"onnxruntime {ort.__version__}, providers {ort.get_available_providers()}, {gpu_name()}")
    if not cuda_usable():
        print("FAIL: CUDAExecutionProvider cannot run a graph here (needs onnxruntime-gpu built for this CUDA and cuDNN)")
        return 2
    ok = True
    with tempfile.TemporaryDirectory(prefix="hhg-cuda-check-") as tmp:
        folder = str(write_random_jinabert(Path(tmp), std=0.1))
        print("random full-size JinaBERT written; exporting fp32 and fp16 graphs ...", flush=True)
        cpu = load_encoder(folder, backend="onnx")
        cuda16 = load_encoder(folder, backend="onnx-cuda", dtype="float16")
        cuda32 = load_encoder(folder, backend="onnx-cuda")
        cpu16 = load_encoder(folder, backend="onnx", dtype="float16")
        rng = np.random.default_rng(1)
        for left in (False, True):
            ids, mask = padded(rng, LENGTHS, left)
            want = cpu.embed_ids(ids, mask)
            cosine = (cuda16.embed_ids(ids, mask) * want).sum(axis=1)
            cpu_cosine = (cpu16.embed_ids(ids, mask) * want).sum(axis=1)
            diff = np.abs(cuda32.embed_ids(ids, mask) - want).max()
            side = "left" if left else "right"
            passed = cosine.min() >= 0.995 and cosine.mean() >= 0.999 and diff <= 1e-4
            ok &= passed
            print(f"{'PASS' if passed else 'FAIL'} {side}-padded lengths {LENGTHS}: cuda fp16 cosine min {cosine.min():.6f} "
                  f"mean {cosine.mean():.6f} (cpu fp16 graph: min {cpu_cosine.min():.6f} mean {cpu_cosine.mean():.6f}); "
                  f"cuda fp32 max |diff| {diff:.2e}")

        print("\nthroughput (texts/s; GFLOP/s in brackets), best of 5 after a warm-up:")
        for seq in (args.seq, args.long):
            flops = flops_per_text(JINA_CODE_SHAPE, "jinabert", seq)
            cells = []
            for name, encoder in (("cuda fp16", cuda16), ("cuda fp32", cuda32), ("cpu fp32", cpu)):
                rate = texts_per_second(encoder, args.batch, seq, tries=5 if name != "cpu fp32" else 2)
                cells.append(f"{name} {rate:,.1f} ({rate * flops / 1e9:,.0f})")
            print(f"  {args.batch} x {seq}: " + ", ".join(cells), flush=True)
    print("\nall checks passed" if ok else "\nSOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
