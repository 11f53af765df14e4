"""Retrieval quality: every suite, hhg beside a plain BM25 over the same blocks, in one run.

    python -m hhg_mlx.bench.quality [--suite all|semble|doc2code|blocks] [--model M] [--rerank [R]]
                                    [--split train|heldout|all] [--repos a,b] [--json] [--data DIR] [--work DIR]
                                    [--force]

Suites: `semble` (the benchmark subset's file-level labels, NDCG@10 by its rule, `scoring.py`),
`doc2code` (documentation's first sentence -> the definition it documented, `doc2code.py`) and `blocks`
(hand-written queries on pinned open-source projects, `blocks.py`), both block level (`metrics.py`).
Each corpus is indexed with `Index.build` and every query goes through `Index.search`, the path users
get, in keyword mode and, with `--model`, in hybrid mode; `baseline.PlainBM25` answers the same queries
from the same blocks. With `--rerank`, every hhg ranking is also run with the cross-encoder reranking
its top candidates (`Index.search(..., rerank=R)`), on the same index, in the same run. Sources, copies
and indexes (embeddings included) stay in the work folder.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from ..errors import HhgError
from . import doc2code, semble, suites
from .baseline import PlainBM25
from .metrics import METRICS, K, Chunk, Row, answer_rank, block_scores, means
from .scoring import ndcg
from .semble import DATA_HELP, check_data_dir, default_data_dir
from .suites import Case, Corpus

SUITES = ("semble", "doc2code", "blocks")
FILE_LEVEL = {"semble"}            # scored by NDCG@10 over files, mean of per-repo means
NDCG = ("ndcg@10",)
Ranker = Callable[[str], list[Chunk]]
MakeRankers = Callable[..., tuple[dict[str, Ranker], float, Callable[[], None]]]


def default_work_dir() -> Path:
    return Path.home() / ".cache" / "hhg" / "bench"


def load_corpora(suite: str, data: Path, work: Path, repos: list[str] | None) -> list[Corpus]:
    if suite == "semble":
        return semble.corpora(data, work, repos)
    if suite == "doc2code":
        return doc2code.corpora(data, work, repos)
    return suites.blocks_corpora(work / "blocks", repos)


def engine_rankers(root: Path, *, model: str | None, force: bool, rerank: str | bool | None = None
                   ) -> tuple[dict[str, Ranker], float, Callable[[], None]]:
    """Index `root` (with `model`'s vectors when given) and return the rankers — plain BM25, hhg keyword
    and, with a model, hhg hybrid; with `rerank` (a reranker, True: the default one) each hhg ranking also
    reranked by it (`keyword+rr`, `hybrid+rr`) — the build's seconds, and a function that closes the index."""
    from hhg_mlx.errors import IndexCorrupt, SchemaMismatch
    from hhg_mlx.index.index import Index

    start = time.perf_counter()
    try:
        idx = Index.build(root, model=model, force=force)
    except (SchemaMismatch, IndexCorrupt):       # left by another hhg version: start afresh
        idx = Index.build(root, model=model, force=True)
    seconds = time.perf_counter() - start
    baseline = PlainBM25.of_index(root)

    def hhg(mode: str, reranker: str | bool = False) -> Ranker:
        return lambda query: [(h.file, h.line, h.end_line) for h in idx.search(query, k=K, mode=mode, rerank=reranker)]

    modes = ("keyword", "hybrid") if model else ("keyword",)
    rankers = {"bm25": baseline.search, **{mode: hhg(mode) for mode in modes}}
    if rerank:
        rankers.update({f"{mode}+rr": hhg(mode, rerank) for mode in modes})
    return rankers, seconds, idx.close


def score(file_level: bool, case: Case, chunks: list[Chunk]) -> dict[str, float]:
    return {"ndcg@10": ndcg(chunks, case.targets)} if file_level else block_scores(answer_rank(chunks, case.targets))


def run_corpus(corpus: Corpus, rankers: dict[str, Ranker], file_level: bool) -> list[dict]:
    """Every query of `corpus` through every ranker: scores, top results and milliseconds per ranker."""
    rows = []
    for case in corpus.cases:
        row = {"corpus": corpus.name, "query": case.text, "kind": case.kind, "heldout": case.heldout,
               "note": case.note, "scores": {}, "top": {}, "ms": {}}
        for name, search in rankers.items():
            start = time.perf_counter()
            chunks = [(corpus.prefix + path, a, b) for path, a, b in search(case.text)]
            row["ms"][name] = (time.perf_counter() - start) * 1000
            row["scores"][name] = score(file_level, case, chunks)
            row["top"][name] = [f"{p}:{a}-{b}" for p, a, b in chunks]
        rows.append(row)
    return rows


def run(suite: str, data: Path, work: Path, *, repos: list[str] | None = None, model: str | None = None,
        rerank: str | bool | None = None, split: str = "all", force: bool = False,
        make_rankers: MakeRankers = engine_rankers,
        log: Callable[[str], None] = lambda _: None) -> dict:
    """One suite's report: per-ranker summary (by split and kind), per-corpus rows and per-query rows."""
    file_level = suite in FILE_LEVEL
    metrics = NDCG if file_level else METRICS
    rows, corpus_rows, names = [], [], []
    for corpus in load_corpora(suite, data, work, repos):
        cases = tuple(c for c in corpus.cases if split == "all" or c.heldout == (split == "heldout"))
        if not cases:      # e.g. doc2code's held-out repositories under --split train: nothing to index
            continue
        log(f"{suite}/{corpus.name}: indexing {corpus.root}")
        rankers, index_s, close = make_rankers(corpus.root, model=model, force=force, rerank=rerank)
        names = list(rankers)
        try:
            got = run_corpus(Corpus(corpus.name, corpus.language, corpus.root, cases, corpus.prefix), rankers, file_level)
        finally:
            close()
        rows.extend(got)
        corpus_rows.append({"name": corpus.name, "language": corpus.language, "queries": len(got), "index_s": index_s,
                            "heldout": bool(cases) and all(c.heldout for c in cases),
                            "ms_p50": {n: statistics.median(r["ms"][n] for r in got) if got else None for n in names},
                            "mean": {n: means([_row(r, n) for r in got], metrics, per_group=False)["all"]["all"]
                                     for n in names}})
    report = {"suite": suite, "level": "file" if file_level else "block", "metrics": list(metrics),
              "model": model, "rerank": rerank, "split": split, "rankers": names, "corpora": corpus_rows, "queries": rows,
              "summary": {n: means([_row(r, n) for r in rows], metrics, per_group=file_level) for n in names}}
    if file_level:
        report["published"] = semble.published(data, [c["name"] for c in corpus_rows])
    return report


def _row(row: dict, ranker: str) -> Row:
    return Row(row["corpus"], row["kind"], row["heldout"], row["scores"][ranker])


# --- text tables ------------------------------------------------------------------------------------------------

LABELS = {"bm25": "BM25", "keyword": "hhg kw", "hybrid": "hhg hyb", "keyword+rr": "kw+rr", "hybrid+rr": "hyb+rr"}


def _f(x: float | None) -> str:
    return "  -  " if x is None else f"{x:.3f}"


def format_report(report: dict) -> str:
    """One suite's report as plain-text tables: by kind and split, then by corpus."""
    names, metrics = report["rankers"], report["metrics"]
    n_queries = len(report["queries"])
    held = [c["name"] for c in report["corpora"] if c["heldout"]]
    how = ("NDCG@10 over files, mean of per-repo means" if report["level"] == "file"
           else "block level: a hit is a result whose span holds the answer's first line; means over queries")
    lines = [f"== {report['suite']}: {n_queries:,} queries in {len(report['corpora'])} corpora; {how}"
             + (f"; model {report['model']}" if report["model"] else "")
             + (f"; +rr: reranked by {'the default reranker' if report['rerank'] is True else report['rerank']}"
                if report.get("rerank") else ""),
             (f"   held out: {', '.join(held)}" if held else "   held out: a third of each corpus's queries"), ""]
    width = 7 * len(names)
    head = f"{'kind':<12} {'split':<7} {'n':>5}" + "".join(f"  {m:^{width}}" for m in metrics)
    sub = f"{'':<12} {'':<7} {'':>5}" + "".join("  " + "".join(f"{LABELS.get(n, n):>7}" for n in names)
                                                  for _ in metrics)
    lines += [head, sub]
    summary = {n: report["summary"][n] for n in names}
    kinds = list(next(iter(summary.values()))["all"]) if summary else []
    for kind in kinds:
        for split in ("all", "train", "heldout"):
            cell = {n: summary[n][split][kind] for n in names}
            count = next(iter(cell.values()))["n"]
            if not count:
                continue
            lines.append(f"{kind if split == 'all' else '':<12} {split:<7} {count:>5}"
                         + "".join("  " + "".join(f"{_f(cell[n][m]):>7}" for n in names) for m in metrics))
    main = metrics[-1]
    lines += ["", f"{'corpus':<14} {'language':<12} {'n':>4}" + "".join(f"{LABELS.get(n, n):>8}" for n in names)
              + f"   ({main})" + f"{'index s':>9}" + "".join(f"{'ms ' + LABELS.get(n, n):>12}" for n in names)]
    for c in report["corpora"]:
        lines.append(f"{c['name'][:14]:<14} {c['language'][:12]:<12} {c['queries']:>4}"
                     + "".join(f"{_f(c['mean'][n][main]):>8}" for n in names) + " " * (len(main) + 5)
                     + f"{c['index_s']:>9.1f}" + "".join(f"{c['ms_p50'][n] or 0:>12.1f}" for n in names))
    if "published" in report:
        lines += ["", "published, same repos:"]
        lines += [f"  {t:<32} {v:.3f}" for t, v in sorted(report["published"]["overall"].items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hhg_mlx.bench.quality", description=__doc__.splitlines()[0])
    p.add_argument("--suite", choices=("all", *SUITES), default="all", help="which suite to run (default: all)")
    p.add_argument("--model", help="embedding model: adds hhg's hybrid ranking (registry id, HF id or folder)")
    p.add_argument("--rerank", nargs="?", const=True, metavar="R",
                   help="also run every hhg ranking reranked by a cross-encoder: R (default: the default reranker)")
    p.add_argument("--split", choices=("train", "heldout", "all"), default="all",
                   help="which queries to run: the tuning split, the held-out split, or all")
    p.add_argument("--repos", help="comma-separated repository or project names (default: all of each suite)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--data", type=Path, default=default_data_dir(), help=DATA_HELP)
    p.add_argument("--work", type=Path, default=default_work_dir(),
                   help="where sources are unpacked, copied and indexed (default: ~/.cache/hhg/bench)")
    p.add_argument("--force", action="store_true", help="rebuild every index from scratch")
    args = p.parse_args(argv)
    if problem := check_data_dir(args.data):
        p.error(problem)
    chosen = SUITES if args.suite == "all" else (args.suite,)
    repos = args.repos.split(",") if args.repos else None
    reports = []
    try:
        for suite in chosen:
            names = repos
            if repos and args.suite == "all":    # names may belong to any suite: keep each suite's own
                names = [r for r in repos if r in _names(suite, args.data, args.work)] or None
                if names is None:
                    continue
            reports.append(run(suite, args.data, args.work, repos=names, model=args.model, rerank=args.rerank,
                               split=args.split,
                               force=args.force, log=lambda msg: print(msg, file=sys.stderr, flush=True)))
    except ValueError as err:
        p.error(str(err))
    except subprocess.CalledProcessError as err:
        print(f"quality: fetching a source failed: {' '.join(err.cmd)}", file=sys.stderr)
        return 1
    except HhgError as err:
        print(f"quality: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"suites": reports, "machine": _machine()}, indent=1))
    else:
        print("\n\n".join(map(format_report, reports)) + f"\n\n{_machine()}")
    return 0


def _names(suite: str, data: Path, work: Path) -> set[str]:
    if suite == "blocks":
        return {c.name for c in suites.blocks_corpora(work / "blocks")}
    return {s.name for s in semble.load_specs(data)}


def _machine() -> str:
    return f"{platform.machine()} {platform.system()}, Python {platform.python_version()}"


if __name__ == "__main__":
    sys.exit(main())
