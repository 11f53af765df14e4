"""`hhg convert SRC OUT`: a Hugging Face checkpoint or a GGUF file → a self-describing hhg model
folder (layout in `convert/__init__.py`). Progress goes to stderr, the summary to stdout."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from hhg_mlx.errors import HhgError, UnsupportedModel
from hhg_mlx.loader import ONNX_ARCHITECTURES
from hhg_mlx.models.hub import is_gguf_file

from .weights import file_sha256

if TYPE_CHECKING:
    from hhg_mlx.models.registry import ModelInfo

# architecture -> (module, function) writing the MLX weights; each returns the same summary dict
CONVERTERS = {
    "jinabert": ("convert.mlx", "convert_encoder"),
    "bert": ("convert.mlx", "convert_encoder"),
    "nomic_bert": ("convert.mlx", "convert_encoder"),
    "qwen2": ("convert.qwen", "convert_qwen"),
    "qwen3": ("convert.qwen", "convert_qwen"),
}
ONNX_FLAGS = (("onnx", "fp32"), ("onnx_int8", "int8"), ("onnx_fp16", "fp16"))
HHG_FORMAT = 1

EPILOG = """\
examples:
  hhg convert jina-code-v2 ~/models/jina-code-f16 --dtype float16 --onnx-int8
  hhg convert ./all-MiniLM-L6-v2 ./minilm-4bit --quantize 4
  hhg convert coderank ~/models/coderank --onnx-int8
  hhg convert ~/Downloads/nomic-embed-text-v1.5.Q8_0.gguf ~/models/nomic --onnx-int8
  hhg convert model.Q4_K_M.gguf ./my-embedder --pooling mean
  hhg convert jina-reranker-tiny ~/models/reranker-int8 --onnx-int8
  hhg build --model ~/models/jina-code-f16
  hhg --rerank ~/models/reranker-int8 "where are uploads retried\""""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("src", metavar="SRC",
                        help="registry id, Hugging Face repo id, local Hugging Face folder or GGUF file (.gguf)")
    parser.add_argument("out", metavar="OUT", help="folder to create")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"),
                        help="MLX weight dtype (default: float32 for JinaBERT/BERT/NomicBERT, bfloat16 for Qwen)")
    parser.add_argument("--quantize", type=int, choices=(8, 4), help="quantise the MLX weights to 8 or 4 bits")
    parser.add_argument("--group-size", type=int, default=64, choices=(32, 64, 128), metavar="N",
                        help="weights per quantisation scale: 32, 64 (default) or 128, the sizes MLX supports")
    parser.add_argument("--onnx", action="store_true", help="also write model.onnx (fp32, ONNX Runtime CPU)")
    parser.add_argument("--onnx-int8", action="store_true", help="also write model.q8.onnx (int8, ONNX Runtime CPU)")
    parser.add_argument("--onnx-fp16", action="store_true", help="also write model.fp16.onnx (float16, CUDA)")
    parser.add_argument("--pooling", choices=("mean", "cls", "last"),
                        help="GGUF only: the pooling, when the file does not say and names no known model")
    parser.add_argument("--model-id", metavar="ID",
                        help="GGUF only: the registry model the file holds (its prompts, pooling and licence)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it is a model folder already")
    parser.add_argument("--accept-license", action="store_true",
                        help="accept the model's licence (needed once for opt-in models, as for `hhg build`)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace) -> int:
    def step(message: str) -> None:
        if not args.quiet:
            print(f"hhg convert: {message}", file=sys.stderr, flush=True)

    out = Path(args.out).expanduser()
    _check_out(out, args.force)
    with _folder_kept_on_success(out.parent), contextlib.ExitStack() as stack:
        step(f"reading {args.src}")
        if is_gguf_file(args.src):
            src, info, source = _unpack_gguf(args, out, stack, step)
        elif args.pooling or args.model_id:
            raise HhgError("--pooling and --model-id apply to GGUF files only")
        else:
            src, info, source = _hf_source(args.src, out, args.accept_license)
        precisions = [precision for flag, precision in ONNX_FLAGS if getattr(args, flag)]
        architecture, summary, onnx_files = write_model(
            src, out, given=args.src, info=info, source=source, dtype=args.dtype, quantize=args.quantize,
            group_size=args.group_size, precisions=precisions, step=step)
    print(_summary(out, architecture, summary, onnx_files))
    return 0


@contextlib.contextmanager
def _folder_kept_on_success(folder: Path) -> Iterator[None]:
    """Create `folder` and its missing parents; when the body raises (a refusal, Ctrl-C), remove the
    folders this created again, deepest first, as far as they are still empty."""
    created = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        created.append(path)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for path in created:
            try:
                path.rmdir()
            except OSError:             # (something else was put there meanwhile: keep it)
                break
        raise


def _hf_source(given: str, out: Path, accept: bool) -> tuple[Path, ModelInfo | None, dict]:
    """A registry id, Hugging Face repo id or local folder: the folder (downloaded if need be), its
    registry entry and its source record (repo, revision, sha256 of the weights)."""
    from hhg_mlx.models.folder import registry_info, snapshot_repo
    from hhg_mlx.models.hub import resolve_model

    info = registry_info(given)
    _accept_license(info, accept)                       # before downloading anything
    src = resolve_model(given, download=True)
    if out.resolve() == src:
        raise HhgError("OUT must differ from SRC")
    if info is None:                                    # a downloaded converted folder names its source
        info = registry_info(src)
        _accept_license(info, accept)
    return src, info, {
        "repo": info.repo if info else (None if Path(given).expanduser().is_dir() else given),
        "revision": src.name if snapshot_repo(src) else None,
        "sha256": {p.name: file_sha256(p) for p in sorted(src.glob("model*.safetensors"))},
    }


def _unpack_gguf(args: argparse.Namespace, out: Path, stack: contextlib.ExitStack,
                 step: Callable[[str], None]) -> tuple[Path, ModelInfo | None, dict]:
    """A GGUF file, unpacked into a temporary Hugging Face folder next to OUT (removed afterwards)."""
    from .from_gguf import identify, unpack

    gguf, info = identify(args.src, args.model_id)
    _accept_license(info, args.accept_license)
    src = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.gguf-")))
    step(f"dequantising {gguf.quantization()} {gguf.architecture} weights")
    return src, info, unpack(gguf, info, src, pooling=args.pooling, model_id=args.model_id)


def write_model(src: Path, out: Path, *, given: str, info: ModelInfo | None, source: dict,
                dtype: str | None = None, quantize: int | None = None, group_size: int = 64,
                precisions: Sequence[str] = (), step: Callable[[str], None] = lambda message: None,
                ) -> tuple[str, dict, dict[str, str]]:
    """Convert the Hugging Face folder `src` into the hhg model folder `out` (replacing it), through
    a staging folder so that nothing half-made is ever left; return (architecture, converter
    summary, ONNX files written)."""
    from hhg_mlx.models.folder import model_architecture, read_settings

    settings = read_settings(src)
    architecture = model_architecture(settings, info)
    if architecture not in CONVERTERS:
        raise UnsupportedModel(f"cannot convert {architecture} models (supported: {', '.join(CONVERTERS)})")
    if settings.config.get("quantization"):
        raise UnsupportedModel(f"{given} is quantised already; convert the original model")
    if precisions and architecture not in ONNX_ARCHITECTURES:
        raise UnsupportedModel(f"ONNX export supports {', '.join(ONNX_ARCHITECTURES)} models, not {architecture}")

    staging = out.parent / f".{out.name}.converting-{os.getpid()}"
    staging.mkdir()
    try:
        module, function = CONVERTERS[architecture]
        options = {"quantize": quantize, "group_size": group_size}
        if dtype:
            options["dtype"] = dtype
        step(f"writing MLX weights ({_describe(dtype or 'default dtype', quantize, group_size)})")
        summary = getattr(importlib.import_module(module), function)(src, staging, **options)
        onnx_files = _export_onnx(src, staging, precisions, step)
        _write_hhg_json(staging, given, src, info, settings, architecture, summary, onnx_files, source)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return architecture, summary, onnx_files


def _accept_license(info, accept: bool) -> None:
    """`hhg build`'s licence gate, for a source identified as a registry model (opt-in models only)."""
    if info is not None:
        from hhg_mlx.license import ensure_accepted

        ensure_accepted(info, accept)


def _check_out(out: Path, force: bool) -> None:
    """OUT may be missing or empty; with --force it may also be an earlier model folder."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not force:
        raise HhgError(f"{out} exists; pass --force to replace it")
    if not (out / "config.json").is_file():
        raise HhgError(f"{out} exists and is not a model folder; refusing to replace it")


def _export_onnx(src: Path, out: Path, precisions: list[str], step) -> dict[str, str]:
    from .onnx_export import FILENAMES, export

    for precision in precisions:
        step(f"exporting {FILENAMES[precision]}")
        export(src, out / FILENAMES[precision], precision)
    return {precision: FILENAMES[precision] for precision in precisions}


def _write_hhg_json(out: Path, given: str, src: Path, info, settings, architecture: str, summary: dict,
                    onnx_files: dict[str, str], source: dict) -> None:
    from hhg_mlx.models.folder import is_cross_encoder

    manifest: dict = {"format": HHG_FORMAT, "architecture": architecture, "variant": None,
                      "kind": "reranker" if is_cross_encoder(settings.config) else "embedding",
                      "model_id": settings.model_id or (info.id if info else given)}
    if architecture in ONNX_ARCHITECTURES:   # encoder settings; Qwen folders keep their own prompt files
        manifest.update(_encoder_settings(given, src, info, architecture, settings))
    layer_norm = settings.matryoshka_layer_norm      # the folder's own value wins, as when it is loaded
    if layer_norm is None:
        layer_norm = bool(info and info.matryoshka_layer_norm)
    manifest.update({
        # Matryoshka dims travel with the folder, so that converting it again (a local path) keeps them
        "dim": settings.dim,
        "matryoshka_dims": list(settings.matryoshka_dims or (info.matryoshka_dims if info else ())),
        "matryoshka_layer_norm": layer_norm,
        "dtype": summary["dtype"],
        "quantization": summary["quantization"] and {k: summary["quantization"][k] for k in ("bits", "group_size")},
        "source": {"model": given, **source},
        "onnx": onnx_files,
    })
    (out / "hhg.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _encoder_settings(given: str, src: Path, info, architecture: str, settings) -> dict:
    """Pooling, prompts and length as the source resolves them (registry entry included), so the
    converted folder embeds exactly like its source."""
    from hhg_mlx.models.folder import encoder_spec, load_tokenizer

    spec = encoder_spec(src, given, info, load_tokenizer(src), settings=settings)
    variant = None
    if architecture == "jinabert":
        from .onnx_graph import layer_variant
        from .weights import load_encoder_weights

        variant = layer_variant(load_encoder_weights(src))
    return {"variant": variant, "pooling": spec.pooling,
            "query_prefix": spec.query_prefix, "document_prefix": spec.document_prefix,
            "max_length": spec.max_length}


def _describe(dtype: str, bits: int | None, group_size: int) -> str:
    return f"{dtype}, {bits}-bit, group size {group_size}" if bits else dtype


def _summary(out: Path, architecture: str, summary: dict, onnx_files: dict[str, str]) -> str:
    quantization = summary["quantization"] or {"bits": None, "group_size": None}
    lines = [f"{out}: {architecture}",
             f"  MLX weights  {_mb(summary['bytes_before'])} -> {_mb(summary['bytes_after'])}  "
             f"({_describe(summary['dtype'], quantization['bits'], quantization['group_size'])})"]
    for precision, name in onnx_files.items():
        size = sum(p.stat().st_size for p in out.glob(f"{name}*"))
        lines.append(f"  ONNX {precision:<7} {_mb(size)}  ({name})")
    return "\n".join(lines)


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"
