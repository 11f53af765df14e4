"""Retrieval quality on the semble benchmark subset: NDCG@10 next to the published tools.

    python -m hhg_mlx.bench.quality [--repos a,b] [--mode keyword|semantic|hybrid] [--model M]
                                    [--rerank [R]] [--split train|heldout|all] [--json] [--data DIR] [--work DIR]

Each repository's source (a shipped tarball, else its PyPI sdist via `pip download`) is unpacked
under the work folder, `<checkout>/<benchmark_root>` is indexed with `Index.build` and every query
goes through `Index.search`, the path users get. Scoring follows `scoring.py`. With `--rerank`, every
query is also searched with the cross-encoder reranking the top candidates, on the same index, and
the report shows the scores with and without it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import HhgError
from .archives import unpack
from .scoring import CATEGORIES, K, Chunk, Query, Scored, heldout_texts, load_queries, ndcg, summarize

# Published configurations shown per repo; the overall table lists every tool in the file.
REPO_COLUMNS = ("semble", "coderankembed_hybrid", "bm25", "colgrep", "ck")
Search = Callable[[str], list[Chunk]]


@dataclass(frozen=True, slots=True)
class RepoSpec:
    name: str
    language: str
    subpath: str | None      # benchmark_root inside the checkout; None = whole checkout
    tarball: Path | None     # repos/<name>.tar.gz when shipped
    pypi: str | None         # "NAME==VERSION" when the sdist is the source


DATA_ENV = "HHG_BENCH_DATA"
DATA_HELP = f"the semble benchmark folder (default: ${DATA_ENV}, else shared/bench/semble next to the repository)"


CHECKOUT = Path(__file__).resolve().parents[2]         # the repository root, in a source checkout


def default_data_dir(checkout: Path = CHECKOUT) -> Path:
    """The semble benchmark folder: `$HHG_BENCH_DATA`, else `../shared/bench/semble` beside the
    repository root, that of the main checkout when this one is a linked git worktree (which may
    live anywhere); the first candidate when none holds the benchmark (see `check_data_dir`)."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    candidates = [root.parent / "shared" / "bench" / "semble" for root in (checkout, main_checkout(checkout))]
    return next((c for c in candidates if (c / "manifest.json").is_file()), candidates[0])


def main_checkout(checkout: Path) -> Path:
    """The main working tree of the git repository `checkout` belongs to: `checkout` itself, or the
    one a linked worktree (`git worktree add`) shares its repository with. Its `.git` is then a file
    `gitdir: <main>/.git/worktrees/<name>`, whose `commondir` leads to `<main>/.git`."""
    dot_git = checkout / ".git"
    if not dot_git.is_file():
        return checkout
    gitdir = checkout / dot_git.read_text(encoding="utf-8").partition("gitdir:")[2].strip()
    commondir = gitdir / "commondir"
    common = gitdir / commondir.read_text(encoding="utf-8").strip() if commondir.is_file() else gitdir
    return common.resolve().parent


def check_data_dir(data: Path) -> str | None:
    """Why `data` cannot serve as the benchmark folder, or None when it can."""
    if (data / "manifest.json").is_file():
        return None
    return f"no benchmark in {data} (manifest.json missing); pass --data DIR or set {DATA_ENV}"


def default_work_dir() -> Path:
    return Path.home() / ".cache" / "hhg" / "bench"


def load_specs(data: Path) -> list[RepoSpec]:
    """The benchmark's repositories, in manifest order, with where to get each source."""
    manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8"))
    specs = []
    for entry in manifest["repos"]:
        tarball = data / "repos" / f"{entry['name']}.tar.gz"
        source = entry.get("source", "")
        pypi = source.removeprefix("pypi:") if source.startswith("pypi:") else None
        specs.append(RepoSpec(entry["name"], entry["language"], entry.get("subpath") or None,
                              tarball if tarball.is_file() else None, pypi))
    return specs


def checkout(spec: RepoSpec, work: Path) -> Path:
    """The unpacked source of `spec` under `work`, fetched and unpacked on first use."""
    if spec.tarball is not None:
        top = work / spec.name
        archive = spec.tarball
    elif spec.pypi is not None:
        name, version = spec.pypi.split("==")
        top = work / f"{name}-{version}"
        archive = work / "sdist" / f"{name}-{version}.tar.gz"
        if not archive.is_file() and not top.is_dir():
            archive.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                            "--no-binary", ":all:", spec.pypi, "-d", str(archive.parent)], check=True)
    else:
        raise FileNotFoundError(f"{spec.name}: no tarball and no PyPI source")
    if not top.is_dir():
        work.mkdir(parents=True, exist_ok=True)
        unpack(archive, work)
    return top


def engine_search(root: Path, *, mode: str, model: str | None, force: bool) -> tuple[Search, float]:
    """Build (or update) the index of `root` and return its top-10 chunk search (closable) and the
    build's seconds."""
    from hhg_mlx.errors import IndexCorrupt, SchemaMismatch
    from hhg_mlx.index.index import Index

    start = time.perf_counter()
    try:
        idx = Index.build(root, model=model, force=force)
    except (SchemaMismatch, IndexCorrupt):       # left by another hhg version: start afresh
        idx = Index.build(root, model=model, force=True)
    return _IndexSearch(idx, mode), time.perf_counter() - start


class _IndexSearch:
    def __init__(self, idx, mode: str, rerank: str | bool = False) -> None:
        self.idx, self.mode, self.rerank = idx, mode, rerank

    def __call__(self, query: str) -> list[Chunk]:
        hits = self.idx.search(query, k=K, mode=self.mode, rerank=self.rerank)
        return [(h.file, h.line, h.end_line) for h in hits]

    def reranked(self, reranker: str | bool) -> "_IndexSearch":
        """The same search on the same index, reranked by `reranker` (True: the default reranker)."""
        return _IndexSearch(self.idx, self.mode, reranker)

    def close(self) -> None:
        self.idx.close()


def run_repo(spec: RepoSpec, queries: list[Query], heldout: frozenset[str], search: Search) -> list[dict]:
    """Score every query of one repo. Result paths are made checkout-relative, like the targets."""
    prefix = f"{spec.subpath}/" if spec.subpath else ""
    rows = []
    for q in queries:
        start = time.perf_counter()
        chunks = [(prefix + path, a, b) for path, a, b in search(q.text)]
        ms = (time.perf_counter() - start) * 1000
        rows.append({"repo": spec.name, "query": q.text, "category": q.category,
                     "heldout": q.text in heldout, "ndcg": ndcg(chunks, q.targets), "ms": ms,
                     "top": [f"{p}:{a}-{b}" for p, a, b in chunks]})
    return rows


def published_means(published: dict, repos: list[str]) -> dict[str, float]:
    """Each tool's mean of its published per-repo NDCG@10 over `repos` (upstream averaging)."""
    out = {}
    for tool, info in published["tools"].items():
        values = [info["per_repo_ndcg10"][r] for r in repos if r in info["per_repo_ndcg10"]]
        if len(values) == len(repos):
            out[tool] = sum(values) / len(values)
    return out


def run(data: Path, work: Path, *, repos: list[str] | None = None, mode: str = "keyword",
        model: str | None = None, split: str = "all", force: bool = False, rerank: str | bool | None = None,
        make_search: Callable[..., tuple[Search, float]] = engine_search,
        log: Callable[[str], None] = lambda _: None) -> dict:
    """Run the benchmark and return a report: summary, per-repo rows, per-query rows, published; with
    `rerank` (a reranker name, or True for the default one) also `reranked`: the same queries' rows and
    summary with the search's `reranked(rerank)`."""
    specs = load_specs(data)
    if repos:
        unknown = set(repos) - {s.name for s in specs}
        if unknown:
            raise ValueError(f"unknown repos: {', '.join(sorted(unknown))}")
        specs = [s for s in specs if s.name in repos]
    rows, repo_rows, reranked_rows = [], [], []
    for spec in specs:
        queries = load_queries(data / "annotations" / f"{spec.name}.json")
        heldout = heldout_texts([q.text for q in queries])
        if split != "all":
            queries = [q for q in queries if (q.text in heldout) == (split == "heldout")]
        root = checkout(spec, work)
        root = root / spec.subpath if spec.subpath else root
        log(f"{spec.name}: indexing {root}")
        search, index_s = make_search(root, mode=mode, model=model, force=force)
        try:
            got = run_repo(spec, queries, heldout, search)
            if rerank:
                log(f"{spec.name}: reranking")
                reranked_rows.extend(run_repo(spec, queries, heldout, search.reranked(rerank)))
        finally:
            getattr(search, "close", lambda: None)()
        rows.extend(got)
        repo_rows.append({"repo": spec.name, "language": spec.language, "queries": len(got),
                          "index_s": index_s, "query_ms_p50": statistics.median(r["ms"] for r in got)})
    published = json.loads((data / "published_results.json").read_text(encoding="utf-8"))
    names = [s.name for s in specs]
    everything = set(names) == set(published["subset_repos"])
    return {
        "mode": mode, "model": model, "split": split, "repos": repo_rows, "queries": rows,
        "summary": _summary(rows),
        "reranked": {"reranker": rerank, "queries": reranked_rows, "summary": _summary(reranked_rows)}
        if rerank else None,
        "published": {
            "overall": published_means(published, names),
            "per_repo": {t: {r: published["tools"][t]["per_repo_ndcg10"].get(r) for r in names}
                         for t in REPO_COLUMNS},
            # upstream only gives category figures for semble, over all 19 repos
            "semble_per_category": published["tools"]["semble"].get("subset_by_category") if everything else None,
        },
        "machine": f"{platform.machine()} {platform.system()}, {platform.python_version()}",
    }


def _summary(rows: list[dict]) -> dict:
    return summarize([Scored(r["repo"], r["category"], r["heldout"], r["ndcg"]) for r in rows])


def _f(x: float | None) -> str:
    return "  -  " if x is None else f"{x:.3f}"


def format_report(report: dict) -> str:
    """The report as plain-text tables."""
    s = report["summary"]
    pub = report["published"]
    lines = [f"hhg {report['mode']}" + (f" ({report['model']})" if report["model"] else "")
             + f", split {report['split']}: NDCG@10 (mean of per-repo means)", ""]
    head = f"{'repo':<12} {'lang':<10} {'n':>3} {'hhg':>6} {'train':>6} {'held':>6}"
    head += "".join(f" {t[:8]:>8}" for t in REPO_COLUMNS) + f" {'index s':>8} {'p50 ms':>7}"
    lines.append(head)
    for r in report["repos"]:
        name = r["repo"]
        line = (f"{name:<12} {r['language']:<10} {r['queries']:>3} {_f(s['all']['per_repo'].get(name)):>6} "
                f"{_f(s['train']['per_repo'].get(name)):>6} {_f(s['heldout']['per_repo'].get(name)):>6}")
        line += "".join(f" {_f(pub['per_repo'][t][name]):>8}" for t in REPO_COLUMNS)
        lines.append(line + f" {r['index_s']:>8.1f} {r['query_ms_p50']:>7.1f}")
    lines += ["", f"{'category':<14} {'hhg':>6} {'train':>6} {'held':>6} {'semble':>7}"]
    for c in CATEGORIES:
        sem = (pub["semble_per_category"] or {}).get(c)
        lines.append(f"{c:<14} {_f(s['all']['per_category'][c]):>6} {_f(s['train']['per_category'][c]):>6} "
                     f"{_f(s['heldout']['per_category'][c]):>6} {_f(sem):>7}")
    lines.append(f"{'overall':<14} {_f(s['all']['overall']):>6} {_f(s['train']['overall']):>6} "
                 f"{_f(s['heldout']['overall']):>6} {_f(pub['overall'].get('semble')):>7}")
    if report.get("reranked"):
        r = report["reranked"]["summary"]
        reranker = report["reranked"]["reranker"]
        lines += ["", f"reranked by {'the default reranker' if reranker is True else reranker}: NDCG@10 without -> with",
                  f"{'category':<14} {'all':>15} {'train':>15} {'held':>15}"]
        for c in CATEGORIES:
            lines.append(f"{c:<14}" + "".join(f" {_f(s[p]['per_category'][c])} -> {_f(r[p]['per_category'][c])}"
                                              for p in ("all", "train", "heldout")))
        lines.append(f"{'overall':<14}" + "".join(f" {_f(s[p]['overall'])} -> {_f(r[p]['overall'])}"
                                                  for p in ("all", "train", "heldout")))
    lines += ["", "published, same repos:"]
    lines += [f"  {t:<32} {v:.3f}" for t, v in sorted(pub["overall"].items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hhg_mlx.bench.quality", description=__doc__.splitlines()[0])
    p.add_argument("--repos", help="comma-separated repo names (default: all 19)")
    p.add_argument("--mode", choices=("keyword", "semantic", "hybrid"), default="keyword")
    p.add_argument("--model", help="embedding model for semantic/hybrid (registry id, HF id or folder)")
    p.add_argument("--rerank", nargs="?", const=True, metavar="R",
                   help="also run every query reranked by a cross-encoder: R (default jina-reranker-tiny)")
    p.add_argument("--split", choices=("train", "heldout", "all"), default="all",
                   help="which queries to run: the tuning two thirds, the held-out third, or all")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--data", type=Path, default=default_data_dir(), help=DATA_HELP)
    p.add_argument("--work", type=Path, default=default_work_dir(), help="where sources are unpacked and indexed")
    p.add_argument("--force", action="store_true", help="rebuild every index from scratch")
    args = p.parse_args(argv)
    if problem := check_data_dir(args.data):
        p.error(problem)
    try:
        report = run(args.data, args.work, repos=args.repos.split(",") if args.repos else None, mode=args.mode,
                     model=args.model, split=args.split, force=args.force, rerank=args.rerank,
                     log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except ValueError as err:
        p.error(str(err))
    except subprocess.CalledProcessError as err:
        print(f"quality: fetching a source failed: {' '.join(err.cmd)}", file=sys.stderr)
        return 1
    except HhgError as err:
        print(f"quality: {err}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
