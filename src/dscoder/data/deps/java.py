"""Java: which files of a repository each Java file refers to.

Types are indexed by their package declaration (not by their path, which need not follow the
package) and by name: the file's own name (a public class must match it) plus every top-level
type it declares. References:
- `import a.b.C;` leads to the file declaring type `C` in package `a.b`; nested and static
  imports (`import a.b.C.Inner;`, `import static a.b.C.f;`) fall back to the outermost type
  that exists.
- `import a.b.*;` leads to every file of package `a.b` (or, when `a.b` is a type, to it).
- A simple type name used without import (`Helper x`, `Helper.run()`, `@Helper`) leads to the
  file declaring it in the same package, since Java needs no import there.
When two files declare the same type (separate modules of one repository), the one sharing the
longest directory prefix with the referring file is taken.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

import tree_sitter

from dscoder.data.deps.paths import closest
from dscoder.data.deps.syntax import captures, name_text, parse

_TYPE_DECLARATIONS = frozenset(
    {
        "class_declaration",
        "interface_declaration",
        "enum_declaration",
        "record_declaration",
        "annotation_type_declaration",
    }
)
# Places where a simple name is used as a type: declarations, `new`, casts, generics, and the
# qualifier of a static call or field access.
_TYPE_USE_QUERY = """
(type_identifier) @name
(method_invocation object: (identifier) @name)
(field_access object: (identifier) @name)
(marker_annotation name: (identifier) @name)
(annotation name: (identifier) @name)
"""


@dataclass(frozen=True)
class JavaImport:
    name: str  # dotted, without the trailing `.*`
    wildcard: bool


@dataclass(frozen=True)
class JavaFile:
    """What one Java file declares and refers to."""

    package: str
    types: frozenset[str]
    imports: tuple[JavaImport, ...]
    used_names: frozenset[str]


def _dotted_name(declaration: tree_sitter.Node) -> tree_sitter.Node | None:
    # None only where error recovery left a declaration without its name.
    return next(
        (c for c in declaration.named_children if c.type in ("scoped_identifier", "identifier")),
        None,
    )


def read_java_file(path: str, text: str) -> JavaFile:
    root = parse("Java", text)
    package = ""
    types = {posixpath.splitext(posixpath.basename(path))[0]}
    imports = []
    for node in root.named_children:
        if node.type == "package_declaration":
            name = _dotted_name(node)
            package = name_text(name) if name else ""
        elif node.type == "import_declaration":
            name = _dotted_name(node)
            if name:
                wildcard = any(c.type == "asterisk" for c in node.children)
                imports.append(JavaImport(name_text(name), wildcard))
        elif node.type in _TYPE_DECLARATIONS:
            declared = node.child_by_field_name("name")
            if declared is not None:
                types.add(name_text(declared))
    used = captures("Java", _TYPE_USE_QUERY, root).get("name", [])
    return JavaFile(
        package, frozenset(types), tuple(imports), frozenset(name_text(n) for n in used)
    )


class JavaTypes:
    """Which files declare each package and each (package, type)."""

    def __init__(self, files: Mapping[str, JavaFile]):
        self.by_package: dict[str, list[str]] = {}
        self.by_type: dict[tuple[str, str], list[str]] = {}
        for path, java in files.items():
            self.by_package.setdefault(java.package, []).append(path)
            for type_name in java.types:
                self.by_type.setdefault((java.package, type_name), []).append(path)

    def declaring_file(self, referrer: str, package: str, type_name: str) -> str | None:
        paths = self.by_type.get((package, type_name))
        return closest(paths, referrer) if paths else None

    def resolve_import(self, referrer: str, imported: JavaImport) -> set[str]:
        if imported.wildcard and imported.name in self.by_package:
            return set(self.by_package[imported.name])
        parts = imported.name.split(".")
        # The outermost existing type wins: `a.b.C.Inner` and `a.b.C.staticMember` lead to C.
        for split in range(1, len(parts)):
            found = self.declaring_file(referrer, ".".join(parts[:split]), parts[split])
            if found:
                return {found}
        return set()


def java_dependencies(files: Mapping[str, str]) -> dict[str, set[str]]:
    """For each Java file (path -> text), the other files of `files` it refers to."""
    parsed = {path: read_java_file(path, text) for path, text in files.items()}
    types = JavaTypes(parsed)
    dependencies = {}
    for path, java in parsed.items():
        targets = set()
        for imported in java.imports:
            targets |= types.resolve_import(path, imported)
        for name in java.used_names:
            found = types.declaring_file(path, java.package, name)
            if found:
                targets.add(found)
        targets.discard(path)
        dependencies[path] = targets
    return dependencies
