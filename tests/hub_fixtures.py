"""An offline Hugging Face cache for tests: `hf_cache(repo, folder)` installs a model as the hub would."""
from __future__ import annotations

import shutil

import pytest


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty, offline Hugging Face cache; `add(repo, folder)` puts a snapshot of `folder` in it."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def add(repo: str, folder, revision: str = "0123456789abcdef0123456789abcdef01234567"):
        repo_dir = cache / ("models--" + repo.replace("/", "--"))
        (repo_dir / "refs").mkdir(parents=True)
        (repo_dir / "refs" / "main").write_text(revision)
        snapshot = repo_dir / "snapshots" / revision
        shutil.copytree(folder, snapshot)
        return snapshot

    return add
