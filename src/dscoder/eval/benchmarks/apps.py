"""APPS: competitive-programming problems judged on hidden tests (the user's copy).

The data is the Hugging Face `codeparrot/apps` JSON Lines: `question`, `input_output` (a JSON
string: `inputs`, `outputs`, and `fn_name` for call-based problems), `starter_code`,
`difficulty`, `problem_id`. The prompt is the APPS paper's: QUESTION, the starter code, the
format line ("Use Call-Based format" / "Use Standard Input format"), ANSWER. A problem counts as
solved when every test passes (APPS' "strict accuracy"); scores are also given per difficulty.

The program is a small Python harness around the answer: standard-input problems run the answer
once per test with that test's input and compare the output token by token (numbers with a
1e-6 tolerance); call-based problems call the function (or `Solution().<fn_name>`) and compare
return values, accepting the expected value wrapped in a one-element list as APPS' checker
does. Each test has 4 seconds, as in APPS' checker.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from dscoder.errors import UserError
from dscoder.eval.benchmarks.base import (
    Benchmark,
    Origin,
    Problem,
    Style,
    Verdict,
    verdict_from_execution,
)
from dscoder.eval.extract import first_code_block, truncate_at_stop
from dscoder.eval.jsonl import read_jsonl, require_fields
from dscoder.eval.sandbox import ExecResult, Limits

STOPS = ("\nQUESTION:", "\nANSWER:")
MAX_NEW_TOKENS = 1024
SECONDS_PER_TEST = 4
LIMITS = replace(Limits(), run_wall_s=120.0, cpu_s=120.0)
TIMEOUT_NOTE = "timed out"

_HARNESS = r'''
import io, json, math, signal, sys

_CODE = {code!r}
_TESTS = json.loads({tests!r})
_FN_NAME = {fn_name!r}
_SECONDS = {seconds}


class _TestTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _TestTimeout()


def _plain(value):
    """Tuples as lists, recursively: JSON test data has no tuples."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {{key: _plain(item) for key, item in value.items()}}
    return value


def _same_tokens(got, expected):
    if isinstance(expected, list):
        expected = "\n".join(str(line) for line in expected)
    got_tokens, expected_tokens = got.split(), str(expected).split()
    if len(got_tokens) != len(expected_tokens):
        return False
    for a, b in zip(got_tokens, expected_tokens):
        if a == b:
            continue
        try:
            if not math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-6):
                return False
        except ValueError:
            return False
    return True


def _run_with_stdin(text):
    stdin = io.TextIOWrapper(io.BytesIO(text.encode()), encoding="utf-8")
    captured = io.BytesIO()
    stdout = io.TextIOWrapper(captured, encoding="utf-8", write_through=True)
    saved = sys.stdin, sys.stdout
    sys.stdin, sys.stdout = stdin, stdout
    try:
        exec(compile(_CODE, "<solution>", "exec"), {{"__name__": "__main__"}})
    except SystemExit:
        pass
    finally:
        stdout.flush()
        sys.stdin, sys.stdout = saved
    return captured.getvalue().decode("utf-8", "replace")


def _call_based_target():
    namespace = {{"__name__": "__solution__"}}
    exec(compile(_CODE, "<solution>", "exec"), namespace)
    if "Solution" in namespace:
        return getattr(namespace["Solution"](), _FN_NAME)
    return namespace[_FN_NAME]


def _check(test_input, expected):
    if _FN_NAME is None:
        text = test_input if isinstance(test_input, str) else "\n".join(map(str, test_input))
        return _same_tokens(_run_with_stdin(text), expected)
    got = _plain(_call_based_target()(*test_input))
    expected = _plain(expected)
    return got == expected or (isinstance(expected, list) and len(expected) == 1 and got == expected[0])


signal.signal(signal.SIGALRM, _on_alarm)
for _number, (_input, _expected) in enumerate(zip(_TESTS["inputs"], _TESTS["outputs"])):
    signal.alarm(_SECONDS)
    try:
        _passed = _check(_input, _expected)
    except _TestTimeout:
        print(f"test {{_number}} {timeout_note}", file=sys.stderr)
        sys.exit(1)
    finally:
        signal.alarm(0)
    if not _passed:
        print(f"test {{_number}} failed", file=sys.stderr)
        sys.exit(1)
'''


def _tests(row: dict[str, Any], path: Path | str) -> dict[str, Any] | None:
    raw = row.get("input_output")
    if not raw:
        return None
    try:
        tests = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        raise UserError(f"APPS file {path}: problem {row.get('problem_id')} has input_output that "
                        "is not JSON") from None
    if not tests.get("inputs"):
        return None
    return tests


def _first_solution(row: dict[str, Any]) -> str | None:
    """The first of the row's human solutions (a JSON list in a string), if it has any."""
    try:
        solutions = json.loads(row.get("solutions") or "[]")
    except json.JSONDecodeError:
        return None
    return solutions[0] if isinstance(solutions, list) and solutions else None


def base_prompt(question: str, starter_code: str, call_based: bool) -> str:
    kind = "Call-Based" if call_based else "Standard Input"
    return f"\nQUESTION:\n{question}\n{starter_code}\n\nUse {kind} format\n\nANSWER:\n"


def instruct_prompt(question: str, starter_code: str, fn_name: str | None) -> str:
    if fn_name:
        task = f"Complete the function `{fn_name}`; the tests call it and check what it returns."
    else:
        task = "The program reads its input from standard input and writes the answer to standard output."
    starter = f"\nStart from this code:\n```python\n{starter_code}\n```\n" if starter_code.strip() else ""
    return (
        f"Solve this problem in Python.\n\n{question.strip()}\n{starter}\n{task} "
        "Give the complete solution in one ```python code block."
    )


class APPS(Benchmark):
    name = "apps"
    language = "python"
    max_new_tokens = MAX_NEW_TOKENS
    limits = LIMITS

    def __init__(self, path: Path | str) -> None:
        rows = read_jsonl(path, "APPS file")
        self.problems = []
        self.skipped_without_tests = 0
        for number, row in enumerate(rows):
            require_fields(row, ("question", "input_output"), path, "APPS file")
            tests = _tests(row, path)
            if tests is None:
                self.skipped_without_tests += 1
                continue
            fn_name = tests.get("fn_name")
            starter = row.get("starter_code") or ""
            problem_id = row.get("problem_id", row.get("id", number))
            self.problems.append(
                Problem(
                    task_id=f"APPS/{problem_id}",
                    prompt=base_prompt(row["question"], starter, fn_name is not None),
                    instruction=instruct_prompt(row["question"], starter, fn_name),
                    stop=STOPS,
                    fields={"tests": tests, "fn_name": fn_name, "reference": _first_solution(row)},
                    group=str(row.get("difficulty", "")),
                )
            )
        if not self.problems:
            raise UserError(f"APPS file {path} has no problem with tests (input_output)")

    def completion(self, problem: Problem, output: str, style: Style) -> str:
        if style == "base":
            return truncate_at_stop(output, problem.stop)
        block = first_code_block(output, "python")
        return block if block is not None else output

    def program(self, problem: Problem, completion: str, origin: Origin) -> str:
        tests = {"inputs": problem.fields["tests"]["inputs"], "outputs": problem.fields["tests"]["outputs"]}
        return _HARNESS.format(
            code=completion,
            tests=json.dumps(tests),
            fn_name=problem.fields["fn_name"],
            seconds=SECONDS_PER_TEST,
            timeout_note=TIMEOUT_NOTE,
        )

    def judge(self, problem: Problem, completion: str, result: ExecResult) -> Verdict:
        verdict = verdict_from_execution(result)
        if verdict.status == "failed" and TIMEOUT_NOTE in verdict.detail:
            return Verdict("timeout", verdict.detail)
        return verdict
