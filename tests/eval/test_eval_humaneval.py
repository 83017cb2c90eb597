"""HumanEval: the three file formats, prompts, the canonical solutions end to end, and each of
the eight languages run for real on one task, from base-model and from instruct-model output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_support import BENCHMARKS, run_eval_cli

from dscoder.eval.benchmarks.humaneval import HumanEval, extract_function
from dscoder.eval.jsonl import read_jsonl
from dscoder.eval.runner import RunSettings, run_benchmark
from dscoder.eval.sources import GenerationRequest

OPENAI_FILE = BENCHMARKS / "humaneval" / "HumanEval.jsonl.gz"
MULTILINGUAL = BENCHMARKS / "deepseek-humaneval-multilingual"
RECORDS = {"python": 164, "cpp": 161, "java": 158, "php": 161, "ts": 159, "cs": 158, "sh": 158, "js": 161}


def language_file(language: str) -> Path:
    return OPENAI_FILE if language == "python" else MULTILINGUAL / f"humaneval-{language}.jsonl.gz"


@pytest.mark.parametrize("language, count", RECORDS.items())
def test_every_language_file_loads(language: str, count: int) -> None:
    benchmark = HumanEval(MULTILINGUAL / f"humaneval-{language}.jsonl.gz")
    assert benchmark.language == language
    assert benchmark.name == f"humaneval-{language}"
    assert len(benchmark.problems) == count


def test_base_prompt_is_stripped_and_python_stops_are_deepseeks() -> None:
    benchmark = HumanEval(OPENAI_FILE)
    problem = benchmark.problems[0]
    assert problem.prompt.endswith('"""\n')
    assert benchmark.base_prompt(problem) == problem.prompt.strip()
    assert problem.stop == ("\ndef", "\nclass", "\nif", "\n#", "\nprint")


def test_instruct_prompt_asks_for_a_code_block_in_the_language() -> None:
    problem = HumanEval(MULTILINGUAL / "humaneval-cs.jsonl.gz").problems[0]
    assert problem.instruction.startswith("Please help me to complete the function.")
    assert "```csharp\nusing System;" in problem.instruction
    assert problem.instruction.endswith("\n```")


@pytest.mark.slow
def test_canonical_solutions_pass_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    samples = tmp_path / "canonical.jsonl"
    samples.write_text("".join(
        json.dumps({"task_id": row["task_id"], "completion": row["canonical_solution"]}) + "\n"
        for row in read_jsonl(OPENAI_FILE)
    ))
    out = tmp_path / "out"
    assert run_eval_cli(["--benchmark", "humaneval", "--data", str(OPENAI_FILE),
                         "--samples", str(samples), "--output", str(out)]) == 0
    score = json.loads((out / "summary.json").read_text())["benchmarks"]["humaneval-python"]
    assert score["problems"] == 164
    assert score["pass@1"] == 1.0
    assert score["statuses"]["passed"] == 164
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 164 and {row["status"] for row in rows} == {"passed"}
    assert "| **canonical (measured)** | 100.0 |" in (out / "results.md").read_text()
    assert (out / "results.png").stat().st_size > 10_000
    assert "humaneval-python: pass@1 100.0%" in capsys.readouterr().out


@pytest.mark.slow
def test_humaneval_x_python_canonical_solutions_pass(tmp_path: Path) -> None:
    data = MULTILINGUAL / "humaneval-python.jsonl.gz"
    samples = tmp_path / "canonical.jsonl"
    samples.write_text("".join(
        json.dumps({"task_id": row["task_id"], "completion": row["canonical_solution"]}) + "\n"
        for row in read_jsonl(data)
    ))
    assert run_eval_cli(["--benchmark", "humaneval", "--data", str(data),
                         "--samples", str(samples), "--output", str(tmp_path / "out")]) == 0
    score = json.loads((tmp_path / "out" / "summary.json").read_text())["benchmarks"]["humaneval-python"]
    assert score["statuses"]["passed"] == 164


def test_exit_zero_before_the_tests_does_not_pass(tmp_path: Path) -> None:
    """The public harness judges by exit status alone: this sample would pass there."""
    samples = tmp_path / "cheat.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "    import sys; sys.exit(0)\n"}) + "\n")
    out = tmp_path / "out"
    assert run_eval_cli(["--benchmark", "humaneval", "--data", str(OPENAI_FILE), "--samples",
                         str(samples), "--output", str(out), "--limit", "1"]) == 0
    row = json.loads((out / "samples.jsonl").read_text().splitlines()[0])
    assert row["status"] == "failed"
    assert "before its tests finished" in row["detail"]


# What a base model might write after each language's stripped `add` prompt, junk included:
# the stop sequences must cut it where the tests take over.
BASE_OUTPUTS = {
    "python": "\n    return x + y\n\n\ndef main():\n    print(add(1, 2))\n",
    "cpp": "\n    return x + y;\n}\n\nint main() {\n    return 0;\n}\n",
    "java": "\n        return x + y;\n    }\n    public static void main(String[] args) {}\n}\n",
    "cs": "\n        return x + y;\n    }\n}\n",
    "php": "\n    return $x + $y;\n}\n\nfunction sub($x, $y) {\n    return $x - $y;\n}\n",
    "ts": "\n  return x + y;\n}\n\nfunction sub(x: number, y: number): number {\n  return x - y;\n}\n",
    "js": "\n  return x + y;\n}\nconsole.log(add(2, 3));\n",
    "sh": "\n    echo $(( $1 + $2 ))\n}\n\nadd 2 3\n",
}
# What an instruct model might answer: a fenced block, sometimes with a main or helpers.
INSTRUCT_OUTPUTS = {
    "python": "Here you go:\n```python\ndef add(x: int, y: int):\n    return x + y\n```\nDone.",
    "cpp": "```cpp\n#include <cstdio>\n// it's simple\nlong add(long x, long y) {\n    if (x < 0) { return x + y; }\n"
           "    return x + y;\n}\nint main() {\n    printf(\"%ld\", add(1, 2));\n}\n```",
    "java": "```java\nclass Problem {\n    public static long add(long x, long y) {\n        String s = \"}\";\n"
            "        return x + y;\n    }\n    public static void main(String[] args) { }\n}\n```",
    "cs": "```csharp\nclass Problem {\n    public static long Add(long x, long y) {\n        return x + y;\n    }\n"
          "    public static void Main(string[] args) { }\n}\n```",
    "php": "```php\n<?php\nfunction add($x, $y) {\n    return $x + $y;\n}\n```",
    "ts": "```typescript\nfunction add(x: number, y: number): number {\n  return x + y;\n}\n```",
    "js": "Sure!\n```javascript\nfunction add(x, y){\n  return x + y;\n}\nconsole.log(add(2, 3));\n```",
    "sh": "```bash\n#!/bin/bash\nadd() {\n    echo $(( $1 + $2 ))\n}\n```",
}
EXPECTED_FUNCTIONS = {
    "cpp": "long add(long x, long y) {\n    if (x < 0) { return x + y; }\n    return x + y;\n",
    "java": "    public static long add(long x, long y) {\n        String s = \"}\";\n        return x + y;\n",
    "cs": "    public static long Add(long x, long y) {\n        return x + y;\n",
    "php": "function add($x, $y) {\n    return $x + $y;\n}\n",
    "ts": "function add(x: number, y: number): number {\n  return x + y;\n}\n",
    "js": "function add(x, y){\n  return x + y;\n}\n",
    "sh": "add() {\n    echo $(( $1 + $2 ))\n",
}


class CannedModel:
    """A stand-in model that answers every request with one fixed text."""

    ready_samples = False

    def __init__(self, text: str) -> None:
        self.name = "canned"
        self.identity = f"canned {text!r}"
        self.text = text
        self.requests: list[GenerationRequest] = []

    def complete(self, requests: list[GenerationRequest]) -> list[str]:
        self.requests += requests
        return [self.text] * len(requests)


def only_add_task(language: str) -> HumanEval:
    benchmark = HumanEval(language_file(language))
    add_id = "HumanEval/53" if language == "python" else "HumanEval_53_add"
    benchmark.problems = [p for p in benchmark.problems if p.task_id == add_id]
    return benchmark


@pytest.mark.parametrize("language", [lang for lang in INSTRUCT_OUTPUTS if lang != "python"])
def test_instruct_function_is_cut_out_of_the_answer(language: str) -> None:
    problem = only_add_task(language).problems[0]
    assert extract_function(INSTRUCT_OUTPUTS[language], problem, language) == EXPECTED_FUNCTIONS[language]


@pytest.mark.slow
@pytest.mark.parametrize("style", ["base", "instruct"])
@pytest.mark.parametrize("language", list(RECORDS))
def test_model_output_runs_and_passes_in_every_language(tmp_path: Path, language: str, style: str) -> None:
    outputs = BASE_OUTPUTS if style == "base" else INSTRUCT_OUTPUTS
    model = CannedModel(outputs[language])
    score = run_benchmark(only_add_task(language), model, tmp_path, RunSettings(style=style))
    row = json.loads((tmp_path / "runs" / f"humaneval-{language}" / "executions.jsonl").read_text())
    assert score.statuses["passed"] == 1, row
    request = model.requests[0]
    assert (request.prompt is None) == (style == "instruct")


@pytest.mark.slow
@pytest.mark.parametrize("language", ["cpp", "java", "ts", "sh"])
def test_wrong_answer_fails(tmp_path: Path, language: str) -> None:
    model = CannedModel(BASE_OUTPUTS[language].replace("+", "-", 1))  # x - y
    score = run_benchmark(only_add_task(language), model, tmp_path)
    assert score.statuses["passed"] == 0
    assert score.pass_at_k["pass@1"] == 0.0


@pytest.mark.slow
def test_javascript_that_prints_still_passes(tmp_path: Path) -> None:
    """DeepSeek's JavaScript checker fails any program that writes to stdout; only the tests count here."""
    model = CannedModel("\n  console.log('adding', x, y);\n  return x + y;\n}\n")
    score = run_benchmark(only_add_task("js"), model, tmp_path)
    assert score.statuses["passed"] == 1
