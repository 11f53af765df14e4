"""`--model FILE.gguf`: the file is converted once, like `hhg convert FILE.gguf OUT` with the
default options, into `$XDG_CACHE_HOME/hhg/gguf/<name>-<key>/`, and that folder is used from then
on. The key covers the file's path, size and modification time (as for the ONNX export cache), so
a replaced file is converted again; the `gguf` package is only imported when converting."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from hhg_mlx.errors import ModelUnavailable
from hhg_mlx.paths import cache_dir

CACHE_VERSION = 1        # bump when a conversion from GGUF changes what it writes


def converted_folder(path: str | Path) -> Path:
    """The hhg model folder converted from the GGUF file `path`, converting it now if needed."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ModelUnavailable(f"{path}: no such GGUF file")
    stat = path.stat()
    key = hashlib.sha256(f"{CACHE_VERSION}:{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    folder = cache_dir() / "gguf" / f"{path.stem}-{key}"
    if (folder / "hhg.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    _convert(path, folder)
    return folder


def _convert(path: Path, folder: Path) -> None:
    """Convert into a private folder, then move it into place; a concurrent conversion of the same
    file that finished first wins (both wrote the same thing)."""
    from ..cli import write_model
    from . import identify, unpack

    gguf, info = identify(path)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}-") as tmp:
        source = unpack(gguf, info, Path(tmp) / "source")
        write_model(Path(tmp) / "source", Path(tmp) / "model", given=str(path), info=info, source=source)
        try:
            os.rename(Path(tmp) / "model", folder)
        except OSError:
            if not (folder / "hhg.json").is_file():
                raise
