"""The Encoder protocol and what every backend shares: tokenisation, token-budget batching,
pooling and normalisation. Backends (MLX models, ONNX Runtime) only implement `_forward`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer

Progress = Callable[[int, int], None]
"""Called as progress(texts_done, texts_total)."""

POOLINGS = ("mean", "cls", "last")


class Encoder(Protocol):
    dim: int
    max_length: int
    backend: str
    model_id: str

    def embed_documents(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray: ...
    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...
    def embed_ids(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class EncoderSpec:
    """Everything about a model's use that is not the network: pooling, prompts, lengths, dims."""

    model_id: str
    pooling: str                      # "mean" | "cls" | "last" (first/last *attended* token)
    hidden_size: int                  # width of the pooled output of the network
    max_length: int = 512             # truncation length for every text, in tokens
    query_prefix: str = ""
    document_prefix: str = ""
    dim: int | None = None            # Matryoshka truncation; None = hidden_size
    matryoshka_dims: tuple[int, ...] = ()
    matryoshka_layer_norm: bool = False  # layer-norm the pooled vector before truncating (when `dim` is set)
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; expected one of {', '.join(POOLINGS)}")
        if self.dim is not None and self.dim != self.hidden_size:
            if self.dim not in self.matryoshka_dims:
                allowed = ", ".join(map(str, self.matryoshka_dims)) or f"only {self.hidden_size}"
                raise ValueError(f"{self.model_id} does not support dim={self.dim} (supported: {allowed})")

    @property
    def out_dim(self) -> int:
        return self.dim or self.hidden_size


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def matryoshka(pooled: np.ndarray, spec: EncoderSpec) -> np.ndarray:
    """Pooled (B, hidden) vectors → their first `spec.out_dim` values, not yet normalised. With
    `matryoshka_layer_norm` and a requested `dim` (nomic-embed-text-v1.5's recipe), each vector is
    first layer-normalised over its full width, without affine weights (eps 1e-5, PyTorch's default)."""
    if spec.matryoshka_layer_norm and spec.dim is not None:
        centred = pooled - pooled.mean(axis=-1, keepdims=True)
        pooled = centred / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + 1e-5)
    return pooled[:, : spec.out_dim]


def pool(hidden: np.ndarray, attention_mask: np.ndarray, pooling: str) -> np.ndarray:
    """Pool (B, S, H) hidden states over attended tokens; works for left and right padding."""
    mask = np.asarray(attention_mask).astype(hidden.dtype)
    if pooling == "mean":
        summed = np.einsum("bsh,bs->bh", hidden, mask)
        return summed / np.maximum(mask.sum(axis=1, keepdims=True), 1.0)
    rows = np.arange(hidden.shape[0])
    if pooling == "cls":
        return hidden[rows, first_attended(attention_mask)]
    if pooling == "last":
        return hidden[rows, last_attended(attention_mask)]
    raise ValueError(f"unknown pooling {pooling!r}")


def first_attended(attention_mask: np.ndarray) -> np.ndarray:
    return np.argmax(np.asarray(attention_mask) > 0, axis=1)


def last_attended(attention_mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(attention_mask) > 0
    return mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)


def token_budget_batches(lengths: Sequence[int], budget: int, max_batch: int = 512) -> list[np.ndarray]:
    """Group text indices into batches, longest first, so that each batch's padded size
    (rows x longest row) stays within `budget` tokens. A row longer than the budget gets a
    batch of its own. Sorting by length keeps padding waste small."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        rows = max(1, min(max_batch, budget // longest))
        batches.append(order[start:start + rows])
        start += rows
    return batches


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id lists into (ids, attention_mask), both int64."""
    width = max((len(s) for s in sequences), default=0)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = seq
        mask[row, :len(seq)] = 1
    return ids, mask


class TokenizedModel:
    """What every backend of every model kind holds: the tokenizer (unpadded, truncating at the spec's
    `max_length` by `truncation`, a `tokenizers` strategy), the spec and the token budget of a batch."""

    backend = "none"

    def __init__(self, tokenizer: Tokenizer, spec: EncoderSpec, token_budget: int = 8192,
                 truncation: str = "longest_first") -> None:
        self.tokenizer = tokenizer
        self.spec = spec
        self.token_budget = token_budget
        tokenizer.no_padding()
        tokenizer.enable_truncation(spec.max_length, strategy=truncation)

    @property
    def max_length(self) -> int:
        return self.spec.max_length

    @property
    def model_id(self) -> str:
        return self.spec.model_id


class TextEncoder(TokenizedModel):
    """Base of every backend: texts → tokens → budgeted batches → `_forward` → unit vectors."""

    @property
    def dim(self) -> int:
        return self.spec.out_dim

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Pooled (B, hidden_size) float embeddings, not yet normalised."""
        raise NotImplementedError

    def embed_ids(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        pooled = np.asarray(self._forward(np.asarray(input_ids), np.asarray(attention_mask)), dtype=np.float64)
        return l2_normalize(matryoshka(pooled, self.spec))

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [enc.ids for enc in self.tokenizer.encode_batch(list(texts))]

    def embed_texts(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """Embed texts exactly as given (no prefix), in token-budget batches."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        tokens = self.tokenize(texts)
        done = 0
        for batch in token_budget_batches([len(t) for t in tokens], self.token_budget):
            ids, mask = pad_batch([tokens[i] for i in batch], self.spec.pad_token_id)
            out[batch] = self.embed_ids(ids, mask)
            done += len(batch)
            if progress:
                progress(done, len(texts))
        return out

    def embed_documents(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        prefix = self.spec.document_prefix
        return self.embed_texts([prefix + t for t in texts], progress)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        prefix = self.spec.query_prefix
        return self.embed_texts([prefix + t for t in texts])
