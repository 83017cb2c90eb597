"""`dscoder tokenizer train`, called through its own parser."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from dscoder.cli import tokenizer as tokenizer_cli
from dscoder.errors import UserError
from dscoder.tokenizer import Tokenizer


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dscoder")
    tokenizer_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_train_writes_a_tokenizer_directory(stdlib_texts: list[str], tmp_path: Path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(stdlib_texts), encoding="utf-8")
    output = str(tmp_path / "tok")
    args = parse(["tokenizer", "train", str(corpus), "--output", output, "--vocab-size", "300"])
    assert args.func(args) == 0
    assert "trained 300 BPE tokens" in capsys.readouterr().out
    assert Tokenizer.from_dir(tmp_path / "tok").bos_id == 313


def test_train_notes_a_vocabulary_the_input_cannot_fill(tmp_path: Path, capsys):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("abab abab", encoding="utf-8")
    output = str(tmp_path / "tok")
    args = parse(["tokenizer", "train", str(corpus), "-o", output, "--vocab-size", "1000"])
    assert args.func(args) == 0
    assert "asked for 1000 BPE tokens" in capsys.readouterr().out


def test_missing_input_is_a_user_error(tmp_path: Path):
    missing, output = str(tmp_path / "nowhere"), str(tmp_path / "tok")
    args = parse(["tokenizer", "train", missing, "--output", output])
    with pytest.raises(UserError, match="does not exist"):
        args.func(args)
    assert not (tmp_path / "tok").exists()


def test_output_is_required(tmp_path: Path):
    with pytest.raises(SystemExit):
        parse(["tokenizer", "train", str(tmp_path)])
