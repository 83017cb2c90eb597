"""Repository-level completion context: the files the current file depends on, then the file.

The prompt has the layout of the data pipeline's repository-level training samples
(`dscoder.data.steps.build_samples`): files in smallest-in-degree dependency order, each headed
by a one-line comment with its repository-relative path when the sample holds more than one
file, each ending in a line break; the file being written comes last and is left open, so the
model continues it. Dependencies come from `dscoder.data.deps`, the parser the pipeline uses.

To fit a token budget, the least related files go first: those furthest from the current file
in the dependency graph (an import of an import before a direct import), and among equals the
one placed furthest from the end of the prompt. If the current file alone is too long, its
beginning is cut at a line boundary, since the end is where the model writes.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dscoder.data.deps import DEPENDENCY_LANGUAGES, file_dependencies, order_components
from dscoder.data.languages import Language, detect_language, path_comment
from dscoder.data.sources import RepoRef, read_repository
from dscoder.errors import UserError
from dscoder.tokenizer import Tokenizer

# C and C++ include each other's headers; every other language resolves only its own files.
_C_FAMILY = frozenset({"C", "C++"})


@dataclass(frozen=True)
class RepoContext:
    text: str  # the prompt text (BOS not included)
    files: list[str]  # repository-relative paths in prompt order, the current file last
    dropped: list[str]  # related files left out to fit the budget, least related first
    truncated: bool  # the current file's beginning was cut to fit


@dataclass(frozen=True)
class _File:
    path: str
    language: Language | None
    text: str


def build_repo_context(
    repo: str | os.PathLike[str],
    current_file: str | os.PathLike[str],
    tokenizer: Tokenizer,
    max_tokens: int,
    current_text: str | None = None,
    seed: int = 0,
    max_file_bytes: int = 1 << 20,
) -> RepoContext:
    """Context for completing `current_file` (a path inside the `repo` folder, or relative to
    it) within `max_tokens` prompt tokens, BOS included.

    `current_text` replaces the file's content on disk, e.g. an editor's unsaved text up to
    the cursor; the file then need not exist yet.
    """
    if max_tokens < 2:
        raise UserError(f"the context budget must be at least 2 tokens, got {max_tokens}")
    root = Path(repo)
    if not root.is_dir():
        raise UserError(f"{root} is not a directory")
    current_path = _relative_path(root, Path(current_file))
    if current_text is None:
        current_text = _read_text(root / current_path)
    current = _File(current_path, detect_language(current_path), current_text)
    related = _related_files(root, current, seed, max_file_bytes)
    return _fit(tokenizer, related, current, max_tokens)


def _relative_path(root: Path, file: Path) -> str:
    full = file if file.is_absolute() else root / file
    try:
        relative = full.resolve().relative_to(root.resolve())
    except ValueError:
        raise UserError(f"{file} is not inside the repository {root}") from None
    return relative.as_posix()


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {path} as UTF-8 text: {error}") from None


def _same_family(a: Language, b: Language) -> bool:
    return a.name == b.name or (a.name in _C_FAMILY and b.name in _C_FAMILY)


def _related_files(root: Path, current: _File, seed: int, max_file_bytes: int) -> list[tuple[_File, int]]:
    """The files `current` depends on, directly or not, in dependency order, each with its
    distance from `current` in the dependency graph (1 = imported directly)."""
    if current.language is None or current.language.name not in DEPENDENCY_LANGUAGES:
        return []
    files: dict[str, _File] = {}
    found, _ = read_repository(RepoRef(root.name, "dir", str(root)), max_file_bytes)
    for source in found:
        language = detect_language(source.path)
        if source.content is None or language is None or not _same_family(language, current.language):
            continue
        try:
            files[source.path] = _File(source.path, language, source.content.decode("utf-8"))
        except UnicodeDecodeError:
            continue  # the pipeline drops such files too
    files[current.path] = current
    graph = file_dependencies({p: (f.language.name, f.text) for p, f in files.items()})  # type: ignore[union-attr]
    distance = _distances(graph, current.path)
    subgraph = {p: graph.get(p, set()) & distance.keys() for p in distance}
    order = [p for component in order_components(subgraph, seed) for p in component]
    return [(files[p], distance[p]) for p in order if p != current.path]


def _distances(graph: Mapping[str, set[str]], start: str) -> dict[str, int]:
    """Breadth-first distance from `start` to every file it reaches through dependencies."""
    distance = {start: 0}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in sorted(graph.get(node, set())):
            if target not in distance:
                distance[target] = distance[node] + 1
                queue.append(target)
    return distance


def _piece(file: _File, is_current: bool) -> str:
    """One file of a multi-file sample: its path comment, its text, a closing line break."""
    comment = "" if file.language is None else path_comment(file.language, file.path) + "\n"
    ending = "" if is_current or file.text.endswith("\n") else "\n"
    return comment + file.text + ending


def _render(context: list[_File], current: _File) -> str:
    """The training-sample layout; a file alone is a single-file sample, without a comment."""
    if not context:
        return current.text
    return "".join(_piece(file, False) for file in context) + _piece(current, True)


def _count(tokenizer: Tokenizer, text: str) -> int:
    return 1 + len(tokenizer.encode(text))  # BOS


def _fit(tokenizer: Tokenizer, related: list[tuple[_File, int]], current: _File, max_tokens: int) -> RepoContext:
    # Least related first: greater distance, then earlier in the prompt.
    drop_order = sorted(range(len(related)), key=lambda i: (-related[i][1], i))
    kept = [file for file, _ in related]
    dropped: list[str] = []
    total = _count(tokenizer, _render(kept, current))
    for i in drop_order:
        if total <= max_tokens:
            break
        file = related[i][0]
        kept.remove(file)
        dropped.append(file.path)
        # Subtracting the file's own count is an estimate (tokens may merge across joins),
        # so an estimate that fits is confirmed by counting the whole text.
        total -= len(tokenizer.encode(_piece(file, False)))
        if total <= max_tokens:
            total = _count(tokenizer, _render(kept, current))
    text = _render(kept, current)
    truncated = _count(tokenizer, text) > max_tokens
    if truncated:
        # Nothing left to drop: cut the current file's beginning.
        text = _keep_tail(tokenizer, text, max_tokens)
    return RepoContext(text, [f.path for f in kept] + [current.path], dropped, truncated)


def _keep_tail(tokenizer: Tokenizer, text: str, max_tokens: int) -> str:
    """The longest tail of `text` that starts a line (or, failing that, anywhere) and fits."""
    ids = tokenizer.encode(text)
    budget = max_tokens - 1
    while budget > 0:
        tail = tokenizer.decode(ids[-budget:]).lstrip("\ufffd")
        newline = tail.find("\n")
        if 0 <= newline < len(tail) - 1:
            tail = tail[newline + 1:]
        excess = _count(tokenizer, tail) - max_tokens
        if excess <= 0:
            return tail
        budget -= excess
    return ""
