"""Block-level metrics and the plain BM25 baseline, against hand-computed values."""
from __future__ import annotations

import math

import pytest

from engine_fixtures import make_repo
from hhg_mlx.bench.baseline import Doc, PlainBM25
from hhg_mlx.bench.metrics import Target, answer_rank, block_scores
from hhg_mlx.index.index import Index


def test_answer_rank_needs_the_path_and_the_line_inside_the_span():
    targets = [Target("a.py", 10), Target("b.py", 3)]
    chunks = [("a.py", 1, 9), ("a.py", 11, 20), ("c.py", 1, 50), ("b.py", 3, 3), ("a.py", 10, 10)]
    assert answer_rank(chunks, targets) == 4                     # the first chunk that holds any target line
    assert answer_rank(chunks, [Target("a.py", 10)]) == 5
    assert answer_rank(chunks, [Target("x/a.py", 10)]) is None   # paths must be equal, not suffixes
    assert answer_rank([("n.py", 1, 1)] * 10 + [("a.py", 1, 99)], targets) is None   # only the top 10 count


@pytest.mark.parametrize("rank, expected", [
    (1, {"hit@1": 1.0, "hit@10": 1.0, "mrr@10": 1.0}),
    (4, {"hit@1": 0.0, "hit@10": 1.0, "mrr@10": 0.25}),
    (10, {"hit@1": 0.0, "hit@10": 1.0, "mrr@10": 0.1}),
    (None, {"hit@1": 0.0, "hit@10": 0.0, "mrr@10": 0.0}),
])
def test_block_scores(rank, expected):
    assert block_scores(rank) == expected


# d0: "alpha beta beta" (3 terms), d1: name "alpha" three times + "gamma" (4), d2: "gamma delta" (2); avgdl 3.
DOCS = [Doc("d0.py", 1, 1, "", "alpha beta beta"), Doc("d1.py", 1, 1, "alpha", "gamma"),
        Doc("d2.py", 1, 1, "", "gamma delta")]


def _bm25(idf: float, tf: int, length: int, avgdl: float = 3.0) -> float:
    return idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / avgdl))


def test_plain_bm25_by_hand():
    bm25 = PlainBM25(DOCS)
    idf_df2, idf_df1 = math.log(1 + 1.5 / 2.5), math.log(1 + 2.5 / 1.5)
    assert bm25.scores("alpha") == pytest.approx({0: _bm25(idf_df2, 1, 3), 1: _bm25(idf_df2, 3, 4)})
    assert bm25.search("alpha") == [("d1.py", 1, 1), ("d0.py", 1, 1)]          # the name counts three times
    scores = bm25.scores("the beta and gamma")                                  # stop words are dropped
    assert scores == pytest.approx({0: _bm25(idf_df1, 2, 3), 1: _bm25(idf_df2, 1, 4), 2: _bm25(idf_df2, 1, 2)})
    assert bm25.search("beta gamma", k=2) == [("d0.py", 1, 1), ("d2.py", 1, 1)]


def test_plain_bm25_splits_identifiers_but_does_not_stem():
    bm25 = PlainBM25([Doc("a.py", 1, 2, "parse_header", "def parse_header(line): ..."),
                      Doc("b.py", 1, 1, "", "headers = {}")])
    assert bm25.search("parseHeader") == [("a.py", 1, 2)]
    assert bm25.search("header") == [("a.py", 1, 2)]          # not "headers"
    assert bm25.search("nothing here") == []


def test_plain_bm25_reads_the_index_blocks(tmp_path):
    root = make_repo(tmp_path / "repo", {"a.py": "def load_config(path):\n    return path\n\n\nx = 1\n"}, fillers=0)
    Index.build(root).close()
    bm25 = PlainBM25.of_index(root)
    assert sorted(bm25.spans) == [("a.py", 1, 2), ("a.py", 5, 5)]
    assert bm25.search("load config") == [("a.py", 1, 2)]
