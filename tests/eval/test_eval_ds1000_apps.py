"""DS-1000 and APPS on small fixtures written here in their published formats (the real data
is the user's: neither may be redistributed with the project)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dscoder.eval.benchmarks import apps as apps_module
from dscoder.eval.benchmarks.apps import APPS
from dscoder.eval.benchmarks.ds1000 import DS1000, clean_answer
from dscoder.eval.runner import run_benchmark
from dscoder.eval.sources import SamplesFile

# DS-1000's shape: a context that defines test_execution (and sometimes test_string), an
# exec_context with [insert] where the answer goes, and the prompt ending inside <code>.
DS1000_CONTEXT = r'''
import copy
import tokenize, io


def generate_test_case(test_case_id):
    def define_test_input(test_case_id):
        return [[3, 1, 2], [10, -4]][test_case_id - 1]

    def generate_ans(data):
        return sorted(data, reverse=True)

    test_input = define_test_input(test_case_id)
    expected_result = generate_ans(copy.deepcopy(test_input))
    return test_input, expected_result


def exec_test(result, ans):
    assert result == ans
    return 1


exec_context = r"""
a = test_input
[insert]
"""


def test_execution(solution: str):
    code = exec_context.replace("[insert]", solution)
    for i in range(2):
        test_input, expected_result = generate_test_case(i + 1)
        test_env = {"test_input": test_input}
        exec(code, test_env)
        assert exec_test(test_env["result"], expected_result)
'''
DS1000_STRING_TEST = r'''

def test_string(solution: str):
    tokens = []
    for token in tokenize.tokenize(io.BytesIO(solution.encode("utf-8")).readline):
        tokens.append(token.string)
    assert "for" not in tokens and "while" not in tokens
'''
DS1000_PROMPT = (
    "Problem:\nHow do I sort a list in descending order?\nA:\n<code>\na = [3, 1, 2]\n</code>\n"
    "result = ... # put solution in this variable\nBEGIN SOLUTION\n<code>\n"
)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def ds1000_fixture(tmp_path: Path) -> Path:
    rows = [
        {
            "prompt": DS1000_PROMPT,
            "reference_code": "result = sorted(a, reverse=True)\n",
            "code_context": DS1000_CONTEXT + (DS1000_STRING_TEST if problem_id == 1 else ""),
            "metadata": {"problem_id": problem_id, "library": library, "test_case_cnt": 2,
                         "perturbation_type": "Origin", "perturbation_origin_id": 0,
                         "library_problem_id": problem_id},
        }
        for problem_id, library in ((0, "Stdlib"), (1, "Stdlib"), (2, "Sorting"))
    ]
    return write_jsonl(tmp_path / "ds1000.jsonl", rows)


def executions(out: Path, benchmark: str) -> dict[str, dict]:
    rows = map(json.loads, (out / "runs" / benchmark / "executions.jsonl").read_text().splitlines())
    return {row["task_id"]: row for row in rows}


def test_ds1000_answer_cleaning() -> None:
    assert clean_answer("result = sorted(a)[::-1]\n</code>\nEND SOLUTION\n") == "result = sorted(a)[::-1]\n"
    assert clean_answer("```python\nresult = 1\n```\nexplanation") == "\nresult = 1\n"
    assert clean_answer("<code>\nresult = 2\nEND SOLUTION") == "\nresult = 2"


def test_ds1000_reference_passes_and_the_string_test_is_applied(tmp_path: Path) -> None:
    benchmark = DS1000(ds1000_fixture(tmp_path))
    assert [p.task_id for p in benchmark.problems] == ["DS-1000/0", "DS-1000/1", "DS-1000/2"]
    loop = "result = []\nfor x in sorted(a):\n    result.insert(0, x)\n"
    samples = write_jsonl(tmp_path / "samples.jsonl", [
        {"task_id": "DS-1000/0", "completion": "result = sorted(a, reverse=True)\n"},
        {"task_id": "DS-1000/1", "completion": loop},  # right values, but test_string forbids loops
        {"task_id": "DS-1000/2", "completion": "result = sorted(a)\n"},  # wrong order
    ])
    score = run_benchmark(benchmark, SamplesFile(samples), tmp_path / "out")
    rows = executions(tmp_path / "out", "ds1000")
    assert [rows[f"DS-1000/{i}"]["status"] for i in range(3)] == ["passed", "failed", "failed"]
    assert "test_string" in rows["DS-1000/1"]["stderr_tail"]
    assert score.groups == {"Sorting": {"pass@1": 0.0, "problems": 1}, "Stdlib": {"pass@1": 0.5, "problems": 2}}


def test_ds1000_base_output_is_cut_at_the_code_end(tmp_path: Path) -> None:
    benchmark = DS1000(ds1000_fixture(tmp_path))
    problem = benchmark.problems[0]
    assert benchmark.completion(problem, "result = sorted(a)\n</code>\nEND SOLUTION", "base") == "result = sorted(a)\n"


APPS_STDIN = {
    "problem_id": 10, "difficulty": "introductory", "starter_code": "",
    "question": "Read two integers and print their sum and their mean.",
    "input_output": json.dumps({"inputs": ["1 2\n", "10 20\n"], "outputs": ["3\n1.5\n", "30\n15.0\n"]}),
    "solutions": json.dumps([]), "url": "",
}
APPS_CALL = {
    "problem_id": 11, "difficulty": "interview", "starter_code": "def add(a, b):\n",
    "question": "Return the sum of a and b as a one-element list.",
    "input_output": json.dumps({"fn_name": "add", "inputs": [[1, 2], [5, 5]], "outputs": [[3], [10]]}),
}
APPS_CLASS = {
    "problem_id": 12, "difficulty": "competition",
    "starter_code": "class Solution:\n    def twoSum(self, nums, target):\n",
    "question": "Return the indices of the two numbers that add up to target.",
    "input_output": json.dumps({"fn_name": "twoSum", "inputs": [[[2, 7, 11, 15], 9]], "outputs": [[0, 1]]}),
}
APPS_NO_TESTS = {"problem_id": 13, "question": "q", "input_output": ""}


def apps_fixture(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "apps.jsonl", [APPS_STDIN, APPS_CALL, APPS_CLASS, APPS_NO_TESTS])


def test_apps_prompts(tmp_path: Path) -> None:
    benchmark = APPS(apps_fixture(tmp_path))
    assert benchmark.skipped_without_tests == 1
    stdin_problem, call_problem, _ = benchmark.problems
    assert stdin_problem.prompt == (
        "\nQUESTION:\nRead two integers and print their sum and their mean.\n\n\n"
        "Use Standard Input format\n\nANSWER:\n"
    )
    assert call_problem.prompt.endswith("def add(a, b):\n\n\nUse Call-Based format\n\nANSWER:\n")
    assert stdin_problem.group == "introductory"


SOLUTIONS = {
    # stdin: reads with sys.stdin, ends with sys.exit(); float output within tolerance
    "APPS/10": "import sys\na, b = map(int, sys.stdin.readline().split())\n"
               "print(a + b)\nprint((a + b) / 2 + 1e-9)\nsys.exit(0)\n",
    # call-based: the expected output is wrapped in a one-element list, as APPS stores it
    "APPS/11": "def add(a, b):\n    return a + b\n",
    # class-based, returning a tuple where the tests hold a list
    "APPS/12": "class Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n"
               "        for i, n in enumerate(nums):\n            if target - n in seen:\n"
               "                return (seen[target - n], i)\n            seen[n] = i\n",
}


def test_apps_correct_solutions_pass(tmp_path: Path) -> None:
    samples = write_jsonl(tmp_path / "samples.jsonl", [{"task_id": k, "completion": v} for k, v in SOLUTIONS.items()])
    score = run_benchmark(APPS(apps_fixture(tmp_path)), SamplesFile(samples), tmp_path / "out")
    statuses = {task_id: row["status"] for task_id, row in executions(tmp_path / "out", "apps").items()}
    assert statuses == dict.fromkeys(SOLUTIONS, "passed")
    assert set(score.groups) == {"introductory", "interview", "competition"}


def test_apps_wrong_and_slow_solutions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apps_module, "SECONDS_PER_TEST", 1)
    samples = write_jsonl(tmp_path / "samples.jsonl", [
        {"task_id": "APPS/10", "completion": "print(int(input().split()[0]) * 2)\nprint(0)\n"},
        {"task_id": "APPS/11", "completion": "def add(a, b):\n    while True:\n        pass\n"},
        {"task_id": "APPS/12", "completion": "import os\nos._exit(0)\n"},
    ])
    run_benchmark(APPS(apps_fixture(tmp_path)), SamplesFile(samples), tmp_path / "out")
    rows = executions(tmp_path / "out", "apps")
    assert rows["APPS/10"]["status"] == "failed" and "test 0 failed" in rows["APPS/10"]["detail"]
    assert rows["APPS/11"]["status"] == "timeout"
    assert rows["APPS/12"]["status"] == "failed"
