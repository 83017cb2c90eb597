"""HumanEval in Python and its MultiPL-E translations (C++, Java, PHP, TypeScript, C#, Bash, JS).

Three published file formats load here, told apart by their fields:

- openai/human-eval (`HumanEval.jsonl.gz`): `entry_point`, and a `test` that defines
  `check(candidate)`; the program ends with `check(<entry_point>)`.
- HumanEval-X Python, DeepSeek's `humaneval-python.jsonl`: `test` calls `check(...)` itself;
  DeepSeek's harness prepends an import header, reproduced here without `import numpy` (no
  problem needs it and the sandbox's Python need not have it).
- MultiPL-E (`humaneval-<lang>.jsonl`): `language`, `tests`, `stop_tokens`. For C++, Java, C#
  and Bash `tests` begins with the `}` that closes the function; for JS, TS and PHP the
  completion closes it.

Base models continue the prompt, stripped (as DeepSeek's harness does), and their output is cut
at the first stop sequence. Instruct models get DeepSeek's request to complete the function in a
code block; the function is taken out of the first block and spliced between the prompt's
preamble and the tests.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dscoder.errors import UserError
from dscoder.eval.benchmarks.base import Benchmark, Origin, Problem, Style
from dscoder.eval.extract import PROMPT_FENCE_TAG, first_code_block, truncate_at_stop
from dscoder.eval.jsonl import read_jsonl, require_fields
from dscoder.eval.sandbox import Limits

PYTHON_STOPS = ("\ndef", "\nclass", "\nif", "\n#", "\nprint")
# DeepSeek's harness also cuts TypeScript at module-level statements the tests do not expect.
EXTRA_STOPS = {"ts": ("\nexport", "\nimport", "\nexport default", "\nimport default", "\nconsole.log")}
MAX_NEW_TOKENS = 500
MULTIPL_E_LANGUAGES = ("cpp", "java", "php", "ts", "cs", "sh", "js")

# DeepSeek's HumanEval-X Python header, minus numpy.
HUMANEVAL_X_PYTHON_HEADER = (
    "import math\nimport re\nimport sys\nimport copy\nimport datetime\nimport itertools\n"
    "import collections\nimport heapq\nimport statistics\nimport functools\nimport hashlib\n"
    "import string\nfrom typing import *\nfrom collections import *\n"
)

INSTRUCTION_TEMPLATE = (
    "Please help me to complete the function. Use the given packages only and DO NOT refer any "
    "new package. Please return all completed function in a codeblock. \n"
    "Here is the given code to do completion:\n```{tag}\n{code}\n```"
)

# Where a function's closing brace belongs: in the tests (the completion stops before it) or in
# the completion.
_TESTS_CLOSE_FUNCTION = {"cpp", "java", "cs", "sh"}
# Entry points of the generated test programs, which an instruct answer may repeat.
_MAIN_SIGNATURES = {
    "cpp": "int main(",
    "java": "public static void main(",
    "cs": "public static void Main(",
}
_IDENTIFIER_BEFORE_PAREN = re.compile(r"([A-Za-z_$][\w$]*)\s*\(")
_PYTHON_DEF = re.compile(r"^def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)


class HumanEval(Benchmark):
    max_new_tokens = MAX_NEW_TOKENS

    def __init__(self, path: Path | str) -> None:
        rows = read_jsonl(path, "HumanEval file")
        first = rows[0]
        if "language" in first:
            self.language = str(first["language"])
            if self.language not in MULTIPL_E_LANGUAGES:
                raise UserError(
                    f"HumanEval file {path} is in {self.language!r}; supported: "
                    f"python, {', '.join(MULTIPL_E_LANGUAGES)}"
                )
            self.problems = [_multipl_e_problem(row, path) for row in rows]
        elif "entry_point" in first:
            self.language = "python"
            self.problems = [_openai_problem(row, path) for row in rows]
        elif "declaration" in first and "test" in first:
            self.language = "python"
            self.problems = [_humaneval_x_problem(row, path) for row in rows]
        else:
            raise UserError(
                f"{path} is not a HumanEval file: expected openai/human-eval rows (entry_point), "
                "HumanEval-X rows (declaration) or MultiPL-E rows (language)"
            )
        self.name = f"humaneval-{self.language}"
        self.limits = Limits()

    def base_prompt(self, problem: Problem) -> str:
        return problem.prompt.strip()

    def completion(self, problem: Problem, output: str, style: Style) -> str:
        if style == "base":
            return truncate_at_stop(output, problem.stop)
        return extract_function(output, problem, self.language)

    def program(self, problem: Problem, completion: str, origin: Origin) -> str:
        prompt = problem.prompt
        if origin == "base":
            code = prompt.strip() + completion
        elif origin == "instruct":
            code = _preamble(prompt, self.language) + "\n" + completion
        else:
            code = prompt + completion
        fields = problem.fields
        if self.language == "python":
            header = fields.get("header", "")
            check = f"\ncheck({fields['entry_point']})\n" if fields.get("entry_point") else "\n"
            return header + code + "\n" + fields["test"] + check
        return code + "\n" + fields["test"]


def _openai_problem(row: dict[str, Any], path: Path | str) -> Problem:
    require_fields(row, ("task_id", "prompt", "entry_point", "test"), path, "HumanEval file")
    fields = {"test": row["test"], "entry_point": row["entry_point"], "reference": row.get("canonical_solution")}
    return _problem(row, "python", PYTHON_STOPS, fields)


def _humaneval_x_problem(row: dict[str, Any], path: Path | str) -> Problem:
    require_fields(row, ("task_id", "prompt", "test"), path, "HumanEval file")
    fields = {"test": row["test"], "header": HUMANEVAL_X_PYTHON_HEADER, "reference": row.get("canonical_solution")}
    return _problem(row, "python", PYTHON_STOPS, fields)


def _multipl_e_problem(row: dict[str, Any], path: Path | str) -> Problem:
    require_fields(row, ("name", "language", "prompt", "tests", "stop_tokens"), path, "HumanEval file")
    language = row["language"]
    stops = tuple(row["stop_tokens"]) + EXTRA_STOPS.get(language, ())
    return _problem({**row, "task_id": row["name"]}, language, stops, {"test": row["tests"]})


def _problem(row: dict[str, Any], language: str, stops: tuple[str, ...], fields: dict) -> Problem:
    prompt = row["prompt"]
    instruction = INSTRUCTION_TEMPLATE.format(tag=PROMPT_FENCE_TAG[language], code=prompt.strip())
    return Problem(str(row["task_id"]), prompt, instruction, stops, fields)


def _signature_line(prompt: str, language: str) -> tuple[int, str]:
    """(offset, text) of the prompt's line that declares the function to complete."""
    lines = prompt.rstrip().split("\n")
    if language == "python":
        offsets = [m.start() for m in _PYTHON_DEF.finditer(prompt)]
        offset = offsets[-1]
        return offset, prompt[offset:].split("\n", 1)[0]
    last = lines[-1]
    return len(prompt.rstrip()) - len(last), last


def _preamble(prompt: str, language: str) -> str:
    """The prompt before its function's signature line: imports, helpers, a class header."""
    offset, _ = _signature_line(prompt, language)
    return prompt[:offset].rstrip("\n") + "\n"


def _function_name(prompt: str, language: str) -> str:
    """The declared name: in every MultiPL-E signature, the identifier just before the first "(".
    """
    _, line = _signature_line(prompt, language)
    match = _IDENTIFIER_BEFORE_PAREN.search(line)
    if match is None:
        raise ValueError(f"no function name in the signature line {line!r}")
    return match.group(1)


def _matching_brace(code: str, open_index: int, language: str) -> int | None:
    """Index of the brace closing the one at `open_index`; braces inside string literals and
    comments (an apostrophe in "// don't" would otherwise open a string) do not count."""
    line_comment = "#" if language == "sh" else "//"
    depth, index, quote = 0, open_index, ""
    while index < len(code):
        char = code[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif code.startswith(line_comment, index) and (language != "sh" or code[index - 1] in " \t\n"):
            newline = code.find("\n", index)
            index = len(code) if newline < 0 else newline
            continue
        elif language != "sh" and code.startswith("/*", index):
            end = code.find("*/", index + 2)
            index = len(code) if end < 0 else end + 2
            continue
        elif char in "\"'`":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return None


def extract_function(output: str, problem: Problem, language: str) -> str:
    """The function an instruct model wrote, ready to follow the prompt's preamble.

    Python keeps the whole block (imports and helpers included; redefining is harmless). Other
    languages keep the function from its signature line, without any `main` the model added, up
    to its closing brace, which stays only where the tests do not supply it.
    """
    block = first_code_block(output, language)
    code = block if block is not None else output
    if language == "python":
        return code
    main = _MAIN_SIGNATURES.get(language)
    if main and main in code:
        code = code[: code.index(main)]
    name = _function_name(problem.prompt, language)
    match = re.search(rf"(?<![\w$]){re.escape(name)}\s*\(", code)
    start = code.rfind("\n", 0, match.start()) + 1 if match else 0
    open_brace = code.find("{", match.end() if match else 0)
    close = _matching_brace(code, open_brace, language) if open_brace >= 0 else None
    if close is None:  # an unbalanced answer: keep it whole; it will fail to compile
        return code[start:].rstrip() + "\n"
    end = close if language in _TESTS_CLOSE_FUNCTION else close + 1
    return code[start:end].rstrip() + "\n"
