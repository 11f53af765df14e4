"""Shared test set-up. MLX must be imported through hhg_mlx.mlx_runtime (it preloads OpenBLAS).

Builds embed in the foreground (HHG_BACKGROUND=0, inherited by the CLI tests' processes), so no test
leaves a background worker behind by accident; the tests of the worker turn it on and stop theirs.
The per-user embedding cache is off (HHG_SHARED_CACHE=0, inherited too): tests that count what an
encoder embedded must not find texts another test embedded; the tests of the cache turn it on.

Before any test module imports the hub library: no network, and every per-user location (hhg config,
caches, the Hugging Face cache) in a throw-away folder, so no test reads or writes the user's real ones
(a real cached default model would otherwise change what `Index.build(model=None)` does)."""
import atexit
import os
import shutil
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="hhg-tests-home-"))
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["HHG_BACKGROUND"] = "0"
os.environ["HHG_SHARED_CACHE"] = "0"
os.environ.update({
    "HHG_CONFIG_DIR": str(_HOME / "config" / "hhg"),
    "XDG_CONFIG_HOME": str(_HOME / "config"),
    "XDG_CACHE_HOME": str(_HOME / "cache"),
    "HF_HOME": str(_HOME / "hf-home"),
})
for _var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN_PATH"):
    os.environ.pop(_var, None)
os.environ.setdefault("GIT_AUTHOR_NAME", "hhg-tests")
os.environ.setdefault("GIT_AUTHOR_EMAIL", "tests@example.invalid")
os.environ.setdefault("GIT_COMMITTER_NAME", "hhg-tests")
os.environ.setdefault("GIT_COMMITTER_EMAIL", "tests@example.invalid")
