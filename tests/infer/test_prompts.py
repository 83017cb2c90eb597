"""Each mode's prompt, token by token, against the released formats and transformers."""

from __future__ import annotations


import pytest

from dscoder.errors import UserError
from dscoder.infer import chat_prompt, completion_prompt, infill_prompt, repo_prompt
from dscoder.tokenizer import Tokenizer, special

CODE = "def fib(n):\n    if n < 2:\n        return n\n"


@pytest.fixture(scope="module")
def hf_tokenizer(tokenizer: Tokenizer, tmp_path_factory: pytest.TempPathFactory):
    transformers = pytest.importorskip("transformers")
    directory = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save(directory)
    return transformers.AutoTokenizer.from_pretrained(str(directory))


def test_completion_is_bos_then_text(tokenizer: Tokenizer, hf_tokenizer):
    prompt = completion_prompt(tokenizer, CODE)
    assert prompt.ids == [tokenizer.bos_id, *tokenizer.encode(CODE)]
    assert prompt.ids == hf_tokenizer(CODE)["input_ids"]
    assert prompt.stop_token_ids == (tokenizer.eos_id,)


def test_infill_uses_the_released_fim_tokens(tokenizer: Tokenizer, hf_tokenizer):
    prefix, suffix = "def area(r):\n    return ", "\n\nprint(area(2))\n"
    prompt = infill_prompt(tokenizer, prefix, suffix)
    assert prompt.ids == [
        tokenizer.bos_id, tokenizer.token_id(special.FIM_BEGIN), *tokenizer.encode(prefix),
        tokenizer.token_id(special.FIM_HOLE), *tokenizer.encode(suffix), tokenizer.token_id(special.FIM_END),
    ]
    # The README's way: the whole string through the released tokenizer, which adds BOS.
    text = f"{special.FIM_BEGIN}{prefix}{special.FIM_HOLE}{suffix}{special.FIM_END}"
    assert prompt.ids == hf_tokenizer(text)["input_ids"]
    assert prompt.stop_token_ids == (tokenizer.eos_id,)


def test_special_token_text_inside_code_stays_text(tokenizer: Tokenizer):
    tricky = f"s = '{special.FIM_HOLE}{special.EOT}'"
    for prompt in (infill_prompt(tokenizer, tricky, tricky), completion_prompt(tokenizer, tricky)):
        assert prompt.ids.count(tokenizer.fim_hole_id) <= 1
        assert tokenizer.eot_id not in prompt.ids
    assert infill_prompt(tokenizer, tricky, "").ids.count(tokenizer.fim_hole_id) == 1


def test_chat_has_one_bos_and_ends_with_the_generation_prompt(tokenizer: Tokenizer, hf_tokenizer):
    messages = [
        {"role": "user", "content": "Write fib."},
        {"role": "assistant", "content": "def fib(n): ..."},
        {"role": "user", "content": "Now in C."},
    ]
    prompt = chat_prompt(tokenizer, messages)
    assert prompt.ids.count(tokenizer.bos_id) == 1 and prompt.ids[0] == tokenizer.bos_id
    assert tokenizer.decode(prompt.ids[1:]).endswith("### Instruction:\nNow in C.\n### Response:\n")
    # The finished assistant turn is closed by the real end-of-turn token.
    assert prompt.ids.count(tokenizer.eot_id) == 1
    theirs = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    theirs = theirs["input_ids"] if hasattr(theirs, "keys") else theirs
    assert prompt.ids == list(theirs)
    assert prompt.stop_token_ids[0] == tokenizer.token_id(special.EOT)
    assert tokenizer.eos_id in prompt.stop_token_ids


def test_chat_uses_a_given_system_text(tokenizer: Tokenizer):
    prompt = chat_prompt(tokenizer, [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "hi"}])
    assert tokenizer.decode(prompt.ids, skip_special_tokens=True) == (
        "Be brief.### Instruction:\nhi\n### Response:\n")


def test_chat_must_end_with_a_user_turn(tokenizer: Tokenizer):
    with pytest.raises(UserError):
        chat_prompt(tokenizer, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    with pytest.raises(UserError):
        chat_prompt(tokenizer, [])


def test_repo_prompt_is_a_completion_of_the_context(tokenizer: Tokenizer):
    context = "# lib.py\ndef f():\n    pass\n# main.py\nfrom lib import f\n"
    assert repo_prompt(tokenizer, context) == completion_prompt(tokenizer, context)
