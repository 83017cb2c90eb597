"""DeepSeek-Coder's pre-tokenizer: digits alone, line breaks alone, letter/punctuation/CJK runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import tokenizers
from tokenizers import pre_tokenizers

from dscoder.tokenizer import Tokenizer
from dscoder.tokenizer.pretokenizer import deepseek_coder_pre_tokenizer, utf8_byte_alphabet

NEWLINE, CARRIAGE_RETURN, SPACE = "\u010a", "\u010d", "\u0120"  # byte-level \n, \r, space


def pieces(text: str) -> list[str]:
    return [piece for piece, _ in deepseek_coder_pre_tokenizer().pre_tokenize_str(text)]


def byte_level(text: str) -> str:
    mapping = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    return "".join(piece for piece, _ in mapping.pre_tokenize_str(text))


@pytest.fixture(scope="module")
def vocabulary(tokenizer_dir: Path) -> set[str]:
    return set(tokenizers.Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")).get_vocab())


def test_splits_follow_the_released_rules():
    assert pieces("x = foo(1, 23)\r\n") == [
        "x", f"{SPACE}=", f"{SPACE}foo", "(", "1", ",", SPACE, "2", "3", ")",
        CARRIAGE_RETURN, NEWLINE,
    ]
    assert pieces("don't 3.14") == ["don", "'", "t", SPACE, "3", ".", "1", "4"]


def test_wide_script_runs_are_split_from_the_space_before_them():
    # Letter runs keep one leading space; CJK, kana and Hangul runs are cut out of them.
    assert pieces(" 注释你好 ok 한국어") == [
        SPACE, byte_level("注释你好"), f"{SPACE}ok", SPACE, byte_level("한국어"),
    ]
    assert pieces(" мир") == [byte_level(" мир")]


def test_digits_are_one_token_each(tokenizer: Tokenizer, vocabulary: set[str]):
    assert [token for token in vocabulary if sum(c in "0123456789" for c in token) > 1] == []
    ids = tokenizer.encode("x = 1234567890")
    assert [tokenizer.decode([i]) for i in ids[-10:]] == list("1234567890")


def test_line_breaks_are_never_merged(tokenizer: Tokenizer, vocabulary: set[str]):
    with_line_break = [t for t in vocabulary if NEWLINE in t or CARRIAGE_RETURN in t]
    assert sorted(with_line_break) == [NEWLINE, CARRIAGE_RETURN]
    ids = tokenizer.encode("a\n\n\nb\r\n")
    assert [tokenizer.decode([i]) for i in ids] == ["a", "\n", "\n", "\n", "b", "\r", "\n"]


def test_every_utf8_byte_has_a_base_token():
    alphabet = utf8_byte_alphabet()
    assert len(alphabet) == 243
    assert set(alphabet) < set(pre_tokenizers.ByteLevel.alphabet())
    assert "\u00fc" not in alphabet and "\u00c0" not in alphabet  # bytes 0xFC, 0xC0 never occur
