"""The demo's generated instruction set: varied, and every answer passes its check."""

from __future__ import annotations

import json
import re

from dscoder.train.instructions import generate_tasks, write_instructions
from dscoder.train.sft import read_chats


def test_every_answer_is_correct_code():
    tasks = generate_tasks(300, seed=5)
    assert len(tasks) == 300
    for task in tasks:
        code = re.search(r"```python\n(.*?)\n```", task.output, re.S).group(1)
        namespace: dict = {}
        exec(code, namespace)  # noqa: S102 - our own generated code
        exec(task.check, namespace)  # noqa: S102


def test_tasks_are_varied_and_deterministic():
    tasks = generate_tasks(300, seed=5)
    assert len({t.instruction for t in tasks}) == 300
    functions = {re.search(r"def (\w+)\(", t.output).group(1) for t in tasks}
    assert len(functions) > 60
    assert [t.instruction for t in generate_tasks(20, seed=5)] == [t.instruction for t in tasks[:20]]
    assert [t.instruction for t in generate_tasks(20, seed=6)] != [t.instruction for t in tasks[:20]]


def test_written_file_is_instruction_data(tmp_path):
    path = write_instructions(tmp_path / "sft.jsonl", 25, seed=1)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 25 and set(records[0]) == {"instruction", "output"}
    assert len(read_chats([path])) == 25
