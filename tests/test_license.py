"""Licence opt-in: explained refusal, acceptance remembered in the config, atomic writes."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from hhg_mlx.errors import ConfigUnreadable, LicenseNotAccepted
from hhg_mlx.license import config_path, ensure_accepted
from hhg_mlx.models import registry

JINA = registry.get("jina-code-0.5b")


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HHG_CONFIG_DIR", str(tmp_path / "hhg"))
    return tmp_path / "hhg"


def test_registry_marks_the_restricted_models():
    opt_in = {info.id for info in registry.REGISTRY.values() if info.opt_in}
    assert {"jina-code-0.5b", "jina-code-1.5b", "qodo-1.5b"} <= opt_in
    assert "qwen3-0.6b" not in opt_in and registry.DEFAULT_MODEL not in opt_in
    assert not JINA.commercial and registry.get("qodo-1.5b").commercial


def test_permissive_model_needs_nothing(config_dir):
    ensure_accepted(registry.get("qwen3-0.6b"), accept=False)
    assert not config_dir.exists()


def test_refusal_explains_the_licence_and_the_fix(config_dir):
    with pytest.raises(LicenseNotAccepted) as err:
        ensure_accepted(JINA, accept=False)
    message = str(err.value)
    assert message.startswith("jina-code-0.5b is licensed CC-BY-NC-4.0 (non-commercial use only)")
    assert "--accept-license" in message and "\n" not in message
    assert not config_dir.exists()


def test_commercial_opt_in_model_says_so():
    with pytest.raises(LicenseNotAccepted, match=r"QodoAI-Open-RAIL-M \(commercial use allowed"):
        ensure_accepted(registry.get("qodo-1.5b"), accept=False)


def test_acceptance_is_remembered_and_keeps_other_settings(config_dir):
    config_dir.mkdir()
    config_path().write_text(json.dumps({"theme": "dark"}))
    ensure_accepted(JINA, accept=True)
    ensure_accepted(JINA, accept=False)                       # no error the second time
    saved = json.loads(config_path().read_text())
    assert saved == {"theme": "dark", "accepted_licenses": {"jina-code-0.5b": "CC-BY-NC-4.0"}}
    assert sorted(p.name for p in config_dir.iterdir()) == ["config.json"]   # no temporary file left
    with pytest.raises(LicenseNotAccepted):                   # accepting one model accepts only that one
        ensure_accepted(registry.get("jina-code-1.5b"), accept=False)


def test_a_changed_licence_is_asked_again():
    ensure_accepted(JINA, accept=True)
    with pytest.raises(LicenseNotAccepted, match="CC-BY-NC-SA-4.0"):
        ensure_accepted(replace(JINA, license="CC-BY-NC-SA-4.0"), accept=False)


def test_default_location_is_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv("HHG_CONFIG_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    ensure_accepted(JINA, accept=True)
    assert json.loads((tmp_path / "home" / ".config" / "hhg" / "config.json").read_text())["accepted_licenses"]


def test_unreadable_config_is_reported_not_overwritten(config_dir):
    config_dir.mkdir()
    config_path().write_text("{not json")
    with pytest.raises(ConfigUnreadable, match="cannot read .*config.json"):
        ensure_accepted(JINA, accept=True)
    assert config_path().read_text() == "{not json"


# ---------------------------------------------------------------- hhg convert


def convert(*argv) -> int:
    from hhg_mlx.cli import main

    return main(["convert", "-q", *map(str, argv)])


def test_convert_of_an_opt_in_model_is_refused_before_any_download(tmp_path, config_dir, capsys):
    assert convert("jina-code-0.5b", tmp_path / "out") == 2        # not in the (offline) cache either
    err = capsys.readouterr().err
    assert err.startswith("hhg: jina-code-0.5b is licensed CC-BY-NC-4.0 (non-commercial use only); run again "
                          "with --accept-license")
    assert not (tmp_path / "out").exists() and not config_dir.exists()


def test_convert_gates_a_converted_folder_of_an_opt_in_model(tmp_path, config_dir, capsys):
    """A folder whose hhg.json names jina-code-0.5b is that model; accepting once is remembered."""
    from qwen_fixtures import make_qwen

    src = make_qwen(tmp_path / "src")
    (src / "hhg.json").write_text(json.dumps({"model_id": "jina-code-0.5b"}))
    assert convert(src, tmp_path / "refused") == 2
    assert "jina-code-0.5b is licensed CC-BY-NC-4.0" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    assert convert(src, tmp_path / "accepted", "--accept-license") == 0
    assert json.loads(config_path().read_text())["accepted_licenses"] == {"jina-code-0.5b": "CC-BY-NC-4.0"}
    assert json.loads((tmp_path / "accepted" / "hhg.json").read_text())["model_id"] == "jina-code-0.5b"
    assert convert(src, tmp_path / "again") == 0                    # remembered


def test_convert_of_a_folder_without_registry_identity_is_not_gated(tmp_path, config_dir):
    from qwen_fixtures import make_qwen

    assert convert(make_qwen(tmp_path / "src"), tmp_path / "out") == 0
    assert not config_dir.exists()
