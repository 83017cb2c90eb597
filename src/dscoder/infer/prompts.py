"""Prompts of the four inference modes, as token ids, in the released models' formats.

- completion: BOS + text.
- infill (base models): BOS <｜fim▁begin｜> prefix <｜fim▁hole｜> suffix <｜fim▁end｜>; the model
  writes the middle. Prefix and suffix are encoded separately, as in FIM training, and special
  token strings inside them stay plain text.
- repository completion: BOS + the repository context (see `repo_context`), which ends with
  the file being written.
- chat (instruct models): the tokenizer's chat template with the generation prompt, with
  exactly one BOS.

Each prompt also names the tokens that end its generation, looked up in the tokenizer by name:
base models end with EOS, instruct models with <|EOT|>. The engine adds the checkpoint's own EOS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dscoder.errors import UserError
from dscoder.tokenizer import Tokenizer


@dataclass(frozen=True)
class Prompt:
    ids: list[int]
    stop_token_ids: tuple[int, ...]


def completion_prompt(tokenizer: Tokenizer, text: str) -> Prompt:
    return Prompt(tokenizer.encode(text, add_bos=True), base_stop_ids(tokenizer))


def infill_prompt(tokenizer: Tokenizer, prefix: str, suffix: str) -> Prompt:
    ids = [tokenizer.bos_id, tokenizer.fim_begin_id, *tokenizer.encode(prefix),
           tokenizer.fim_hole_id, *tokenizer.encode(suffix), tokenizer.fim_end_id]
    return Prompt(ids, base_stop_ids(tokenizer))


def repo_prompt(tokenizer: Tokenizer, context: str) -> Prompt:
    """`context` is `RepoContext.text`: dependencies with path comments, then the current file."""
    return completion_prompt(tokenizer, context)


def chat_prompt(tokenizer: Tokenizer, messages: Sequence[Mapping[str, str]]) -> Prompt:
    if not messages or messages[-1].get("role") != "user":
        raise UserError("a chat prompt must end with a user message")
    ids = tokenizer.apply_chat_template([dict(m) for m in messages], add_generation_prompt=True)
    return Prompt(ids, chat_stop_ids(tokenizer))


def base_stop_ids(tokenizer: Tokenizer) -> tuple[int, ...]:
    return (tokenizer.eos_id,)


def chat_stop_ids(tokenizer: Tokenizer) -> tuple[int, ...]:
    """<|EOT|> ends an instruct model's turn; EOS is kept too, for tokenizers without it."""
    if tokenizer.eot_id is None:
        return (tokenizer.eos_id,)
    return tuple(dict.fromkeys((tokenizer.eot_id, tokenizer.eos_id)))
