"""File walking: git and scandir modes agree on ignore rules, exclusions and skip counts."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hhg_mlx.index.walk import walk

# The tree both modes walk: path -> content (None = made separately).
TREE = {
    ".gitignore": "*.out\n!keep.out\nbuild/\n!build/keep.py\n/top.txt\n",
    ".hhgignore": "secret/\n",
    "a.py": "print(1)\n",
    "debug.out": "x\n",
    "keep.out": "x\n",
    "top.txt": "root only\n",
    "build/x.py": "x = 1\n",
    "build/keep.py": "x = 1\n",           # cannot be re-included: its folder is ignored
    "sub/.gitignore": "*.py\n!main.py\n",
    "sub/main.py": "x = 1\n",
    "sub/util.py": "x = 1\n",
    "sub/top.txt": "anchored patterns only match at their own level\n",
    "docs/.hhgignore": "draft.md\n",
    "docs/draft.md": "# draft\n",
    "docs/final.md": "# final\n",
    "secret/key.py": "KEY = 1\n",
    "node_modules/pkg/index.js": "module.exports = 1;\n",
    "env/pyvenv.cfg": "home = /usr\n",
    "env/lib/site.py": "x = 1\n",
    "target/CACHEDIR.TAG": "Signature: 8a477f597d28d172789f06886806bc55\n",
    "target/debug/gen.rs": "fn main() {}\n",
    "logo.png": "not really a png\n",
    "package-lock.json": "{}\n",
    "web/app.min.js": "var a=1;\n",
    "web/app.js": "var a = 1;\n",
    "big.py": "x = 1\n" * 40,
    ".hhg/index.sqlite": "not indexed\n",
}
EXPECTED_FILES = [
    ".gitignore", ".hhgignore", "a.py", "docs/.hhgignore", "docs/final.md", "keep.out",
    "sub/.gitignore", "sub/main.py", "sub/top.txt", "web/app.js",
]
EXPECTED_SKIPS = {"excluded-dir": 3, "binary": 1, "lockfile": 1, "minified": 1, "too-large": 1,
                  "broken-symlink": 1}


def make_tree(root: Path) -> None:
    for rel, content in TREE.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    (root / "dangling.py").symlink_to(root / "missing.py")
    (root / "linked_dir").symlink_to(root / "sub", target_is_directory=True)   # folders symlinks: not followed


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


@pytest.fixture(params=["scandir", "git"])
def tree(request, tmp_path: Path) -> Path:
    make_tree(tmp_path)
    if request.param == "git":
        git(tmp_path, "init", "-q")
        git(tmp_path, "add", "a.py", ".gitignore", "sub/main.py")   # the rest stays untracked
        git(tmp_path, "commit", "-q", "-m", "init")
    return tmp_path


def test_ignore_rules_exclusions_and_skips(tree: Path):
    result = walk(tree, max_file_bytes=100)
    assert [f.path for f in result.files] == EXPECTED_FILES
    assert result.skipped == EXPECTED_SKIPS


def test_entries_carry_stat_data(tree: Path):
    entry = next(f for f in walk(tree).files if f.path == "a.py")
    st = os.stat(tree / "a.py")
    assert entry.size == len("print(1)\n")
    assert entry.mtime_ns == st.st_mtime_ns


def test_git_mode_uses_git_excludes_and_drops_deleted_files(tmp_path: Path):
    make_tree(tmp_path)
    git(tmp_path, "init", "-q")
    (tmp_path / ".git" / "info" / "exclude").write_text("a.py\n")   # only git knows this file
    (tmp_path / "gone.py").write_text("x = 1\n")
    git(tmp_path, "add", "-f", "gone.py", "sub/main.py")
    git(tmp_path, "commit", "-q", "-m", "init")
    (tmp_path / "gone.py").unlink()                                   # deleted but still in git's index
    paths = [f.path for f in walk(tmp_path, max_file_bytes=100).files]
    assert paths == [p for p in EXPECTED_FILES if p != "a.py"]


def test_git_subfolder_root_gives_paths_relative_to_it(tmp_path: Path):
    make_tree(tmp_path)
    git(tmp_path, "init", "-q")
    result = walk(tmp_path / "sub")
    assert [f.path for f in result.files] == [".gitignore", "main.py", "top.txt"]


def test_hhgignore_negation_in_git_mode(tmp_path: Path):
    (tmp_path / "gen").mkdir()
    for name in ("a.py", "b.py", "keep.py"):
        (tmp_path / "gen" / name).write_text("x = 1\n")
    (tmp_path / "gen" / ".hhgignore").write_text("*.py\n!keep.py\n")
    git(tmp_path, "init", "-q")
    assert [f.path for f in walk(tmp_path).files] == ["gen/.hhgignore", "gen/keep.py"]


def test_unreadable_folder_is_counted(tmp_path: Path, monkeypatch):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "b.py").write_text("x = 1\n")
    scandir = os.scandir

    def denying_scandir(path):   # chmod 0 does not stop root, so refuse like the kernel would
        if os.path.basename(path) == "locked":
            raise PermissionError(13, "Permission denied", path)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", denying_scandir)
    result = walk(tmp_path)
    assert [f.path for f in result.files] == ["a.py"]
    assert result.skipped == {"unreadable": 1}


def test_special_files_are_counted(tmp_path: Path):
    (tmp_path / "a.py").write_text("x = 1\n")
    os.mkfifo(tmp_path / "pipe.py")
    result = walk(tmp_path)
    assert [f.path for f in result.files] == ["a.py"]
    assert result.skipped == {"special": 1}
