"""Tree-sitter parsers and queries for the dependency languages, built once per process.

Parser and Query objects are costly to build and cheap to reuse, so each is cached by language
(and query text). They are not shared across threads by tree-sitter's design; the data pipeline
runs one file at a time per process, which is what this cache assumes.
"""

from __future__ import annotations

from functools import cache

import tree_sitter
import tree_sitter_c
import tree_sitter_c_sharp
import tree_sitter_cpp
import tree_sitter_java
import tree_sitter_python

_GRAMMARS = {
    "Python": tree_sitter_python.language,
    "Java": tree_sitter_java.language,
    "C#": tree_sitter_c_sharp.language,
    "C": tree_sitter_c.language,
    "C++": tree_sitter_cpp.language,
}


@cache
def _grammar(language: str) -> tree_sitter.Language:
    return tree_sitter.Language(_GRAMMARS[language]())


@cache
def _parser(language: str) -> tree_sitter.Parser:
    return tree_sitter.Parser(_grammar(language))


@cache
def _query(language: str, source: str) -> tree_sitter.Query:
    return tree_sitter.Query(_grammar(language), source)


def parse(language: str, text: str) -> tree_sitter.Node:
    """The syntax tree's root; tree-sitter recovers from syntax errors, so this never fails."""
    # "replace" keeps going on lone surrogates, which a str read with surrogateescape may hold.
    return _parser(language).parse(text.encode("utf-8", "replace")).root_node


def captures(
    language: str, query: str, node: tree_sitter.Node
) -> dict[str, list[tree_sitter.Node]]:
    """Nodes under `node` matched by `query`, by capture name (missing names: no match)."""
    return tree_sitter.QueryCursor(_query(language, query)).captures(node)


def name_text(node: tree_sitter.Node) -> str:
    """A name node's text without whitespace (`a . b` is a legal spelling of `a.b`)."""
    return "".join(node.text.decode("utf-8", "replace").split())
