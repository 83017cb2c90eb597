"""PAL-Math: the model writes `def solution():` in Python; its return value is the answer.

Datasets, in DeepSeek's PAL-Math copies (JSON Lines; openai's GSM8K file works as is): GSM8K,
MATH, GSM-Hard and SVAMP ship with the project; TabMWP, ASDiv and MAWPS load from the user's
copies. The prompt is DeepSeek's few-shot text (MATH has its own, asking for LaTeX), followed by
`\\n\\nQuestion: {question}\\n`; generation stops at "Question" or the shot separator. The
program is the first Python block that defines `solution()`, run in the sandbox; what it returns
is compared with the dataset's answer by `math_answers.AnswerJudge`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
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
from dscoder.eval.extract import fenced_blocks, truncate_at_stop
from dscoder.eval.jsonl import read_jsonl, require_fields
from dscoder.eval.math_answers import AnswerJudge, extract_boxed
from dscoder.eval.sandbox import ExecResult, Limits

STOPS = ("Question", "----------------")
# The line the program prints its answer on; the last such line counts.
ANSWER_PREFIX = "DSCODER-PAL-ANSWER:"
MAX_NEW_TOKENS = 512
_SOLUTION_DEF = re.compile(r"^def solution\(", re.MULTILINE)


@dataclass(frozen=True)
class MathDataset:
    """How one dataset's rows give a question and a reference answer."""

    fields: tuple[str, ...]
    question: Callable[[dict[str, Any]], str]
    answer: Callable[[dict[str, Any]], Any]
    prompt_file: str = "pal_gsm8k.md"


def _svamp_question(row: dict[str, Any]) -> str:
    body = row["Body"].strip()
    return f"{body if body.endswith('.') else body + '.'} {row['Question'].strip()}"


def _math_answer(row: dict[str, Any]) -> str:
    answer = extract_boxed(row["solution"])
    return answer if answer is not None else ""


def _tabmwp_question(row: dict[str, Any]) -> str:
    title = f'regarding "{row["table_title"]}" ' if row.get("table_title") else ""
    question = f"Read the following table {title}and answer a question:\n{row['table']}\n{row['question']}"
    if row.get("choices"):
        question += f" Please select from the following options: {row['choices']}"
    return question


def _tabmwp_answer(row: dict[str, Any]) -> Any:
    answer = str(row["answer"])
    if row.get("ans_type") not in ("integer_number", "decimal_number"):
        return answer
    if "/" in answer:
        numerator, denominator = answer.split("/")
        return int(numerator) / int(denominator)
    if "%" in answer:
        return float(answer.split("%")[0]) / 100
    return float(answer.replace(",", ""))


DATASETS: dict[str, MathDataset] = {
    "gsm8k": MathDataset(
        ("question", "answer"), lambda r: r["question"], lambda r: r["answer"].split("####")[-1].strip()
    ),
    "math": MathDataset(("problem", "solution"), lambda r: r["problem"], _math_answer, "pal_math.md"),
    "gsm-hard": MathDataset(("input", "target"), lambda r: r["input"], lambda r: r["target"]),
    "svamp": MathDataset(("Body", "Question", "Answer"), _svamp_question, lambda r: r["Answer"]),
    "asdiv": MathDataset(
        ("body", "question", "answer"),
        lambda r: f"{r['body'].strip()} {r['question'].strip()}",
        lambda r: re.sub(r"\(.*?\)", "", str(r["answer"])).strip(),
    ),
    "mawps": MathDataset(("input", "target"), lambda r: r["input"], lambda r: r["target"]),
    "tabmwp": MathDataset(("table", "question", "answer"), _tabmwp_question, _tabmwp_answer),
}


def few_shot_prompt(file_name: str) -> str:
    return resources.files("dscoder.eval").joinpath("data", file_name).read_text(encoding="utf-8")


def extract_solution_program(output: str) -> str:
    """The first Python block that defines `solution()`; an unclosed block (the model ran out of
    tokens) counts. Without fences, the text from `def solution(` on, with any imports above it."""
    for block in fenced_blocks(output):
        if block.tag in ("python", "py", "python3", "") and "def solution(" in block.code:
            return block.code
    match = _SOLUTION_DEF.search(output)
    if match is None:
        return ""
    above = output[: match.start()].split("\n")[:-1]
    start = len(above)
    while start > 0 and _is_import_or_blank(above[start - 1]):
        start -= 1
    return "".join(line + "\n" for line in above[start:]) + output[match.start() :]


def _is_import_or_blank(line: str) -> bool:
    return not line.strip() or line.startswith(("import ", "from "))


class PalMath(Benchmark):
    language = "python"
    max_new_tokens = MAX_NEW_TOKENS

    def __init__(self, name: str, path: Path | str) -> None:
        if name not in DATASETS:
            raise UserError(f"unknown PAL-Math dataset {name!r}; known: {', '.join(DATASETS)}")
        self.name = name
        dataset = DATASETS[name]
        shots = few_shot_prompt(dataset.prompt_file)
        rows = read_jsonl(path, f"{name} file")
        self.problems = []
        for number, row in enumerate(rows):
            require_fields(row, dataset.fields, path, f"{name} file")
            question = dataset.question(row).strip()
            prompt = f"{shots}\n\nQuestion: {question}\n"
            task_id = f"{name}/{row.get('idx', number)}"
            fields = {"answer": dataset.answer(row), "reference": row.get("code")}  # GSM-Hard only
            self.problems.append(Problem(task_id, prompt, prompt, STOPS, fields))
        self.limits = Limits()
        self._judge: AnswerJudge | None = None

    def completion(self, problem: Problem, output: str, style: Style) -> str:
        if style == "base":
            output = truncate_at_stop(output, problem.stop)
        return extract_solution_program(output)

    def program(self, problem: Problem, completion: str, origin: Origin) -> str:
        # The answer goes out JSON-quoted on one line, so a value with line breaks (a matrix,
        # a multi-line string) survives intact.
        return (
            f"{completion}\n\n"
            "import json as _dscoder_json\n"
            "_dscoder_answer = solution()\n"
            f"print({ANSWER_PREFIX!r} + _dscoder_json.dumps(str(_dscoder_answer)), flush=True)\n"
        )

    def judge(self, problem: Problem, completion: str, result: ExecResult) -> Verdict:
        if result.status != "passed":
            return verdict_from_execution(result)
        answer = answer_from_output(result.stdout_tail)
        if answer is None:
            return Verdict("failed", "the program ended without printing solution()'s value")
        expected = problem.fields["answer"]
        if self._answer_judge().matches(answer, expected):
            return Verdict("passed", f"answer {answer[:100]}")
        return Verdict("failed", f"answer {answer[:100]}, expected {str(expected)[:100]}")

    def _answer_judge(self) -> AnswerJudge:
        if self._judge is None:
            self._judge = AnswerJudge()
        return self._judge

    def close(self) -> None:
        if self._judge is not None:
            self._judge.close()
            self._judge = None


def answer_from_output(stdout: str) -> str | None:
    """The value the harness printed, or None when it never got there."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(ANSWER_PREFIX):
            try:
                return str(json.loads(line[len(ANSWER_PREFIX) :]))
            except json.JSONDecodeError:
                return None
    return None
