"""Test-only start-up hook for the processes that tests/test_worker.py runs (it puts this folder on
PYTHONPATH): models named `stub-...` load as slow stub encoders in the search, build and background
worker processes alike, so the worker can be watched, raced and killed mid-batch.

- `stub-slow` (any `stub-` name but `stub-fail`): the engine tests' hashed bag-of-words encoder that
  sleeps HHG_STUB_DELAY seconds per text and appends to HHG_STUB_LOG `PID start N` before a batch of N
  texts, `PID text DIGEST` per text and `PID end N` after it;
- `stub-fail`: loading fails with "stub-fail: bad weights".
HHG_STUB_BATCH, when set, is the number of windows per embedding batch.
"""
import importlib.abc
import importlib.util
import os
import sys


def _patch_loader(loader) -> None:
    real_load, real_choose = loader.load_encoder, loader.choose_encoder

    def load_encoder(model, *args, **kwargs):
        if str(model) == "stub-fail":
            from hhg_mlx.errors import ModelUnavailable
            raise ModelUnavailable("stub-fail: bad weights")
        return _stub(str(model)) if str(model).startswith("stub-") else real_load(model, *args, **kwargs)

    def choose_encoder(model, backend="auto", precision="auto", *, download=False):
        if str(model).startswith("stub-"):
            return loader.EncoderChoice("stub", "fp32")
        return real_choose(model, backend, precision, download=download)

    loader.load_encoder, loader.choose_encoder = load_encoder, choose_encoder


def _patch_embed(embed) -> None:
    if os.environ.get("HHG_STUB_BATCH"):
        embed.EMBED_BATCH = int(os.environ["HHG_STUB_BATCH"])


def _stub(model: str):
    import hashlib
    import time

    from engine_fixtures import StubEncoder

    class SlowStub(StubEncoder):
        def embed_documents(self, texts, progress=None):
            delay, log = float(os.environ.get("HHG_STUB_DELAY", "0")), os.environ.get("HHG_STUB_LOG")
            lines = [f"{os.getpid()} start {len(texts)}"]
            self._log(log, lines)
            time.sleep(delay * len(texts))
            out = super().embed_documents(texts, progress)
            self._log(log, [f"{os.getpid()} text {hashlib.blake2b(t.encode(), digest_size=8).hexdigest()}"
                            for t in texts] + [f"{os.getpid()} end {len(texts)}"])
            return out

        @staticmethod
        def _log(path, lines):
            if path:
                with open(path, "a") as fh:
                    fh.write("".join(line + "\n" for line in lines))

    return SlowStub(model_id=model)


PATCHES = {"hhg_mlx.loader": _patch_loader, "hhg_mlx.index.embed": _patch_embed}


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Runs PATCHES[name] on a module right after it is first executed."""

    def find_spec(self, name, path, target=None):
        if name not in PATCHES:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            PATCHES[name](module)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _PatchOnImport())
