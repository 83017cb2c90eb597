"""PAL-Math: prompts, program extraction, and answers checked end to end in the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_support import BENCHMARKS

from dscoder.errors import UserError
from dscoder.eval.benchmarks.pal_math import PalMath, extract_solution_program, few_shot_prompt
from dscoder.eval.runner import run_benchmark
from dscoder.eval.sources import ReferenceSolutions, SamplesFile

PAL = BENCHMARKS / "pal-math"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_prompt_is_the_few_shot_text_then_the_question() -> None:
    problem = PalMath("gsm8k", BENCHMARKS / "gsm8k" / "test.jsonl.gz").problems[0]
    shots = few_shot_prompt("pal_gsm8k.md")
    assert shots.startswith("Let's use python to solve math problems.\n\nQuestion: Olivia has $23.")
    assert shots.endswith("```\n\n----------------")
    assert problem.prompt == shots + "\n\nQuestion: " + (
        "Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins "
        "for her friends every day with four. She sells the remainder at the farmers' market daily for $2 "
        "per fresh duck egg. How much in dollars does she make every day at the farmers' market?\n"
    )
    assert problem.stop == ("Question", "----------------")
    assert problem.fields["answer"] == "18"


def test_each_dataset_reads_its_question_and_answer() -> None:
    math = PalMath("math", PAL / "math.test.jsonl.gz")
    assert len(math.problems) == 5000
    assert math.problems[0].prompt.startswith(
        "Let's use python to solve math problems. Display the final result in LaTeX.")
    assert math.problems[0].fields["answer"] == "2"  # \boxed{2} in the solution
    svamp = PalMath("svamp", PAL / "svamp.test.jsonl.gz").problems[0]
    assert "groups. How big is each group of bananas?\n" in svamp.prompt  # body gets its full stop
    assert svamp.fields["answer"] == 145.0
    assert len(PalMath("gsm-hard", PAL / "gsm-hard.test.jsonl.gz").problems) == 1319


def test_program_extraction() -> None:
    fenced = "\n```python\nimport math\ndef solution():\n    return 1\n```\n\nextra"
    assert extract_solution_program(fenced) == "import math\ndef solution():\n    return 1\n"
    two = "```python\nx = 1\n```\n```python\ndef solution():\n    return 2\n```"
    assert extract_solution_program(two) == "def solution():\n    return 2\n"
    unclosed = "```python\ndef solution():\n    return 3"  # ran out of tokens before the fence
    assert extract_solution_program(unclosed) == "def solution():\n    return 3"
    bare = "Sure.\ndef solution():\n    return 4\n"
    assert extract_solution_program(bare) == "def solution():\n    return 4\n"
    with_imports = "We need math.\nimport math\n\ndef solution():\n    return math.pi\n"
    assert extract_solution_program(with_imports) == "import math\n\ndef solution():\n    return math.pi\n"
    assert extract_solution_program("I cannot solve this.") == ""


def test_base_output_is_cut_at_the_next_question() -> None:
    benchmark = PalMath("gsm8k", BENCHMARKS / "gsm8k" / "test.jsonl.gz")
    output = "\n```python\ndef solution():\n    return 18\n```\n\n----------------\n\nQuestion: next"
    assert benchmark.completion(benchmark.problems[0], output, "base") == "def solution():\n    return 18\n"


def test_answers_are_judged_numerically_and_symbolically(tmp_path: Path) -> None:
    problems = [
        {"problem": "p0", "solution": r"So $\boxed{\frac{1}{2}}$.", "idx": 0},
        {"problem": "p1", "solution": r"$\boxed{2\sqrt{3}}$", "idx": 1},
        {"problem": "p2", "solution": r"$\boxed{(1,2)}$", "idx": 2},
        {"problem": "p3", "solution": r"$\boxed{7}$", "idx": 3},
        {"problem": "p4", "solution": r"$\boxed{7}$", "idx": 4},
        {"problem": "p5", "solution": r"$\boxed{7}$", "idx": 5},
    ]
    programs = {
        "math/0": "def solution():\n    return 1 / 2\n",
        "math/1": "from sympy import sqrt\ndef solution():\n    return 2 * sqrt(3)\n",
        "math/2": "def solution():\n    print('thinking')\n    return (1, 2)\n",
        "math/3": "def solution():\n    return 8\n",  # wrong
        "math/4": "def solution():\n    raise ValueError('no')\n",  # crashes
        "math/5": "def solution():\n    import os\n    os._exit(0)\n",  # exits before answering
    }
    benchmark = PalMath("math", write_jsonl(tmp_path / "math.jsonl", problems))
    samples = write_jsonl(tmp_path / "samples.jsonl", [{"task_id": k, "completion": v} for k, v in programs.items()])
    run_benchmark(benchmark, SamplesFile(samples), tmp_path / "out")
    rows = {
        row["task_id"]: row
        for row in map(json.loads, (tmp_path / "out/runs/math/executions.jsonl").read_text().splitlines())
    }
    assert [rows[f"math/{i}"]["status"] for i in range(6)] == ["passed"] * 3 + ["failed"] * 3
    assert rows["math/3"]["detail"] == "answer 8, expected 7"
    assert "ValueError" in rows["math/4"]["detail"]


@pytest.mark.slow
def test_gsm_hard_reference_programs_agree_with_their_targets(tmp_path: Path) -> None:
    """Measured: 1319 of 1319 reference programs give their target (share 100%)."""
    benchmark = PalMath("gsm-hard", PAL / "gsm-hard.test.jsonl.gz")
    score = run_benchmark(benchmark, ReferenceSolutions(benchmark.reference_solutions()), tmp_path / "out")
    rows = map(json.loads, (tmp_path / "out/runs/gsm-hard/executions.jsonl").read_text().splitlines())
    mismatches = {row["task_id"]: row["detail"] for row in rows if row["status"] != "passed"}
    assert mismatches == {}
    assert score.pass_at_k["pass@1"] == 1.0


def test_user_supplied_tabmwp_asdiv_mawps_files_load_and_score(tmp_path: Path) -> None:
    """The three datasets the project does not ship, in the row formats of their published
    files (the tests write them): questions, answers (fractions, percentages, units) and
    judging end to end."""
    tabmwp = PalMath("tabmwp", write_jsonl(tmp_path / "tabmwp.jsonl", [
        {"table_title": "Apples sold", "table": "Day | Apples\nMonday | 12\nTuesday | 30",
         "question": "How many more apples were sold on Tuesday than on Monday?", "answer": "18",
         "ans_type": "integer_number", "choices": None},
        {"table": "Fruit | Share\napple | 1/4", "question": "What share of the fruit is apples?",
         "answer": "1/4", "ans_type": "decimal_number"},
        {"table": "Item | Price\npen | $2", "question": "Which is cheaper?", "answer": "pen",
         "ans_type": "extractive_text", "choices": ["pen", "book"]},
    ]))
    first = tabmwp.problems[0]
    assert 'Read the following table regarding "Apples sold" and answer a question:\nDay | Apples' in first.prompt
    assert [p.fields["answer"] for p in tabmwp.problems] == [18.0, 0.25, "pen"]
    assert "Please select from the following options: ['pen', 'book']" in tabmwp.problems[2].prompt

    asdiv = PalMath("asdiv", write_jsonl(tmp_path / "asdiv.jsonl", [
        {"body": "Seven red apples and two green apples are in the basket.",
         "question": "How many apples are in the basket?", "answer": "9 (apples)"},
    ]))
    assert asdiv.problems[0].fields["answer"] == "9"
    assert asdiv.problems[0].prompt.endswith(
        "Question: Seven red apples and two green apples are in the basket. How many apples are in the basket?\n")

    mawps = PalMath("mawps", write_jsonl(tmp_path / "mawps.jsonl", [
        {"input": "Joan had 9 blue balloons but lost 2. How many does she have now?", "target": 7.0},
    ]))
    assert mawps.problems[0].fields["answer"] == 7.0

    programs = {"tabmwp/0": "def solution():\n    return 30 - 12\n",
                "tabmwp/1": "def solution():\n    return 1 / 4\n",
                "tabmwp/2": "def solution():\n    return 'book'\n"}  # wrong
    samples = write_jsonl(tmp_path / "samples.jsonl", [{"task_id": k, "completion": v} for k, v in programs.items()])
    run_benchmark(tabmwp, SamplesFile(samples), tmp_path / "out")
    rows = {row["task_id"]: row["status"] for row in
            map(json.loads, (tmp_path / "out/runs/tabmwp/executions.jsonl").read_text().splitlines())}
    assert rows == {"tabmwp/0": "passed", "tabmwp/1": "passed", "tabmwp/2": "failed"}
    with pytest.raises(UserError):
        PalMath("asdiv", write_jsonl(tmp_path / "bad.jsonl", [{"question": "no body"}]))
