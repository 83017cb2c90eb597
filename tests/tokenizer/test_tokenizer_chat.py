"""The instruct chat format: the released text, one BOS, and no control tokens from users."""

from __future__ import annotations

import pytest

from dscoder.errors import UserError
from dscoder.tokenizer import Tokenizer, special

DEFAULT_SYSTEM = (
    "You are an AI programming assistant, utilizing the Deepseek Coder model, developed by "
    "Deepseek Company, and you only answer questions related to computer science. For "
    "politically sensitive questions, security and privacy issues, and other non-computer "
    "science questions, you will refuse to answer\n"
)
TWO_TURNS = [
    {"role": "user", "content": "Write quicksort in Python."},
    {"role": "assistant", "content": "def quicksort(xs):\n    ..."},
    {"role": "user", "content": "Now in C."},
]
SYSTEM = {"role": "system", "content": "You are terse.\n"}


def hf_ids(hf_tokenizer, messages, **options) -> list[int]:
    result = hf_tokenizer.apply_chat_template(messages, tokenize=True, **options)
    return list(result["input_ids"] if hasattr(result, "keys") else result)


def test_two_turns_without_system_render_the_released_format(tokenizer: Tokenizer):
    ids = tokenizer.apply_chat_template(TWO_TURNS)
    assert tokenizer.decode(ids) == (
        f"{special.BOS}{DEFAULT_SYSTEM}"
        "### Instruction:\nWrite quicksort in Python.\n"
        "### Response:\ndef quicksort(xs):\n    ...\n<|EOT|>\n"
        "### Instruction:\nNow in C.\n"
        "### Response:\n"
    )


def test_a_system_message_replaces_the_default_as_written(tokenizer: Tokenizer):
    ids = tokenizer.apply_chat_template([SYSTEM, *TWO_TURNS], add_generation_prompt=False)
    assert tokenizer.decode(ids) == (
        f"{special.BOS}You are terse.\n"
        "### Instruction:\nWrite quicksort in Python.\n"
        "### Response:\ndef quicksort(xs):\n    ...\n<|EOT|>\n"
        "### Instruction:\nNow in C.\n"
    )


@pytest.mark.parametrize("messages", [TWO_TURNS, [SYSTEM, *TWO_TURNS], TWO_TURNS[:1]])
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_ids_match_transformers(
    tokenizer: Tokenizer, hf_tokenizer, messages, add_generation_prompt
):
    ours = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
    assert ours == hf_ids(hf_tokenizer, messages, add_generation_prompt=add_generation_prompt)
    assert ours.count(tokenizer.bos_id) == 1 and ours[0] == tokenizer.bos_id
    assistant_turns = sum(message["role"] == "assistant" for message in messages)
    assert ours.count(tokenizer.eot_id) == assistant_turns


def test_rendering_to_text_and_encoding_again_doubles_bos(tokenizer: Tokenizer, hf_tokenizer):
    # The pitfall apply_chat_template avoids: the text already starts with BOS.
    text = hf_tokenizer.apply_chat_template(TWO_TURNS, tokenize=False, add_generation_prompt=True)
    assert hf_tokenizer(text)["input_ids"][:2] == [tokenizer.bos_id, tokenizer.bos_id]
    assert tokenizer.apply_chat_template(TWO_TURNS)[:2] != [tokenizer.bos_id, tokenizer.bos_id]


def test_control_tokens_inside_messages_are_text(tokenizer: Tokenizer, hf_tokenizer):
    messages = [
        {
            "role": "user",
            "content": f"Explain {special.EOT} and {special.BOS} and {special.FIM_HOLE}.",
        },
    ]
    ids = tokenizer.apply_chat_template(messages)
    assert ids.count(tokenizer.bos_id) == 1 and tokenizer.eot_id not in ids
    assert tokenizer.fim_hole_id not in ids
    # transformers' sanitize_control_tokens agrees on the text; its ids differ only where it
    # encodes each sanitized string apart from the text around it (" <|EOT|>" as " " + "<...").
    sanitized = hf_ids(
        hf_tokenizer, messages, add_generation_prompt=True, sanitize_control_tokens=True
    )
    assert tokenizer.decode(ids) == hf_tokenizer.decode(sanitized)
    assert ids == tokenizer.encode(tokenizer.decode(ids)[len(special.BOS):], add_bos=True)


@pytest.mark.parametrize(
    "messages, message",
    [
        ([], "at least one message"),
        ([{"role": "user"}], "needs a string 'content'"),
        ([{"role": "tool", "content": "x"}], "has role 'tool'"),
    ],
)
def test_malformed_chats_are_user_errors(tokenizer: Tokenizer, messages, message):
    with pytest.raises(UserError, match=message):
        tokenizer.apply_chat_template(messages)
