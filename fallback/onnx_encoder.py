"""ONNX Runtime encoders for JinaBERT, BERT and NomicBERT: CPU fp32/int8 and CUDA fp16, same
`TextEncoder` interface as the MLX backend. `onnxruntime` is imported only when an encoder is made.

The graph (see `convert/onnx_graph.py`) returns last hidden states; pooling is the shared numpy
`pool`, so every backend pools identically.
"""
from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hhg_mlx.encoder import EncoderSpec, TextEncoder, pool
from hhg_mlx.errors import ModelUnavailable, UnsupportedModel

from .cpu_features import cpu_features

BACKENDS = ("onnx", "onnx-cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
INT8_ROW_TILE = 8       # a multiple of the rows MLAS's int8 MatMulNBits kernels process together


def physical_cores() -> int:
    """Physical cores this process may use (ONNX Runtime gains nothing from SMT siblings)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return usable
    cores = set(re.findall(r"physical id\s*:\s*(\d+)\s*\n(?:.*\n)*?core id\s*:\s*(\d+)", cpuinfo))
    return max(1, min(usable, len(cores) or usable))


@functools.cache
def cuda_usable() -> bool:
    """onnxruntime-gpu is installed and really runs a graph on a GPU (not just compiled with CUDA)."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return False
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        return False
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    probe.ir_version = 8
    options = ort.SessionOptions()
    options.log_severity_level = 4          # a failed probe is an answer, not an error to print
    try:
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=[CUDA, CPU])
    except Exception:       # missing CUDA/cuDNN libraries, no driver, no device
        return False
    return session.get_providers()[0] == CUDA


def onnx_precision(backend: str, dtype: str = "float32", quantize: int | None = None, *, fastest: bool = False) -> str:
    """"fp32" | "int8" | "fp16" for the loader's arguments. `fastest` (backend chosen automatically,
    dtype and quantize left at their defaults) picks fp16 on CUDA and, on the CPU, int8 where ONNX
    Runtime has an int8 kernel for it (`cpu_features`), else fp32."""
    if quantize not in (None, 8):
        raise UnsupportedModel(f"ONNX Runtime quantises to 8 bits only, not {quantize}")
    if backend == "onnx-cuda":
        if quantize:
            raise UnsupportedModel("int8 runs on the CPU (backend onnx); onnx-cuda computes in float16 or float32")
        return "fp16" if fastest or dtype != "float32" else "fp32"
    if quantize or (fastest and dtype == "float32" and cpu_features().int8_kernel):
        return "int8"
    return "fp32" if dtype == "float32" else "fp16"


def make_session(path: Path, backend: str = "onnx", threads: int | None = None, precision: str = "fp32"):
    """An InferenceSession with every graph optimisation, one intra-op thread per physical core.
    On CUDA an fp32 graph computes in true fp32 (TF32 off): asking for fp32 means asking for its
    accuracy; fp16 is the fast CUDA path."""
    import onnxruntime as ort

    if backend not in BACKENDS:
        raise UnsupportedModel(f"unknown ONNX backend {backend!r} (choose from {', '.join(BACKENDS)})")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3          # no provider-fallback warnings on stderr: checked below
    cuda = (CUDA, {"use_tf32": "0"}) if precision == "fp32" else CUDA
    providers = [cuda, CPU] if backend == "onnx-cuda" else [CPU]
    session = ort.InferenceSession(str(path), options, providers=providers)
    if backend == "onnx-cuda" and session.get_providers()[0] != CUDA:
        raise ModelUnavailable("onnx-cuda needs onnxruntime-gpu with a working CUDA setup "
                               "(pip install 'hhg[cuda]' in place of onnxruntime); use backend onnx")
    return session


class SessionModel:
    """Mixin for a tokenised model (`TextEncoder`, `PairScorer`) whose network is an ONNX Runtime session."""

    def __init__(self, session, tokenizer, spec: EncoderSpec, backend: str = "onnx", precision: str = "fp32",
                 **options) -> None:
        super().__init__(tokenizer, spec, **options)       # options: the model kind's own (token_budget)
        self.session = session
        self.backend = backend
        self.precision = precision

    def _run(self, **tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The session's output for a batch of [batch, seq] token inputs (`input_ids`, `attention_mask`
        and, for a cross-encoder, `token_type_ids`) and the attention mask it ran with. An int8 session
        gets the batch in `int8_layout`, so a text's result does not depend on its batch."""
        if self.precision == "int8":
            tokens = int8_layout(tokens, self.spec.pad_token_id)
        feeds = {name: np.ascontiguousarray(array, dtype=np.int64) for name, array in tokens.items()}
        (output,) = self.session.run(None, feeds)
        return output, feeds["attention_mask"]


class ONNXEncoder(SessionModel, TextEncoder):
    """A `TextEncoder` whose network is an ONNX Runtime session."""

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        hidden, mask = self._run(input_ids=input_ids, attention_mask=attention_mask)
        return pool(hidden, mask, self.spec.pooling)


def int8_layout(tokens: Mapping[str, np.ndarray], pad_id: int, tile: int = INT8_ROW_TILE) -> dict[str, np.ndarray]:
    """The batch as an int8 graph gets it: in every [batch, seq] input, each row's attended tokens
    first (right padding), and the sequence axis padded with masked tokens (`pad_id` in `input_ids`,
    0 elsewhere) to a multiple of `tile`. Both change no exact result (positions count attended
    tokens, ALiBi sees the same distances, a cross-encoder's head reads the first attended token) but
    make a text's rows the same arithmetic whatever its batch: MLAS's int8 kernel works on tiles of
    rows and sums a leftover row's products in another order, and left padding moves attention's
    float rounding (1e-7); re-quantising activations in the next layer can turn such 1e-7
    differences into 5e-3."""
    mask = np.asarray(tokens["attention_mask"])
    order = np.argsort(mask == 0, axis=1, kind="stable")
    extra = ((0, 0), (0, -mask.shape[1] % tile))
    return {name: np.pad(np.take_along_axis(np.asarray(array), order, axis=1), extra,
                         constant_values=pad_id if name == "input_ids" else 0)
            for name, array in tokens.items()}


def load_session_model(kind: type[SessionModel], folder: Path, spec: EncoderSpec, *, tokenizer=None,
                       backend: str = "onnx", precision: str = "fp32", threads: int | None = None) -> SessionModel:
    """A `kind` (`ONNXEncoder`, `ONNXReranker`) for a Hugging Face or converted model folder. The ONNX
    file is the folder's own (`hhg convert --onnx...`) or exported on first use and cached
    (`convert.onnx_export`)."""
    from convert.onnx_export import onnx_model
    from hhg_mlx.models.folder import load_tokenizer

    path = onnx_model(Path(folder), precision)
    return kind(make_session(path, backend, threads, precision), tokenizer or load_tokenizer(folder), spec,
                backend, precision)


def load_onnx_encoder(folder: Path, spec: EncoderSpec, **options) -> ONNXEncoder:
    """An ONNX Runtime encoder for a model folder (`load_session_model`'s options)."""
    return load_session_model(ONNXEncoder, folder, spec, **options)
