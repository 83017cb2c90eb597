"""Scoring a dscoder checkpoint in-process: a tiny random model through the real engine."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pytest
import torch
from eval_support import BENCHMARKS, run_eval_cli

from dscoder.eval.sources import ChatMessage, GenerationRequest, LocalModel
from dscoder.model import PRESETS, Transformer, save_model
from dscoder.tokenizer import train_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer model with a 512-token context and a tokenizer trained on two modules."""
    texts = [(STDLIB / name).read_text(encoding="utf-8") for name in ("textwrap.py", "string.py")]
    tokenizer = train_tokenizer(texts, vocab_size=400)
    config = PRESETS["test"].replace(vocab_size=tokenizer.vocab_size, bos_token_id=tokenizer.bos_id,
                                     eos_token_id=tokenizer.eos_id, max_position_embeddings=512)
    torch.manual_seed(0)
    model = Transformer(config)
    model.init_weights(std=0.2)
    directory = tmp_path_factory.mktemp("tiny-checkpoint")
    save_model(model, directory)
    tokenizer.save(directory)
    return directory


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
