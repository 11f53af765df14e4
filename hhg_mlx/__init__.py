"""hhg: hybrid (semantic + keyword) code search, MLX first."""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Index", "Hit", "Filters", "load_encoder", "load_reranker", "__version__"]


def __getattr__(name: str):
    # Lazy: `import hhg_mlx` stays cheap; the heavy modules load on first use.
    if name in ("Index", "Hit", "Filters", "load_encoder", "load_reranker"):
        from . import api
        return getattr(api, name)
    raise AttributeError(name)
