"""Turning a model's raw output into the code to run: stop-sequence truncation and fenced blocks.

Benchmarks compose these; what is specific to one benchmark (HumanEval's function splicing, the
PAL `solution()` program, DS-1000's markers) lives in that benchmark's module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Info strings a model may put after ``` for each executor language. Models are inconsistent
# (```py, ```c++, ```shell), and an untagged fence is common, so matching is by set, not by
# the single spelling DeepSeek's harness looks for.
FENCE_TAGS: dict[str, frozenset[str]] = {
    "python": frozenset({"python", "py", "python3"}),
    "cpp": frozenset({"cpp", "c++", "cc", "cxx"}),
    "java": frozenset({"java"}),
    "php": frozenset({"php"}),
    "ts": frozenset({"typescript", "ts"}),
    "cs": frozenset({"csharp", "cs", "c#"}),
    "sh": frozenset({"bash", "sh", "shell"}),
    "js": frozenset({"javascript", "js", "node"}),
}

# The fence tag DeepSeek's instruction prompt names for each language ("```{tag}").
PROMPT_FENCE_TAG: dict[str, str] = {
    "python": "python",
    "cpp": "cpp",
    "java": "java",
    "php": "php",
    "ts": "typescript",
    "cs": "csharp",
    "sh": "bash",
    "js": "javascript",
}

_FENCE_LINE = re.compile(r"^[ \t]*```[ \t]*([^\s`]*)[^\n`]*$", re.MULTILINE)


@dataclass(frozen=True)
class CodeBlock:
    tag: str  # the fence's info string, lower-cased ("" when untagged)
    code: str
    closed: bool  # False when the output ended (length limit) before the closing fence


def truncate_at_stop(text: str, stops: Iterable[str]) -> str:
    """`text` up to (not including) the earliest occurrence of any stop sequence."""
    end = len(text)
    for stop in stops:
        if not stop:
            continue
        index = text.find(stop)
        if 0 <= index < end:
            end = index
    return text[:end]


def fenced_blocks(text: str) -> list[CodeBlock]:
    """The ``` fenced blocks of a Markdown-ish answer, in order, including an unclosed last one."""
    blocks: list[CodeBlock] = []
    fences = list(_FENCE_LINE.finditer(text))
    index = 0
    while index < len(fences):
        opening = fences[index]
        body_start = opening.end() + 1  # skip the newline after the opening fence
        if index + 1 < len(fences):
            closing = fences[index + 1]
            code = text[body_start : closing.start()]
            blocks.append(CodeBlock(opening.group(1).lower(), code, closed=True))
            index += 2
        else:
            blocks.append(CodeBlock(opening.group(1).lower(), text[body_start:], closed=False))
            index += 1
    return blocks


def first_code_block(text: str, language: str) -> str | None:
    """The code of the first block tagged as `language`, else of the first untagged block.

    Returns None when the answer has no usable block: the caller decides whether that is a
    failure (instruct prompts ask for a block) or a cue to treat the whole answer as code.
    """
    tags = FENCE_TAGS.get(language, frozenset({language}))
    blocks = fenced_blocks(text)
    for wanted in (lambda tag: tag in tags, lambda tag: tag == ""):
        for block in blocks:
            if wanted(block.tag):
                return block.code
    return None
