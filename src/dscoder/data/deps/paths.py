"""Choosing among repository files that a reference could mean."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable


def parent_dirs(path: str) -> list[str]:
    """Directories above `path`, deepest first, ending with the repository root ""."""
    parents = []
    while path:
        path = posixpath.dirname(path)
        parents.append(path)
    return parents


def shared_depth(a: str, b: str) -> int:
    """How many leading directories the paths `a` and `b` have in common."""
    depth = 0
    for x, y in zip(posixpath.dirname(a).split("/"), posixpath.dirname(b).split("/"), strict=False):
        if x != y or not x:
            break
        depth += 1
    return depth


def closest(candidates: Iterable[str], referrer: str) -> str:
    """The candidate nearest to `referrer` in the directory tree; ties go to the smaller path."""
    return min(candidates, key=lambda path: (-shared_depth(path, referrer), path))
