"""C and C++: which files of a repository each file includes.

Finding directives: a preprocessor line is what the C preprocessor sees after comments and
literals, which tree-sitter cannot always place in its tree (`#include "ops.def"` inside an
array initializer or a class body is a common X-macro idiom it drops or buries in an ERROR node).
So candidate lines come from the text, and tree-sitter decides which of them sit inside a
comment or a string literal (raw strings included) and do not count. A file where no comment,
raw string or line continuation can span lines is not parsed at all: there, every line starting
with `#` is a directive. Both languages are read with the C++ grammar: `.h` files are C++ as
often as C, the C++ grammar reads C's comments and literals the same way, and the C grammar's
error recovery on C++ headers is several times slower.

`#include "x/y.h"` is looked up, first match wins:
1. relative to the including file's directory (`..` allowed, never above the repository);
2. from the repository root;
3. in include folders: every directory named `include`, shallowest first;
4. anywhere in the repository, as the path suffix `.../x/y.h`: this stands in for the `-I`
   folders a build system would pass (a header is found in whatever folder makes the written
   path resolve); among several, the one nearest to the including file.
`#include <x/y.h>` is looked up only in the include folders and from the root (step 3, then 2),
since angle brackets usually mean a system or third-party header. Headers of either language
may be included by files of both. Macro includes (`#include HEADER`) need a preprocessor and are
skipped.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import tree_sitter

from dscoder.data.deps.paths import closest, parent_dirs
from dscoder.data.deps.syntax import parse

_DIRECTIVE = re.compile(rb'^[ \t]*#[ \t]*include[ \t]*(?:"([^"\n]*)"|<([^>\n]*)>)', re.MULTILINE)
# Only these let a line that starts with `#` belong to a comment or literal begun earlier.
_MULTILINE_MARKERS = (b"/*", b'R"', b"\\\n", b"\\\r\n")
_NOT_CODE = frozenset(
    {"comment", "string_literal", "raw_string_literal", "char_literal", "concatenated_string"}
)


@dataclass(frozen=True)
class Include:
    path: str  # as written between the quotes or brackets
    quoted: bool  # "..." rather than <...>


def _in_comment_or_literal(root: tree_sitter.Node, offset: int) -> bool:
    node = root.descendant_for_byte_range(offset, offset + 1)
    while node is not None:
        if node.type in _NOT_CODE:
            return True
        node = node.parent
    return False


def includes(text: str) -> list[Include]:
    """Every `#include "..."` and `#include <...>` of a C or C++ file, in file order."""
    source = text.encode("utf-8", "replace")
    matches = list(_DIRECTIVE.finditer(source))
    if matches and any(marker in source for marker in _MULTILINE_MARKERS):
        root = parse("C++", text)
        matches = [
            m for m in matches if not _in_comment_or_literal(root, m.start() + m[0].index(b"#"))
        ]
    return [
        Include(m[1].decode("utf-8", "replace"), quoted=True)
        if m[1] is not None
        else Include(m[2].decode("utf-8", "replace").strip(), quoted=False)
        for m in matches
    ]


def _normalized(path: str) -> str | None:
    """The path without `.` and `..` parts, or None when it climbs above the repository."""
    normal = posixpath.normpath(path)
    if normal == ".." or normal.startswith("../") or normal.startswith("/"):
        return None
    return normal


class IncludeResolver:
    """Where an include leads among one repository's C and C++ files."""

    def __init__(self, paths: Iterable[str]):
        self._paths = frozenset(paths)
        directories = {d for path in self._paths for d in parent_dirs(path)}
        self.include_dirs = sorted(
            (d for d in directories if posixpath.basename(d) == "include"),
            key=lambda d: (d.count("/"), d),
        )
        self._by_basename: dict[str, list[str]] = {}
        for path in self._paths:
            self._by_basename.setdefault(posixpath.basename(path), []).append(path)

    def _existing(self, path: str) -> str | None:
        normal = _normalized(path)
        return normal if normal in self._paths else None

    def _by_suffix(self, includer: str, written: str) -> str | None:
        normal = _normalized(written)
        if normal is None:
            return None
        suffix = "/" + normal
        matches = [
            p for p in self._by_basename.get(posixpath.basename(normal), []) if p.endswith(suffix)
        ]
        return closest(matches, includer) if matches else None

    def _in_include_dirs(self, written: str) -> str | None:
        for directory in self.include_dirs:
            found = self._existing(posixpath.join(directory, written))
            if found:
                return found
        return None

    def resolve(self, includer: str, include: Include) -> str | None:
        """The file `include`, written in file `includer`, leads to; None when not in the repo."""
        written = include.path
        if not include.quoted:
            return self._in_include_dirs(written) or self._existing(written)
        return (
            self._existing(posixpath.join(posixpath.dirname(includer), written))
            or self._existing(written)
            or self._in_include_dirs(written)
            or self._by_suffix(includer, written)
        )


def c_family_dependencies(files: Mapping[str, str]) -> dict[str, set[str]]:
    """For each C or C++ file (path -> text), the other files of `files` it includes."""
    resolver = IncludeResolver(files)
    dependencies = {}
    for path, text in files.items():
        targets = {resolver.resolve(path, include) for include in includes(text)}
        targets.discard(None)
        targets.discard(path)
        dependencies[path] = targets
    return dependencies
