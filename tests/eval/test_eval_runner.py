"""The runner: resuming an interrupted run without regenerating or re-executing anything."""

from __future__ import annotations

import json
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import pytest
from eval_support import BENCHMARKS, require

from dscoder.errors import UserError
from dscoder.eval.benchmarks.humaneval import HumanEval
from dscoder.eval.jsonl import read_jsonl
from dscoder.eval.runner import Capacity, RunSettings, run_benchmark
from dscoder.eval.sandbox import Executor
from dscoder.eval.sources import GenerationRequest, SamplesFile

DATA = BENCHMARKS / "humaneval" / "HumanEval.jsonl.gz"


@cache
def canonical() -> dict[str, str]:
    return {row["task_id"]: row["canonical_solution"] for row in read_jsonl(require(DATA))}


SETTINGS = RunSettings(samples_per_problem=2, temperature=0.8, max_problems=6)  # 12 samples
CAPACITY = Capacity(batch_size=4, workers=2)


class CountingModel:
    """Answers with the canonical solution; counts requests; can be made to "crash"."""

    ready_samples = False

    def __init__(self, interrupt_after: int | None = None) -> None:
        self.name = "fake-model"
        self.identity = "fake-model v1"
        self.requests: list[GenerationRequest] = []
        self.interrupt_after = interrupt_after

    def complete(self, requests: list[GenerationRequest]) -> list[str]:
        if self.interrupt_after is not None and len(self.requests) >= self.interrupt_after:
            raise KeyboardInterrupt
        self.requests += requests
        return ["\n" + canonical()[r.task_id] for r in requests]


class CountingExecutors:
    """An executor factory around the real sandbox that counts jobs and can stop part-way."""

    def __init__(self, interrupt_after: int | None = None) -> None:
        self.jobs: list[str] = []
        self.interrupt_after = interrupt_after

    @contextmanager
    def __call__(self, workers, limits):
        with Executor(workers, limits) as executor:
            yield self._Counting(self, executor)

    class _Counting:
        def __init__(self, owner: CountingExecutors, executor: Executor) -> None:
            self.owner, self.executor = owner, executor

        def map(self, jobs):
            def counted():
                for job in jobs:
                    self.owner.jobs.append(job[0])
                    yield job
            for done, item in enumerate(self.executor.map(counted()), start=1):
                yield item
                if self.owner.interrupt_after is not None and done >= self.owner.interrupt_after:
                    raise KeyboardInterrupt


def run(out: Path, model: CountingModel, executors: CountingExecutors, settings: RunSettings = SETTINGS):
    return run_benchmark(HumanEval(DATA), model, out, settings, CAPACITY, data_path=DATA, executor_factory=executors)


def log_rows(out: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (out / "runs/humaneval-python" / name).read_text().splitlines()]


@pytest.mark.slow
def test_interrupted_run_resumes_without_repeating_work(tmp_path: Path) -> None:
    # 1. Interrupted during generation, after two batches of four.
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, CountingModel(interrupt_after=8), CountingExecutors())
    assert len(log_rows(tmp_path, "generations.jsonl")) == 8

    # 2. Resumed: only the 4 missing samples are generated; interrupted after 5 executions.
    model, executors = CountingModel(), CountingExecutors(interrupt_after=5)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, model, executors)
    assert len(model.requests) == 4
    assert len(log_rows(tmp_path, "executions.jsonl")) == 5

    # 3. Resumed again: nothing generated, only the 7 unexecuted samples executed.
    model, executors = CountingModel(), CountingExecutors()
    score = run(tmp_path, model, executors)
    assert model.requests == []
    first_five = log_rows(tmp_path, "executions.jsonl")[:5]
    executed_before = {json.dumps([row["task_id"], row["sample_index"]]) for row in first_five}
    assert len(executors.jobs) == 7 and not executed_before & set(executors.jobs)
    assert score.pass_at_k == {"pass@1": 1.0}
    assert score.problems == 6 and score.samples_per_problem == 2 and score.partial

    # 4. A finished run does no work at all.
    model, executors = CountingModel(), CountingExecutors()
    run(tmp_path, model, executors)
    assert model.requests == [] and executors.jobs == []


def test_requests_carry_sampling_settings_and_distinct_seeds(tmp_path: Path) -> None:
    model = CountingModel()
    run(tmp_path, model, CountingExecutors())
    first = [r for r in model.requests if r.task_id == "HumanEval/0"]
    assert [r.sample_index for r in first] == [0, 1]
    assert len({r.seed for r in first}) == 2
    assert all(r.temperature == 0.8 and r.max_new_tokens == 500 for r in first)
    assert first[0].stop == ("\ndef", "\nclass", "\nif", "\n#", "\nprint")


def test_torn_last_line_is_redone(tmp_path: Path) -> None:
    settings = RunSettings(max_problems=2)
    run(tmp_path, CountingModel(), CountingExecutors(), settings)
    generations = tmp_path / "runs/humaneval-python/generations.jsonl"
    lines = generations.read_text().splitlines(keepends=True)
    generations.write_text(lines[0] + lines[1][:20])  # the process died mid-write
    (tmp_path / "runs/humaneval-python/executions.jsonl").write_text("")
    model = CountingModel()
    score = run(tmp_path, model, CountingExecutors(), settings)
    assert [r.task_id for r in model.requests] == ["HumanEval/1"]
    assert score.statuses["passed"] == 2


def test_resuming_with_other_settings_is_refused(tmp_path: Path) -> None:
    run(tmp_path, CountingModel(), CountingExecutors(), RunSettings(max_problems=1))
    with pytest.raises(UserError, match="other settings"):
        run(tmp_path, CountingModel(), CountingExecutors(), RunSettings(max_problems=1, max_new_tokens=100))


def test_a_changed_samples_file_is_not_mixed_with_the_old_run(tmp_path: Path) -> None:
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/0", "completion": canonical()["HumanEval/0"]}) + "\n")
    settings = RunSettings(max_problems=1)
    run_benchmark(HumanEval(DATA), SamplesFile(samples), tmp_path / "out", settings)
    samples.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "    return True\n"}) + "\n")
    with pytest.raises(UserError, match="other source"):
        run_benchmark(HumanEval(DATA), SamplesFile(samples), tmp_path / "out", settings)


def test_greedy_with_several_samples_is_refused() -> None:
    with pytest.raises(UserError, match="temperature"):
        RunSettings(samples_per_problem=10, temperature=0.0)
