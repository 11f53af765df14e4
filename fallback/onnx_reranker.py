"""ONNX Runtime cross-encoder rerankers (jina-reranker-v1, ms-marco MiniLM): CPU fp32/int8 and CUDA
fp16, the same `PairScorer` interface as the MLX backend. The graph (`convert/onnx_graph.py`) reads
input_ids, token_type_ids and attention_mask and returns the raw logits."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hhg_mlx.cross_encoder import PairScorer
from hhg_mlx.encoder import EncoderSpec

from .onnx_encoder import SessionModel, load_session_model


class ONNXReranker(SessionModel, PairScorer):
    """A `PairScorer` whose network is an ONNX Runtime session."""

    def _forward(self, input_ids: np.ndarray, token_type_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        logits, _ = self._run(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
        return logits


def load_onnx_reranker(folder: Path, spec: EncoderSpec, **options) -> ONNXReranker:
    """An ONNX Runtime reranker for a cross-encoder folder (`load_session_model`'s options)."""
    return load_session_model(ONNXReranker, folder, spec, **options)
