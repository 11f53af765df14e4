"""ALiBi attention slopes (Press et al., "Train Short, Test Long"), in plain Python so that both the
MLX JinaBERT (`models/jinabert.py`) and the ONNX graph builder (`convert/onnx_graph.py`, no MLX) use them."""
from __future__ import annotations


def alibi_slopes(heads: int) -> list[float]:
    """One slope per head; for a non-power-of-two head count, the slopes of the power of two below
    it followed by every other slope of the power of two above it."""
    def geometric(n: int) -> list[float]:
        return [2.0 ** (-8.0 * (k + 1) / n) for k in range(n)]
    below = 1 << (heads.bit_length() - 1)
    return geometric(below) + geometric(2 * below)[0::2][: heads - below]
