"""The semble NDCG@10 scorer on hand-made cases with hand-computed answers."""
from __future__ import annotations

import hashlib
import json
import math

import pytest

from hhg_mlx.bench.metrics import Row, means
from hhg_mlx.bench.scoring import Target, chunk_matches, infer_category, load_queries, ndcg, path_matches
from hhg_mlx.bench.suites import heldout_by_hash

L2, L3, L4, L5 = (math.log2(i) for i in (2, 3, 4, 5))


@pytest.mark.parametrize("result, target, expected", [
    ("src/flask/app.py", "src/flask/app.py", True),
    ("src/XMonad/Core.hs", "Core.hs", True),              # bare target name
    ("/abs/checkout/src/flask/app.py", "src/flask/app.py", True),
    ("app.py", "src/flask/app.py", True),                  # symmetric
    ("src/XMonad/MyCore.hs", "Core.hs", False),            # suffix without a slash is not a match
    ("src/flask/sansio/app.py", "src/flask/app.py", False),
    ("src/flask/app.pyi", "src/flask/app.py", False),
])
def test_path_matches(result, target, expected):
    assert path_matches(result, target) is expected


def test_span_overlap_any_line_counts():
    t = Target("a.py", 10, 20)
    assert chunk_matches(("a.py", 20, 30), t)      # touches the last line
    assert chunk_matches(("a.py", 1, 10), t)       # touches the first line
    assert chunk_matches(("a.py", 12, 14), t)      # inside
    assert chunk_matches(("a.py", 1, 100), t)      # covers
    assert not chunk_matches(("a.py", 21, 30), t)
    assert not chunk_matches(("a.py", 1, 9), t)
    assert not chunk_matches(("b.py", 10, 20), t)
    assert chunk_matches(("x/a.py", 500, 600), Target("a.py"))   # no span: any chunk of the file


def test_single_target_rank():
    chunks = [("x.py", 1, 5), ("y.py", 1, 5), ("a.py", 1, 5)]
    assert ndcg(chunks, [Target("a.py")]) == pytest.approx(1 / L4)
    assert ndcg(chunks[2:], [Target("a.py")]) == 1.0


def test_first_matching_chunk_and_span_decide_rank():
    # a.py appears at rank 1 but outside the span; the overlapping chunk is at rank 3.
    chunks = [("a.py", 1, 5), ("b.py", 1, 5), ("a.py", 40, 60), ("a.py", 45, 50)]
    assert ndcg(chunks, [Target("a.py", 50, 55)]) == pytest.approx(1 / L4)


def test_idcg_uses_min_of_k_and_targets():
    targets = [Target("a.py"), Target("b.py"), Target("c.py")]
    chunks = [("z.py", 1, 1), ("b.py", 1, 1), ("a.py", 1, 1)]       # c.py never found
    expected = (1 / L3 + 1 / L4) / (1 / L2 + 1 / L3 + 1 / L4)
    assert ndcg(chunks, targets) == pytest.approx(expected)
    many = [Target(f"f{i}.py") for i in range(12)]                   # IDCG capped at 10 ranks
    found = [(f"f{i}.py", 1, 1) for i in range(10)]
    assert ndcg(found, many) == pytest.approx(1.0)


def test_same_rank_counts_once():
    # one chunk matches both targets (same file, both spans overlap it): rank 1 counts once
    targets = [Target("a.py", 1, 3), Target("a.py", 8, 9)]
    assert ndcg([("a.py", 1, 10)], targets) == pytest.approx(1 / (1 / L2 + 1 / L3))


def test_only_top_ten_count_and_no_targets_is_zero():
    chunks = [(f"n{i}.py", 1, 1) for i in range(10)] + [("a.py", 1, 1)]
    assert ndcg(chunks, [Target("a.py")]) == 0.0
    assert ndcg(chunks, []) == 0.0


def test_repo_mean_then_unweighted_mean_over_repos():
    rows = [Row("r1", "symbol", False, {"ndcg@10": 1.0}), Row("r1", "symbol", False, {"ndcg@10": 1.0}),
            Row("r1", "semantic", True, {"ndcg@10": 0.0}), Row("r1", "architecture", False, {"ndcg@10": 0.5}),
            Row("r2", "semantic", False, {"ndcg@10": 0.2}), Row("r2", "symbol", True, {"ndcg@10": 0.6})]
    s = means(rows, ["ndcg@10"], per_group=True)
    r1, r2 = 2.5 / 4, 0.8 / 2
    assert s["all"]["all"] == pytest.approx({"n": 6, "ndcg@10": (r1 + r2) / 2})     # not the query mean 3.3/6
    assert s["all"]["symbol"]["ndcg@10"] == pytest.approx((1.0 + 0.6) / 2)
    assert s["all"]["semantic"]["ndcg@10"] == pytest.approx((0.0 + 0.2) / 2)
    assert s["all"]["architecture"] == pytest.approx({"n": 1, "ndcg@10": 0.5})       # only r1 has one
    assert s["train"]["all"]["ndcg@10"] == pytest.approx((2.5 / 3 + 0.2) / 2)
    assert s["heldout"]["all"]["ndcg@10"] == pytest.approx((0.0 + 0.6) / 2)
    assert s["heldout"]["architecture"] == {"n": 0, "ndcg@10": None}
    flat = means(rows, ["ndcg@10"], per_group=False)                                 # the block suites' rule
    assert flat["all"]["all"]["ndcg@10"] == pytest.approx(3.3 / 6)


def test_heldout_is_a_stable_third():
    texts = [f"query number {i}" for i in range(20)]
    held = heldout_by_hash(texts)
    assert len(held) == 7 and held <= set(texts)
    by_digest = sorted(texts, key=lambda t: hashlib.sha256(t.encode()).hexdigest())
    assert held == set(by_digest[:7])       # chosen by content digest: the same in every process
    assert heldout_by_hash(list(reversed(texts))) == held                 # order does not matter
    assert len(heldout_by_hash(texts[:3])) == 1


def test_load_queries_merges_secondary_and_infers_category(tmp_path):
    f = tmp_path / "r.json"
    f.write_text(json.dumps([
        {"query": "how x works", "relevant": ["a.py"], "secondary": [{"path": "b.py", "start_line": 3, "end_line": 4}]},
        {"query": "Thing", "relevant": ["c.py"]},
        {"query": "find the thing", "relevant": ["c.py"], "secondary": [], "category": "symbol"},
    ]))
    q = load_queries(f)
    assert q[0].targets == (Target("a.py"), Target("b.py", 3, 4)) and q[0].category == "architecture"
    assert q[1].category == "symbol" and q[2].category == "symbol"
    assert infer_category("where is x") == "semantic"
