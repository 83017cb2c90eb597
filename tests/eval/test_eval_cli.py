"""`dscoder eval` argument and input mistakes: each is one UserError sentence, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_support import BENCHMARKS, run_eval_cli

from dscoder.errors import UserError

HUMANEVAL = BENCHMARKS / "humaneval" / "HumanEval.jsonl.gz"


def samples_file(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def base_args(tmp_path: Path, data: Path = HUMANEVAL) -> list[str]:
    return ["--benchmark", "humaneval", "--data", str(data), "--output", str(tmp_path / "out")]


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "give exactly one of"),
        (["--samples", "s.jsonl", "--openai-base-url", "http://127.0.0.1:1/v1", "--model", "m"], "exactly one"),
        (["--openai-base-url", "http://127.0.0.1:1/v1"], "needs --model NAME"),
        (["--samples", "/nonexistent.jsonl"], "samples file /nonexistent.jsonl does not exist"),
        (["--model", "/nonexistent-checkpoint"], "checkpoint"),
    ],
)
def test_source_mistakes(tmp_path: Path, extra: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        run_eval_cli(base_args(tmp_path) + extra)


def test_missing_or_foreign_data_file(tmp_path: Path) -> None:
    samples = samples_file(tmp_path, [{"task_id": "HumanEval/0", "completion": "x"}])
    with pytest.raises(UserError, match=r"HumanEval file .* does not exist"):
        run_eval_cli(base_args(tmp_path, tmp_path / "missing.jsonl") + ["--samples", str(samples)])
    mbpp = BENCHMARKS / "mbpp" / "mbpp.jsonl.gz"
    with pytest.raises(UserError, match="is not a HumanEval file"):
        run_eval_cli(base_args(tmp_path, mbpp) + ["--samples", str(samples)])


def test_samples_that_do_not_fit_the_benchmark(tmp_path: Path) -> None:
    foreign = samples_file(tmp_path, [{"task_id": "Other/1", "completion": "x"}])
    with pytest.raises(UserError, match="task ids this benchmark file lacks"):
        run_eval_cli(base_args(tmp_path) + ["--samples", str(foreign)])
    partial = samples_file(tmp_path, [{"task_id": "HumanEval/0", "completion": "x"}])
    with pytest.raises(UserError, match="no completion for 163 of 164 problems"):
        run_eval_cli(base_args(tmp_path) + ["--samples", str(partial)])


def test_sampling_mistakes(tmp_path: Path) -> None:
    samples = samples_file(tmp_path, [{"task_id": "HumanEval/0", "completion": "x"}])
    with pytest.raises(UserError, match="needs --temperature above 0"):
        run_eval_cli(base_args(tmp_path) + ["--samples", str(samples), "--n", "10"])
    with pytest.raises(UserError, match="--limit must be at least 1"):
        run_eval_cli(base_args(tmp_path) + ["--samples", str(samples), "--limit", "0"])


def test_unknown_benchmark_is_an_argument_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_eval_cli(["--benchmark", "humaneval-cobol", "--data", "x", "--output", "y"])
    assert exit_info.value.code == 2


def test_one_model_per_output_directory(tmp_path: Path) -> None:
    first = samples_file(tmp_path, [{"task_id": "HumanEval/0", "completion": "    return False\n"}])
    assert run_eval_cli(base_args(tmp_path) + ["--samples", str(first), "--limit", "1"]) == 0
    with pytest.raises(UserError, match="holds results of 'samples', not 'other'"):
        run_eval_cli(base_args(tmp_path) + ["--samples", str(first), "--limit", "1", "--name", "other"])


@pytest.mark.slow
def test_reference_solutions_check_the_harness(tmp_path: Path) -> None:
    """`--reference` needs no samples file: HumanEval's canonical solutions, straight from --data."""
    assert run_eval_cli([*base_args(tmp_path), "--reference"]) == 0
    score = json.loads((tmp_path / "out" / "summary.json").read_text())["benchmarks"]["humaneval-python"]
    assert score["problems"] == 164 and score["pass@1"] == 1.0
    cpp = BENCHMARKS / "deepseek-humaneval-multilingual" / "humaneval-cpp.jsonl.gz"
    with pytest.raises(UserError, match="has no reference solutions"):
        run_eval_cli([*base_args(tmp_path / "cpp", cpp), "--reference"])
