"""Known models: short id → Hugging Face repo, kind, architecture, pooling, prompts, size, licence.

`kind` is "embedding" (an encoder for `load_encoder`) or "reranker" (a cross-encoder for
`load_reranker`). `architecture` picks the implementation: "jinabert" (models/jinabert.py, both
variants), "bert" (models/bert.py), "nomic_bert" (models/nomic_bert.py), "qwen2"/"qwen3"
(models/qwen.py); rerankers add the classification head of models/cross_encoder.py. Settings shipped
with a model's own sentence-transformers files take precedence over these at load time (see
models/folder.py).
"""
from __future__ import annotations

from dataclasses import dataclass

BGE_QUERY_PREFIX = "Represent this sentence for searching relevant passages: "
JINA_CODE_QUERY_PREFIX = "Find the most relevant code snippet given the following query:\n"
JINA_CODE_DOCUMENT_PREFIX = "Candidate code snippet:\n"
QWEN3_CODE_QUERY_PREFIX = "Instruct: Given a code search query, retrieve relevant code snippets\nQuery:"
CODERANK_QUERY_PREFIX = "Represent this query for searching relevant code: "


@dataclass(frozen=True)
class ModelInfo:
    id: str
    repo: str
    architecture: str                 # "jinabert" | "bert" | "nomic_bert" | "qwen2" | "qwen3"
    pooling: str                      # "mean" | "cls" | "last"
    query_prefix: str
    document_prefix: str
    dim: int
    matryoshka_dims: tuple[int, ...]
    max_length: int                   # the model's own limit; documents are cut at 512 tokens by default
    license: str
    commercial: bool                  # licence allows commercial use
    opt_in: bool                      # needs --accept-license once
    description: str
    size: str = ""                    # parameters, as published ("161M", "1.5B")
    kind: str = "embedding"           # "embedding" | "reranker"
    scores: str = ""                  # published retrieval scores, e.g. "CoIR 60.1, CSN MRR 77.9"
    matryoshka_layer_norm: bool = False  # layer-norm the pooled vector before Matryoshka truncation


def _entry(id: str, repo: str, architecture: str, pooling: str, dim: int, max_length: int, license: str,
           description: str, *, query_prefix: str = "", document_prefix: str = "",
           matryoshka_dims: tuple[int, ...] = (), commercial: bool = True, opt_in: bool = False,
           size: str = "", kind: str = "embedding", scores: str = "",
           matryoshka_layer_norm: bool = False) -> ModelInfo:
    return ModelInfo(id, repo, architecture, pooling, query_prefix, document_prefix, dim, matryoshka_dims,
                     max_length, license, commercial, opt_in, description, size, kind, scores,
                     matryoshka_layer_norm)


_MODELS = [
    _entry("jina-code-v2", "jinaai/jina-embeddings-v2-base-code", "jinabert", "mean", 768, 8192, "Apache-2.0",
           "JinaBERT v2 for code and English, 161M parameters, 30 programming languages (default)",
           size="161M", scores="CoIR 58.4, CSN MRR 67.2"),
    _entry("jina-base-en", "jinaai/jina-embeddings-v2-base-en", "jinabert", "mean", 768, 8192, "Apache-2.0",
           "JinaBERT v2 for English text, 137M parameters", size="137M"),
    _entry("minilm", "sentence-transformers/all-MiniLM-L6-v2", "bert", "mean", 384, 256, "Apache-2.0",
           "all-MiniLM-L6-v2, 22M parameters: small and fast, general English", size="22M"),
    _entry("bge-small", "BAAI/bge-small-en-v1.5", "bert", "cls", 384, 512, "MIT",
           "BGE small English v1.5, 33M parameters", query_prefix=BGE_QUERY_PREFIX, size="33M"),
    _entry("arctic-s", "Snowflake/snowflake-arctic-embed-s", "bert", "cls", 384, 512, "Apache-2.0",
           "Snowflake Arctic Embed S, 33M parameters, retrieval-tuned", query_prefix=BGE_QUERY_PREFIX, size="33M"),
    # ---- NomicBERT (models/nomic_bert.py): 8,192 positions published, 2,048 trained (the length hhg uses) ----
    _entry("coderank", "nomic-ai/CodeRankEmbed", "nomic_bert", "cls", 768, 2048, "MIT",
           "CodeRankEmbed (NomicBERT), 137M parameters, code retrieval: CoIR 60.1, CodeSearchNet MRR 77.9",
           query_prefix=CODERANK_QUERY_PREFIX, size="137M", scores="CoIR 60.1, CSN MRR 77.9"),
    _entry("nomic-v1.5", "nomic-ai/nomic-embed-text-v1.5", "nomic_bert", "mean", 768, 2048, "Apache-2.0",
           "nomic-embed-text-v1.5 (NomicBERT), 137M parameters, English text, Matryoshka 64-768 dims",
           query_prefix="search_query: ", document_prefix="search_document: ",
           matryoshka_dims=(64, 128, 256, 512, 768), matryoshka_layer_norm=True, size="137M",
           scores="MTEB 62.28 (768 dims), 61.04 (256)"),
    # ---- Qwen-based decoder embedders (models/qwen.py; entries maintained by the qwen helper) ----
    _entry("jina-code-0.5b", "jinaai/jina-code-embeddings-0.5b", "qwen2", "last", 896, 32768, "CC-BY-NC-4.0",
           "jina-code-embeddings 0.5B (Qwen2.5-Coder), CoIR 73.9; non-commercial, needs --accept-license",
           query_prefix=JINA_CODE_QUERY_PREFIX, document_prefix=JINA_CODE_DOCUMENT_PREFIX,
           matryoshka_dims=(64, 128, 256, 512, 896), commercial=False, opt_in=True, size="0.5B",
           scores="CoIR 73.9"),
    _entry("jina-code-1.5b", "jinaai/jina-code-embeddings-1.5b", "qwen2", "last", 1536, 32768, "CC-BY-NC-4.0",
           "jina-code-embeddings 1.5B (Qwen2.5-Coder), CoIR ~79; non-commercial, needs --accept-license",
           query_prefix=JINA_CODE_QUERY_PREFIX, document_prefix=JINA_CODE_DOCUMENT_PREFIX,
           matryoshka_dims=(128, 256, 512, 1024, 1536), commercial=False, opt_in=True, size="1.5B",
           scores="CoIR ~79"),
    _entry("qodo-1.5b", "Qodo/Qodo-Embed-1-1.5B", "qwen2", "last", 1536, 32768, "QodoAI-Open-RAIL-M",
           "Qodo-Embed-1 1.5B (gte-Qwen2), CoIR 68.5; commercial use with attribution and the licence's use "
           "restrictions, needs --accept-license", opt_in=True, size="1.5B", scores="CoIR 68.5 (vendor run)"),
    _entry("qwen3-0.6b", "Qwen/Qwen3-Embedding-0.6B", "qwen3", "last", 1024, 32768, "Apache-2.0",
           "Qwen3-Embedding 0.6B: permissive, multilingual, code-aware", query_prefix=QWEN3_CODE_QUERY_PREFIX,
           matryoshka_dims=(32, 64, 128, 256, 512, 768, 1024), size="0.6B"),
    # ---- cross-encoder rerankers (models/cross_encoder.py); dim 0: they score pairs, no vectors ----
    _entry("jina-reranker-tiny", "jinaai/jina-reranker-v1-tiny-en", "jinabert", "cls", 0, 8192, "Apache-2.0",
           "jina-reranker-v1-tiny-en: JinaBERT cross-encoder, 4 layers, 33M parameters (default reranker)",
           size="33M", kind="reranker"),
    _entry("jina-reranker-turbo", "jinaai/jina-reranker-v1-turbo-en", "jinabert", "cls", 0, 8192, "Apache-2.0",
           "jina-reranker-v1-turbo-en: JinaBERT cross-encoder, 6 layers, 37.8M parameters",
           size="37.8M", kind="reranker"),
    _entry("ms-marco-minilm", "cross-encoder/ms-marco-MiniLM-L-6-v2", "bert", "cls", 0, 512, "Apache-2.0",
           "ms-marco-MiniLM-L-6-v2: BERT cross-encoder trained on MS MARCO, 22.7M parameters",
           size="22.7M", kind="reranker"),
]

REGISTRY: dict[str, ModelInfo] = {info.id: info for info in _MODELS}
DEFAULT_MODEL = "jina-code-v2"
DEFAULT_RERANKER = "jina-reranker-tiny"


def get(model_id: str) -> ModelInfo | None:
    """The registry entry for a short id, or for its Hugging Face repo id; None if unknown."""
    if model_id in REGISTRY:
        return REGISTRY[model_id]
    return next((info for info in REGISTRY.values() if info.repo == model_id), None)
