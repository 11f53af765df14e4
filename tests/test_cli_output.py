"""Unit tests of the CLI's own parts: argument dispatch, output formatting, the progress bar."""
from __future__ import annotations

import io
import json
import re
import time

import pytest

from hhg_mlx import cli
from hhg_mlx.index.worker import EmbeddingStatus
from hhg_mlx.output import (PathStyle, format_files, format_hit, format_hits, format_json, format_status,
                            query_pattern, snippet, use_color)
from hhg_mlx.progress import ProgressBar
from hhg_mlx.types import Hit

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

CONTENT = "    def retry_upload(self, path):\n\n        \"\"\"Retry a failed upload.\"\"\"\n        for i in range(3):\n            self.send(path)\n"


def hit(file="src/up.py", line=10, name="Uploader.retry_upload", score=1.5, content=CONTENT):
    return Hit(file=file, line=line, end_line=line + 4, kind="method", name=name, score=score, content=content)


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


# --- dispatch -----------------------------------------------------------------------------

VALUE_OPTIONS = cli._value_options(cli._search_parser(), cli._build_parser())


@pytest.mark.parametrize("argv, command, rest", [
    (["build", "."], "build", ["."]),
    (["-q", "build", "src"], "build", ["-q", "src"]),
    (["--model", "build", "query"], None, ["--model", "build", "query"]),    # "build" is --model's value
    (["-n", "5", "status"], "status", ["-n", "5"]),
    (["--", "build"], None, ["--", "build"]),
    (["retry", "build"], None, ["retry", "build"]),                          # a search in folder "build"
    (["model", "list"], "model", ["list"]),
    ([], None, []),
])
def test_split_command(argv, command, rest):
    assert cli.split_command(argv, VALUE_OPTIONS) == (command, rest)


def test_value_options_come_from_the_parsers():
    assert {"-n", "--limit", "-t", "--type", "--exclude", "--mode", "--model", "--color", "-C"} <= VALUE_OPTIONS
    assert not {"--json", "-l", "-q", "--force", "--code-only"} & VALUE_OPTIONS


def test_options_after_positionals():
    args = cli.parse(cli._search_parser(), ["retry upload", "src", "-n", "3", "--json", "-t", "py,go", "-t", "rs",
                                            "--exclude", "a/*", "--exclude", "*.md"])
    assert (args.query, args.path, args.limit, args.json) == ("retry upload", "src", 3, True)
    assert args.type == ["py,go", "rs"] and args.exclude == ["a/*", "*.md"]


def test_double_dash_searches_for_option_like_words():
    args = cli.parse(cli._search_parser(), ["--json", "--", "-weird"])
    assert args.query == "-weird" and args.json


@pytest.mark.parametrize("query, file, name, line", [
    ("a/b.py#retry", "a/b.py", "retry", None),
    ("a/b.py#Cls.meth", "a/b.py", "Cls.meth", None),
    ("a/b.py:42", "a/b.py", None, "42"),
    ("c:/x/b.py:7", "c:/x/b.py", None, "7"),
])
def test_similar_pattern(query, file, name, line):
    m = cli.SIMILAR.match(query)
    assert (m["file"], m["name"], m["line"]) == (file, name, line)


@pytest.mark.parametrize("query", ["retry uploads", "a/b.py#", "a/b.py:", "a/b.py:x1"])
def test_similar_pattern_rejects_plain_queries(query):
    m = cli.SIMILAR.match(query)
    assert m is None or not (m["name"] or m["line"])


def test_help_teaches_every_flag(capsys):
    for argv, flags in [
        (["--help"], ["-n", "--limit", "--json", "--no-content", "-l", "--files-with-matches", "-t", "--type",
                      "--exclude", "--code-only", "--mode", "--threshold", "--color", "-C", "--context", "-q",
                      "--model", "--accept-license", "--task", "--version", "FILE#NAME", "FILE:LINE",
                      "build", "status", "list", "clean", "model", "convert", "bench", "examples:"]),
        (["build", "--help"], ["--force", "--model", "-q", "--accept-license", "--task", "examples:"]),
        (["clean", "--help"], ["-r", "--recursive"]),
        (["status", "--help"], ["--json"]),
        (["bench", "--help"], ["--model", "--random", "--backends", "--batch", "--seq", "--texts", "--repeat",
                               "--json", "--rerank", "--pairs", "--doc-tokens", "examples:"]),
    ]:
        with pytest.raises(SystemExit) as exc:
            cli.run(argv)
        assert exc.value.code == 0
        text = capsys.readouterr().out
        missing = [f for f in flags if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text)]
        assert not missing, (argv, missing)


def test_version(capsys):
    with pytest.raises(SystemExit):
        cli.run(["--version"])
    assert re.fullmatch(r"hhg \d+\.\d+\.\d+\n", capsys.readouterr().out)


def test_missing_subcommand_module_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(cli.DELEGATED, "model", ("hhg_mlx.no_such_module_xyz", "list models"))
    assert cli.main(["model", "list"]) == 2
    err = capsys.readouterr().err
    assert err == "hhg: `hhg model` is not available in this installation (hhg_mlx.no_such_module_xyz is missing)\n"


def test_missing_path_is_an_error(tmp_path, capsys):
    assert cli.main(["status", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"hhg: {tmp_path / 'nope'}: no such file or directory\n"


def test_unexpected_errors_are_one_line(monkeypatch, capsys):
    def boom(argv):
        raise ValueError("bad thing")
    monkeypatch.setattr(cli, "run", boom)
    monkeypatch.delenv("HHG_DEBUG", raising=False)
    assert cli.main(["x"]) == 2
    assert capsys.readouterr().err == "hhg: internal error: ValueError: bad thing (set HHG_DEBUG=1 for a traceback)\n"


def test_keyboard_interrupt(monkeypatch, capsys):
    def interrupted(argv):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "run", interrupted)
    assert cli.main(["x"]) == 130
    assert capsys.readouterr().err == "hhg: interrupted\n"


# --- output -------------------------------------------------------------------------------

def test_snippet_skips_blank_lines_and_dedents():
    assert snippet(CONTENT, 3) == ["def retry_upload(self, path):", "    \"\"\"Retry a failed upload.\"\"\"",
                                   "    for i in range(3):"]
    assert snippet(CONTENT, 0) == []
    assert snippet("x" * 1000, 1)[0].endswith("…") and len(snippet("x" * 1000, 1)[0]) < 300


def test_format_hit_plain():
    text = format_hit(hit(), "src/up.py", lines=2)
    assert text == ("src/up.py:10 method Uploader.retry_upload\n"
                    "    def retry_upload(self, path):\n"
                    "        \"\"\"Retry a failed upload.\"\"\"")
    assert "\x1b" not in text


def test_format_hit_without_name_and_lines():
    assert format_hit(hit(name=""), "up.py", lines=0) == "up.py:10 method"


def test_format_hit_color_highlights_query_words():
    text = format_hit(hit(), "src/up.py", lines=3, color=True, pattern=query_pattern("where do we RETRY uploads"))
    assert ANSI.sub("", text) == format_hit(hit(), "src/up.py", lines=3)
    highlighted = re.findall(r"\x1b\[1;31m(.*?)\x1b\[0m", text)
    assert highlighted == ["retry", "Retry"]     # "uploads" does not occur; stopwords are never highlighted


def test_query_pattern():
    assert query_pattern("where do we") is None
    pattern = query_pattern("parse http_request")
    assert pattern.findall("ParseHTTP_REQUEST parse") == ["Parse", "HTTP_REQUEST", "parse"]
    assert pattern.findall("x http_request y") == ["http_request"]


def test_format_hits_separates_hits():
    hits = [hit(line=1), hit(file="b.go", line=7, name="f")]
    assert format_hits(hits, str, lines=0) == "src/up.py:1 method Uploader.retry_upload\nb.go:7 method f\n"
    assert format_hits(hits, str, lines=1).count("\n\n") == 1


def test_format_files_unique_in_rank_order():
    hits = [hit(file="b.py"), hit(file="a.py"), hit(file="b.py"), hit(file="c.py")]
    assert format_files(hits, str) == "b.py\na.py\nc.py\n"


def test_format_json(tmp_path):
    show = PathStyle(tmp_path, cwd=tmp_path / "sub")
    data = json.loads(format_json([hit()], show))
    assert data == [{"file": "../src/up.py", "line": 10, "end_line": 14, "kind": "method",
                     "name": "Uploader.retry_upload", "score": 1.5, "content": CONTENT}]
    assert "content" not in json.loads(format_json([hit()], show, content=False))[0]
    assert json.loads(format_json([], show)) == []


def test_path_style(tmp_path):
    assert PathStyle(tmp_path, cwd=tmp_path)("a/b.py") == "a/b.py"
    assert PathStyle(tmp_path / "repo", cwd=tmp_path)("a/b.py") == "repo/a/b.py"
    assert PathStyle(tmp_path, absolute=True, cwd=tmp_path)("a/b.py") == str(tmp_path.resolve() / "a/b.py")


def test_use_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert use_color("auto", FakeTTY()) and not use_color("auto", io.StringIO())
    assert use_color("always", io.StringIO()) and not use_color("never", FakeTTY())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color("auto", FakeTTY())


def test_format_status():
    built = time.mktime((2026, 1, 2, 3, 4, 5, 0, 0, -1))
    text = format_status({"root": "/r", "files": 1234, "blocks": 5, "model": None, "size_bytes": 3 * 1024 * 1024,
                          "built_at": built, "skipped": {"binary": 2, "too-large": 1}})
    assert text.splitlines() == ["root: /r", "files: 1,234", "blocks: 5", "model: -", "size bytes: 3.0 MiB",
                                 "built at: 2026-01-02 03:04:05", "skipped: binary 2, too-large 1"]


@pytest.mark.parametrize("embedding, line", [
    (EmbeddingStatus("running", 4242, 12345, 47198, 17.71, 2263.4, 1985.0, None),
     "embedding: running (pid 4242): 12,345 of 47,198 blocks (26%), 17.7 texts/s, 2,263 tokens/s, ETA 33:05"),
    (EmbeddingStatus("running", 4242, 0, 47198, None, None, None, None),
     "embedding: running (pid 4242): 0 of 47,198 blocks (0%), measuring the rate"),
    (EmbeddingStatus("stopped", None, 47197, 47198, None, None, None, None),
     "embedding: stopped: 47,197 of 47,198 blocks (99%); `hhg build` resumes it"),
    (EmbeddingStatus("failed", None, 3, 10, None, None, None, "out of memory"),
     "embedding: failed: out of memory; 3 of 10 blocks (30%)"),
    (EmbeddingStatus("done", None, 10, 10, None, None, None, None), "embedding: done: 10 of 10 blocks (100%)"),
    (EmbeddingStatus("none", None, 0, 0, None, None, None, None), "embedding: none (keyword only)"),
])
def test_format_status_describes_the_embedding_phase(embedding, line):
    text = format_status({"blocks": 5, "embedding": embedding.to_json()}, embedding)
    assert text.splitlines() == ["blocks: 5", line]


# --- progress -----------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_silent_without_a_tty():
    stream = io.StringIO()
    bar = ProgressBar(stream)
    bar("scan", 1, 10)
    bar("scan", 10, 10)
    bar.close()
    assert stream.getvalue() == ""


def test_progress_shows_rate_and_eta():
    stream, clock = FakeTTY(), Clock()
    bar = ProgressBar(stream, clock=clock, interval=0.5)
    bar("embed", 0, 1000)
    clock.now += 2.0
    bar("embed", 400, 1000)                    # 200 blocks/s, 600 left: 3 s
    last = stream.getvalue().split("\r")[-1]
    assert "400/1,000" in last and "200 blocks/s" in last and "ETA 0:03" in last
    clock.now += 0.1
    bar("embed", 500, 1000)                    # throttled: no redraw within the interval
    assert stream.getvalue().split("\r")[-1] == last
    bar("embed", 1000, 1000)                   # the last step is always drawn, without an ETA
    last = stream.getvalue().split("\r")[-1]
    assert "1,000/1,000" in last and "ETA" not in last
    bar.close()
    assert stream.getvalue().endswith("\r\x1b[K")


def test_progress_restarts_the_rate_per_stage():
    stream, clock = FakeTTY(), Clock()
    bar = ProgressBar(stream, clock=clock)
    bar("scan", 0, 10)
    clock.now += 10
    bar("extract", 0, 50)
    clock.now += 1
    bar("extract", 25, 50)
    assert "25 files/s" in stream.getvalue().split("\r")[-1]


def test_progress_skips_empty_stages():
    stream = FakeTTY()
    bar = ProgressBar(stream)
    bar("extract", 0, 0)                       # a search on an unchanged tree: no flicker
    bar.close()
    assert stream.getvalue() == ""


def test_progress_can_be_disabled_on_a_tty():
    stream = FakeTTY()
    bar = ProgressBar(stream, enabled=False)
    bar("scan", 5, 10)
    bar.close()
    assert stream.getvalue() == ""
