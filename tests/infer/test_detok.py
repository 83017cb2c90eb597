"""Incremental detokenization: pieces join to the full decode, characters are never split,
whether tokens are decoded as bytes (byte-level tokenizers) or in windows (any other)."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

import pytest
import tokenizers

from dscoder.infer.detok import IncrementalDetokenizer
from dscoder.tokenizer import Tokenizer, hf

TEXT = "def 加法(a, b):\n    return a + b  # 😀 ünïcödé ✓\n\tx = 'ß'\r\n"


class DecodeOnly:
    """A tokenizer seen only through `decode`: the detokenizer's window method."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)


@pytest.fixture(params=["bytes", "windows"])
def decoder(request: pytest.FixtureRequest, tokenizer: Tokenizer) -> Tokenizer | DecodeOnly:
    return tokenizer if request.param == "bytes" else DecodeOnly(tokenizer)


def pieces_of(decoder, ids: list[int], prompt: list[int]) -> list[str]:
    detok = IncrementalDetokenizer(decoder, prompt)
    return [detok.push(token) for token in ids] + [detok.flush()]


def test_byte_level_tokenizers_are_decoded_as_bytes(tokenizer: Tokenizer):
    assert IncrementalDetokenizer(tokenizer)._bytes is not None
    assert IncrementalDetokenizer(DecodeOnly(tokenizer))._bytes is None


def test_pieces_join_to_the_text_and_hold_no_broken_character(tokenizer: Tokenizer, decoder):
    ids = tokenizer.encode(TEXT)
    # A small vocabulary spells CJK and emoji in single-byte tokens, several per character.
    assert len(ids) > len(TEXT) // 2
    prompt = tokenizer.encode("x = 1\n", add_bos=True)
    pieces = pieces_of(decoder, ids, prompt)
    assert "".join(pieces) == TEXT
    assert not any("\ufffd" in piece for piece in pieces)
    assert "" in pieces  # some tokens completed no character yet


def test_a_character_left_incomplete_at_the_end_is_flushed_as_a_replacement(tokenizer: Tokenizer, decoder):
    emoji = tokenizer.encode("😀")
    assert len(emoji) > 1
    detok = IncrementalDetokenizer(decoder, [])
    first = tokenizer.encode("ok")[0]
    assert detok.push(first) == tokenizer.decode([first])
    assert detok.push(emoji[0]) == ""
    assert detok.flush() == "\ufffd"


def test_special_tokens_are_skipped(tokenizer: Tokenizer, decoder):
    ids = [*tokenizer.encode("a"), tokenizer.fim_hole_id, *tokenizer.encode(" b")]
    assert "".join(pieces_of(decoder, ids, [])) == "a b"


def test_any_token_sequence_joins_to_the_tokenizers_own_decoding(tokenizer: Tokenizer):
    """Random ids: bytes that form no character, special tokens, characters split across
    tokens. Both methods give what decoding the whole sequence gives."""
    rng = random.Random(0)
    for _ in range(300):
        ids = [rng.randrange(tokenizer.vocab_size) for _ in range(rng.randrange(1, 16))]
        expected = tokenizer.decode(ids, skip_special_tokens=True)
        assert "".join(pieces_of(tokenizer, ids, [])) == expected
        assert "".join(pieces_of(DecodeOnly(tokenizer), ids, [])) == expected


def test_token_bytes_are_each_tokens_own_decoding(tokenizer: Tokenizer):
    for skip in (False, True):
        table = tokenizer.token_bytes(skip)
        assert table is not None and len(table) == tokenizer.vocab_size
        for token_id in range(tokenizer.vocab_size):
            assert table[token_id].decode("utf-8", errors="replace") == tokenizer.decode([token_id], skip)
    assert tokenizer.token_bytes(True)[tokenizer.fim_hole_id] == b""
    assert tokenizer.token_bytes(False)[tokenizer.fim_hole_id] == "<｜fim▁hole｜>".encode()


def test_other_decoders_fall_back_to_windows(tokenizer: Tokenizer):
    data = json.loads(tokenizer._backend.to_str())
    data["decoder"] = {"type": "Fuse"}
    fused = Tokenizer(tokenizers.Tokenizer.from_str(json.dumps(data)))
    assert fused.token_bytes() is None
    ids = fused.encode("ab cd")
    assert "".join(pieces_of(fused, ids, [])) == fused.decode(ids, skip_special_tokens=True)


def test_a_byte_table_that_disagrees_with_the_tokenizer_is_not_used(tokenizer: Tokenizer, monkeypatch):
    wrong = hf._byte_level_chars()
    wrong["a"], wrong["b"] = wrong["b"], wrong["a"]
    monkeypatch.setattr(hf, "_byte_level_chars", lambda: wrong)
    assert hf._token_bytes(tokenizer._backend, skip_special_tokens=True) is None
