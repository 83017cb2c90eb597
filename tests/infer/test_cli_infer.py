"""`dscoder complete | infill | repo-complete | chat` print exactly what the engine generates."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import dscoder.cli as cli
from dscoder.infer import (
    Engine,
    Request,
    SamplingParams,
    build_repo_context,
    chat_prompt,
    completion_prompt,
    infill_prompt,
    repo_prompt,
)
from dscoder.model import load_model
from dscoder.tokenizer import Tokenizer


@pytest.fixture(autouse=True)
def only_infer_commands(monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["infer"])


def expected(checkpoint: Path, tokenizer: Tokenizer, prompt, n: int, **params) -> str:
    engine = Engine(load_model(checkpoint), tokenizer, max_batch_size=1, max_seq_len=512)
    request = Request(prompt.ids, SamplingParams(max_new_tokens=n, **params), prompt.stop_token_ids)
    return engine.generate([request])[0].text


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_complete_prints_only_the_greedy_continuation(checkpoint: Path, tokenizer: Tokenizer, capsys):
    status, out, err = run(capsys, "complete", "--model", str(checkpoint), "--prompt", "def add(a, b):\n",
                           "--max-new-tokens", "12")
    assert status == 0 and err == ""
    want = expected(checkpoint, tokenizer, completion_prompt(tokenizer, "def add(a, b):\n"), 12)
    assert out == want and want


def test_complete_samples_reproducibly_with_a_seed(checkpoint: Path, tokenizer: Tokenizer, capsys, tmp_path: Path):
    prompt_file = tmp_path / "prompt.py"
    prompt_file.write_text("import os\n", encoding="utf-8")
    argv = ["complete", "--model", str(checkpoint), "--prompt-file", str(prompt_file), "--max-new-tokens", "10",
            "--temperature", "0.8", "--top-p", "0.9", "--seed", "5"]
    first, second = run(capsys, *argv)[1], run(capsys, *argv)[1]
    assert first == second
    assert first == expected(checkpoint, tokenizer, completion_prompt(tokenizer, "import os\n"), 10,
                             temperature=0.8, top_p=0.9, seed=5)


def test_infill_prints_the_middle(checkpoint: Path, tokenizer: Tokenizer, capsys):
    status, out, _ = run(capsys, "infill", "--model", str(checkpoint), "--prefix", "def f(x):\n    return ",
                         "--suffix", "\n\nprint(f(2))\n", "--max-new-tokens", "8")
    assert status == 0
    assert out == expected(checkpoint, tokenizer, infill_prompt(tokenizer, "def f(x):\n    return ", "\n\nprint(f(2))\n"), 8)


def test_repo_complete_uses_the_repository_context(checkpoint: Path, tokenizer: Tokenizer, capsys, tmp_path: Path):
    (tmp_path / "lib.py").write_text("def helper():\n    return 1\n", encoding="utf-8")
    (tmp_path / "main.py").write_text("from lib import helper\n\nx = ", encoding="utf-8")
    status, out, err = run(capsys, "repo-complete", "--model", str(checkpoint), "--repo", str(tmp_path),
                           "--file", "main.py", "--max-new-tokens", "6", "--show-context")
    assert status == 0 and "lib.py, main.py" in err
    context = build_repo_context(tmp_path, "main.py", tokenizer, max_tokens=512 - 6)
    assert out == expected(checkpoint, tokenizer, repo_prompt(tokenizer, context.text), 6)


def test_chat_answers_one_message(checkpoint: Path, tokenizer: Tokenizer, capsys):
    status, out, _ = run(capsys, "chat", "--model", str(checkpoint), "--message", "Write hello world.",
                         "--max-new-tokens", "8")
    want = expected(checkpoint, tokenizer, chat_prompt(tokenizer, [{"role": "user", "content": "Write hello world."}]), 8)
    assert status == 0 and out == want + ("" if want.endswith("\n") else "\n")


def test_chat_keeps_the_conversation_and_resets(checkpoint: Path, tokenizer: Tokenizer, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("hi\nmore\n/reset\nhi\n"))
    status, out, _ = run(capsys, "chat", "--model", str(checkpoint), "--max-new-tokens", "4", "--stop", "\n")
    assert status == 0
    first = expected(checkpoint, tokenizer, chat_prompt(tokenizer, [{"role": "user", "content": "hi"}]), 4, stop=("\n",))
    second = expected(checkpoint, tokenizer, chat_prompt(tokenizer, [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": first},
        {"role": "user", "content": "more"}]), 4, stop=("\n",))
    # One line per reply; after /reset the same message gets the first answer again.
    assert out.split("\n") == [first, second, first, ""]


def test_mistakes_exit_2_with_one_line(checkpoint: Path, capsys, tmp_path: Path):
    status, out, err = run(capsys, "complete", "--model", str(tmp_path / "missing"), "--prompt", "x")
    assert status == 2 and out == "" and err.startswith("dscoder: error:") and err.count("\n") == 1
    status, _, err = run(capsys, "complete", "--model", str(checkpoint), "--prompt", "x", "--top-p", "0")
    assert status == 2 and "top_p" in err
    status, _, err = run(capsys, "infill", "--model", str(checkpoint), "--prefix", "a")
    assert status == 2 and "--suffix" in err
