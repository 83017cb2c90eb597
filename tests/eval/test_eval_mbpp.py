"""MBPP: the exact 3-shot prompt, answer cutting, and the reference solutions against their tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_support import BENCHMARKS

from dscoder.errors import UserError
from dscoder.eval.benchmarks.mbpp import MBPP
from dscoder.eval.runner import run_benchmark
from dscoder.eval.sources import ReferenceSolutions

MBPP_FILE = BENCHMARKS / "mbpp" / "mbpp.jsonl.gz"

# Task 11's prompt, written out by hand from the published format: shots 2, 3, 4 (code with
# \r removed and tabs as four spaces), each ending "[DONE]\n", then the query ending at [BEGIN].
EXPECTED_PROMPT_11 = (
    "You are an expert Python programmer, and here is your task: Write a function to find the "
    "similar elements from the given two tuple lists. Your code should pass these tests:\n\n"
    "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)\n"
    "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)\n"
    "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)\n"
    "[BEGIN]\n"
    "def similar_elements(test_tup1, test_tup2):\n"
    "  res = tuple(set(test_tup1) & set(test_tup2))\n"
    "  return (res) \n"
    "[DONE]\n"
    "You are an expert Python programmer, and here is your task: Write a python function to "
    "identify non-prime numbers. Your code should pass these tests:\n\n"
    "assert is_not_prime(2) == False\n"
    "assert is_not_prime(10) == True\n"
    "assert is_not_prime(35) == True\n"
    "[BEGIN]\n"
    "import math\n"
    "def is_not_prime(n):\n"
    "    result = False\n"
    "    for i in range(2,int(math.sqrt(n)) + 1):\n"
    "        if n % i == 0:\n"
    "            result = True\n"
    "    return result\n"
    "[DONE]\n"
    "You are an expert Python programmer, and here is your task: Write a function to find the "
    "largest integers from a given list of numbers using heap queue algorithm. Your code should "
    "pass these tests:\n\n"
    "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] \n"
    "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] \n"
    "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]\n"
    "[BEGIN]\n"
    "import heapq as hq\n"
    "def heap_queue_largest(nums,n):\n"
    "  largest_nums = hq.nlargest(n, nums)\n"
    "  return largest_nums\n"
    "[DONE]\n"
    "You are an expert Python programmer, and here is your task: Write a python function to "
    "remove first and last occurrence of a given character from the string. Your code should "
    "pass these tests:\n\n"
    'assert remove_Occ("hello","l") == "heo"\n'
    'assert remove_Occ("abcda","a") == "bcd"\n'
    'assert remove_Occ("PHP","P") == "H"\n'
    "[BEGIN]"
)


@pytest.fixture(scope="module")
def mbpp() -> MBPP:
    return MBPP(MBPP_FILE)


def test_the_500_test_problems(mbpp: MBPP) -> None:
    assert [p.task_id for p in mbpp.problems] == [str(i) for i in range(11, 511)]


def test_three_shot_prompt_is_exact(mbpp: MBPP) -> None:
    problem = mbpp.problems[0]
    assert problem.prompt == EXPECTED_PROMPT_11
    assert problem.stop == ("[DONE]",)


def test_instruct_prompt_has_the_examples_and_the_problem(mbpp: MBPP) -> None:
    instruction = mbpp.problems[0].instruction
    assert instruction.startswith("Please refer the given examples and generate a python function")
    assert instruction.count("- Example ") == 3
    assert instruction.endswith('>>> Test Cases:\nassert remove_Occ("hello","l") == "heo"\n'
                                'assert remove_Occ("abcda","a") == "bcd"\nassert remove_Occ("PHP","P") == "H"')


def test_base_answer_ends_at_done(mbpp: MBPP) -> None:
    output = "\ndef f(x):\n    return x\n[DONE]\nYou are an expert Python programmer"
    assert mbpp.completion(mbpp.problems[0], output, "base") == "def f(x):\n    return x"
    fenced = "Sure:\n```python\ndef f(x):\n    return x\n```"
    assert mbpp.completion(mbpp.problems[0], fenced, "instruct") == "def f(x):\n    return x\n"


def test_test_split_alone_is_refused(tmp_path: Path) -> None:
    only_tests = tmp_path / "mbpp_tests.jsonl"
    only_tests.write_text(json.dumps({"task_id": 11, "text": "t", "code": "c", "test_list": []}) + "\n")
    with pytest.raises(UserError, match="few-shot tasks"):
        MBPP(only_tests)


@pytest.mark.slow
def test_reference_solutions_pass_their_tests(mbpp: MBPP, tmp_path: Path) -> None:
    """All 500 reference solutions pass. Task 123 needs ~9 s of CPU, hence MBPP's longer limits."""
    score = run_benchmark(mbpp, ReferenceSolutions(mbpp.reference_solutions()), tmp_path / "out")
    executions = [json.loads(line) for line in (tmp_path / "out/runs/mbpp/executions.jsonl").read_text().splitlines()]
    failures = {row["task_id"]: row["detail"] for row in executions if row["status"] != "passed"}
    assert failures == {}
    assert score.pass_at_k["pass@1"] == 1.0
