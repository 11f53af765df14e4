"""Which editor to run, and how to ask it to open a file at a line."""
from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import PurePath

# Editors that take `+LINE file` (the vi convention).
_PLUS_LINE = frozenset("""
vi vim nvim gvim mvim view vim.basic vim.tiny elvis nvi ex nano pico rnano emacs emacsclient micro
kak joe jmacs jed mg ne gedit gnome-text-editor mousepad pluma xed vis amp
""".split())
# Editors that take `file:LINE`.
_COLON_LINE = frozenset("hx helix subl sublime_text zed atom pulsar lapce".split())
# VS Code and its forks: `--goto file:LINE`.
_GOTO = frozenset("code code-insiders codium vscodium cursor windsurf positron".split())
# JetBrains launchers and Kate: `--line LINE file`.
_LINE_OPTION = frozenset("""
idea idea.sh pycharm pycharm.sh charm clion goland webstorm phpstorm rubymine rider studio fleet kate
""".split())


def resolve_editor(env: Mapping[str, str] | None = None) -> str:
    """`$VISUAL`, else `$EDITOR`, else `vi` (what git and crontab do)."""
    env = os.environ if env is None else env
    return env.get("VISUAL", "").strip() or env.get("EDITOR", "").strip() or "vi"


def editor_command(editor: str, file: str, line: int) -> list[str]:
    """The argv that opens `file` at 1-based `line` in `editor` (a `$EDITOR`-style command line,
    possibly with its own arguments, e.g. `code -w`). Unknown editors get the file alone."""
    argv = shlex.split(editor) or ["vi"]
    name = PurePath(argv[0]).name.lower().removesuffix(".exe")
    line = max(1, line)
    if name in _PLUS_LINE:
        return [*argv, f"+{line}", file]
    if name in _COLON_LINE:
        return [*argv, f"{file}:{line}"]
    if name in _GOTO:
        return [*argv, "--goto", f"{file}:{line}"]
    if name in _LINE_OPTION:
        return [*argv, "--line", str(line), file]
    return [*argv, file]
