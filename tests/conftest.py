"""Shared test set-up. MLX must be imported through hhg_mlx.mlx_runtime (it preloads OpenBLAS)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GIT_AUTHOR_NAME", "hhg-tests")
os.environ.setdefault("GIT_AUTHOR_EMAIL", "tests@example.invalid")
os.environ.setdefault("GIT_COMMITTER_NAME", "hhg-tests")
os.environ.setdefault("GIT_COMMITTER_EMAIL", "tests@example.invalid")
