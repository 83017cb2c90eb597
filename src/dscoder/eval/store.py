"""Append-only JSONL logs keyed by (task_id, sample_index): what makes a run resumable.

Each finished generation or execution is appended and flushed at once, so a run killed part-way
loses at most the row being written. On load, a torn last line (the process died mid-write) is
cut off; anything else malformed is a corrupt file and stops the run rather than being guessed
at.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dscoder.errors import UserError

SampleKey = tuple[str, int]


def sample_key(row: dict[str, Any]) -> SampleKey:
    return str(row["task_id"]), int(row["sample_index"])


class SampleLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[SampleKey, dict[str, Any]]:
        """The rows logged so far, by key (a later row for a key replaces an earlier one)."""
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        complete_end = data.rfind(b"\n") + 1
        if complete_end < len(data):  # a torn last line: drop it so appends start cleanly
            with self.path.open("r+b") as handle:
                handle.truncate(complete_end)
        rows: dict[SampleKey, dict[str, Any]] = {}
        for number, line in enumerate(data[:complete_end].splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                rows[sample_key(row)] = row
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise UserError(
                    f"run log {self.path} line {number} is corrupt; delete the file to redo its "
                    "samples"
                ) from None
        return rows

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        if not lines:
            return
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())


def write_text_atomically(path: Path, text: str) -> None:
    """Replace `path` in one step, so a reader (or a crash) never sees half a report."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
