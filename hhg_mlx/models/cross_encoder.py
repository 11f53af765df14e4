"""Cross-encoder rerankers in MLX, MODELS.md §6: `JinaBertForSequenceClassification`
(jina-reranker-v1-tiny/turbo-en, the base-en JinaBERT) and `BertForSequenceClassification`
(ms-marco-MiniLM-L-6-v2).

The encoder of `jinabert.py` or `bert.py` sits under `bert` with the pair's real token type ids,
then BERT's pooler (dense + tanh on the first attended token, so left padding works) and a
one-logit `classifier`. Module names mirror the checkpoint keys; `sanitize` moves the pooler from
`bert.pooler` to the top level, next to the classifier.
"""
from __future__ import annotations

from ..mlx_runtime import mx, nn

HEAD_PREFIXES = ("pooler.", "classifier.")


class Pooler(nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)

    def __call__(self, hidden: mx.array, attention_mask: mx.array) -> mx.array:
        first = mx.argmax(attention_mask, axis=1)           # the first attended token: [CLS] / <s>
        return mx.tanh(self.dense(hidden[mx.arange(hidden.shape[0]), first]))


class Model(nn.Module):
    def __init__(self, encoder: nn.Module, hidden_size: int):
        super().__init__()
        self.bert = encoder
        self.pooler = Pooler(hidden_size)
        self.classifier = nn.Linear(hidden_size, 1)

    def __call__(self, input_ids: mx.array, attention_mask: mx.array, token_type_ids: mx.array) -> mx.array:
        """(B,) raw relevance logits for right- or left-padded pairs."""
        hidden = self.bert(input_ids, attention_mask, token_type_ids)
        return self.classifier(self.pooler(hidden, attention_mask))[:, 0]

    @staticmethod
    def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """Checkpoint names → module names: the encoder under `bert.`, the pooler and classifier at the
        top level; the MLM head and position_ids dropped. Names already sanitised stay as they are."""
        out = {}
        for name, value in weights.items():
            name = name.removeprefix("bert.")
            if name.startswith("cls.") or name.endswith("position_ids"):
                continue
            out[name if name.startswith(HEAD_PREFIXES) else f"bert.{name}"] = value
        return out
