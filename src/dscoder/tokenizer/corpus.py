"""Training text for the tokenizer: the pipeline's Parquet shards, JSONL, or plain text files."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from dscoder.errors import UserError

TEXT_COLUMN = "text"
PARQUET_SUFFIX = ".parquet"
JSONL_SUFFIXES = (".jsonl", ".ndjson")
# Repository-level samples can be megabytes each: read few rows at a time.
_PARQUET_BATCH_ROWS = 256


def resolve_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files to read: each input file as is, each directory's Parquet shards in name order."""
    files: list[Path] = []
    for entry in map(Path, inputs):
        if entry.is_dir():
            shards = sorted(entry.rglob(f"*{PARQUET_SUFFIX}"))
            if not shards:
                raise UserError(f"{entry} holds no {PARQUET_SUFFIX} shards")
            files += shards
        elif entry.is_file():
            files.append(entry)
        else:
            raise UserError(f"input {entry} does not exist")
    if not files:
        raise UserError("no training input given")
    return files


def _parquet_texts(path: Path) -> Iterator[str]:
    try:
        shard = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for broken files
        raise UserError(f"{path} is not a readable Parquet file: {error}") from error
    if TEXT_COLUMN not in shard.schema_arrow.names:
        raise UserError(f"{path} has no '{TEXT_COLUMN}' column")
    for batch in shard.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=[TEXT_COLUMN]):
        yield from (text for text in batch.column(0).to_pylist() if text)


def _jsonl_texts(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise UserError(f"{path}:{number} is not JSON: {error}") from error
            text = record.get(TEXT_COLUMN) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise UserError(f"{path}:{number} has no string '{TEXT_COLUMN}' field")
            if text:
                yield text


def _file_text(path: Path) -> Iterator[str]:
    text = path.read_text(encoding="utf-8")
    if text:
        yield text


def read_texts(path: Path) -> Iterator[str]:
    try:
        if path.suffix == PARQUET_SUFFIX:
            yield from _parquet_texts(path)
        elif path.suffix in JSONL_SUFFIXES:
            yield from _jsonl_texts(path)
        else:
            yield from _file_text(path)
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not UTF-8 text") from error
    except OSError as error:
        raise UserError(f"cannot read {path}: {error}") from error


@dataclass
class TextCorpus:
    """The texts of some input files, stopping once `limit_bytes` of UTF-8 have been read.

    Iterating it counts what it read, so a caller can report the corpus it trained on.
    """

    files: list[Path]
    limit_bytes: int | None = None
    texts_read: int = field(default=0, init=False)
    bytes_read: int = field(default=0, init=False)

    @classmethod
    def from_inputs(
        cls, inputs: Sequence[str | os.PathLike[str]], limit_bytes: int | None = None
    ) -> TextCorpus:
        if limit_bytes is not None and limit_bytes <= 0:
            raise UserError("the byte limit must be a positive number of bytes")
        return cls(resolve_inputs(inputs), limit_bytes)

    def __iter__(self) -> Iterator[str]:
        for path in self.files:
            for text in read_texts(path):
                if self.limit_bytes is not None and self.bytes_read >= self.limit_bytes:
                    return
                self.texts_read += 1
                self.bytes_read += len(text.encode("utf-8"))
                yield text
