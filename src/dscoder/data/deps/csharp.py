"""C#: which files of a repository each C# file refers to.

Namespaces are read from their declarations, block (`namespace A.B { ... }`, nested ones
joined) or file-scoped (`namespace A.B;`), never from paths. References:
- `using A.B;` (also `global using`) leads to every file declaring namespace `A.B`; a using
  directive inside `namespace N` may also name `N.A.B`, which is tried first, as C# does.
- `using static A.B.T;` and aliases `using X = A.B.T;` lead to the files declaring type `T` in
  namespace `A.B` (several files when it is a `partial` type), or to namespace `A.B.T` when that
  is one.
- A simple name used in a file (an identifier anywhere in code, never in comments or strings)
  that is a type declared in the file's namespace or an enclosing one leads to the files
  declaring it, since C# needs no `using` there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import tree_sitter

from dscoder.data.deps.syntax import captures, name_text, parse

_TYPE_DECLARATIONS = frozenset(
    {
        "class_declaration",
        "struct_declaration",
        "interface_declaration",
        "enum_declaration",
        "record_declaration",
        "record_struct_declaration",
        "delegate_declaration",
    }
)
_NAME_TARGETS = frozenset({"qualified_name", "identifier"})
_IDENTIFIER_QUERY = "(identifier) @name"


@dataclass(frozen=True)
class CSharpUsing:
    name: str  # dotted, as written
    namespace: str  # the namespace the directive sits in ("" at file level)


@dataclass(frozen=True)
class CSharpFile:
    """What one C# file declares and refers to."""

    namespaces: frozenset[str]
    types: frozenset[tuple[str, str]]  # (namespace, type name)
    usings: tuple[CSharpUsing, ...]
    used_names: frozenset[str]


def _join(namespace: str, name: str) -> str:
    return f"{namespace}.{name}" if namespace and name else namespace or name


def _declared_name(declaration: tree_sitter.Node) -> str:
    # Error recovery may drop the name; "" then stands for "no usable name".
    name = declaration.child_by_field_name("name")
    return name_text(name) if name is not None else ""


def _using_target(directive: tree_sitter.Node) -> str | None:
    alias = directive.child_by_field_name("name")
    for child in directive.named_children:
        if child.type in _NAME_TARGETS and child != alias:
            # `global::A.B` is `A.B` spelled from the root namespace.
            return name_text(child).removeprefix("global::")
    return None  # generic aliases (`using L = List<int>;`) name constructed types


class _Declarations:
    """Walks namespace and type declarations, never descending into type bodies."""

    def __init__(self) -> None:
        self.namespaces: set[str] = set()
        self.types: set[tuple[str, str]] = set()
        self.usings: list[CSharpUsing] = []

    def visit(self, container: tree_sitter.Node, namespace: str) -> None:
        for node in container.named_children:
            kind = node.type
            if kind == "using_directive":
                target = _using_target(node)
                if target:
                    self.usings.append(CSharpUsing(target, namespace))
            elif kind == "namespace_declaration":
                inner = _join(namespace, _declared_name(node))
                self.namespaces.add(inner)
                body = node.child_by_field_name("body")
                if body is not None:
                    self.visit(body, inner)
            elif kind == "file_scoped_namespace_declaration":
                # What follows belongs to it, whether the grammar nests it or lists it after.
                namespace = _join(namespace, _declared_name(node))
                self.namespaces.add(namespace)
                self.visit(node, namespace)
            elif kind in _TYPE_DECLARATIONS:
                self.types.add((namespace, _declared_name(node)))
            elif kind.startswith("preproc_"):
                self.visit(node, namespace)  # usings and types inside `#if` blocks still count


def read_csharp_file(text: str) -> CSharpFile:
    root = parse("C#", text)
    declarations = _Declarations()
    declarations.visit(root, "")
    used = captures("C#", _IDENTIFIER_QUERY, root).get("name", [])
    return CSharpFile(
        frozenset(declarations.namespaces),
        frozenset(declarations.types),
        tuple(declarations.usings),
        frozenset(name_text(n) for n in used),
    )


def _enclosing(namespace: str) -> list[str]:
    """`A.B` -> [`A.B`, `A`, ``]: the namespaces whose members code in `namespace` sees."""
    chain = [namespace]
    while namespace:
        namespace = namespace.rpartition(".")[0]
        chain.append(namespace)
    return chain


class CSharpNamespaces:
    """Which files declare each namespace and each (namespace, type)."""

    def __init__(self, files: Mapping[str, CSharpFile]):
        self.by_namespace: dict[str, set[str]] = {}
        self.by_type: dict[tuple[str, str], set[str]] = {}
        self.type_names_by_namespace: dict[str, set[str]] = {}
        for path, csharp in files.items():
            for namespace in csharp.namespaces:
                self.by_namespace.setdefault(namespace, set()).add(path)
            for namespace, name in csharp.types:
                self.by_type.setdefault((namespace, name), set()).add(path)
                self.type_names_by_namespace.setdefault(namespace, set()).add(name)

    def resolve_name(self, name: str) -> set[str]:
        if name in self.by_namespace:
            return self.by_namespace[name]
        namespace, _, type_name = name.rpartition(".")
        return self.by_type.get((namespace, type_name), set())

    def resolve_using(self, using: CSharpUsing) -> set[str]:
        for namespace in _enclosing(using.namespace):
            found = self.resolve_name(_join(namespace, using.name))
            if found:
                return found
        return set()

    def resolve_used_names(self, csharp: CSharpFile) -> set[str]:
        found: set[str] = set()
        visible = {
            outer for namespace in csharp.namespaces or {""} for outer in _enclosing(namespace)
        }
        for namespace in visible:
            for name in self.type_names_by_namespace.get(namespace, set()) & csharp.used_names:
                found |= self.by_type[(namespace, name)]
        return found


def csharp_dependencies(files: Mapping[str, str]) -> dict[str, set[str]]:
    """For each C# file (path -> text), the other files of `files` it refers to."""
    parsed = {path: read_csharp_file(text) for path, text in files.items()}
    namespaces = CSharpNamespaces(parsed)
    dependencies = {}
    for path, csharp in parsed.items():
        targets = namespaces.resolve_used_names(csharp)
        for using in csharp.usings:
            targets |= namespaces.resolve_using(using)
        targets.discard(path)
        dependencies[path] = targets
    return dependencies
