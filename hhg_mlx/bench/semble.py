"""The semble benchmark subset: its repositories, their sources, queries and published results.

Each repository's source (a shipped tarball, else its PyPI sdist via `pip download`) is unpacked under
the work folder; `<checkout>/<benchmark_root>` is what gets indexed. Scoring is `scoring.py`'s NDCG@10.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .archives import unpack
from .scoring import load_queries
from .suites import Case, Corpus, heldout_by_hash

# Published configurations shown per repo; the overall list names every tool in the file.
REPO_COLUMNS = ("semble", "coderankembed_hybrid", "bm25", "colgrep", "ck")


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


def benchmark_root(spec: RepoSpec, work: Path) -> Path:
    """The folder of `spec`'s checkout that its queries are about (and that gets indexed)."""
    top = checkout(spec, work)
    return top / spec.subpath if spec.subpath else top


def corpora(data: Path, work: Path, repos: list[str] | None = None) -> list[Corpus]:
    """One corpus per repository: its benchmark root and its queries (kind = category; held out: the
    third `heldout_by_hash` picks). Result paths get the subpath prefix, as the targets have it."""
    specs = select(load_specs(data), repos)
    out = []
    for spec in specs:
        queries = load_queries(data / "annotations" / f"{spec.name}.json")
        heldout = heldout_by_hash(q.text for q in queries)
        cases = tuple(Case(q.text, q.category, q.text in heldout, q.targets) for q in queries)
        out.append(Corpus(spec.name, spec.language, benchmark_root(spec, work), cases,
                          prefix=f"{spec.subpath}/" if spec.subpath else ""))
    return out


def select(specs: list[RepoSpec], repos: list[str] | None) -> list[RepoSpec]:
    """`specs` restricted to the named repositories (all when `repos` is None); unknown names are an error."""
    if not repos:
        return specs
    unknown = set(repos) - {s.name for s in specs}
    if unknown:
        raise ValueError(f"unknown repos: {', '.join(sorted(unknown))}")
    return [s for s in specs if s.name in repos]


def published(data: Path, repos: list[str]) -> dict:
    """Upstream's results for `repos`: each tool's mean of its per-repo NDCG@10 (only tools with all of
    them), per-repo figures of REPO_COLUMNS, and semble's per-category figures when all 19 are run."""
    raw = json.loads((data / "published_results.json").read_text(encoding="utf-8"))
    overall = {}
    for tool, info in raw["tools"].items():
        values = [info["per_repo_ndcg10"][r] for r in repos if r in info["per_repo_ndcg10"]]
        if len(values) == len(repos):
            overall[tool] = sum(values) / len(values)
    everything = set(repos) == set(raw["subset_repos"])
    return {"overall": overall,
            "per_repo": {t: {r: raw["tools"][t]["per_repo_ndcg10"].get(r) for r in repos} for t in REPO_COLUMNS},
            "semble_per_category": raw["tools"]["semble"].get("subset_by_category") if everything else None}
