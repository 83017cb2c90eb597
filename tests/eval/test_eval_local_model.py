"""Scoring a dscoder checkpoint in-process: a tiny random model through the real engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_support import BENCHMARKS, run_eval_cli
from tiny_checkpoint import stdlib_tokenizer, write_checkpoint

from dscoder.eval.sources import ChatMessage, GenerationRequest, LocalModel


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer model with a 512-token context and a tokenizer trained on two modules."""
    tokenizer = stdlib_tokenizer(("textwrap.py", "string.py"), 400)
    return write_checkpoint(tokenizer, tmp_path_factory.mktemp("tiny-checkpoint"))


def test_prompts_and_chats_longer_than_the_context_still_generate(checkpoint: Path) -> None:
    source = LocalModel(checkpoint, max_batch_size=2)
    long_prompt = "def f(x):\n    return x\n" * 200  # far beyond 512 tokens: its end is kept
    requests = [
        GenerationRequest("a", 0, prompt=long_prompt, max_new_tokens=8),
        GenerationRequest("b", 0, messages=(ChatMessage("user", "Write a function."),), max_new_tokens=8,
                          temperature=0.7, seed=3),
    ]
    first = source.complete(requests)
    assert len(first) == 2 and all(isinstance(text, str) for text in first)
    assert source.complete(requests) == first  # greedy, and seeded sampling, repeat exactly


def test_cli_scores_a_checkpoint_honestly(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_eval_cli(["--benchmark", "mbpp", "--data", str(BENCHMARKS / "mbpp" / "mbpp.jsonl.gz"),
                         "--output", str(out), "--model", str(checkpoint), "--name", "tiny-random",
                         "--limit", "2", "--max-new-tokens", "16"]) == 0
    score = json.loads((out / "summary.json").read_text())["benchmarks"]["mbpp"]
    assert score["problems"] == 2 and score["pass@1"] == 0.0
    assert sum(score["statuses"].values()) == 2
    markdown = (out / "results.md").read_text()
    assert "| **tiny-random (measured)** | – | – | – | – | – | – | – | – | – | 0.0* |" in markdown
    assert "tiny-random solved no problem at all" in markdown
