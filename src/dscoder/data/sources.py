"""Where repositories come from: folders, lists of paths or git URLs, tables of files, and the
Python installation that every machine has (the embedded default of `make demo`).

Planning (`plan_repositories`) only lists what exists; reading happens in the workers through
`read_repository`, which yields every file it saw with either its bytes or the reason it could
not be read, so the report's accounting closes.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dscoder.errors import UserError

TABLE_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".json")
SKIPPED_DIRS = {".git", ".hg", ".svn", "__pycache__"}


@dataclass(frozen=True)
class RepoRef:
    """One repository to read. `kind` is "dir" (a folder), "file" (a single-file repository,
    such as one module of the standard library), "git" (a URL to clone) or "table" (a Parquet or
    JSONL file of source files, possibly holding many repositories)."""

    name: str
    kind: str
    location: str
    size_hint: int = 0  # bytes on disk, for balancing work; 0 when unknown before reading


@dataclass(frozen=True)
class SourceFile:
    """A file as found: `content` is None when it could not be read, and `skip_reason` says why."""

    repo: str
    path: str  # repository-relative, POSIX separators
    content: bytes | None
    skip_reason: str | None = None


@dataclass(frozen=True)
class RepoFailure:
    """A repository that produced no files at all (a clone that failed, a missing path)."""

    repo: str
    reason: str
    detail: str


def is_git_url(text: str) -> bool:
    return "://" in text or (text.startswith("git@") and ":" in text)


def _dir_size(root: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS]
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _repo_name_for(path: Path) -> str:
    return path.resolve().name or str(path)


def plan_repositories(inputs: list[str], repos_under: list[str] = ()) -> list[RepoRef]:
    """Turn command-line inputs into repositories. Paths that do not exist are a user error."""
    refs: list[RepoRef] = []
    for folder in repos_under:
        root = Path(folder)
        if not root.is_dir():
            raise UserError(f"--repos-under {folder}: no such directory")
        for child in sorted(root.iterdir()):
            if child.is_dir() and not child.is_symlink() and child.name not in SKIPPED_DIRS:
                refs.append(RepoRef(child.name, "dir", str(child), _dir_size(child)))
    for item in inputs:
        if is_git_url(item):
            refs.append(RepoRef(_git_repo_name(item), "git", item))
            continue
        path = Path(item)
        if not path.exists():
            raise UserError(f"{item}: no such file or directory")
        if path.is_dir():
            refs.append(RepoRef(_repo_name_for(path), "dir", str(path), _dir_size(path)))
        elif item.endswith(TABLE_SUFFIXES):
            refs.append(RepoRef(path.name, "table", str(path), path.stat().st_size))
        else:
            refs.extend(_read_repo_list(path))
    if not refs:
        raise UserError("no input repositories: give folders, a list file, tables, or --repos-under")
    names = [ref.name for ref in refs if ref.kind != "table"]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UserError(f"two inputs share a repository name: {', '.join(duplicates[:5])}")
    return refs


def _git_repo_name(url: str) -> str:
    name = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return name[:-4] if name.endswith(".git") else name


def _read_repo_list(list_file: Path) -> list[RepoRef]:
    """A text file with one repository path or git URL per line; '#' starts a comment.
    Paths are relative to the list file's folder."""
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{list_file}: cannot read repository list ({error})") from None
    refs = []
    for line in lines:
        entry = line.split("#", 1)[0].strip() if not is_git_url(line.strip()) else line.strip()
        if not entry:
            continue
        if is_git_url(entry):
            refs.append(RepoRef(_git_repo_name(entry), "git", entry))
            continue
        path = Path(entry) if Path(entry).is_absolute() else list_file.parent / entry
        # A missing path inside a list is counted as a failed repository, not a fatal error:
        # one stale line in a list of thousands should not stop the run.
        size = _dir_size(path) if path.is_dir() else 0
        refs.append(RepoRef(_repo_name_for(path), "dir", str(path), size))
    return refs


def python_installation_repos() -> list[RepoRef]:
    """The embedded default corpus: the running interpreter's standard library and
    site-packages, each top-level package or module taken as one repository."""
    paths = sysconfig.get_paths()
    stdlib = Path(paths["stdlib"])
    site_dirs = []
    for key in ("purelib", "platlib"):
        candidate = Path(paths[key])
        if candidate.is_dir() and candidate not in site_dirs:
            site_dirs.append(candidate)
    refs: list[RepoRef] = []
    for label, root in [("stdlib", stdlib)] + [("site-packages", d) for d in site_dirs]:
        for child in sorted(root.iterdir()):
            name = child.name
            if name in SKIPPED_DIRS or name == "site-packages" or name.endswith((".dist-info", ".egg-info", ".pth")):
                continue
            if child.is_symlink():
                continue
            if child.is_dir():
                refs.append(RepoRef(f"{label}/{name}", "dir", str(child), _dir_size(child)))
            elif child.is_file() and name.endswith(".py"):
                refs.append(RepoRef(f"{label}/{name[:-3]}", "file", str(child), child.stat().st_size))
    return refs


def read_repository(ref: RepoRef, max_file_bytes: int) -> tuple[list[SourceFile], RepoFailure | None]:
    """Read one repository: every file seen, read or with its skip reason."""
    if ref.kind == "dir":
        if not Path(ref.location).is_dir():
            return [], RepoFailure(ref.name, "missing_path", f"{ref.location} is not a directory")
        return list(_walk_directory(ref.name, Path(ref.location), max_file_bytes)), None
    if ref.kind == "file":
        path = Path(ref.location)
        return [_read_one(ref.name, path, path.name, path.parent.resolve(), max_file_bytes)], None
    if ref.kind == "git":
        return _read_git(ref, max_file_bytes)
    raise ValueError(f"read_repository does not read {ref.kind} inputs")


def _read_git(ref: RepoRef, max_file_bytes: int) -> tuple[list[SourceFile], RepoFailure | None]:
    with tempfile.TemporaryDirectory(prefix="dscoder-clone-") as tmp:
        target = Path(tmp) / "repo"
        try:
            result = subprocess.run(
                ["git", "clone", "--quiet", "--depth", "1", ref.location, str(target)],
                capture_output=True, text=True, timeout=600,
                env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return [], RepoFailure(ref.name, "clone_failed", str(error))
        if result.returncode != 0:
            detail = (result.stderr.strip().splitlines() or ["git clone failed"])[-1]
            return [], RepoFailure(ref.name, "clone_failed", detail)
        return list(_walk_directory(ref.name, target, max_file_bytes)), None


def _walk_directory(repo: str, root: Path, max_file_bytes: int) -> Iterator[SourceFile]:
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        kept_dirs = []
        for name in dirnames:
            if name in SKIPPED_DIRS:
                continue
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                # Linked folders are never entered: they may leave the repository or loop.
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                yield SourceFile(repo, rel, None, "symlink_directory")
                continue
            kept_dirs.append(name)
        dirnames[:] = kept_dirs
        for name in sorted(filenames):
            full = Path(dirpath) / name
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            yield _read_one(repo, full, rel, real_root, max_file_bytes)


def _read_one(repo: str, full: Path, rel: str, real_root: Path, max_file_bytes: int) -> SourceFile:
    from dscoder.data.languages import detect_language

    try:
        info = os.lstat(full)
        if stat.S_ISLNK(info.st_mode):
            try:
                target = full.resolve(strict=True)
            except RuntimeError:
                return SourceFile(repo, rel, None, "symlink_loop")
            except OSError:
                return SourceFile(repo, rel, None, "symlink_broken")
            if not target.is_relative_to(real_root):
                return SourceFile(repo, rel, None, "symlink_outside_repo")
            info = os.stat(target)
            full = target
        if not stat.S_ISREG(info.st_mode):
            return SourceFile(repo, rel, None, "not_regular_file")
        # Decide by name before reading: most files of an installation are binaries and data
        # that no language claims, and reading them would cost more than everything else.
        if detect_language(rel) is None:
            return SourceFile(repo, rel, None, "unknown_language")
        if info.st_size > max_file_bytes:
            return SourceFile(repo, rel, None, "too_large")
        with open(full, "rb") as handle:
            content = handle.read(max_file_bytes + 1)
        if len(content) > max_file_bytes:
            return SourceFile(repo, rel, None, "too_large")
        return SourceFile(repo, rel, content)
    except PermissionError:
        return SourceFile(repo, rel, None, "unreadable")
    except OSError as error:
        if error.errno == 40:  # ELOOP raised by stat on a self-referencing link
            return SourceFile(repo, rel, None, "symlink_loop")
        return SourceFile(repo, rel, None, "unreadable")


def read_table(ref: RepoRef, max_file_bytes: int) -> tuple[dict[str, list[SourceFile]], int]:
    """Read a Parquet or JSONL table of files (columns repo, path, content). Returns the files
    grouped by repository and the number of rows that were not usable files."""
    rows, malformed = _table_rows(Path(ref.location))
    grouped: dict[str, list[SourceFile]] = {}
    for row in rows:
        repo, path, content = row.get("repo"), row.get("path"), row.get("content")
        if not isinstance(repo, str) or not isinstance(path, str) or not isinstance(content, (str, bytes)):
            malformed += 1
            continue
        from dscoder.data.languages import detect_language

        data = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
        if detect_language(path) is None:
            file = SourceFile(repo, path, None, "unknown_language")
        elif len(data) > max_file_bytes:
            file = SourceFile(repo, path, None, "too_large")
        else:
            file = SourceFile(repo, path, data)
        grouped.setdefault(repo, []).append(file)
    return grouped, malformed


def _table_rows(path: Path) -> tuple[list[dict], int]:
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as error:  # pyarrow raises several types for a damaged file
            raise UserError(f"{path}: not a readable Parquet file ({error})") from None
        missing = {"repo", "path", "content"} - set(table.column_names)
        if missing:
            raise UserError(f"{path}: Parquet table lacks column(s) {', '.join(sorted(missing))}")
        return table.select(["repo", "path", "content"]).to_pylist(), 0
    opener = gzip.open if path.name.endswith(".gz") else open
    rows, malformed = [], 0
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    malformed += 1
                    continue
                if isinstance(row, dict):
                    rows.append(row)
                else:
                    malformed += 1
    except (OSError, EOFError) as error:
        raise UserError(f"{path}: cannot read ({error})") from None
    return rows, malformed


def interpreter_description() -> str:
    return f"Python {sys.version.split()[0]} at {sys.prefix}"
