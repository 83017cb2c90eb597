"""The per-repository work of the pipeline: read every file, screen it, order what is left by
its dependencies, and turn it into samples ready for deduplication.

One call of `process_task` handles a few repositories and returns a `TaskResult`; it runs in a
worker process (local or Ray) and touches no shared state, so results do not depend on which
executor ran it or in what order tasks finished.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import xxhash

from dscoder.data.dedup import DedupConfig, MinHasher, content_hash
from dscoder.data.deps import dependency_order
from dscoder.data.filters import rule_filter
from dscoder.data.languages import DEPENDENCY_LANGUAGES, Language, detect_language, path_comment
from dscoder.data.quality import quality_check
from dscoder.data.sources import RepoFailure, RepoRef, SourceFile, read_repository, read_table

# Fault injection for the resume tests: seconds each task sleeps before returning.
_TASK_DELAY_ENV = "DSCODER_TEST_TASK_DELAY_S"


@dataclass(frozen=True)
class PipelineConfig:
    seed: int = 0
    max_file_bytes: int = 1 << 20  # larger files are dropped unread ("too_large")
    decontaminate: str | None = None  # folder of benchmark files
    quality: bool = True
    dedup: DedupConfig = field(default_factory=DedupConfig)
    shard_bytes: int = 128 << 20  # text bytes per output Parquet shard
    task_bytes: int = 8 << 20  # small repositories are grouped into tasks of about this size


@dataclass
class Sample:
    id: str
    repo: str
    language: str
    paths: list[str]
    text: str
    # language -> [files, bytes], for the report's language table
    composition: dict[str, list[int]]


@dataclass(frozen=True)
class SampleInfo:
    """What the driver needs about a sample without its text: dedup and the report."""

    id: str
    repo: str
    size: int  # bytes of text
    composition: dict[str, list[int]]


@dataclass
class TaskResult:
    index: int
    samples: list[Sample]  # not kept in the saved metadata: the text goes to Parquet
    infos: list[SampleInfo]
    text_hashes: list[str]
    signatures: np.ndarray  # [len(samples), num_perm]
    files_seen: int = 0
    bytes_seen: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> files
    repos_seen: int = 0
    repo_failures: list[RepoFailure] = field(default_factory=list)
    contaminated: list[dict] = field(default_factory=list)  # repo, path, match
    seconds: float = 0.0


@dataclass(frozen=True)
class Task:
    index: int
    repos: tuple[RepoRef, ...]


def screen_file(file: SourceFile, config: PipelineConfig, decontaminator) -> tuple[Language | None, str | None, str | None, str | None]:
    """Decide about one file: (language, text, drop reason, decontamination match)."""
    if file.content is None:
        return None, None, file.skip_reason, None
    if b"\x00" in file.content[:8192]:
        return None, None, "binary", None
    try:
        text = file.content.decode("utf-8")
    except UnicodeDecodeError:
        return None, None, "invalid_utf8", None
    language = detect_language(file.path)
    if language is None:
        return None, None, "unknown_language", None
    reason = rule_filter(file.path, language, text)
    if reason is None and config.quality:
        reason = quality_check(file.path, language, text)
    if reason is not None:
        return language, None, reason, None
    if decontaminator is not None:
        match = decontaminator.match(text)
        if match is not None:
            return language, None, "contaminated", match
    return language, text, None, None


def _sample_id(repo: str, paths: list[str]) -> str:
    return xxhash.xxh3_64_hexdigest("\x00".join([repo, *paths]).encode("utf-8", "surrogatepass"))


def _repo_seed(seed: int, repo: str) -> int:
    # Each repository gets its own tie-break stream, so its order does not depend on which
    # other repositories shared its task.
    return xxhash.xxh3_64_intdigest(repo.encode("utf-8", "surrogatepass"), seed=seed & 0xFFFFFFFFFFFFFFFF)


def build_samples(repo: str, files: dict[str, tuple[Language, str]], seed: int) -> list[Sample]:
    """Dependency-ordered samples for the five dependency languages, one file per sample for the
    rest. Each file in a multi-file sample is headed by its path comment."""
    dependency_files = {p: (lang.name, text) for p, (lang, text) in files.items() if lang.name in DEPENDENCY_LANGUAGES}
    components = dependency_order(dependency_files, _repo_seed(seed, repo)) if dependency_files else []
    groups = list(components) + [[p] for p in sorted(files) if p not in dependency_files]
    samples = []
    for paths in groups:
        parts, composition = [], {}
        for path in paths:
            language, text = files[path]
            if len(paths) > 1:
                parts.append(path_comment(language, path) + "\n")
            parts.append(text if text.endswith("\n") or len(paths) == 1 else text + "\n")
            counts = composition.setdefault(language.name, [0, 0])
            counts[0] += 1
            counts[1] += len(text.encode("utf-8"))
        main_language = max(composition, key=lambda name: (composition[name][1], name))
        samples.append(Sample(_sample_id(repo, paths), repo, main_language, list(paths), "".join(parts), composition))
    return samples


def _files_of_task(task: Task, config: PipelineConfig, result: TaskResult):
    """Yield (repo, files) per repository of the task, counting failures on the way."""
    for ref in task.repos:
        if ref.kind == "table":
            grouped, malformed = read_table(ref, config.max_file_bytes)
            result.files_seen += malformed
            result.dropped["malformed_row"] += malformed
            for repo in sorted(grouped):
                result.repos_seen += 1
                yield repo, grouped[repo]
            continue
        result.repos_seen += 1
        files, failure = read_repository(ref, config.max_file_bytes)
        if failure is not None:
            result.repo_failures.append(failure)
        yield ref.name, files


def process_task(task: Task, config: PipelineConfig) -> TaskResult:
    started = time.perf_counter()
    decontaminator = None
    if config.decontaminate:
        from dscoder.data.decontam import load_decontaminator

        decontaminator = load_decontaminator(config.decontaminate)
    hasher = MinHasher(config.dedup)
    result = TaskResult(task.index, [], [], [], np.zeros((0, config.dedup.num_perm), dtype=np.uint32))
    samples: list[Sample] = []
    for repo, files in _files_of_task(task, config, result):
        kept: dict[str, tuple[Language, str]] = {}
        for file in files:
            result.files_seen += 1
            result.bytes_seen += len(file.content) if file.content is not None else 0
            language, text, reason, match = screen_file(file, config, decontaminator)
            if reason is not None:
                result.dropped[reason] += 1
                if match is not None:
                    result.contaminated.append({"repo": repo, "path": file.path, "match": match})
                continue
            kept[file.path] = (language, text)
        if kept:
            samples.extend(build_samples(repo, kept, config.seed))
    result.samples = samples
    result.infos = [SampleInfo(s.id, s.repo, len(s.text.encode("utf-8")), s.composition) for s in samples]
    result.text_hashes = [content_hash(s.text) for s in samples]
    if samples:
        result.signatures = np.stack([hasher.signature(s.text) for s in samples])
    delay = float(os.environ.get(_TASK_DELAY_ENV, "0") or 0)
    if delay:
        time.sleep(delay)
    result.seconds = time.perf_counter() - started
    return result


def make_tasks(refs: list, target_bytes: int = 8 << 20) -> list[Task]:
    """Group repositories into tasks of about `target_bytes` each, in a fixed order. Git and
    table inputs are tasks of their own (their size is unknown before reading)."""
    tasks: list[Task] = []
    batch: list = []
    batch_bytes = 0
    for ref in sorted(refs, key=lambda r: (r.name, r.location)):
        if ref.kind in ("git", "table") or ref.size_hint >= target_bytes:
            tasks.append(Task(len(tasks), (ref,)))
            continue
        batch.append(ref)
        batch_bytes += ref.size_hint
        if batch_bytes >= target_bytes:
            tasks.append(Task(len(tasks), tuple(batch)))
            batch, batch_bytes = [], 0
    if batch:
        tasks.append(Task(len(tasks), tuple(batch)))
    return tasks
