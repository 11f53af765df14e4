"""Release archives for the benchmarks: download with a pinned sha256, unpack without escaping the target folder."""
from __future__ import annotations

import hashlib
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import HhgError

CHUNK = 1 << 16


def download(url: str, dest: Path, sha256: str, timeout: float = 60.0) -> None:
    """Fetch `url` into `dest`, which appears only once the bytes are complete and hash to `sha256`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except OSError as err:   # URLError, HTTPError, timeouts and disk errors are all OSErrors
        part.unlink(missing_ok=True)
        raise HhgError(f"cannot download {url}: {getattr(err, 'reason', None) or err}") from None
    if digest.hexdigest() != sha256:
        part.unlink()
        raise HhgError(f"{url}: sha256 {digest.hexdigest()} does not match the pinned {sha256}")
    part.replace(dest)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def unpack(archive: Path, dest: Path) -> None:
    """Extract a tar archive (any compression) into `dest` with tarfile's "data" filter, which refuses
    absolute paths, `..` components, links that leave `dest` and device files."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    except tarfile.TarError as err:
        raise HhgError(f"cannot unpack {archive.name}: {err}") from None
