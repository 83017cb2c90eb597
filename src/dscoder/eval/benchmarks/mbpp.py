"""MBPP: the 500 test problems (task ids 11..510), 3-shot, as in the paper and DeepSeek-Coder.

The data is google-research's `mbpp.jsonl` (974 rows: text, code, test_list, test_setup_code).
The shots are task ids 2, 3 and 4, each written as

    You are an expert Python programmer, and here is your task: {text} Your code should pass
    these tests:\\n\\n{tests}\\n[BEGIN]\\n{code}\\n[DONE]\\n

(one line, broken here), with the shot's code cleaned of carriage returns and tabs. The query is
the same text for the problem, ending at `[BEGIN]`; the model's answer ends at `[DONE]`.
Instruct models get DeepSeek's instruct-eval prompt: the three examples, then the problem.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from dscoder.errors import UserError
from dscoder.eval.benchmarks.base import Benchmark, Origin, Problem, Style
from dscoder.eval.extract import first_code_block, truncate_at_stop
from dscoder.eval.jsonl import read_jsonl, require_fields
from dscoder.eval.sandbox import Limits

TEST_TASK_IDS = range(11, 511)
SHOT_TASK_IDS = (2, 3, 4)
STOP = "[DONE]"
MAX_NEW_TOKENS = 512
# DeepSeek's harness gives 10 s. Task 123's reference solution (amicable numbers below 9999,
# quadratic) needs about 9 s of CPU on a 2-core machine, so 10 s of wall-clock fails a correct
# program whenever the machine is busy; the limits here judge correctness, not speed.
LIMITS = replace(Limits(), run_wall_s=30.0, cpu_s=20.0)


def _clean_code(code: str) -> str:
    return code.replace("\r", "").replace("\t", "    ")


def base_task_text(text: str, tests: list[str]) -> str:
    """One problem as the few-shot prompt states it, up to and including `[BEGIN]`."""
    joined = "\n".join(tests)
    return (
        f"You are an expert Python programmer, and here is your task: {text} "
        f"Your code should pass these tests:\n\n{joined}\n[BEGIN]"
    )


def base_prompt(shots: list[dict[str, Any]], row: dict[str, Any]) -> str:
    examples = "".join(
        base_task_text(shot["text"], shot["test_list"]) + f"\n{_clean_code(shot['code'])}\n{STOP}\n"
        for shot in shots
    )
    return examples + base_task_text(row["text"], row["test_list"])


def _instruct_task(text: str, tests: list[str], code: str | None = None) -> str:
    task = ">>> Problem:\n{}\n>>> Test Cases:\n{}\n".format(text.strip(), "\n".join(tests))
    if code is not None:
        task += f"\n>>> Code:\n```python\n{_clean_code(code)}\n```"
    return task


def instruct_prompt(shots: list[dict[str, Any]], row: dict[str, Any]) -> str:
    examples = "\n\n".join(
        f"- Example {number}:\n" + _instruct_task(shot["text"], shot["test_list"], shot["code"])
        for number, shot in enumerate(shots, start=1)
    )
    return (
        "Please refer the given examples and generate a python function for my problem.\n"
        f"Examples are listed as follows:\n{examples}\n\n"
        f"Here is my problem:\n{_instruct_task(row['text'], row['test_list'])}"
    ).strip()


class MBPP(Benchmark):
    name = "mbpp"
    language = "python"
    max_new_tokens = MAX_NEW_TOKENS
    limits = LIMITS

    def __init__(self, path: Path | str) -> None:
        rows = read_jsonl(path, "MBPP file")
        by_id: dict[int, dict[str, Any]] = {}
        for row in rows:
            require_fields(row, ("task_id", "text", "code", "test_list"), path, "MBPP file")
            by_id[int(row["task_id"])] = row
        missing_shots = [task_id for task_id in SHOT_TASK_IDS if task_id not in by_id]
        if missing_shots:
            raise UserError(
                f"MBPP file {path} lacks the few-shot tasks {missing_shots}: give the full "
                "mbpp.jsonl (974 rows), not only its test split"
            )
        shots = [by_id[task_id] for task_id in SHOT_TASK_IDS]
        tests = [by_id[task_id] for task_id in TEST_TASK_IDS if task_id in by_id]
        if not tests:
            raise UserError(f"MBPP file {path} has none of the test tasks 11..510")
        self.problems = [
            Problem(
                task_id=str(row["task_id"]),
                prompt=base_prompt(shots, row),
                instruction=instruct_prompt(shots, row),
                stop=(STOP,),
                fields={
                    "tests": list(row["test_list"]),
                    "setup": row.get("test_setup_code", "") or "",
                    "reference": row["code"],
                },
            )
            for row in tests
        ]

    def completion(self, problem: Problem, output: str, style: Style) -> str:
        if style == "base":
            return truncate_at_stop(output, problem.stop).strip()
        block = first_code_block(output, "python")
        return block if block is not None else output

    def program(self, problem: Problem, completion: str, origin: Origin) -> str:
        fields = problem.fields
        tests = "\n".join(fields["tests"])
        return f"{completion}\n{fields['setup']}\n{tests}\n"
