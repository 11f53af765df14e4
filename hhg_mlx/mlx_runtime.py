"""Import MLX the right way for the platform.

The Linux `mlx[cpu]` wheel links a reference BLAS (about 4 GFLOP/s fp32 GEMM). Loading the
system OpenBLAS with global symbols *before* the first `import mlx.core` lets MLX resolve its
BLAS calls there instead (~30x faster). Every module that needs MLX imports it from here.
"""
from __future__ import annotations

import ctypes
import sys

_OPENBLAS_NAMES = ("libopenblas.so.0", "libopenblas.so", "libopenblasp-r0.3.so")


def _preload_openblas() -> str | None:
    if not sys.platform.startswith("linux") or "mlx.core" in sys.modules:
        return None
    for name in _OPENBLAS_NAMES:
        try:
            ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
            return name
        except OSError:
            continue
    return None


BLAS: str | None = _preload_openblas()
"""The shared library MLX uses for BLAS on Linux, or None (slow reference BLAS / macOS Accelerate)."""

import mlx.core as mx  # noqa: E402  (must come after the preload)
import mlx.nn as nn  # noqa: E402


def blas_note() -> str:
    """One line for `hhg model info` about MLX's BLAS on this machine."""
    if sys.platform == "darwin":
        return "MLX: Metal/Accelerate"
    if BLAS:
        return f"MLX CPU BLAS: {BLAS}"
    return ("MLX CPU BLAS: reference (slow); install OpenBLAS "
            "(Debian/Ubuntu: apt install libopenblas0-pthread) for ~30x faster MLX on CPU")


__all__ = ["mx", "nn", "BLAS", "blas_note"]
