"""Incremental detokenization: pieces join to the full decode, characters are never split."""

from __future__ import annotations

from dscoder.infer.detok import IncrementalDetokenizer
from dscoder.tokenizer import Tokenizer

TEXT = "def 加法(a, b):\n    return a + b  # 😀 ünïcödé ✓\n\tx = 'ß'\r\n"


def pieces_of(tokenizer: Tokenizer, ids: list[int], prompt: list[int]) -> list[str]:
    detok = IncrementalDetokenizer(tokenizer, prompt)
    return [detok.push(token) for token in ids] + [detok.flush()]


def test_pieces_join_to_the_text_and_hold_no_broken_character(tokenizer: Tokenizer):
    ids = tokenizer.encode(TEXT)
    # A small vocabulary spells CJK and emoji in single-byte tokens, several per character.
    assert len(ids) > len(TEXT) // 2
    prompt = tokenizer.encode("x = 1\n", add_bos=True)
    pieces = pieces_of(tokenizer, ids, prompt)
    assert "".join(pieces) == TEXT
    assert not any("\ufffd" in piece for piece in pieces)
    assert "" in pieces  # some tokens completed no character yet


def test_a_character_left_incomplete_at_the_end_is_flushed_as_a_replacement(tokenizer: Tokenizer):
    emoji = tokenizer.encode("😀")
    assert len(emoji) > 1
    detok = IncrementalDetokenizer(tokenizer, [])
    first = tokenizer.encode("ok")[0]
    assert detok.push(first) == tokenizer.decode([first])
    assert detok.push(emoji[0]) == ""
    assert detok.flush() == "\ufffd"


def test_special_tokens_are_skipped(tokenizer: Tokenizer):
    ids = [*tokenizer.encode("a"), tokenizer.fim_hole_id, *tokenizer.encode(" b")]
    assert "".join(pieces_of(tokenizer, ids, [])) == "a b"
