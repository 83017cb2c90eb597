"""What every benchmark provides: problems, prompts, post-processing, programs and verdicts.

The runner knows nothing about any one benchmark. It asks a benchmark for each problem's prompt
(base models continue text; instruct models get a chat message), turns the model's output into
a completion with `completion`, runs `program` in the sandbox, and asks `judge` for the verdict.

A sample passes only when the sandbox says so: exit status 0 *and* the random completion
marker it prints after the tests (see `dscoder.eval.languages`), so a completion that calls
`exit(0)` before the tests fails here, where the public harnesses count it as a pass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from dscoder.errors import UserError
from dscoder.eval.sandbox import ExecResult, Limits, Status

# How the model is prompted: base models continue a text, instruct models answer a chat turn.
Style = Literal["base", "instruct"]
# Where the completions come from; a samples file holds completions of the dataset's own prompt
# (the openai/human-eval convention), which differs from the prompt a model is shown.
Origin = Literal["base", "instruct", "samples"]

# Statuses a sample can end with: the sandbox's, in the order the reports list them.
STATUSES: tuple[str, ...] = get_args(Status)


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str  # the text a base model continues
    instruction: str  # the user message an instruct model answers
    stop: tuple[str, ...]  # where a base model's completion ends
    # What the program and judge need; "reference" holds the dataset's own solution, if any.
    fields: Mapping[str, Any] = field(default_factory=dict)
    group: str = ""  # a sub-score label: a DS-1000 library, an APPS difficulty


@dataclass(frozen=True)
class Verdict:
    status: Status
    detail: str = ""  # why, for a person reading samples.jsonl


def verdict_from_execution(result: ExecResult) -> Verdict:
    """The sandbox's status, with the last line of stderr (the error, or the sandbox's note)."""
    return Verdict(result.status, "" if result.status == "passed" else _last_line(result.stderr_tail))


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


class Benchmark(ABC):
    """One benchmark file, loaded: a name for the reports, its problems and how to score them."""

    name: str  # the key in summary.json ("humaneval-cpp", "mbpp", "gsm8k", ...)
    language: str  # the sandbox language its programs are written in
    max_new_tokens: int
    limits: Limits
    problems: list[Problem]

    def base_prompt(self, problem: Problem) -> str:
        """The text a base model continues (instruct models get `instruction` as a chat turn)."""
        return problem.prompt

    @abstractmethod
    def completion(self, problem: Problem, output: str, style: Style) -> str:
        """The model's raw output reduced to the code (or program) that is stored and run."""

    @abstractmethod
    def program(self, problem: Problem, completion: str, origin: Origin) -> str:
        """The complete source to execute for one completion."""

    def judge(self, problem: Problem, completion: str, result: ExecResult) -> Verdict:
        return verdict_from_execution(result)

    def reference_solutions(self) -> dict[str, str]:
        """The dataset's own solutions, as completions (to check the harness on a machine)."""
        references = {p.task_id: p.fields["reference"] for p in self.problems if p.fields.get("reference")}
        if not references:
            raise UserError(f"this {self.name} file has no reference solutions")
        return references

    def close(self) -> None:
        """Release what judging holds (PAL-Math's sympy worker); the runner calls it at the end."""
