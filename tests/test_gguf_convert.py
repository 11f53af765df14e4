"""`hhg convert FILE.gguf` and `--model FILE.gguf`: GGUF files written the way llama.cpp writes them
(tests/gguf_fixtures.py), from the suite's random checkpoints of every supported architecture,
convert back to the original weights (F32/F16 exactly, Q8_0/Q4_K within the format's error) and
embed like the original folder; damaged or unsupported files are one-line errors that leave nothing."""
from __future__ import annotations

import hashlib
import json
import os

import gguf
import numpy as np
import pytest
import reference_qwen
from checkpoints import CORPUS, _bfloat16_bytes, make_bert, make_jinabert, make_nomic_bert, pad_tokens
from gguf_fixtures import BERT_CONFIG, QK, QWEN_CONFIG, ROBERTA_CONFIG, write_gguf
from qwen_fixtures import make_qwen
from reference import read_safetensors, reference_embed

from hhg_mlx.cli import main
from hhg_mlx.loader import load_encoder
from hhg_mlx.models.registry import BGE_QUERY_PREFIX

SMALL = {"hidden": 64, "heads": 4, "intermediate": 128}         # rows of 64: whole Q8_0 blocks
# kind -> (checkpoint maker, llama.cpp architecture, GGUF writer options)
KINDS = {
    "bert": (lambda p, **kw: make_bert(p, **{**SMALL, **kw}), "bert", {"tokenizer_config": BERT_CONFIG}),
    "jina-code": (lambda p, **kw: make_jinabert(p, **{**SMALL, **kw}), "jina-bert-v2",
                  {"tokenizer_config": ROBERTA_CONFIG, "pre": "jina-v2-code", "pooling": "mean"}),
    "jina-base-en": (lambda p, **kw: make_jinabert(p, variant="base-en", **{**SMALL, **kw}), "jina-bert-v2",
                     {"tokenizer_config": BERT_CONFIG, "pooling": "mean"}),
    "nomic": (lambda p, **kw: make_nomic_bert(p, **{"hidden": 64, "heads": 4, "inner": 256, **kw}), "nomic-bert",
              {"tokenizer_config": BERT_CONFIG}),
    "qwen2": (lambda p, **kw: make_qwen(p, **kw), "qwen2", {"tokenizer_config": QWEN_CONFIG, "pre": "gpt-2"}),
    "qwen3": (lambda p, **kw: make_qwen(p, arch="qwen3", append_eos=True, **kw), "qwen3",
              {"tokenizer_config": QWEN_CONFIG, "pre": "gpt-2"}),
}


def convert(*argv) -> int:
    return main(["convert", "-q", *map(str, argv)])


def source_and_gguf(tmp_path, kind: str, qtype=QK.F32, maker_args: dict | None = None, **options):
    make, arch, writer_options = KINDS[kind]
    src = make(tmp_path / kind, **(maker_args or {}))
    return src, write_gguf(src, tmp_path / f"{kind}.gguf", arch, qtype=qtype, **{**writer_options, **options})


def checkpoint(folder) -> dict[str, np.ndarray]:
    """A folder's weights under the names hhg's models load (no `bert.` prefix, no heads)."""
    weights = {k.removeprefix("bert."): v for k, v in read_safetensors(folder / "model.safetensors").items()}
    return {k: v for k, v in weights.items()
            if not k.startswith(("pooler.", "cls.", "lm_head.")) and not k.endswith("position_ids")}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


def half(original: np.ndarray, qtype) -> np.ndarray:
    """The values float16 or bfloat16 (the top half of a float32, rounded to nearest even) hold."""
    if qtype == QK.F16:
        return original.astype(np.float16).astype(np.float64)
    top = np.frombuffer(_bfloat16_bytes(original), "<u2").astype(np.uint32) << 16
    return top.view(np.float32).astype(np.float64).reshape(original.shape)


def q8_0_error(original: np.ndarray) -> np.ndarray:
    """Q8_0's worst error per value: half a step of its block (32 values, scale amax/127), plus
    the scale's float16 rounding over 127 steps."""
    blocks = np.abs(original).reshape(-1, 32).max(axis=1, keepdims=True)
    return np.broadcast_to(blocks / 254 + blocks / 2048, (len(blocks), 32)).reshape(original.shape)


def q4_k_error(original: np.ndarray) -> np.ndarray:
    """Q4_K's worst error per value: half a 4-bit step of its 32-value sub-block plus the rounding
    of the 6-bit sub-block scale (at most a tenth of a step for these weights)."""
    blocks = original.reshape(-1, 32)
    step = (blocks.max(axis=1, keepdims=True) - np.minimum(blocks.min(axis=1, keepdims=True), 0)) / 15
    return np.broadcast_to(0.6 * step, blocks.shape).reshape(original.shape)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("qtype", [QK.F32, QK.F16, QK.BF16, QK.Q8_0], ids=["F32", "F16", "BF16", "Q8_0"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_round_trip(tmp_path, kind, qtype):
    src, path = source_and_gguf(tmp_path, kind, qtype)
    out = tmp_path / "out"
    assert convert(path, out, "--dtype", "float32") == 0
    got, want = checkpoint(out), checkpoint(src)
    assert sorted(got) == sorted(want)
    for name, original in want.items():
        if qtype == QK.F32 or original.ndim == 1:            # vectors stay F32 in GGUF files
            np.testing.assert_array_equal(got[name], original, err_msg=name)
        elif qtype in (QK.F16, QK.BF16):
            np.testing.assert_array_equal(got[name], half(original, qtype), err_msg=name)
        else:
            assert np.all(np.abs(got[name] - original) <= q8_0_error(original)), name

    converted = load_encoder(str(out), backend="mlx").embed_documents(CORPUS)
    original = load_encoder(str(src), backend="mlx").embed_documents(CORPUS)
    if qtype == QK.F32:
        np.testing.assert_allclose(converted, original, atol=1e-6)
    else:
        assert cosines(converted, original).min() >= 0.999
        assert np.abs(converted - original).max() > 1e-6         # the stored precision was used


@pytest.mark.parametrize("kind", ["bert", "qwen2"])
def test_q4_k(tmp_path, kind):
    """K-quants (blocks of 256) on models 256 wide: weights within the format's error, and the
    converted model computes what the float64 reference computes on the same dequantised weights."""
    wide = {"hidden": 256, "heads": 4, "intermediate": 512}
    src, path = source_and_gguf(tmp_path, kind, QK.Q4_K, wide)
    out = tmp_path / "out"
    assert convert(path, out, "--dtype", "float32") == 0
    got = checkpoint(out)
    for name, original in checkpoint(src).items():
        if original.ndim > 1:
            assert np.all(np.abs(got[name] - original) <= q4_k_error(original)), name
            assert not np.array_equal(got[name], original)
    encoder = load_encoder(str(out), backend="mlx")
    tokens = [encoder.tokenize([text])[0] for text in CORPUS[:4]]
    if kind == "qwen2":
        want = reference_qwen.embed(out, tokens)
    else:
        ids, mask = pad_tokens(tokens)
        want = reference_embed(out, ids, mask)
    np.testing.assert_allclose(encoder.embed_documents(CORPUS[:4]), want, atol=1e-5)


@pytest.mark.parametrize("kind, spelling", [("jina-code", "split_glu"), ("jina-base-en", "split_glu"),
                                            ("bert", "fuse_qkv")])
def test_other_llama_cpp_spellings(tmp_path, kind, spelling):
    """Older converters split jina-bert-v2's GEGLU matrix in two (which half is the gate differs
    between the variants); `--fuse-qkv` stores one attn_qkv matrix. Both come back exactly."""
    src, path = source_and_gguf(tmp_path, kind, **{spelling: True})
    names = open_names(path)
    assert ("blk.0.ffn_gate.weight" in names) if spelling == "split_glu" else ("blk.0.attn_qkv.weight" in names)
    out = tmp_path / "out"
    assert convert(path, out) == 0
    got = checkpoint(out)
    for name, original in checkpoint(src).items():
        np.testing.assert_array_equal(got[name], original, err_msg=name)
    ids, mask = np.array([[0, 7, 9, 33, 2], [0, 12, 2, 1, 1]]), np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    np.testing.assert_allclose(load_encoder(str(out), backend="mlx").embed_ids(ids, mask),
                               reference_embed(src, ids, mask, pooling="mean"), atol=1e-5)


def open_names(path) -> set[str]:
    return {t.name for t in gguf.GGUFReader(path).tensors}


# ---------------------------------------------------------------- what the folder records


def test_hhg_json_records_the_gguf_source(tmp_path):
    src, path = source_and_gguf(tmp_path, "bert", QK.Q8_0)
    out = tmp_path / "out"
    assert convert(path, out, "--onnx") == 0
    manifest = json.loads((out / "hhg.json").read_text())
    assert manifest["source"] == {"model": str(path), "repo": None, "revision": None, "format": "gguf",
                                  "sha256": {path.name: hashlib.sha256(path.read_bytes()).hexdigest()},
                                  "quantization": "Q8_0"}
    assert (manifest["architecture"], manifest["pooling"], manifest["onnx"]) == ("bert", "mean", {"fp32": "model.onnx"})
    onnx = load_encoder(str(out), backend="onnx", dtype="float32")
    mlx = load_encoder(str(out), backend="mlx")
    np.testing.assert_allclose(onnx.embed_documents(CORPUS), mlx.embed_documents(CORPUS), atol=1e-5)
    assert not list(tmp_path.glob(".out.*"))                        # no unpacked source left behind


def test_registry_model_named_in_the_metadata(tmp_path):
    """No pooling in the file, but general.name names a registry model: its pooling, length and id."""
    src, path = source_and_gguf(tmp_path, "bert", maker_args={"max_positions": 512}, name="all-MiniLM-L6-v2",
                                pooling="")
    out = tmp_path / "out"
    assert convert(path, out) == 0
    manifest = json.loads((out / "hhg.json").read_text())
    assert (manifest["model_id"], manifest["pooling"], manifest["max_length"]) == ("minilm", "mean", 256)
    assert manifest["source"]["repo"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_pooling_and_model_id_options(tmp_path, capsys):
    src, path = source_and_gguf(tmp_path, "bert", pooling="")
    assert convert(path, tmp_path / "out") == 2
    assert capsys.readouterr().err == (
        f"hhg: {path}: the GGUF file declares no pooling and names no known model; "
        "pass --pooling mean|cls|last (and --model-id ID for a registry model's prompts)\n")
    assert not (tmp_path / "out").exists()
    assert convert(path, tmp_path / "cls", "--pooling", "cls") == 0
    assert json.loads((tmp_path / "cls" / "hhg.json").read_text())["pooling"] == "cls"
    assert convert(path, tmp_path / "bge", "--model-id", "bge-small") == 0
    bge = load_encoder(str(tmp_path / "bge"), backend="mlx")
    assert (bge.spec.pooling, bge.spec.query_prefix, bge.model_id) == ("cls", BGE_QUERY_PREFIX, "bge-small")
    ids, mask = np.array([[2, 40, 41, 3]]), np.array([[1, 1, 1, 1]])
    np.testing.assert_allclose(bge.embed_ids(ids, mask), reference_embed(src, ids, mask, pooling="cls"), atol=1e-5)


def test_gguf_options_need_a_gguf_source(tmp_path, capsys):
    assert convert(make_bert(tmp_path / "src"), tmp_path / "out", "--pooling", "cls") == 2
    assert capsys.readouterr().err == "hhg: --pooling and --model-id apply to GGUF files only\n"


# ---------------------------------------------------------------- --model FILE.gguf


def test_model_option_converts_a_gguf_file_once(tmp_path):
    from hhg_mlx.models.hub import is_installed
    from hhg_mlx.paths import cache_dir

    src, path = source_and_gguf(tmp_path, "qwen3")
    assert is_installed(str(path)) and not is_installed(str(tmp_path / "missing.gguf"))
    encoder = load_encoder(str(path), backend="mlx")
    cached = list((cache_dir() / "gguf").glob("qwen3-*"))
    assert len(cached) == 1 and json.loads((cached[0] / "hhg.json").read_text())["source"]["format"] == "gguf"
    stamp = (cached[0] / "hhg.json").stat().st_mtime_ns
    again = load_encoder(str(path), backend="mlx")                # from the cache, not converted again
    assert (cached[0] / "hhg.json").stat().st_mtime_ns == stamp
    original = load_encoder(str(src), backend="mlx")
    assert cosines(encoder.embed_documents(CORPUS), original.embed_documents(CORPUS)).min() >= 0.999
    np.testing.assert_allclose(again.embed_queries(CORPUS[:3]), encoder.embed_queries(CORPUS[:3]), atol=1e-6)
    os.utime(path, ns=(stamp, stamp + 10**9))                    # a replaced file is converted again
    load_encoder(str(path), backend="mlx")
    assert len(list((cache_dir() / "gguf").glob("qwen3-*"))) == 2


def test_build_with_a_gguf_model(tmp_path, capsys):
    """`hhg build --model FILE.gguf`: the index keeps the file as its model, embeds every block, and
    a semantic search (a new encoder, from the cache) ranks the matching definition first."""
    src, path = source_and_gguf(tmp_path, "bert")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "upload.py").write_text("def retry_upload(self, path, max_tries=3):\n    return self.request(path)\n")
    (repo / "client.py").write_text("class HttpClient:\n    def get(self, url): return self.request('GET', url)\n")
    assert main(["build", "-q", str(repo), "--model", str(path), "--backend", "mlx"]) == 0
    assert main(["status", "--json", str(repo)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["model"] == str(path) and status["vectors"] == status["blocks"] > 0
    assert main(["--mode", "semantic", "--json", "def retry_upload(self, path, max_tries=3):", str(repo)]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["file"].endswith("upload.py") and hits[0]["name"] == "retry_upload"



def test_a_relative_gguf_path_is_recorded_absolute(tmp_path, monkeypatch, capsys):
    """`hhg build --model ./FILE.gguf` keeps the file's absolute path, so a search started in another
    folder still finds the model."""
    _, path = source_and_gguf(tmp_path, "bert")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "upload.py").write_text("def retry_upload(self, path, max_tries=3):\n    return self.request(path)\n")
    monkeypatch.chdir(path.parent)
    assert main(["build", "-q", str(repo), "--model", f"./{path.name}", "--backend", "mlx"]) == 0
    monkeypatch.chdir(repo)
    assert main(["status", "--json", "."]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == str(path.resolve())
    assert main(["--mode", "semantic", "--json", "retry upload", "."]) == 0
    assert json.loads(capsys.readouterr().out)[0]["name"] == "retry_upload"


# ---------------------------------------------------------------- errors


def broken_gguf(tmp_path, damage: str):
    """(path, expected error message after `hhg: `) for each kind of damage."""
    if damage == "architecture":
        path = tmp_path / "t5.gguf"
        writer = gguf.GGUFWriter(str(path), "t5")
        writer.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path, f"{path}: cannot convert GGUF architecture 't5' (supported: bert, jina-bert-v2, nomic-bert, qwen2, qwen3)"
    if damage == "metadata":
        _, path = source_and_gguf(tmp_path, "bert", drop=("bert.embedding_length",))
        return path, f"{path}: GGUF metadata has no bert.embedding_length"
    if damage == "truncated":
        _, path = source_and_gguf(tmp_path, "bert", QK.Q8_0)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path, f"{path}: not a GGUF file, or truncated or damaged ({len(data) // 2:,} bytes; ValueError:"
    if damage == "vocabulary":
        src = make_bert(tmp_path / "src", vocab=300)                 # 300 rows, fewer tokens
        config = json.loads((src / "config.json").read_text())
        (src / "config.json").write_text(json.dumps({**config, "vocab_size": 10}))
        path = write_gguf(src, tmp_path / "mismatch.gguf", "bert", tokenizer_config=BERT_CONFIG)
        tokens = len(gguf.GGUFReader(path).fields["tokenizer.ggml.tokens"].data)
        return path, f"{path}: the vocabulary has {tokens:,} tokens but the embedding table has 300 rows"
    if damage == "rope scaling":
        src = make_qwen(tmp_path / "src")
        config = json.loads((src / "config.json").read_text())
        (src / "config.json").write_text(json.dumps({**config, "rope_scaling": {"type": "yarn", "factor": 4.0}}))
        path = write_gguf(src, tmp_path / "yarn.gguf", "qwen2", tokenizer_config=QWEN_CONFIG, pre="gpt-2")
        return path, (f"{path}: cannot convert 'yarn' rope scaling (qwen2.rope.scaling.type); "
                      "hhg runs unscaled rotary positions")
    raise ValueError(damage)


@pytest.mark.parametrize("damage", ["architecture", "metadata", "truncated", "vocabulary", "rope scaling"])
def test_broken_files_are_one_line_errors(tmp_path, capsys, damage):
    path, message = broken_gguf(tmp_path, damage)
    out = tmp_path / "out"
    assert convert(path, out) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hhg: {message}") and err.count("\n") == 1, err
    assert not out.exists() and not [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_missing_gguf_file(tmp_path, capsys):
    assert convert(tmp_path / "nowhere.gguf", tmp_path / "out") == 2
    assert capsys.readouterr().err == f"hhg: {tmp_path / 'nowhere.gguf'}: no such GGUF file\n"
