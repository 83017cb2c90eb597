"""Shared fixtures: a small tokenizer and a small corpus from the standard library."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pytest
import torch

from dscoder.tokenizer import Tokenizer, train_tokenizer
from train_helpers import write_shard

STDLIB = Path(sysconfig.get_paths()["stdlib"])
# Modules of a few KB to a few tens of KB: enough text for several rows each.
MODULES = sorted(p for p in STDLIB.glob("*.py") if 2_000 < p.stat().st_size < 40_000)[:48]


@pytest.fixture(scope="session")
def corpus_texts() -> list[tuple[str, str]]:
    return [(p.name, p.read_text(encoding="utf-8")) for p in MODULES]


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, corpus_texts) -> Path:
    directory = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer([text for _, text in corpus_texts], vocab_size=700).save(directory)
    return directory


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir) -> Tokenizer:
    return Tokenizer.from_dir(tokenizer_dir)


@pytest.fixture(scope="session")
def shard_dir(tmp_path_factory, corpus_texts) -> Path:
    """Two Parquet shards, as the data pipeline writes them."""
    directory = tmp_path_factory.mktemp("shards")
    half = len(corpus_texts) // 2
    for i, part in enumerate((corpus_texts[:half], corpus_texts[half:])):
        write_shard(directory / f"part-{i:05d}.parquet", [t for _, t in part], [n for n, _ in part])
    return directory


@pytest.fixture(scope="session")
def sft_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sft") / "instructions.jsonl"
    records = [{"instruction": f"Write a function that returns {a} plus the argument.",
                "output": f"def add_{a}(x):\n    return x + {a}"} for a in range(40)]
    records.append({"messages": [
        {"role": "user", "content": "Name a sorting algorithm."},
        {"role": "assistant", "content": "Merge sort."},
        {"role": "user", "content": "Its complexity?"},
        {"role": "assistant", "content": "O(n log n)."}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: these models are tiny, the machine is shared, and losses compared across
    runs must come from the same kernels."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
