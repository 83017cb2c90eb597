"""Training: the vocabulary size asked for, and the inputs the pipeline and users give."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dscoder.errors import UserError
from dscoder.tokenizer import Tokenizer, special, train_tokenizer, train_tokenizer_on_files
from dscoder.tokenizer.corpus import TextCorpus


def write_shard(path: Path, texts: list[str]) -> None:
    # The pipeline's sample schema (docs: ARCHITECTURE, "Samples").
    table = pa.table(
        {
            "id": [f"sample-{i}" for i in range(len(texts))],
            "repo": ["example/repo"] * len(texts),
            "language": ["python"] * len(texts),
            "paths": [[f"module_{i}.py"] for i in range(len(texts))],
            "text": texts,
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


@pytest.mark.parametrize("vocab_size", [300, 500])
def test_vocab_size_is_respected(stdlib_texts: list[str], vocab_size: int):
    tokenizer = train_tokenizer(stdlib_texts, vocab_size)
    non_utf8 = len(special.NON_UTF8_BYTE_CHARS)
    assert tokenizer.bpe_vocab_size == vocab_size + non_utf8
    assert tokenizer.vocab_size == vocab_size + non_utf8 + len(special.NAMED_TOKENS)
    assert tokenizer.bos_id == vocab_size + non_utf8


def test_more_merges_mean_fewer_tokens(stdlib_texts: list[str]):
    text = stdlib_texts[0]
    small, large = (train_tokenizer(stdlib_texts, size) for size in (300, 900))
    assert len(large.encode(text)) < len(small.encode(text))
    assert large.decode(large.encode(text)) == text


def test_too_small_vocab_or_no_text_is_a_user_error(stdlib_texts: list[str]):
    with pytest.raises(UserError, match="at least 256"):
        train_tokenizer(stdlib_texts, 100)
    with pytest.raises(UserError, match="no text"):
        train_tokenizer([], 300)


def test_trains_from_pipeline_parquet_shards(stdlib_texts: list[str], tmp_path: Path):
    write_shard(tmp_path / "samples" / "part-00000.parquet", stdlib_texts[:3])
    write_shard(tmp_path / "samples" / "part-00001.parquet", stdlib_texts[3:])
    report = train_tokenizer_on_files([tmp_path / "samples"], tmp_path / "tok", 400)
    assert report.texts == len(stdlib_texts)
    assert report.bytes == sum(len(text.encode("utf-8")) for text in stdlib_texts)
    assert report.trained_bpe_tokens == report.requested_bpe_tokens == 400
    loaded = Tokenizer.from_dir(tmp_path / "tok")
    assert loaded.vocab_size == report.vocab_size
    assert loaded.decode(loaded.encode(stdlib_texts[0])) == stdlib_texts[0]


def test_reads_jsonl_and_text_files(tmp_path: Path):
    jsonl = tmp_path / "docs.jsonl"
    lines = [json.dumps({"text": text}) for text in ("alpha beta", "gamma")]
    jsonl.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    plain = tmp_path / "notes.txt"
    plain.write_text("delta 12", encoding="utf-8")
    assert list(TextCorpus.from_inputs([jsonl, plain])) == ["alpha beta", "gamma", "delta 12"]


def test_limit_bytes_stops_reading(stdlib_texts: list[str], tmp_path: Path):
    write_shard(tmp_path / "part-00000.parquet", stdlib_texts)
    limit = len(stdlib_texts[0].encode("utf-8")) + 1
    corpus = TextCorpus.from_inputs([tmp_path], limit_bytes=limit)
    assert list(corpus) == stdlib_texts[:2]  # stops once the limit is reached, not mid-text
    assert corpus.bytes_read >= limit and corpus.texts_read == 2


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda d: d / "missing.parquet", "does not exist"),
        (lambda d: d, "holds no .parquet shards"),
        (lambda d: _shard_without_text(d), "no 'text' column"),
        (lambda d: _file(d / "bad.jsonl", b'{"content": "x"}\n'), "no string 'text' field"),
        (lambda d: _file(d / "bad.txt", b"\xff\xfe binary"), "not UTF-8 text"),
        (lambda d: _file(d / "bad.parquet", b"not parquet"), "not a readable Parquet file"),
    ],
)
def test_bad_inputs_are_user_errors(tmp_path: Path, make_input, message):
    with pytest.raises(UserError, match=message):
        list(TextCorpus.from_inputs([make_input(tmp_path)]))


def _file(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _shard_without_text(directory: Path) -> Path:
    path = directory / "no-text.parquet"
    pq.write_table(pa.table({"content": ["x"]}), path)
    return path
