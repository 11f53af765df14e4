"""Block extraction: names, kinds and 1-based spans per language; sections, chunks, reading rules."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from textwrap import dedent

import pytest

from hhg_mlx.index.extract import CHUNK_LINES, decode_source, extract, read_source
from hhg_mlx.index.languages import CODE_LANGUAGES, language_for, matches_type

REPO = Path(__file__).resolve().parents[1]

# file name -> (source, expected [(kind, name, start, end)] in line order). Lines are counted by hand.
CASES = {
    "a.py": ('''
        import os


        # Helper comment.
        @decorator
        def helper(x):
            """Help."""
            def inner():
                pass
            return inner


        class Outer(Base):
            """Outer doc."""

            attr = 1

            @property
            def method(self):
                return 1

            other = 2

            class Inner:
                def deep(self):
                    pass


        if __name__ == "__main__":
            helper(1)
        ''', [("module", "", 1, 1), ("function", "helper", 4, 10), ("class", "Outer", 13, 16),
              ("method", "Outer.method", 18, 20), ("module", "Outer", 22, 22), ("class", "Outer.Inner", 24, 24),
              ("method", "Outer.Inner.deep", 25, 26), ("module", "", 29, 30)]),
    "a.js": ('''
        // Adds one.
        export function addOne(a) {
          return a + 1;
        }

        const double = (x) => x * 2;

        class Widget extends Base {
          constructor() {
            super();
          }
          render() {
            return 1;
          }
        }

        module.exports = { addOne };
        ''', [("function", "addOne", 1, 4), ("function", "double", 6, 6), ("class", "Widget", 8, 8),
              ("method", "Widget.constructor", 9, 11), ("method", "Widget.render", 12, 14), ("module", "", 17, 17)]),
    "a.ts": ('''
        interface Shape {
          area(): number;
        }

        @Component({})
        export class Circle implements Shape {
          private r = 1;
          area(): number {
            return this.r;
          }
        }

        export function helper<T>(x: T): T {
          return x;
        }
        ''', [("class", "Shape", 1, 3), ("class", "Circle", 5, 7), ("method", "Circle.area", 8, 10),
              ("function", "helper", 13, 15)]),
    "a.tsx": ('''
        type Props = { name: string };

        export function Hello({ name }: Props) {
          return <div>Hello {name}</div>;
        }

        export class Panel extends React.Component<Props> {
          render() {
            return <span />;
          }
        }
        ''', [("class", "Props", 1, 1), ("function", "Hello", 3, 5), ("class", "Panel", 7, 7),
              ("method", "Panel.render", 8, 10)]),
    "a.go": ('''
        package main

        import "fmt"

        // Server serves requests.
        type Server struct {
        \taddr string
        }

        func (s *Server) Start() error {
        \tfmt.Println(s.addr)
        \treturn nil
        }

        func main() {
        \t_ = Server{}
        }
        ''', [("module", "", 1, 3), ("class", "Server", 5, 8), ("method", "Server.Start", 10, 13),
              ("function", "main", 15, 17)]),
    "a.rs": ('''
        use std::fmt;

        /// A point.
        #[derive(Debug)]
        pub struct Point {
            x: i32,
        }

        impl Point {
            pub fn new() -> Self {
                Point { x: 0 }
            }
        }

        trait Shape {
            fn area(&self) -> f64;
        }

        fn main() {
            let _p = Point::new();
        }
        ''', [("module", "", 1, 1), ("class", "Point", 3, 7), ("class", "Point", 9, 9), ("method", "Point.new", 10, 12),
              ("class", "Shape", 15, 17), ("function", "main", 19, 21)]),
    "Greeter.java": ('''
        package demo;

        /** A greeter. */
        public class Greeter {
            private final String name;

            public Greeter(String name) {
                this.name = name;
            }

            @Override
            public String toString() {
                return name;
            }

            interface Listener {
                void onGreet();
            }
        }
        ''', [("module", "", 1, 1), ("class", "Greeter", 3, 5), ("method", "Greeter.Greeter", 7, 9),
              ("method", "Greeter.toString", 11, 14), ("class", "Greeter.Listener", 16, 18)]),
    "a.kt": ('''
        package demo

        class Repo(val db: Db) {
            fun find(id: Int): Item? {
                return db.get(id)
            }
        }

        object Registry {
            fun register() {}
        }

        fun main() {
            println("hi")
        }
        ''', [("module", "", 1, 1), ("class", "Repo", 3, 3), ("method", "Repo.find", 4, 6), ("class", "Registry", 9, 9),
              ("method", "Registry.register", 10, 10), ("function", "main", 13, 15)]),
    "a.c": ('''
        #include <stdio.h>

        struct point {
            int x;
        };

        typedef struct {
            int y;
        } Vec;

        /* Makes a thing. */
        static int *make(int n) {
            return 0;
        }

        int main(void) {
            return 0;
        }
        ''', [("module", "", 1, 1), ("class", "point", 3, 5), ("class", "Vec", 7, 9), ("function", "make", 11, 14),
              ("function", "main", 16, 18)]),
    "a.cpp": ('''
        #include <string>

        namespace geo {
        class Shape {
        public:
            virtual double area() const = 0;
            void print() {
            }
        };
        }

        double Circle::area() const {
            return 1.0;
        }

        template <typename T>
        T maxOf(T a, T b) {
            return a > b ? a : b;
        }
        ''', [("module", "", 1, 3), ("class", "Shape", 4, 6), ("method", "Shape.print", 7, 8),
              ("method", "Circle.area", 12, 14), ("function", "maxOf", 16, 19)]),
    "a.cs": ('''
        using System;

        namespace App
        {
            /// <summary>Greets people.</summary>
            public class Greeter
            {
                public Greeter() { }

                public string Greet(string name)
                {
                    return name;
                }

                public int Count { get; set; }
            }

            public interface IRunner
            {
                void Run();
            }
        }
        ''', [("module", "", 1, 4), ("class", "Greeter", 5, 7), ("method", "Greeter.Greeter", 8, 8),
              ("method", "Greeter.Greet", 10, 13), ("module", "Greeter", 15, 16), ("class", "IRunner", 18, 21)]),
    "a.rb": ('''
        require "json"

        module Shop
          # A shopping cart.
          class Cart
            def add(item)
              @items << item
            end

            def self.build
              new
            end
          end
        end

        def helper
        end
        ''', [("module", "", 1, 1), ("class", "Shop", 3, 3), ("class", "Shop.Cart", 4, 5),
              ("method", "Shop.Cart.add", 6, 8), ("method", "Shop.Cart.build", 10, 12),
              ("function", "helper", 16, 17)]),
    "a.php": ('''
        <?php
        namespace App;

        /** A user. */
        class User extends Model
        {
            public function save(): void
            {
            }

            public static function find($id)
            {
                return null;
            }
        }

        function helper() {
            return 1;
        }
        ''', [("module", "", 1, 2), ("class", "User", 4, 6), ("method", "User.save", 7, 9),
              ("method", "User.find", 11, 14), ("function", "helper", 17, 19)]),
    "a.swift": ('''
        import Foundation

        /// A dog.
        class Dog: Animal {
            var name: String

            init(name: String) {
                self.name = name
            }

            func bark() -> String {
                return "woof"
            }
        }

        struct Point {
            var x: Double
        }

        func top() {
        }
        ''', [("module", "", 1, 1), ("class", "Dog", 3, 5), ("method", "Dog.init", 7, 9),
              ("method", "Dog.bark", 11, 13), ("class", "Point", 16, 18), ("function", "top", 20, 21)]),
    "a.scala": ('''
        package demo

        class Counter(start: Int) {
          def next(): Int = start + 1
        }

        object Main {
          def main(args: Array[String]): Unit = {
            println("hi")
          }
        }

        trait Shape {
          def area(): Double
        }
        ''', [("module", "", 1, 1), ("class", "Counter", 3, 3), ("method", "Counter.next", 4, 4),
              ("class", "Main", 7, 7), ("method", "Main.main", 8, 10), ("class", "Shape", 13, 15)]),
    "a.lua": ('''
        local M = {}

        -- Greets someone.
        function M.greet(name)
          return "hi " .. name
        end

        function M:method()
        end

        local function helper()
        end

        return M
        ''', [("module", "", 1, 1), ("function", "M.greet", 3, 6), ("method", "M.method", 8, 9),
              ("function", "helper", 11, 12), ("module", "", 14, 14)]),
    "a.sh": ('''
        #!/bin/bash
        set -e

        # Greets someone.
        greet() {
          echo "hi $1"
        }

        function cleanup {
          rm -f /tmp/x
        }

        greet world
        ''', [("module", "", 1, 2), ("function", "greet", 4, 7), ("function", "cleanup", 9, 11),
              ("module", "", 13, 13)]),
    "a.ex": ('''
        defmodule Plug.Conn do
          @moduledoc """
          The connection.
          """

          alias Plug.Conn

          @doc """
          Deletes a response cookie.

          More text.
          """
          @spec delete_resp_cookie(t, binary) :: t
          def delete_resp_cookie(%Conn{} = conn, key, opts \\\\ []) do
            conn
          end

          # Runs it.
          defp run(conn), do: conn

          @doc "Is it halted?"
          def halted?(%{halted: true}), do: true
          def halted?(conn) when is_map(conn), do: false

          defmacro __using__(opts) do
            quote do: opts
          end

          defmodule Inner do
            def x, do: 1
          end
        end
        ''', [("class", "Plug.Conn", 1, 6), ("method", "Plug.Conn.delete_resp_cookie", 8, 16),
              ("method", "Plug.Conn.run", 18, 19), ("method", "Plug.Conn.halted?", 21, 23),
              ("method", "Plug.Conn.__using__", 25, 27), ("class", "Plug.Conn.Inner", 29, 29),
              ("method", "Plug.Conn.Inner.x", 30, 30)]),
    "Core.hs": ('''
        module Core (X, runX) where

        import Data.Maybe

        -- | The (read-only) configuration.
        data XConf = XConf
            { display :: Display  -- ^ the display
            }

        -- | Run the 'X' monad,
        -- given an initial state.
        runX :: XConf -> X a -> IO a
        runX c (X a) = runReaderT a c

        catchX :: X a -> X a -> X a
        catchX job errcase = do
            st <- get
            return st
          where
            helper z = z
        catchX _ _ = undefined

        class Show a => LayoutClass layout a where
            runLayout :: Workspace -> X ()
            runLayout w = undefined

        instance LayoutClass Full a where
            pureLayout _ _ = []

        newtype ScreenId = S Int deriving (Eq)

        main :: IO ()
        main = xmonad def
        ''', [("module", "", 1, 3), ("class", "XConf", 5, 8), ("function", "runX", 10, 13),
              ("function", "catchX", 15, 21), ("class", "LayoutClass", 23, 23), ("method", "LayoutClass.runLayout", 24, 25),
              ("class", "LayoutClass", 27, 27), ("method", "LayoutClass.pureLayout", 28, 28),
              ("class", "ScreenId", 30, 30), ("function", "main", 32, 33)]),
    "clap.zig": ('''
        const std = @import("std");

        /// Optional or required argument value.
        pub const Values = enum {
            none,
            one,
            pub fn count(v: Values) usize {
                return 0;
            }
        };

        /// Parses the command line.
        pub fn parse(
            comptime Id: type,
        ) !Result {
            return error.Foo;
        }

        const Names = union(enum) { a: u8 };

        test "parse works" {
            try std.testing.expect(true);
        }
        ''', [("module", "", 1, 1), ("class", "Values", 3, 6), ("method", "Values.count", 7, 9),
              ("function", "parse", 12, 17), ("class", "Names", 19, 19), ("module", "", 21, 23)]),
}
LANGUAGES = {"a.py": "python", "a.js": "javascript", "a.ts": "typescript", "a.tsx": "tsx", "a.go": "go",
             "a.rs": "rust", "Greeter.java": "java", "a.kt": "kotlin", "a.c": "c", "a.cpp": "cpp",
             "a.cs": "csharp", "a.rb": "ruby", "a.php": "php", "a.swift": "swift", "a.scala": "scala",
             "a.lua": "lua", "a.sh": "bash", "a.ex": "elixir", "Core.hs": "haskell", "clap.zig": "zig"}
DOCS = {"a.py": {"helper": "Help.", "Outer": "Outer doc."}, "a.js": {"addOne": "Adds one."},
        "a.go": {"Server": "Server serves requests."}, "a.rs": {"Point": "A point."},
        "Greeter.java": {"Greeter": "A greeter."}, "a.c": {"make": "Makes a thing."},
        "a.cs": {"Greeter": "<summary>Greets people.</summary>"}, "a.rb": {"Shop.Cart": "A shopping cart."},
        "a.php": {"User": "A user."}, "a.swift": {"Dog": "A dog."}, "a.lua": {"M.greet": "Greets someone."},
        "a.sh": {"greet": "Greets someone."},
        "a.ex": {"Plug.Conn.delete_resp_cookie": "Deletes a response cookie.\n\nMore text.", "Plug.Conn.run": "Runs it.",
                 "Plug.Conn.halted?": "Is it halted?", "Plug.Conn.Inner": ""},
        "Core.hs": {"XConf": "The (read-only) configuration.", "runX": "Run the 'X' monad,\ngiven an initial state.",
                    "catchX": ""},
        "clap.zig": {"Values": "Optional or required argument value.", "parse": "Parses the command line."}}

TRIVIAL = re.compile(r"[\s\])};,]*(end)?[\s\])};,]*")   # closing-only lines need no block


def source(name: str) -> str:
    return dedent(CASES[name][0]).lstrip("\n")


def assert_covered(text: str, blocks) -> None:
    """Every line with content is in a block, and each block's text is exactly its lines."""
    lines = text.split("\n")
    covered = set()
    for b in blocks:
        assert 1 <= b.start_line <= b.end_line <= len(lines)
        assert b.text == "\n".join(lines[b.start_line - 1:b.end_line])
        covered.update(range(b.start_line, b.end_line + 1))
    missing = [n for n, line in enumerate(lines, 1) if n not in covered and not TRIVIAL.fullmatch(line)]
    assert missing == []


def test_every_grammar_language_has_a_case():
    assert set(LANGUAGES.values()) == {
        "python", "javascript", "typescript", "tsx", "go", "rust", "java", "kotlin", "c", "cpp", "csharp", "ruby",
        "php", "swift", "scala", "lua", "bash", "elixir", "haskell", "zig"}


@pytest.mark.parametrize("name", CASES)
def test_code_blocks(name: str):
    text = source(name)
    blocks = extract(f"src/{name}", text)
    assert [(b.kind, b.name, b.start_line, b.end_line) for b in blocks] == CASES[name][1]
    assert {b.language for b in blocks} == {LANGUAGES[name]}
    assert {b.path for b in blocks} == {f"src/{name}"}
    docs: dict[str, str] = {}
    for b in blocks:
        docs.setdefault(b.name, b.doc)   # the first block of a name is its definition
    assert {n: docs[n] for n in DOCS.get(name, {})} == DOCS.get(name, {})
    assert_covered(text, blocks)


def test_crlf_and_unicode_keep_line_numbers():
    text = source("a.py").replace("import os", "import os  # ünïcödé ✓").replace("\n", "\r\n")
    blocks = extract("a.py", text)
    assert [(b.kind, b.name, b.start_line, b.end_line) for b in blocks] == CASES["a.py"][1]


def test_own_sources_are_fully_covered():
    kinds = set()
    for path in sorted((REPO / "hhg_mlx").glob("**/*.py")):
        text = path.read_text()
        blocks = extract(path.name, text)
        assert_covered(text, blocks)
        kinds.update(b.kind for b in blocks)
    assert kinds == {"module", "function", "class", "method"}


def test_markdown_sections():
    text = dedent("""\
        ---
        title: front matter
        ---
        Intro text.

        # Title

        Some text.

        ```python
        # not a heading
        ```

        Setext Heading
        --------------

        ## Sub ##
        text
        """)
    blocks = extract("docs/readme.md", text)
    assert [(b.kind, b.name, b.start_line, b.end_line) for b in blocks] == [
        ("section", "", 1, 4), ("section", "Title", 6, 12), ("section", "Setext Heading", 14, 15),
        ("section", "Sub", 17, 18)]
    assert {b.language for b in blocks} == {"markdown"}
    assert_covered(text, blocks)


def test_rst_sections_also_in_txt_files():
    text = dedent("""\
        =====
        Title
        =====

        Intro.

        Section One
        -----------

        Text.
        """)
    expected = [("section", "Title", 1, 5), ("section", "Section One", 7, 10)]
    for path, language in (("index.rst", "rst"), ("howto.txt", "text")):
        blocks = extract(path, text)
        assert [(b.kind, b.name, b.start_line, b.end_line) for b in blocks] == expected
        assert {b.language for b in blocks} == {language}


def test_text_chunks_end_at_blank_lines_and_cover_everything():
    assert CHUNK_LINES == 60
    lines = [f"line {n}" for n in range(1, 131)]
    lines[49] = lines[99] = ""            # lines 50 and 100 are blank
    text = "\n".join(lines) + "\n"
    blocks = extract("notes.cfg", text)
    assert [(b.kind, b.start_line, b.end_line) for b in blocks] == [("chunk", 1, 49), ("chunk", 51, 99),
                                                                    ("chunk", 101, 130)]
    assert {b.language for b in blocks} == {"ini"}
    dense = "\n".join(f"x{n}" for n in range(130))
    assert [(b.start_line, b.end_line) for b in extract("data.yaml", dense)] == [(1, 60), (61, 120), (121, 130)]


@pytest.mark.parametrize("name,language", [("main.dart", "dart"), ("lib.ml", "ocaml"), ("app.erl", "erlang"),
                                           ("Main.lhs", "literate-haskell"), ("README", "text")])
def test_languages_without_grammar_are_line_chunks(name: str, language: str):
    text = "\n".join(f"line {n}" for n in range(70))
    blocks = extract(name, text)
    assert [(b.kind, b.language, b.start_line, b.end_line) for b in blocks] == [
        ("chunk", language, 1, 60), ("chunk", language, 61, 70)]
    assert language in CODE_LANGUAGES or language == "text"


def test_shebang_picks_the_grammar():
    text = "#!/usr/bin/env python3\ndef main():\n    pass\n"
    blocks = extract("bin/tool", text)
    assert [(b.language, b.kind, b.name, b.start_line, b.end_line) for b in blocks] == [
        ("python", "module", "", 1, 1), ("python", "function", "main", 2, 3)]


def test_headers_with_cpp_syntax_parse_as_cpp():
    header = "#pragma once\nnamespace geo {\nclass Shape {\npublic:\n    void print() {\n    }\n};\n}\n"
    assert [(b.language, b.kind, b.name, b.start_line, b.end_line) for b in extract("inc/shape.h", header)] == [
        ("cpp", "module", "", 1, 2), ("cpp", "class", "Shape", 3, 4), ("cpp", "method", "Shape.print", 5, 6)]
    plain = "struct point {\n    int x;\n};\nint area(void);\n"
    assert [(b.language, b.kind, b.name) for b in extract("inc/point.h", plain)] == [
        ("c", "class", "point"), ("c", "module", "")]


def test_empty_and_blank_files_have_no_blocks():
    assert extract("a.py", "") == []
    assert extract("a.md", "\n\n  \n") == []


def test_grammars_load_lazily():
    code = ("import sys\n"
            "from hhg_mlx.index import languages, walk\n"
            "assert 'tree_sitter' not in sys.modules\n"
            "from hhg_mlx.index.extract import extract\n"
            "extract('a.py', 'def f():\\n    pass\\n')\n"
            "print(sorted(m for m in sys.modules if m.startswith('tree_sitter_') and '.' not in m))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["['tree_sitter_python']"]


# --- languages ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path,language", [
    ("a.py", "python"), ("x/y.mjs", "javascript"), ("c.jsx", "javascript"), ("d.ts", "typescript"),
    ("e.TSX", "tsx"), ("f.h", "c"), ("g.hpp", "cpp"), ("h.cs", "csharp"), ("run.sh", "bash"), ("Makefile", "make"),
    ("Dockerfile", "dockerfile"), ("conf.yml", "yaml"), ("README", "text"), ("a.exs", "elixir"), ("x.md", "markdown"),
    ("logo.png", None), ("yarn.lock", None), ("app.min.js", None), ("messages.po", None)])
def test_language_for(path: str, language: str | None):
    assert language_for(path) == language


@pytest.mark.parametrize("language,path,spec,expected", [
    ("python", "a.py", "py", True), ("python", "a.py", "python", True), ("python", "a.py", "go,py", True),
    ("tsx", "a.tsx", "ts", True), ("typescript", "a.ts", "tsx", False), ("rust", "a.rs", "rs", True),
    ("c", "a.h", "cpp", False), ("c", "a.h", "h", True), ("markdown", "a.md", "md", True),
    ("go", "a.go", "py", False), ("javascript", "a.jsx", "js", True), ("bash", "a.sh", "shell", True),
    ("literate-haskell", "A.lhs", "haskell", True), ("literate-haskell", "A.lhs", "hs", True),
    ("haskell", "A.hs", "lhs", False)])
def test_matches_type(language: str, path: str, spec: str, expected: bool):
    assert matches_type(language, path, spec) is expected


def test_code_languages_exclude_docs_and_config():
    assert {"python", "go", "rust", "tsx", "elixir", "haskell", "zig", "bash"} <= CODE_LANGUAGES
    assert not {"markdown", "rst", "text", "json", "yaml", "toml", "html", "css"} & CODE_LANGUAGES


# --- reading ------------------------------------------------------------------------------------------------------

def test_read_source_text_and_encodings(tmp_path: Path):
    cases = {
        "crlf.py": (b"a = 1\r\nb = 2\r\n", "a = 1\nb = 2\n"),
        "bom.py": (b"\xef\xbb\xbfx = '\xc3\xa9'\n", "x = '\u00e9'\n"),
        "latin.py": (b"# caf\xe9 \x93quoted\x94\rx = 1\n", "# caf\u00e9 \u201cquoted\u201d\nx = 1\n"),
        "wide.txt": ("h\u00e9llo\n".encode("utf-16"), "h\u00e9llo\n"),
    }
    for name, (data, text) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert read_source(tmp_path / name) == (text, None), name
        assert decode_source(data, name) == (text, None), name


@pytest.mark.parametrize("name,data,reason", [
    ("nul.py", b"x = 1\n\0\0\0", "binary"),
    ("noise.txt", bytes(range(128, 256)) * 4, "encoding"),
    ("bundle.js", b"var a=1;" * 1000, "minified"),
    ("gen.go", b"// Code generated by protoc-gen-go. DO NOT EDIT.\npackage x\n", "generated"),
    ("gen.rs", b"// @generated by build.rs\nfn f() {}\n", "generated"),
    ("gen.py", b"# -*- coding: utf-8 -*-\n# This file was automatically generated\nx = 1\n", "generated"),
    ("big.py", b"x = 1\n" * 100_000, "too-large"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 20 else "")
def test_read_source_skip_reasons(tmp_path: Path, name: str, data: bytes, reason: str):
    (tmp_path / name).write_bytes(data)
    assert read_source(tmp_path / name, max_bytes=500_000) == (None, reason)


def test_read_source_keeps_ordinary_files(tmp_path: Path):
    """Long prose lines and the word "generated" in a normal docstring are not skip signals."""
    (tmp_path / "notes.md").write_text(("word " * 120 + "\n\n") * 20)
    (tmp_path / "models.py").write_text('"""A table is generated for this model."""\n# Generated by Django 5.0\n')
    for name in ("notes.md", "models.py"):
        text, reason = read_source(tmp_path / name)
        assert reason is None and text == (tmp_path / name).read_text()


def test_read_source_unreadable(tmp_path: Path):
    assert read_source(tmp_path / "missing.py") == (None, "unreadable")
    assert read_source(tmp_path) == (None, "unreadable")
