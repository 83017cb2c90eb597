"""Python: which files of a repository each Python file imports.

References are read with tree-sitter-python, so imports inside functions, `if TYPE_CHECKING:`
blocks and `try:` blocks count, text that only looks like an import (in a string or a comment)
does not, and Python 2 files parse too.

Resolution rules, in the order Python itself would search:
- Relative imports (`from . import x`, `from ..pkg import y`) resolve against the importing
  file's package directory and never leave the repository.
- Absolute imports resolve against *roots*: the importing file's own directory when it is not a
  package (Python puts a script's directory first on `sys.path`), then the repository root, the
  parent directory of every top-level regular package (a directory with `__init__.py` whose
  parent has none, which covers `src/` layouts and vendored trees) and every directory named
  `src`. Among roots that hold the imported top-level name, those above the importing file win,
  nearest first; then the shallowest.
- A name resolves to `name.py` or `name/__init__.py` (or the `.pyi` stub when only that exists).
  `import a.b.c` depends on the deepest of `a.b.c`, `a.b`, `a` that exists; `from a.b import c`
  depends on the module `a.b.c` when there is one, else on `a.b` (then `c` is a name in it).
  Parent packages' `__init__.py` files are not added: they usually import their submodules, so
  adding them would turn most packages into one cycle.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import tree_sitter

from dscoder.data.deps.paths import parent_dirs
from dscoder.data.deps.syntax import captures, name_text, parse

_IMPORT_QUERY = "(import_statement) @import (import_from_statement) @import"
_MODULE_SUFFIXES = (".py", "/__init__.py", ".pyi", "/__init__.pyi")


@dataclass(frozen=True)
class PythonImport:
    """One imported module: `from {'.' * level}{module} import {names}` or `import {module}`."""

    module: str
    level: int = 0
    names: tuple[str, ...] = ()  # empty for `import module` and `from module import *`


def _imported_name(node: tree_sitter.Node) -> str:
    # `import a.b as c` and `from m import a as c` wrap the dotted name in an aliased_import.
    if node.type == "aliased_import":
        node = node.child_by_field_name("name")
    return name_text(node)


def _from_import(node: tree_sitter.Node) -> PythonImport:
    module_node = node.child_by_field_name("module_name")
    level, module = 0, ""
    if module_node.type == "relative_import":
        for part in module_node.named_children:
            if part.type == "import_prefix":
                level = name_text(part).count(".")
            else:
                module = name_text(part)
    else:
        module = name_text(module_node)
    names = tuple(
        filter(None, (_imported_name(name) for name in node.children_by_field_name("name")))
    )
    return PythonImport(module, level, names)


def python_imports(text: str) -> list[PythonImport]:
    """Every import statement of a Python file, in no particular order."""
    if "import" not in text:
        return []
    found = captures("Python", _IMPORT_QUERY, parse("Python", text)).get("import", [])
    imports: list[PythonImport] = []
    for node in found:
        if node.type == "import_from_statement":
            imports.append(_from_import(node))
        else:
            imports.extend(
                PythonImport(_imported_name(name)) for name in node.children_by_field_name("name")
            )
    # Error recovery can leave a statement without its module (`import ;`): it names nothing.
    return [i for i in imports if i.module or i.level]


class PythonModules:
    """Where module names lead among one repository's Python files."""

    def __init__(self, paths: Iterable[str]):
        self._paths = frozenset(paths)
        self._directories = {d for path in self._paths for d in parent_dirs(path)}
        roots = {""} | {d for d in self._directories if posixpath.basename(d) == "src"}
        for path in self._paths:
            if posixpath.basename(path) in ("__init__.py", "__init__.pyi"):
                package = posixpath.dirname(path)
                parent = posixpath.dirname(package)
                if package and not self._is_package(parent):
                    roots.add(parent)
        # Which roots hold each top-level name, so a lookup never scans every root.
        self._roots_by_top_name: dict[str, set[str]] = {}
        for path in self._paths:
            for root in parent_dirs(path):
                if root in roots:
                    relative = path[len(root) + 1 :] if root else path
                    top = relative.split("/", 1)[0].removesuffix(".pyi").removesuffix(".py")
                    self._roots_by_top_name.setdefault(top, set()).add(root)

    def _is_package(self, directory: str) -> bool:
        return bool(directory) and (
            f"{directory}/__init__.py" in self._paths or f"{directory}/__init__.pyi" in self._paths
        )

    def _module_file(self, directory: str, parts: list[str]) -> str | None:
        base = posixpath.join(directory, *parts)
        for suffix in _MODULE_SUFFIXES:
            # An empty `parts` names the package `directory` itself, never `directory.py`.
            if parts or suffix.startswith("/"):
                candidate = base + suffix if base else suffix[1:]
                if candidate in self._paths:
                    return candidate
        return None

    def _deepest_module(self, directory: str, parts: list[str]) -> str | None:
        # Only `from . import x` names the package directory itself (its `__init__.py`).
        for length in range(len(parts), 0, -1) if parts else (0,):
            found = self._module_file(directory, parts[:length])
            if found:
                return found
        return None

    def _root_for(self, importer: str, top: str) -> str | None:
        script_dir = posixpath.dirname(importer)
        if not self._is_package(script_dir) and (
            self._module_file(script_dir, [top])
            or posixpath.join(script_dir, top) in self._directories
        ):
            return script_dir
        roots = self._roots_by_top_name.get(top)
        if not roots:
            return None

        def preference(root: str) -> tuple[int, int, str]:
            depth = root.count("/") + 1 if root else 0
            if root == "" or importer.startswith(root + "/"):
                return (0, -depth, root)  # above the importer: the nearest first
            return (1, depth, root)

        return min(roots, key=preference)

    def resolve(self, importer: str, imported: PythonImport) -> set[str]:
        """The repository files that `imported`, written in file `importer`, leads to."""
        parts = imported.module.split(".") if imported.module else []
        if imported.level:
            directory = posixpath.dirname(importer)
            for _ in range(imported.level - 1):
                if not directory:
                    return set()  # climbs above the repository: not one of its files
                directory = posixpath.dirname(directory)
        else:
            directory = self._root_for(importer, parts[0])
            if directory is None:
                return set()
        targets = set()
        for name in imported.names:
            found = self._module_file(directory, [*parts, name])
            if found:
                targets.add(found)
        if len(targets) < len(imported.names) or not imported.names:
            # Some names are not modules (or it is `import m`): they come from the module itself.
            found = self._deepest_module(directory, parts)
            if found:
                targets.add(found)
        return targets


def python_dependencies(files: Mapping[str, str]) -> dict[str, set[str]]:
    """For each Python file (path -> text), the other files of `files` it imports."""
    modules = PythonModules(files)
    dependencies = {}
    for path, text in files.items():
        targets = set()
        for imported in python_imports(text):
            targets |= modules.resolve(path, imported)
        targets.discard(path)
        dependencies[path] = targets
    return dependencies
