"""The quality runner on a tiny hand-made semble folder (no network, no model): hand-computed scores with
fake rankers, the doc2code suite end to end, and the real engine's keyword and plain BM25 rankers."""
from __future__ import annotations

import io
import json
import math
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from hhg_mlx.bench import quality, semble
from hhg_mlx.bench.metrics import Target

SOURCES = {
    "src/pkg/lexer.py": "class Lexer:\n    \"\"\"Split source text into tokens.\"\"\"\n\n"
                        + "".join(f"    def rule_{i}(self):\n        return {i}\n\n" for i in range(8)),
    "src/pkg/parser.py": "from .lexer import Lexer\n\n\ndef parse_expression(text):\n    return text\n",
    "src/pkg/widgets.py": "def frobnicate(widget):\n    \"\"\"Frobnicate a widget in place with the spinning wheel. Twice.\"\"\"\n"
                          "    widget.spin()\n    widget.spin()\n    return widget\n",
}
QUERIES = [
    {"query": "how tokens are parsed", "relevant": ["src/pkg/lexer.py"], "secondary": ["src/pkg/parser.py"],
     "category": "architecture"},
    {"query": "Lexer", "relevant": [{"path": "src/pkg/lexer.py", "start_line": 10, "end_line": 20}],
     "secondary": [], "category": "symbol"},
    {"query": "where widgets get frobnicated", "relevant": ["widgets.py"], "secondary": [], "category": "semantic"},
]


def _add(tar: tarfile.TarFile, name: str, text: str) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_benchmark(tmp_path: Path, *, sdist: bool = False) -> tuple[Path, Path]:
    """A one-repo benchmark folder; the source is a tarball, or (sdist=True) a pre-fetched PyPI sdist."""
    data, work = tmp_path / "bench", tmp_path / "work"
    (data / "annotations").mkdir(parents=True)
    (data / "repos").mkdir()
    top = "tiny-1.0" if sdist else "tiny"
    archive = (work / "sdist" / "tiny-1.0.tar.gz") if sdist else (data / "repos" / "tiny.tar.gz")
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path, text in SOURCES.items():
            _add(tar, f"{top}/{path}", text)
    entry = {"name": "tiny", "language": "python", "subpath": "src",
             "source": "pypi:tiny==1.0" if sdist else "github:x/tiny@abc"}
    (data / "manifest.json").write_text(json.dumps({"repos": [entry]}))
    (data / "annotations" / "tiny.json").write_text(json.dumps(QUERIES))
    tools = {t: {"per_repo_ndcg10": {"tiny": 0.5}, "subset_by_category": {"symbol": 0.9}}
             for t in semble.REPO_COLUMNS}
    (data / "published_results.json").write_text(json.dumps({"subset_repos": ["tiny"], "tools": tools}))
    return data, work


def fake_engine(results: dict[str, dict[str, list[tuple[str, int, int]]]]):
    """A `make_rankers` whose rankers return fixed root-relative chunks per query, recording the indexed roots."""
    seen = []

    def make_rankers(root, *, model, force, rerank):
        seen.append(root)
        return {name: (lambda q, by_query=by_query: by_query[q]) for name, by_query in results.items()}, 0.0, lambda: None
    return make_rankers, seen


@pytest.mark.parametrize("sdist", [False, True])
def test_semble_suite_scores_hand_computed_values(tmp_path, sdist):
    data, work = make_benchmark(tmp_path, sdist=sdist)
    make_rankers, seen = fake_engine({"keyword": {
        # ranks 2 and 4 of two targets; the repeated parser.py chunk does not count twice
        "how tokens are parsed": [("pkg/util.py", 1, 3), ("pkg/parser.py", 1, 5), ("pkg/parser.py", 1, 5),
                                  ("pkg/lexer.py", 1, 30)],
        # rank 1 misses the span, rank 2 overlaps it
        "Lexer": [("pkg/lexer.py", 1, 5), ("pkg/lexer.py", 12, 30)],
        "where widgets get frobnicated": [],
    }, "bm25": {q["query"]: [("pkg/widgets.py", 1, 3)] for q in QUERIES}})
    report = quality.run("semble", data, work, make_rankers=make_rankers)
    assert seen == [work / ("tiny-1.0" if sdist else "tiny") / "src"]
    assert sorted(p.relative_to(seen[0]).as_posix() for p in seen[0].rglob("*.py")) == \
        ["pkg/lexer.py", "pkg/parser.py", "pkg/widgets.py"]
    arch = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    sym = 1 / math.log2(3)
    by_query = {r["query"]: r["scores"]["keyword"]["ndcg@10"] for r in report["queries"]}
    assert by_query == pytest.approx({"how tokens are parsed": arch, "Lexer": sym,
                                      "where widgets get frobnicated": 0.0})
    assert {r["query"]: r["scores"]["bm25"]["ndcg@10"] for r in report["queries"]} == \
        {"how tokens are parsed": 0.0, "Lexer": 0.0, "where widgets get frobnicated": 1.0}
    s = report["summary"]["keyword"]["all"]
    assert s["all"] == pytest.approx({"n": 3, "ndcg@10": (arch + sym) / 3})
    assert {k: s[k]["ndcg@10"] for k in ("architecture", "semantic", "symbol")} == \
        pytest.approx({"architecture": arch, "semantic": 0.0, "symbol": sym})
    assert report["published"]["overall"]["semble"] == 0.5
    text = quality.format_report(report)
    assert f"{(arch + sym) / 3:.3f}" in text and "0.333" in text and "tiny" in text and "BM25" in text


def test_split_runs_only_the_chosen_third(tmp_path):
    data, work = make_benchmark(tmp_path)
    make_rankers, _ = fake_engine({"keyword": {q["query"]: [] for q in QUERIES}})
    held = quality.run("semble", data, work, split="heldout", make_rankers=make_rankers)["queries"]
    train = quality.run("semble", data, work, split="train", make_rankers=make_rankers)["queries"]
    assert len(held) == 1 and len(train) == 2
    assert all(r["heldout"] for r in held) and not any(r["heldout"] for r in train)


def test_unknown_repo_is_an_error(tmp_path):
    data, work = make_benchmark(tmp_path)
    with pytest.raises(ValueError, match="nope"):
        quality.run("semble", data, work, repos=["nope"])


def test_block_suite_scores_hit_and_reciprocal_rank(tmp_path):
    """doc2code on the tiny benchmark: its one query is the docstring's first sentence, answered by the
    definition's first line in the copy; hit@1, hit@10 and MRR@10 come from the rank that line is found at."""
    data, work = make_benchmark(tmp_path)
    query = "Frobnicate a widget in place with the spinning wheel."
    make_rankers, seen = fake_engine({"keyword": {query: [("pkg/util.py", 1, 9), ("pkg/widgets.py", 1, 4)]},
                                      "bm25": {query: [("pkg/widgets.py", 2, 9)]}})
    report = quality.run("doc2code", data, work, make_rankers=make_rankers)
    assert seen == [work / "doc2code" / "tiny"]
    (row,) = report["queries"]
    assert row["query"] == query and row["kind"] == "python" and row["heldout"] is False   # a third of one repo: none
    assert row["scores"]["keyword"] == {"hit@1": 0.0, "hit@10": 1.0, "mrr@10": 0.5}
    assert row["scores"]["bm25"] == {"hit@1": 0.0, "hit@10": 0.0, "mrr@10": 0.0}       # span starts below line 1
    assert report["summary"]["keyword"]["train"]["python"] == {"n": 1, "hit@1": 0.0, "hit@10": 1.0, "mrr@10": 0.5}
    assert "mrr@10" in quality.format_report(report)


def test_a_corpus_with_no_query_in_the_split_is_not_indexed(tmp_path):
    """doc2code holds out whole repositories: under --split heldout the one (training) repository has no
    query, so it is neither indexed nor reported."""
    data, work = make_benchmark(tmp_path)
    make_rankers, seen = fake_engine({"keyword": {}})
    report = quality.run("doc2code", data, work, split="heldout", make_rankers=make_rankers)
    assert seen == [] and report["queries"] == [] and report["corpora"] == []
    assert "0 queries in 0 corpora" in quality.format_report(report)


def test_real_engine_keyword_and_plain_bm25(tmp_path):
    """The real engine end to end: unambiguous queries score 1, a query with no matching word 0; the
    doc2code copy has lost the sampled docstring, and both rankers find the function by its code."""
    data, work = make_benchmark(tmp_path)
    (data / "annotations" / "tiny.json").write_text(json.dumps([
        {"query": "frobnicate", "relevant": ["widgets.py"], "category": "symbol"},
        {"query": "parse_expression", "relevant": ["src/pkg/parser.py"], "category": "symbol"},
        {"query": "zanzibar quokka", "relevant": ["src/pkg/lexer.py"], "category": "semantic"},
    ]))
    report = quality.run("semble", data, work)
    assert report["rankers"] == ["bm25", "keyword"]
    for ranker in ("bm25", "keyword"):
        assert {r["query"]: r["scores"][ranker]["ndcg@10"] for r in report["queries"]} == \
            {"frobnicate": 1.0, "parse_expression": 1.0, "zanzibar quokka": 0.0}
    assert report["summary"]["keyword"]["all"]["all"]["ndcg@10"] == pytest.approx(2 / 3)
    blocks = quality.run("doc2code", data, work)
    copy = (work / "doc2code" / "tiny" / "pkg" / "widgets.py").read_text()
    assert "spinning" not in copy and copy.startswith("def frobnicate(widget):\n    widget.spin()")
    (row,) = blocks["queries"]
    assert row["scores"]["keyword"]["hit@1"] == 1.0 and row["scores"]["bm25"]["hit@1"] == 1.0
    assert Target("pkg/widgets.py", 1) == quality.load_corpora("doc2code", data, work, None)[0].cases[0].targets[0]


def test_rerank_runs_every_query_with_and_without_the_reranker(tmp_path):
    """One run, one index: the plain rows are the keyword run's, the `keyword+rr` rows are what
    `Index.search(..., rerank=R)` returns for each query, and both are summarised and printed."""
    from checkpoints import make_jinabert

    from hhg_mlx.index.index import Index

    reranker = make_jinabert(tmp_path / "reranker", variant="base-en", heads=12, hidden=96, intermediate=192,
                             prefix="bert.", labels=1, seed=11)
    data, work = make_benchmark(tmp_path)
    report = quality.run("semble", data, work, rerank=str(reranker))
    plain = quality.run("semble", data, work)
    assert report["rankers"] == ["bm25", "keyword", "keyword+rr"]
    assert [(r["query"], r["top"]["keyword"]) for r in report["queries"]] == \
        [(r["query"], r["top"]["keyword"]) for r in plain["queries"]]
    with Index.open(work / "tiny" / "src") as idx:
        for row in report["queries"]:
            hits = idx.search(row["query"], k=quality.K, mode="keyword", rerank=str(reranker))
            assert row["top"]["keyword+rr"] == [f"src/{h.file}:{h.line}-{h.end_line}" for h in hits]
    reranked = report["summary"]["keyword+rr"]["all"]["all"]["ndcg@10"]
    assert reranked == pytest.approx(sum(r["scores"]["keyword+rr"]["ndcg@10"] for r in report["queries"]) / 3)
    text = quality.format_report(report)
    assert f"+rr: reranked by {reranker}" in text and "  kw+rr" in text


def _git(*args: str | Path) -> None:
    subprocess.run(["git", *map(str, args)], check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"})


def test_default_data_is_found_beside_the_main_checkout_from_a_worktree(tmp_path, monkeypatch):
    """A linked worktree elsewhere (here `wt/feature`, as engineers make them) finds the benchmark next
    to the main checkout's root, not next to its own; $HHG_BENCH_DATA wins over both."""
    monkeypatch.delenv(semble.DATA_ENV, raising=False)
    main, feature = tmp_path / "main", tmp_path / "wt" / "feature"
    main.mkdir()
    _git("-C", main, "init", "-q")
    _git("-C", main, "commit", "-q", "--allow-empty", "-m", "first")
    _git("-C", main, "worktree", "add", "-q", feature, "-b", "feature")
    data = tmp_path / "shared" / "bench" / "semble"
    data.mkdir(parents=True)
    (data / "manifest.json").write_text('{"repos": []}')
    assert semble.main_checkout(feature) == semble.main_checkout(main) == main
    assert semble.default_data_dir(feature) == semble.default_data_dir(main) == data
    assert semble.default_data_dir(tmp_path / "elsewhere") == tmp_path / "shared" / "bench" / "semble"
    monkeypatch.setenv(semble.DATA_ENV, str(tmp_path / "mine"))
    assert semble.default_data_dir(feature) == tmp_path / "mine"


@pytest.mark.parametrize("module", ["quality", "int8"])
def test_a_missing_benchmark_is_a_clear_usage_error(tmp_path, capsys, module):
    from hhg_mlx.bench import int8

    main = {"quality": quality.main, "int8": int8.main}[module]
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.endswith(f"error: no benchmark in {tmp_path} (manifest.json missing); "
                                            f"pass --data DIR or set {semble.DATA_ENV}\n")
