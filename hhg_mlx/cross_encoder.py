"""The Reranker protocol and what every cross-encoder backend shares: pair tokenisation with the
model's own post-processor (special tokens and token type ids as its `tokenizer.json` says; only the
document is cut, "only_second"), token-budget batching, raw logits. Backends (MLX models, ONNX
Runtime) only implement `_forward`. The reranking step of a search is `hhg_mlx/rerank.py`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

import numpy as np

from .encoder import TokenizedModel, pad_batch, token_budget_batches
from .errors import QueryTooLong, UnsupportedModel

if TYPE_CHECKING:
    from tokenizers import Encoding


class Reranker(Protocol):
    max_length: int
    backend: str
    model_id: str

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray: ...
    def score_ids(self, input_ids: np.ndarray, token_type_ids: np.ndarray,
                  attention_mask: np.ndarray) -> np.ndarray: ...


def check_one_logit(weights: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """A cross-encoder's `classifier.weight` (numpy or MLX) must give one relevance logit. The label count
    comes from the weight's shape, not config.json (jina-reranker-v1's config has no `id2label`, MODELS.md §6)."""
    model = config.get("_name_or_path") or "the model"
    classifier = weights.get("classifier.weight")
    if classifier is None:
        raise UnsupportedModel(f"{model} has no classifier.weight: not a cross-encoder checkpoint")
    if classifier.shape[0] != 1:
        raise UnsupportedModel(f"{model}'s classifier gives {classifier.shape[0]} logits; "
                               "hhg rerankers read one relevance logit")


# Tokens per batch (rows x longest row). Smaller than an index build's 8192: a search reranks ~20 pairs,
# which all fit one 8192-token batch padded to the longest; 20 pairs of 14-256 document tokens on the
# jina-reranker-tiny shape (ONNX Runtime CPU, one run): int8 1.69 s at 2048 against 2.36 s at 8192,
# fp32 2.71 s against 5.81 s (a machine shared at load 12: read the ratios); 512 and 1024 gain little more.
TOKEN_BUDGET = 2048


class PairScorer(TokenizedModel):
    """Base of every reranker backend: (query, document) pairs → tokens and type ids → budgeted
    batches → `_forward` → one raw logit per document, in input order."""

    def __init__(self, tokenizer, spec, token_budget: int = TOKEN_BUDGET) -> None:
        super().__init__(tokenizer, spec, token_budget, truncation="only_second")

    def _forward(self, input_ids: np.ndarray, token_type_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """(B,) raw logits."""
        raise NotImplementedError

    def score_ids(self, input_ids: np.ndarray, token_type_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """(B,) float32 raw logits of already tokenised pairs, right- or left-padded."""
        logits = self._forward(np.asarray(input_ids), np.asarray(token_type_ids), np.asarray(attention_mask))
        return np.asarray(logits, dtype=np.float32).reshape(-1)

    def tokenize_pairs(self, query: str, documents: Sequence[str]) -> list[Encoding]:
        """`tokenizer.encode(query, document)` for each document, documents cut to fit `max_length`;
        `QueryTooLong` when the query leaves no room for a document."""
        try:
            return self.tokenizer.encode_batch([(query, document) for document in documents])
        except Exception as err:            # tokenizers raises plain Exceptions
            if "Truncation error" not in str(err):
                raise
        from tokenizers import Tokenizer    # the query alone, uncut, to say how long it is

        whole = Tokenizer.from_str(self.tokenizer.to_str())
        whole.no_truncation()
        tokens = len(whole.encode(query, add_special_tokens=False).ids)
        raise QueryTooLong(f"the query is {tokens} tokens long; the reranker {self.model_id} reads at most "
                           f"{self.max_length} tokens of query and document together")

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        """(len(documents),) float32 raw logits, in input order; higher is more relevant."""
        if not documents:
            return np.zeros(0, dtype=np.float32)
        pairs = self.tokenize_pairs(query, documents)
        return self.score_tokens([pair.ids for pair in pairs], [pair.type_ids for pair in pairs])

    def score_tokens(self, input_ids: Sequence[Sequence[int]], token_type_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Raw logits of tokenised pairs (unpadded id and type id lists), in input order, computed in
        length-sorted token-budget batches."""
        out = np.zeros(len(input_ids), dtype=np.float32)
        for batch in token_budget_batches([len(ids) for ids in input_ids], self.token_budget):
            ids, mask = pad_batch([input_ids[i] for i in batch], self.spec.pad_token_id)
            types, _ = pad_batch([token_type_ids[i] for i in batch], 0)
            out[batch] = self.score_ids(ids, types, mask)
        return out
