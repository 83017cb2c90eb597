"""DS-1000: data-science problems over seven libraries, completion mode (the user's copy).

The data is DS-1000's `ds1000.jsonl` (gzipped or not): `prompt`, `reference_code`,
`code_context` (defining `test_execution(solution)` and sometimes `test_string(solution)`) and
`metadata` (`problem_id`, `library`, ...). The model continues the prompt, which ends inside a
`<code>` block; its answer ends at `</code>`. The program is the one DS-1000's own evaluation
builds: the context, `code = <the answer as a string literal>`, then the test calls. Scores are
also reported per library, as DS-1000 does.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from dscoder.eval.benchmarks.base import Benchmark, Origin, Problem, Style
from dscoder.eval.extract import first_code_block, truncate_at_stop
from dscoder.eval.jsonl import read_jsonl, require_fields
from dscoder.eval.sandbox import Limits

STOPS = ("</code>", "# SOLUTION END", "\nEND SOLUTION")
MAX_NEW_TOKENS = 2048
# DS-1000's evaluation allows 120 s per problem: some contexts fit scikit-learn models.
LIMITS = replace(Limits(), run_wall_s=120.0, cpu_s=120.0)


def clean_answer(text: str) -> str:
    """DS-1000's post-processing: drop Markdown fences and the <code> markers around the answer."""
    text = text.split("</code>")[0]
    text = text.replace("```python", "")
    text = text.split("```")[0]
    text = text.split("\nEND SOLUTION")[0]
    return text.replace("<code>", "")


class DS1000(Benchmark):
    name = "ds1000"
    language = "python"
    max_new_tokens = MAX_NEW_TOKENS
    limits = LIMITS

    def __init__(self, path: Path | str) -> None:
        rows = read_jsonl(path, "DS-1000 file")
        self.problems = []
        for number, row in enumerate(rows):
            require_fields(row, ("prompt", "code_context"), path, "DS-1000 file")
            metadata = row.get("metadata") or {}
            problem_id = metadata.get("problem_id", number)
            self.problems.append(
                Problem(
                    task_id=f"DS-1000/{problem_id}",
                    prompt=row["prompt"],
                    instruction=row["prompt"],
                    stop=STOPS,
                    fields={
                        "code_context": row["code_context"],
                        "reference": row.get("reference_code", ""),
                    },
                    group=str(metadata.get("library", "")),
                )
            )

    def completion(self, problem: Problem, output: str, style: Style) -> str:
        if style == "base":
            return clean_answer(truncate_at_stop(output, problem.stop))
        block = first_code_block(output, "python")
        return clean_answer(block if block is not None else output)

    def program(self, problem: Problem, completion: str, origin: Origin) -> str:
        context = problem.fields["code_context"]
        string_test = "test_string(code)\n" if "test_string(" in context else ""
        return f"{context}\ncode = {completion!r}\ntest_execution(code)\n{string_test}"
