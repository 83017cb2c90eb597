"""Repository dependency parsing and ordering (SPEC 1.2).

`file_dependencies` finds, for each Python, Java, C#, C and C++ file of one repository, the other
files of that repository it imports, includes or uses; `order_components` splits that graph into
weakly connected components and orders each so that dependencies come first. Each component
becomes one training sample, and repository-level completion builds its prompt the same way.
Each language's references and resolution rules are documented in its own module.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

from dscoder.data.deps.c_family import c_family_dependencies
from dscoder.data.deps.csharp import csharp_dependencies
from dscoder.data.deps.java import java_dependencies
from dscoder.data.deps.ordering import (
    order_components,
    transitive_dependencies,
    weakly_connected_components,
)
from dscoder.data.deps.python import python_dependencies
from dscoder.data.languages import DEPENDENCY_LANGUAGES
from dscoder.errors import UserError

__all__ = [
    "DEPENDENCY_LANGUAGES",
    "dependency_order",
    "file_dependencies",
    "order_components",
    "transitive_dependencies",
    "weakly_connected_components",
]


def _check_path(path: str) -> None:
    if path.startswith("/") or path.split("/")[0] == ".." or posixpath.normpath(path) != path:
        raise UserError(f"expected a normalized repository-relative POSIX path, got {path!r}")


def file_dependencies(files: Mapping[str, tuple[str, str]]) -> dict[str, set[str]]:
    """For each file of a dependency language, the other files of the repository it depends on.

    `files` maps every kept file of one repository (relative POSIX path) to (language, text).
    Files of other languages are ignored; references that lead outside the repository (standard
    library, third-party packages) are dropped. Every dependency-language file is a key.
    """
    # C and C++ form one family: a header of either language may be included by files of both.
    by_family: dict[str, dict[str, str]] = {"Python": {}, "Java": {}, "C#": {}, "C": {}}
    for path, (language, text) in files.items():
        if language in DEPENDENCY_LANGUAGES:
            _check_path(path)
            by_family["C" if language == "C++" else language][path] = text
    return {
        **python_dependencies(by_family["Python"]),
        **java_dependencies(by_family["Java"]),
        **csharp_dependencies(by_family["C#"]),
        **c_family_dependencies(by_family["C"]),
    }


def dependency_order(files: Mapping[str, tuple[str, str]], seed: int) -> list[list[str]]:
    """The repository's dependency-language files, one list per component, dependencies first."""
    return order_components(file_dependencies(files), seed)
