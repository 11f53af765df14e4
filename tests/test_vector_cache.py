"""The shared embedding cache: stores per vector key and dimension, first writer wins, vectors only,
several processes at once, and the caching embed function."""
from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hhg_mlx.errors import HhgError
from hhg_mlx.index.store import digest
from hhg_mlx.index.vector_cache import CachedEmbed, VectorCache, cache_folder, clean, store_name, stores

KEY = "/models/all-MiniLM-L6-v2#precision=fp32"


def vector_of(text: str, dim: int = 8) -> np.ndarray:
    """A deterministic unit vector for a text (the reference every stored vector must equal)."""
    rng = np.random.default_rng(int(digest(text)[:8], 16))
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture()
def folder(tmp_path):
    return tmp_path / "vectors"


def test_default_folder_follows_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder() == tmp_path / "xdg" / "hhg" / "vectors"
    with VectorCache.open(KEY) as cache:
        assert cache.path.parent == tmp_path / "xdg" / "hhg" / "vectors"


def test_put_then_get_returns_exactly_the_stored_vectors(folder):
    texts = [f"def f{i}(): return {i}" for i in range(5)]
    hashes = [digest(t) for t in texts]
    with VectorCache.open(KEY, folder) as cache:
        assert cache.put(hashes[:3], np.stack([vector_of(t) for t in texts[:3]])) == 3
        got = cache.get(hashes)
        assert sorted(got) == sorted(hashes[:3])
        for h, t in zip(hashes[:3], texts[:3]):
            assert np.array_equal(got[h], vector_of(t))
        # the first writer wins: a second vector for a cached hash is not stored, new ones are
        assert cache.put(hashes[2:], np.stack([-vector_of(t) for t in texts[2:]])) == 2
        assert np.array_equal(cache.get([hashes[2]])[hashes[2]], vector_of(texts[2]))
        assert cache.count() == 5


def test_one_store_per_vector_key_holding_no_text(folder):
    int8, task = KEY.replace("fp32", "int8/q8-block128"), KEY.replace("#", "#task=nl2code#")   # int8: as Index keys it
    with VectorCache.open(KEY, folder) as a, VectorCache.open(int8, folder) as b, VectorCache.open(task, folder) as c:
        assert a.dim is None and a.get([digest("x")]) == {}
        a.put([digest("x")], vector_of("x")[None])
        assert a.dim == 8 and b.get([digest("x")]) == {} and c.get([digest("x")]) == {}
        assert len({a.path, b.path, c.path}) == 3
    assert a.path.name.startswith("all-MiniLM-L6-v2-precision=fp32-")
    assert b.path.name.startswith("all-MiniLM-L6-v2-precision=int8-q8-block128-")     # the model stays readable
    tables = {r[0] for r in sqlite3.connect(a.path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"meta", "vectors"}
    columns = [r[1] for r in sqlite3.connect(a.path).execute("PRAGMA table_info(vectors)")]
    assert columns == ["hash", "vec"]
    listed = {(info.key, info.dim, info.vectors) for info in stores(folder)}
    assert listed == {(KEY, 8, 1), (int8, None, 0), (task, None, 0)}
    assert sorted(clean(folder)) == sorted([a.path, b.path, c.path])
    assert stores(folder) == [] and not list(folder.iterdir())


def test_a_store_under_another_key_is_refused(folder):
    with VectorCache.open(KEY, folder) as a:
        pass
    shutil.copy(a.path, folder / store_name("other-model"))
    with pytest.raises(HhgError) as err:
        VectorCache.open("other-model", folder)
    assert str(err.value) == (f"the embedding cache {folder / store_name('other-model')} holds {KEY} vectors, "
                              "not other-model; run `hhg cache clean`")


def test_vectors_of_another_width_are_refused(folder):
    with VectorCache.open(KEY, folder) as cache:
        cache.put([digest("a")], vector_of("a")[None])
        with pytest.raises(HhgError) as err:
            cache.put([digest("b")], vector_of("b", dim=4)[None])
        assert str(err.value) == (f"the embedding cache {cache.path} holds 8-dim {KEY} vectors, not 4-dim ones; "
                                  "run `hhg cache clean`")
        assert cache.count() == 1


def test_a_damaged_store_is_a_one_line_error(folder):
    folder.mkdir()
    (folder / store_name(KEY)).write_bytes(b"not a database" * 100)
    with pytest.raises(HhgError, match=r"^cannot use the embedding cache .*: file is not a database; "
                                        r"`hhg cache clean` deletes it$"):
        VectorCache.open(KEY, folder)


def test_temporary_store_leaves_nothing_behind(folder, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with VectorCache.temporary(KEY) as cache:
        assert cache.path is None
        assert cache.put([digest("a")], vector_of("a")[None]) == 1
        assert np.array_equal(cache.get([digest("a")])[digest("a")], vector_of("a"))
    assert not (tmp_path / "xdg").exists()


def test_cached_embed_runs_only_the_misses(folder):
    calls: list[list[str]] = []
    loads = []

    def load():
        loads.append(1)

        def embed(texts, progress=None):
            calls.append(list(texts))
            if progress:
                progress(len(texts), len(texts))
            return np.stack([vector_of(t) for t in texts])
        return embed

    texts = ["alpha", "beta", "gamma", "delta"]
    with VectorCache.open(KEY, folder) as cache:
        cache.put([digest("beta")], vector_of("beta")[None])
        cached = CachedEmbed(cache, load)
        seen = []
        out = cached(texts, progress=lambda done, total: seen.append((done, total)))
        assert np.array_equal(out, np.stack([vector_of(t) for t in texts]))
        assert calls == [["alpha", "gamma", "delta"]] and (cached.embedded, cached.cached) == (3, 1)
        assert seen[-1] == (4, 4)
        assert np.array_equal(cached(texts[::-1]), np.stack([vector_of(t) for t in texts[::-1]]))
        assert len(calls) == 1 and loads == [1] and (cached.embedded, cached.cached) == (3, 5)
        assert cache.count() == 4


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[4])
    from test_vector_cache import KEY, vector_of
    from hhg_mlx.index.store import digest
    from hhg_mlx.index.vector_cache import VectorCache
    import numpy as np

    folder, start, go = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    while not go.exists():
        time.sleep(0.001)
    cache = VectorCache.open(KEY, folder)      # both processes create the store at once
    for batch in range(40):
        texts = [f"text {start + batch * 10 + i}" for i in range(20)]     # overlaps the other writer
        cache.put([digest(t) for t in texts], np.stack([vector_of(t) for t in texts]))
        probe = [f"text {j}" for j in range(0, 900, 7)]
        for h, v in cache.get([digest(t) for t in probe]).items():
            text = next(t for t in probe if digest(t) == h)
            assert np.array_equal(v, vector_of(text)), text
    cache.close()
    print("ok")
""")


def test_two_processes_read_and_write_one_store_at_once(folder, tmp_path):
    go = tmp_path / "go"
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(start), str(go), tests_dir],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for start in (0, 200)]
    go.touch()
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    expected = {f"text {j}" for start in (0, 200) for batch in range(40) for j in
                range(start + batch * 10, start + batch * 10 + 20)}
    with VectorCache.open(KEY, folder) as cache:
        got = cache.get([digest(t) for t in expected])
        assert cache.count() == len(expected) == len(got)
        assert all(np.array_equal(got[digest(t)], vector_of(t)) for t in expected)


def test_the_switch_flag_over_variable_over_config_file(tmp_path, monkeypatch):
    """`--no-shared-cache` beats HHG_SHARED_CACHE, which beats the config's `shared_cache`; a config file
    that is not a JSON object is a one-line error, not a crash."""
    from hhg_mlx.config import shared_cache_enabled
    from hhg_mlx.errors import ConfigUnreadable

    monkeypatch.setenv("HHG_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("HHG_SHARED_CACHE")
    assert shared_cache_enabled() is True                              # no config file: on
    (tmp_path / "config.json").write_text('{"shared_cache": false}')
    assert (shared_cache_enabled(), shared_cache_enabled(True)) == (False, True)
    monkeypatch.setenv("HHG_SHARED_CACHE", "yes")
    assert (shared_cache_enabled(), shared_cache_enabled(False)) == (True, False)
    monkeypatch.setenv("HHG_SHARED_CACHE", "Off")
    assert shared_cache_enabled() is False
    monkeypatch.delenv("HHG_SHARED_CACHE")
    (tmp_path / "config.json").write_text("[]")
    with pytest.raises(ConfigUnreadable, match=r"^cannot read .*config\.json: not a JSON object$"):
        shared_cache_enabled()
