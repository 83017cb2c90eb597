"""The added tokens: exact characters, one id each, looked up by name whatever the size."""

from __future__ import annotations

import pytest

from dscoder.errors import UserError
from dscoder.tokenizer import Tokenizer, special, train_tokenizer

# UTF-8 bytes of the released strings: U+FF5C is EF BD 9C, U+2581 is E2 96 81.
BAR, SEP = b"\xef\xbd\x9c", b"\xe2\x96\x81"
EXPECTED_UTF8 = {
    special.BOS: b"<" + BAR + b"begin" + SEP + b"of" + SEP + b"sentence" + BAR + b">",
    special.EOS: b"<" + BAR + b"end" + SEP + b"of" + SEP + b"sentence" + BAR + b">",
    special.FIM_HOLE: b"<" + BAR + b"fim" + SEP + b"hole" + BAR + b">",
    special.FIM_BEGIN: b"<" + BAR + b"fim" + SEP + b"begin" + BAR + b">",
    special.FIM_END: b"<" + BAR + b"fim" + SEP + b"end" + BAR + b">",
    special.PAD: b"<pad>",
    special.USER: b"<|User|>",
    special.ASSISTANT: b"<|Assistant|>",
    special.EOT: b"<|EOT|>",
}


def test_token_strings_have_the_released_characters():
    assert {token: token.encode("utf-8") for token in special.NAMED_TOKENS} == EXPECTED_UTF8


@pytest.mark.parametrize("token", special.NAMED_TOKENS)
def test_each_added_token_is_one_id_and_round_trips(tokenizer: Tokenizer, token: str):
    token_id = tokenizer.token_id(token)
    assert tokenizer.encode(token, allow_special=True) == [token_id]
    assert tokenizer.decode([token_id]) == token


@pytest.mark.parametrize("token", special.NAMED_TOKENS)
def test_token_strings_in_text_are_plain_text_by_default(tokenizer: Tokenizer, token: str):
    text = f"print('{token}')"
    ids = tokenizer.encode(text)
    assert tokenizer.token_id(token) not in ids
    assert tokenizer.decode(ids) == text


def test_ids_follow_the_released_layout(tokenizer: Tokenizer):
    # BPE tokens, then the 13 non-UTF-8 byte characters, then the named tokens in order:
    # with 32,000 BPE tokens that is BOS 32013, EOS 32014, ..., <|EOT|> 32021.
    first_named = tokenizer.bpe_vocab_size
    assert [tokenizer.token_id(token) for token in special.NAMED_TOKENS] == list(
        range(first_named, first_named + len(special.NAMED_TOKENS))
    )
    assert tokenizer.vocab_size == first_named + len(special.NAMED_TOKENS)
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.eot_id) == (
        first_named,
        first_named + 1,
        first_named + 8,
    )
    assert (tokenizer.fim_hole_id, tokenizer.fim_begin_id, tokenizer.fim_end_id) == (
        first_named + 2,
        first_named + 3,
        first_named + 4,
    )
    assert tokenizer.pad_id == tokenizer.eos_id  # as released: PAD is the EOS string


def test_special_ids_are_looked_up_by_name_for_any_size(stdlib_texts: list[str]):
    small, large = (train_tokenizer(stdlib_texts, size) for size in (400, 700))
    assert small.bos_id != large.bos_id and small.fim_hole_id != large.fim_hole_id
    prefix, suffix = "def area(r):\n    return ", "\n"
    for tokenizer in (small, large):
        prompt = [
            tokenizer.bos_id,
            tokenizer.fim_begin_id,
            *tokenizer.encode(prefix),
            tokenizer.fim_hole_id,
            *tokenizer.encode(suffix),
            tokenizer.fim_end_id,
        ]
        expected = (
            f"{special.BOS}{special.FIM_BEGIN}{prefix}{special.FIM_HOLE}{suffix}{special.FIM_END}"
        )
        assert tokenizer.decode(prompt) == expected
        assert tokenizer.encode(expected, allow_special=True) == prompt


def test_unknown_token_is_a_user_error(tokenizer: Tokenizer):
    with pytest.raises(UserError, match="not in this tokenizer's vocabulary"):
        tokenizer.token_id("<fim_prefix>")


def test_skip_special_tokens_drops_control_tokens(tokenizer: Tokenizer):
    ids = [tokenizer.bos_id, *tokenizer.encode("x = 1"), tokenizer.eot_id]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "x = 1"
