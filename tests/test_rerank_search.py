"""Reranking in search: `Index.search(..., rerank=...)`, the index's kept setting, `hhg --rerank` /
`--no-rerank`. Expected orders are computed here from the float64 reference of the cross-encoder on
what it reads of each candidate (its path and name, then its source), times the candidate's
noise-path and prose factors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from checkpoints import make_jinabert, pad_tokens
from cli_fixtures import assert_one_line_error, env_for, make_repo, run_hhg, search_json
from reference import reference_logits
from tokenizers import Tokenizer

from hhg_mlx import load_reranker
from hhg_mlx.cli import bare_rerank_last
from hhg_mlx.errors import ModelUnavailable, UnsupportedModel
from hhg_mlx.index.index import Index
from hhg_mlx.models.registry import DEFAULT_RERANKER
from hhg_mlx.types import Filters

QUERY = "retry failed uploads"
EXTRA = {   # a test file, a type stub and a doc section that match the query: their factors must survive reranking
    "tests/test_upload.py": "def test_retry_failed_uploads():\n    assert Uploader(None).retry_failed_uploads() is None\n",
    "stubs/upload.pyi": "class Uploader:\n    def retry_failed_uploads(self) -> None: ...\n",
}
KEPT = ("noise_path", "prose", "declaration")   # the non-textual factors reranking keeps


@pytest.fixture(scope="module")
def reranker_dir(tmp_path_factory) -> Path:
    return make_jinabert(tmp_path_factory.mktemp("reranker") / "tiny-reranker", variant="base-en", heads=12,
                         hidden=96, intermediate=192, prefix="bert.", labels=1, seed=11)


@pytest.fixture(scope="module")
def fp32(reranker_dir):
    return load_reranker(str(reranker_dir), backend="onnx", dtype="float32")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = make_repo(tmp_path_factory.mktemp("rerank") / "repo", use_git=False, extra=EXTRA)
    Index.build(root).close()
    return root


@pytest.fixture
def index(repo):
    with Index.open(repo) as idx:
        yield idx
    with Index.open(repo) as idx:           # no test leaves a setting behind
        idx.set_rerank(None)


def expected(reranker_dir: Path, query: str, candidates) -> list[tuple[str, int, float]]:
    """(file, line, score) of `candidates` as reranking must order them, from the reference logits."""
    tok = Tokenizer.from_file(str(reranker_dir / "tokenizer.json"))
    tok.enable_truncation(512, strategy="only_second")
    pairs = [tok.encode(query, f"{h.file} {h.name}".rstrip() + "\n" + h.content) for h in candidates]
    ids, mask = pad_tokens([p.ids for p in pairs])
    logits = reference_logits(reranker_dir, ids, pad_tokens([p.type_ids for p in pairs])[0], mask)
    rows = []
    for hit, logit in zip(candidates, logits):
        factor = math.prod(v for k, v in hit.explain["boosts"].items() if k in KEPT)
        rows.append((hit.file, hit.line, factor / (1 + math.exp(-logit))))
    return sorted(rows, key=lambda row: -row[2])


def located(hits) -> list[tuple[str, int]]:
    return [(h.file, h.line) for h in hits]


def test_the_cross_encoder_reorders_the_fused_candidates(repo, reranker_dir, fp32):
    with Index.open(repo, reranker=fp32) as idx:
        candidates = idx.search(QUERY, k=20, rerank=False)
        want = expected(reranker_dir, QUERY, candidates)
        got = idx.search(QUERY, k=20, rerank=True)                     # all of them: fewer than 20 match
        top = idx.search(QUERY, k=6, rerank=True)
    assert located(got) == [row[:2] for row in want] and located(top) == located(got[:6])
    np.testing.assert_allclose([h.score for h in got], [row[2] for row in want], rtol=1e-5)
    assert located(got) != located(candidates)                  # this model really reorders them
    boosts = [h.explain["boosts"] for h in got]
    assert all(any(b.get(factor) == 0.5 for b in boosts) for factor in KEPT)
    top = got[0].explain
    assert top["reranker"] == str(reranker_dir) and top["fused_score"] in [h.score for h in candidates]
    factor = math.prod(v for k, v in top["boosts"].items() if k in KEPT)
    assert factor / (1 + math.exp(-top["rerank_logit"])) == pytest.approx(got[0].score)


def test_depth_bounds_the_candidates_and_k_raises_it(repo, reranker_dir, fp32):
    with Index.open(repo, reranker=fp32) as idx:
        candidates = idx.search(QUERY, k=20, rerank=False)
        got = idx.search(QUERY, k=2, rerank=True, rerank_depth=4)
        wide = idx.search(QUERY, k=7, rerank=True, rerank_depth=4)
    assert located(got) == [row[:2] for row in expected(reranker_dir, QUERY, candidates[:4])[:2]]
    assert located(wide) == [row[:2] for row in expected(reranker_dir, QUERY, candidates[:7])]


def test_filters_come_first_and_the_threshold_reads_reranked_scores(repo, fp32):
    with Index.open(repo, reranker=fp32) as idx:
        go = idx.search("wombat", k=3, filters=Filters(types=("go",)), rerank=True)   # Python says it more
        assert len(go) == 3 and {h.file for h in go} == {"zoo/burrows.go"}
        scores = sorted(h.score for h in idx.search(QUERY, k=10, rerank=True))
        cut = scores[len(scores) // 2]
        kept = idx.search(QUERY, k=10, filters=Filters(threshold=cut), rerank=True)
    assert [h.score for h in kept] == sorted((s for s in scores if s >= cut), reverse=True)


def test_a_one_identifier_query_keeps_its_definitions_first(repo, fp32):
    with Index.open(repo, reranker=fp32) as idx:
        hits = idx.search("Uploader", k=5, rerank=True)
    assert (hits[0].kind, hits[0].name) == ("class", "Uploader") and hits[0].explain["defines_query"]
    assert "reranker" in hits[0].explain


def test_the_kept_setting_is_followed_until_turned_off(index, repo, reranker_dir):
    assert index.reranker_name() is None and index.reranker_name(True) == DEFAULT_RERANKER
    assert "reranker" not in index.search(QUERY, k=3)[0].explain        # no setting: no reranker
    index.set_rerank(index.reranker_name(str(reranker_dir)))
    with Index.open(repo) as other:
        assert other.status()["rerank"] == str(reranker_dir)
        hits = other.search(QUERY, k=3)                                  # loaded now, on auto: int8
        assert hits[0].explain["reranker"] == str(reranker_dir)
        assert "reranker" not in other.search(QUERY, k=3, rerank=False)[0].explain
    index.set_rerank(None)
    assert Index.open(repo).status()["rerank"] is None


def test_an_unavailable_kept_reranker_is_a_notice_an_asked_one_an_error(index, repo, tmp_path):
    index.set_rerank("someone/missing-reranker")
    with Index.open(repo) as idx:
        plain = idx.search(QUERY, k=3, mode="keyword")
        assert "reranker" not in plain[0].explain
        assert idx.notices == ["reranking unavailable (model someone/missing-reranker is not installed; run "
                               "`hhg model install someone/missing-reranker` or pass a local folder); showing "
                               "results without it"]
        idx.search(QUERY, k=3, mode="keyword")
        assert len(idx.notices) == 1
        with pytest.raises(ModelUnavailable, match="no such model folder"):
            idx.search(QUERY, k=3, rerank=str(tmp_path / "nothing"))
        with pytest.raises(UnsupportedModel, match="^minilm is an embedding model"):
            idx.search(QUERY, k=3, rerank="minilm")


def test_relative_folders_are_kept_absolute(index, reranker_dir, monkeypatch):
    monkeypatch.chdir(reranker_dir.parent)
    assert index.reranker_name(reranker_dir.name) == str(reranker_dir)
    assert index.reranker_name("jina-reranker-turbo") == "jina-reranker-turbo"
    assert index.reranker_name(False) is None


@pytest.mark.parametrize("argv, want", [
    (["--rerank", "retry uploads", "src"], ["retry uploads", "src", "--rerank"]),
    (["--rerank", "jina-reranker-turbo", "retry uploads"], ["--rerank", "jina-reranker-turbo", "retry uploads"]),
    (["--rerank", "someone/reranker", "q"], ["--rerank", "someone/reranker", "q"]),
    (["--rerank", "./models/mine", "q"], ["--rerank", "./models/mine", "q"]),
    (["-n", "5", "--rerank", "--", "build"], ["-n", "5", "--rerank", "--", "build"]),
    (["--rerank", "-n", "5", "q"], ["-n", "5", "q", "--rerank"]),
    (["q", "--rerank"], ["q", "--rerank"]),
])
def test_a_bare_rerank_never_takes_the_query(argv, want):
    assert bare_rerank_last(argv) == want


# --- the command line ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    return env_for(tmp_path_factory.mktemp("env"))


def test_cli_rerank_is_kept_and_turned_off(tmp_path, env, reranker_dir):
    root = make_repo(tmp_path / "repo", use_git=False, extra=EXTRA)
    assert run_hhg("build", "-q", cwd=root, env=env).returncode == 0
    plain = search_json(QUERY, cwd=root, env=env)
    with Index.open(root, reranker=load_reranker(str(reranker_dir))) as idx:     # auto: what the CLI loads
        want = [{"file": h.file, "line": h.line, "score": round(h.score, 6)} for h in idx.search(QUERY, rerank=True)]

    def brief(hits: list[dict]) -> list[dict]:
        return [{key: hit[key] for key in ("file", "line", "score")} for hit in hits]

    assert brief(search_json("--rerank", str(reranker_dir), QUERY, cwd=root, env=env)) == want
    assert brief(search_json(QUERY, cwd=root, env=env)) == want                   # kept
    status = json.loads(run_hhg("status", "--json", cwd=root, env=env).stdout)
    assert status["rerank"] == str(reranker_dir)
    assert brief(search_json("--rerank", QUERY, cwd=root, env=env)) == want       # bare: the index's reranker
    assert search_json("--no-rerank", QUERY, cwd=root, env=env) == plain
    assert search_json(QUERY, cwd=root, env=env) == plain                           # off, and kept off
    assert json.loads(run_hhg("status", "--json", cwd=root, env=env).stdout)["rerank"] is None


@pytest.mark.parametrize("model, message", [
    ("minilm", "hhg: minilm is an embedding model, not a cross-encoder reranker\n"),
    ("./no-such-folder", "hhg: ./no-such-folder: no such model folder"),
    (DEFAULT_RERANKER, f"hhg: model {DEFAULT_RERANKER} is not installed and the Hugging Face hub cannot be reached"),
])
def test_cli_unusable_reranker_is_one_line_and_not_kept(tmp_path, env, model, message):
    root = make_repo(tmp_path / "repo", use_git=False)
    proc = run_hhg("-q", "--rerank", model, QUERY, cwd=root, env=env)
    assert_one_line_error(proc)
    assert proc.stderr.startswith(message) and proc.stdout == ""
    assert json.loads(run_hhg("status", "--json", cwd=root, env=env).stdout)["rerank"] is None


def test_cli_query_too_long_for_the_reranker_is_one_line(tmp_path, env, reranker_dir):
    root = make_repo(tmp_path / "repo", use_git=False)
    proc = run_hhg("-q", "--rerank", str(reranker_dir), "retry upload " * 300, cwd=root, env=env)
    assert_one_line_error(proc)
    assert proc.stderr == (f"hhg: the query is 600 tokens long; the reranker {reranker_dir} reads at most 512 "
                           "tokens of query and document together\n")
