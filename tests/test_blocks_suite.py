"""The `blocks` benchmark suite: its shipped data (offline), its loader on local tarballs, and — when the
archives are already unpacked in $HHG_BLOCKS_CACHE (`python -m hhg_mlx.bench.blocks` fills it) — every
target against the real sources and hhg's extractor."""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from hhg_mlx.bench import blocks
from hhg_mlx.bench.blocks import KINDS, Project, Query, Target
from hhg_mlx.errors import HhgError
from hhg_mlx.index.languages import language_for

SOURCES = blocks.load_sources()
QUERIES = {s.name: blocks.load_queries(s.name) for s in SOURCES}
SEMBLE_REPOS = {"aiohttp", "click", "fastapi", "flask", "httpx", "model2vec", "pydantic", "requests", "starlette",
                "express", "chi", "sinatra", "serde", "plug", "bats-core", "lazy.nvim", "zig-clap", "xmonad",
                "monolog"}
URL_HOSTS = {"pypi": "https://files.pythonhosted.org/packages/", "npm": "https://registry.npmjs.org/"}


# --- the shipped data ---------------------------------------------------------------------------------------------

def test_projects_are_pinned_release_archives_outside_the_semble_set():
    names = [s.name for s in SOURCES]
    assert len(names) == len(set(names))
    for s in SOURCES:
        assert s.registry in URL_HOSTS and s.url.startswith(URL_HOSTS[s.registry]), s.name
        assert f"-{s.version}.t" in s.url.rsplit("/", 1)[-1], s.name   # the exact version is in the file name
        assert re.fullmatch(r"[0-9a-f]{64}", s.sha256), s.name
        assert s.root and not s.root.startswith("/") and ".." not in s.root.split("/"), s.name
        assert s.languages and s.license, s.name
        assert s.package.lower() not in SEMBLE_REPOS | {"django"} and s.name not in SEMBLE_REPOS | {"django"}


def test_queries_are_well_formed():
    for name, queries in QUERIES.items():
        assert queries, name
        for q in queries:
            assert q.kind in KINDS, (name, q.text)
            assert q.text == q.text.strip() and q.text, (name, q.text)
            assert q.how.strip(), (name, q.text)
            assert 1 <= len(q.targets) <= 3, (name, q.text)
            assert len(set(q.targets)) == len(q.targets), (name, q.text)
            for t in q.targets:
                assert not t.path.startswith("/") and ".." not in t.path.split("/"), (name, q.text)
                assert language_for(t.path) in {lang for s in SOURCES if s.name == name for lang in s.languages}
                assert isinstance(t.line, int) and t.line >= 1, (name, q.text)
                assert re.fullmatch(r"[\w$]+(\.[\w$]+)*", t.name), (name, q.text, t.name)


def test_no_query_text_repeats():
    texts = Counter(" ".join(q.text.lower().split()) for queries in QUERIES.values() for q in queries)
    assert [t for t, n in texts.items() if n > 1] == []


def test_suite_size_languages_and_kind_balance():
    kinds = Counter(q.kind for queries in QUERIES.values() for q in queries)
    total = sum(kinds.values())
    assert total >= 200 and len(SOURCES) >= 6
    assert all(abs(kinds[k] / total - 1 / 3) < 0.05 for k in KINDS), kinds
    languages = {lang for s in SOURCES for lang in s.languages}
    assert "python" in languages and len(languages - {"python"}) >= 2


def test_every_project_has_every_kind():
    for name, queries in QUERIES.items():
        kinds = Counter(q.kind for q in queries)
        assert all(kinds[k] >= len(queries) / 5 for k in KINDS), (name, kinds)


def test_load_queries_keeps_file_order_and_fields(tmp_path):
    raw = [{"query": "parse_duration", "kind": "identifier", "how": "exact name",
            "targets": [{"path": "a/b.py", "line": 3, "name": "parse_duration"}]},
           {"query": "seconds from a time string", "kind": "paraphrase", "how": "behaviour",
            "targets": [{"path": "a/b.py", "line": 3, "name": "parse_duration"},
                        {"path": "a/c.py", "line": 9, "name": "Clock.parse"}]}]
    (tmp_path / "tiny.json").write_text(json.dumps(raw))
    assert blocks.load_queries("tiny", tmp_path) == (
        Query("parse_duration", "identifier", (Target("a/b.py", 3, "parse_duration"),), "exact name"),
        Query("seconds from a time string", "paraphrase",
              (Target("a/b.py", 3, "parse_duration"), Target("a/c.py", 9, "Clock.parse")), "behaviour"))


# --- the full check against the real sources (only when they are unpacked already) --------------------------------

def _cached(source: blocks.Source) -> Path | None:
    cache = os.environ.get(blocks.CACHE_ENV)
    return Path(cache) if cache and blocks.unpacked_folder(source, Path(cache)).is_dir() else None


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_targets_exist_in_the_sources_and_are_blocks_of_hhg(source):
    cache = _cached(source)
    if cache is None:
        pytest.skip(f"{source.name} is not unpacked in ${blocks.CACHE_ENV} (python -m hhg_mlx.bench.blocks fills it)")
    (project,) = blocks.load_blocks_suite(cache, [source.name])
    assert blocks.check_targets(project) == []


# --- checking targets, on a small fixture project -----------------------------------------------------------------

FIXTURE = '''import re


class Duration:
    """A span of time."""

    @classmethod
    def parse(cls, text):
        return cls()


def parse_duration(text):
    return Duration.parse(text)
'''


def _project(tmp_path: Path, *targets: Target) -> Project:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "time.py").write_text(FIXTURE)
    return Project("tiny", tmp_path, ("python",), (Query("q", "identifier", targets, "how"),))


def test_check_targets_accepts_definition_and_decorator_lines(tmp_path):
    project = _project(tmp_path, Target("pkg/time.py", 4, "Duration"), Target("pkg/time.py", 8, "Duration.parse"),
                       Target("pkg/time.py", 7, "Duration.parse"), Target("pkg/time.py", 12, "parse_duration"))
    assert blocks.check_targets(project) == []


def test_check_targets_reports_each_kind_of_mistake(tmp_path):
    project = _project(tmp_path,
                       Target("pkg/missing.py", 1, "parse"),
                       Target("pkg/time.py", 13, "parse_duration"),   # the body, not the def line
                       Target("pkg/time.py", 8, "parse"),             # not qualified as hhg names methods
                       Target("pkg/time.py", 1, "re"))                # the name is there, but no definition
    assert blocks.check_targets(project) == [
        "tiny: 'q': pkg/missing.py:1 parse: not a file hhg indexes",
        "tiny: 'q': pkg/time.py:13 parse_duration: line 13 does not show parse_duration",
        "tiny: 'q': pkg/time.py:8 parse: no class/function/method block named parse spans the line",
        "tiny: 'q': pkg/time.py:1 re: no class/function/method block named re spans the line",
    ]


# --- the loader on local tarballs ---------------------------------------------------------------------------------

def _tarball(path: Path, members: dict[str, str], links: dict[str, str] | None = None) -> str:
    """Write a .tar.gz of text files (and symlinks); return its sha256."""
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _suite(tmp_path: Path, url: str, sha256: str, root: str = "tiny-1.0/src") -> Path:
    """A data folder with one project, `tiny`, whose archive is at `url`."""
    data = tmp_path / "data"
    data.mkdir()
    entry = {"name": "tiny", "registry": "pypi", "package": "tiny", "version": "1.0", "url": url,
             "sha256": sha256, "root": root, "languages": ["python"], "license": "MIT"}
    (data / "projects.json").write_text(json.dumps([entry]))
    (data / "tiny.json").write_text(json.dumps([{"query": "parse_duration", "kind": "identifier", "how": "name",
                                                 "targets": [{"path": "pkg/time.py", "line": 12,
                                                              "name": "parse_duration"}]}]))
    return data


def test_loader_downloads_verifies_unpacks_once_and_reuses(tmp_path):
    archive = tmp_path / "tiny-1.0.tar.gz"
    sha = _tarball(archive, {"tiny-1.0/src/pkg/time.py": FIXTURE, "tiny-1.0/README": "tiny\n"})
    data, cache = _suite(tmp_path, archive.as_uri(), sha), tmp_path / "cache"

    (project,) = blocks.load_blocks_suite(cache, data=data)
    assert project.name == "tiny" and project.languages == ("python",)
    assert project.root == cache / "tiny-1.0" / "tiny-1.0" / "src"
    assert (project.root / "pkg" / "time.py").read_text() == FIXTURE
    assert (cache / "archives" / "tiny-1.0.tar.gz").read_bytes() == archive.read_bytes()
    assert project.queries == (Query("parse_duration", "identifier", (Target("pkg/time.py", 12, "parse_duration"),),
                                     "name"),)
    assert blocks.check_targets(project) == []
    assert sorted(p.name for p in cache.iterdir()) == ["archives", "tiny-1.0"]   # no partial folder left

    archive.unlink()                                       # the URL is dead now: the unpacked copy is reused
    (project.root / "pkg" / "marker").write_text("kept")
    (again,) = blocks.load_blocks_suite(cache, data=data)
    assert again == project and (again.root / "pkg" / "marker").read_text() == "kept"


def test_loader_rejects_a_download_with_the_wrong_hash(tmp_path):
    archive = tmp_path / "tiny-1.0.tar.gz"
    sha = _tarball(archive, {"tiny-1.0/src/pkg/time.py": FIXTURE})
    wrong = "0" * 64
    data, cache = _suite(tmp_path, archive.as_uri(), wrong), tmp_path / "cache"
    with pytest.raises(HhgError) as err:
        blocks.load_blocks_suite(cache, data=data)
    assert str(err.value) == f"{archive.as_uri()}: sha256 {sha} does not match the pinned {wrong}"
    assert list((cache / "archives").iterdir()) == []      # neither the archive nor a .part file stays
    assert not (cache / "tiny-1.0").exists()


def test_loader_deletes_a_cached_archive_with_the_wrong_hash(tmp_path):
    archive = tmp_path / "tiny-1.0.tar.gz"
    sha = _tarball(archive, {"tiny-1.0/src/pkg/time.py": FIXTURE})
    data, cache = _suite(tmp_path, archive.as_uri(), sha), tmp_path / "cache"
    cached = cache / "archives" / "tiny-1.0.tar.gz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated")
    with pytest.raises(HhgError) as err:
        blocks.load_blocks_suite(cache, data=data)
    assert str(err.value) == (f"{cached}: sha256 {hashlib.sha256(b'truncated').hexdigest()} does not match "
                              f"the pinned {sha} (deleted; run again)")
    assert not cached.exists()
    (project,) = blocks.load_blocks_suite(cache, data=data)   # the next run downloads it afresh
    assert (project.root / "pkg" / "time.py").read_text() == FIXTURE


def test_loader_without_network_is_a_one_line_error(tmp_path):
    with socket.socket() as s:   # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/tiny-1.0.tar.gz"
    data, cache = _suite(tmp_path, url, "0" * 64), tmp_path / "cache"
    with pytest.raises(HhgError) as err:
        blocks.load_blocks_suite(cache, data=data)
    message = str(err.value)
    assert message.startswith(f"cannot download {url}: ") and "refused" in message.lower() and "\n" not in message
    assert list((cache / "archives").iterdir()) == []


@pytest.mark.parametrize("members, links", [
    ({"tiny-1.0/src/ok.py": "", "../escaped.py": "x = 1\n"}, None),
    ({"tiny-1.0/src/ok.py": ""}, {"tiny-1.0/src/link": "../../../escaped.py"}),
    ({"tiny-1.0/src/ok.py": ""}, {"tiny-1.0/src/abs": "/etc/passwd"}),
], ids=["dot-dot", "symlink-out", "absolute-symlink"])
def test_loader_refuses_members_outside_the_target_folder(tmp_path, members, links):
    archive = tmp_path / "tiny-1.0.tar.gz"
    sha = _tarball(archive, members, links)
    data, cache = _suite(tmp_path, archive.as_uri(), sha), tmp_path / "cache"
    with pytest.raises(HhgError, match=r"^cannot unpack tiny-1\.0\.tar\.gz: .+"):
        blocks.load_blocks_suite(cache, data=data)
    assert not (tmp_path / "escaped.py").exists() and not (cache / "escaped.py").exists()
    assert sorted(p.name for p in cache.iterdir()) == ["archives"]   # no project, no partial folder


def test_loader_keeps_absolute_member_names_inside_the_target_folder(tmp_path):
    archive = tmp_path / "tiny-1.0.tar.gz"
    outside = tmp_path / "absolute" / "escaped.py"
    sha = _tarball(archive, {"tiny-1.0/src/ok.py": "", str(outside): "x = 1\n"})
    data, cache = _suite(tmp_path, archive.as_uri(), sha), tmp_path / "cache"
    blocks.load_blocks_suite(cache, data=data)
    assert not outside.exists()
    assert (cache / "tiny-1.0" / outside.relative_to("/")).read_text() == "x = 1\n"   # leading "/" stripped


def test_loader_replaces_a_partial_unpack_left_by_an_interrupted_run(tmp_path):
    archive = tmp_path / "tiny-1.0.tar.gz"
    sha = _tarball(archive, {"tiny-1.0/src/pkg/time.py": FIXTURE})
    data, cache = _suite(tmp_path, archive.as_uri(), sha), tmp_path / "cache"
    (cache / ".tiny-1.0.partial" / "tiny-1.0" / "src").mkdir(parents=True)
    (cache / ".tiny-1.0.partial" / "tiny-1.0" / "src" / "stale.py").write_text("")
    (project,) = blocks.load_blocks_suite(cache, data=data)
    assert sorted(p.name for p in project.root.rglob("*.py")) == ["time.py"]
    assert sorted(p.name for p in cache.iterdir()) == ["archives", "tiny-1.0"]


def test_loader_errors_on_a_root_missing_from_the_archive_and_on_unknown_projects(tmp_path):
    archive = tmp_path / "tiny-1.0.tar.gz"
    sha = _tarball(archive, {"tiny-1.0/src/pkg/time.py": FIXTURE})
    data, cache = _suite(tmp_path, archive.as_uri(), sha, root="tiny-1.0/lib"), tmp_path / "cache"
    with pytest.raises(HhgError) as err:
        blocks.load_blocks_suite(cache, data=data)
    assert str(err.value) == "tiny: tiny-1.0/lib is not a folder of tiny-1.0.tar.gz"
    with pytest.raises(HhgError) as err:
        blocks.load_blocks_suite(cache, ["tiny", "huge"], data=data)
    assert str(err.value) == "unknown blocks project: huge (known: tiny)"
