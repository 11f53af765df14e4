"""The public Python API: `load_encoder`, `load_reranker`, `Index`, `Hit`.

Everything here is re-exported lazily by `hhg_mlx/__init__.py` so that importing the
package does not pull in MLX, ONNX Runtime or tree-sitter.
"""
from .index.index import Index
from .loader import load_encoder, load_reranker
from .types import Filters, Hit

__all__ = ["Index", "Hit", "Filters", "load_encoder", "load_reranker"]
