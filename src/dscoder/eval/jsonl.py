"""Reading benchmark and sample files: JSON Lines, gzipped or not, with errors a user can act on."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from dscoder.errors import UserError

_GZIP_MAGIC = b"\x1f\x8b"


def read_jsonl(path: Path | str, what: str = "data file") -> list[dict[str, Any]]:
    """Every row of a .jsonl or .jsonl.gz file (detected by content, not name) as a dict.

    Blank lines are skipped; a line that is not a JSON object raises UserError naming the file
    and line, since a half-read benchmark would give a misleading score.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist or is not a file")
    with path.open("rb") as raw:
        is_gzip = raw.read(2) == _GZIP_MAGIC
    opener = gzip.open if is_gzip else open
    rows: list[dict[str, Any]] = []
    try:
        with opener(path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise UserError(
                        f"{what} {path} line {number} is not valid JSON ({error.msg})"
                    ) from None
                if not isinstance(row, dict):
                    raise UserError(f"{what} {path} line {number} is not a JSON object")
                rows.append(row)
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {what} {path}: {error}") from None
    if not rows:
        raise UserError(f"{what} {path} has no rows")
    return rows


def require_fields(row: dict[str, Any], fields: tuple[str, ...], path: Path | str, what: str) -> None:
    """UserError naming the first missing field, so a wrong file is caught at load time."""
    for name in fields:
        if name not in row:
            raise UserError(
                f"{what} {path} has a row without the field {name!r} "
                f"(fields present: {', '.join(sorted(row)) or 'none'})"
            )
