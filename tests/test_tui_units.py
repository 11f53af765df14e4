"""The TUI's pure helpers: editor command lines, filter boxes, score bars, the preview."""
from __future__ import annotations

import pytest
from rich.console import Console

from hhg_mlx.types import Filters, Hit
from tui.app import parse_filters
from tui.editor import editor_command, resolve_editor
from tui.preview import render_hit, term_pattern
from tui.widgets import score_bar


@pytest.mark.parametrize("editor, expected", [
    ("vim", ["vim", "+42", "/r/a b.py"]),
    ("/usr/bin/nvim", ["/usr/bin/nvim", "+42", "/r/a b.py"]),
    ("nano", ["nano", "+42", "/r/a b.py"]),
    ("emacsclient -nw", ["emacsclient", "-nw", "+42", "/r/a b.py"]),
    ("micro", ["micro", "+42", "/r/a b.py"]),
    ("kak", ["kak", "+42", "/r/a b.py"]),
    ("hx", ["hx", "/r/a b.py:42"]),
    ("code -w", ["code", "-w", "--goto", "/r/a b.py:42"]),
    ("cursor", ["cursor", "--goto", "/r/a b.py:42"]),
    ("subl", ["subl", "/r/a b.py:42"]),
    ("zed", ["zed", "/r/a b.py:42"]),
    ("idea", ["idea", "--line", "42", "/r/a b.py"]),
    ("'/opt/My Editor/vim'", ["/opt/My Editor/vim", "+42", "/r/a b.py"]),
    ("C:/tools/Code.exe", ["C:/tools/Code.exe", "--goto", "/r/a b.py:42"]),
    ("ed", ["ed", "/r/a b.py"]),                       # unknown: no line argument
])
def test_editor_command(editor, expected):
    assert editor_command(editor, "/r/a b.py", 42) == expected


def test_editor_command_clamps_line():
    assert editor_command("vi", "f.py", 0) == ["vi", "+1", "f.py"]


def test_resolve_editor_prefers_visual_then_editor_then_vi():
    assert resolve_editor({"VISUAL": "code -w", "EDITOR": "vim"}) == "code -w"
    assert resolve_editor({"VISUAL": " ", "EDITOR": "nano"}) == "nano"
    assert resolve_editor({}) == "vi"


def test_parse_filters():
    assert parse_filters("", "  ") is None
    assert parse_filters("py, go", "") == Filters(types=("py", "go"))
    assert parse_filters("", "src lib/net") == Filters(paths=("src", "lib/net"))
    assert parse_filters("", "!*_test.go") == Filters(exclude=("*_test.go", "*_test.go/**"))
    assert parse_filters("ts", "*.py src/**/x* !vendor/") == Filters(
        types=("ts",), exclude=("*", "!*.py", "!src/**/x*", "vendor", "vendor/**"))


def test_glob_filters_select_files_like_fnmatch():
    """The gitignore lines that parse_filters makes keep exactly the files a glob names."""
    import pathspec

    files = ["src/a.py", "src/deep/b.py", "lib/c.py", "src/d.go", "e_test.go", "README.md"]
    filters = parse_filters("", "src/**/*.py !src/deep")
    spec = pathspec.GitIgnoreSpec.from_lines(filters.exclude)
    assert [f for f in files if not spec.match_file(f)] == ["src/a.py"]
    filters = parse_filters("", "*.go !*_test.go")
    spec = pathspec.GitIgnoreSpec.from_lines(filters.exclude)
    assert [f for f in files if not spec.match_file(f)] == ["src/d.go"]


def test_score_bar():
    assert score_bar(2.0, 2.0, 8) == "█" * 8
    assert score_bar(1.0, 2.0, 8) == "████    "
    assert score_bar(1.0, 16.0, 8) == "▌       "        # 1/16 of 8 cells = half a cell
    assert score_bar(0.0, 2.0, 4) == "    "
    assert score_bar(1.0, 0.0, 4) == "    "


def test_term_pattern_matches_identifier_parts():
    pattern = term_pattern(["retry", "upload", "a"])
    assert [m.group() for m in pattern.finditer("def retryFailedUploads(a):")] == ["retry", "Upload"]
    assert term_pattern(["x"]) is None


def _render(syntax, width=100) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(syntax)
    return console.export_text()


def test_render_hit_shows_block_in_context_with_marked_lines(tmp_path):
    lines = [f"line_{i} = {i}" for i in range(1, 31)]
    (tmp_path / "m.py").write_text("\n".join(lines) + "\n")
    hit = Hit("m.py", 10, 12, "module", "", 1.0, "\n".join(lines[9:12]), "python")
    text = _render(render_hit(hit, tmp_path, ["line"]))
    shown = [row.split()[-3] for row in text.splitlines() if row.strip()]
    assert shown == [f"line_{i}" for i in range(7, 16)]            # 3 lines of context either side
    marked = [row for row in text.splitlines() if "❱" in row]
    assert [row.split()[-3] for row in marked] == ["line_10", "line_11", "line_12"]


def test_render_hit_falls_back_to_indexed_content(tmp_path):
    hit = Hit("gone.py", 5, 6, "function", "f", 1.0, "def f():\n    return 1", "python")
    rows = [r for r in _render(render_hit(hit, tmp_path)).splitlines() if r.strip()]
    assert rows[0].split()[:3] == ["❱", "5", "def"] and rows[1].split()[:3] == ["❱", "6", "return"]


def test_hit_row_keeps_the_file_name_and_line_of_long_paths():
    from tui.widgets import HitRow

    hit = Hit("very/long/path/to/some/deeply/nested/package/module_file.py", 1234, 1240, "method",
              "Klass.method_name", 1.0)
    console = Console(width=60, record=True, color_system=None)
    console.print(HitRow(hit, 2.0))
    (line,) = console.export_text().splitlines()
    assert len(line) <= 60 and line.startswith("…") and "module_file.py:1234 " in line
    assert "method" in line and "Klass.method_name" in line and line.endswith("████    ")
