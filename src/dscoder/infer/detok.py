"""Turning a growing list of token ids into text pieces, one per step.

Decoding each token alone is wrong for byte-level BPE: a character of several UTF-8 bytes can
span tokens, and some decoders treat a sequence's first token specially. Where the tokenizer
decodes byte-level (DeepSeek-Coder's do), each token's bytes go through an incremental UTF-8
decoder, which holds back a character until its last byte arrives: about a microsecond a
token. For other tokenizers, each step decodes a short window that starts a few tokens back
and emits what the new tokens added to it (two tokenizer calls a token); a window whose text
ends in U+FFFD (an incomplete character) waits for the next token.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from typing import Protocol

REPLACEMENT_CHAR = "\ufffd"
# Prompt tokens kept as left context for the first window.
_CONTEXT_TOKENS = 4


class Decoder(Protocol):
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str: ...


class IncrementalDetokenizer:
    """Text pieces of generated tokens; the concatenated pieces equal decoding all of them.

    `prompt_ids` give the first window its left context, so the first generated token is
    decoded as it reads after the prompt (windows only: a byte-level token's bytes do not
    depend on what precedes them).
    """

    def __init__(self, tokenizer: Decoder, prompt_ids: Sequence[int] = (),
                 skip_special_tokens: bool = True) -> None:
        token_bytes = getattr(tokenizer, "token_bytes", None)
        self._bytes: list[bytes] | None = token_bytes(skip_special_tokens) if token_bytes else None
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self._ids: list[int] = list(prompt_ids[-_CONTEXT_TOKENS:])
        self._prefix_start = 0  # window start: tokens already emitted, kept as context
        self._read_start = len(self._ids)  # tokens from here on are not emitted yet

    def push(self, token: int) -> str:
        """Add one token; return the text it completes (possibly empty)."""
        if self._bytes is not None and 0 <= token < len(self._bytes):
            return self._utf8.decode(self._bytes[token])
        self._ids.append(token)
        return self._emit(final=False)

    def flush(self) -> str:
        """Text still held back (an incomplete character at the very end, shown as U+FFFD)."""
        if self._bytes is not None:
            return self._utf8.decode(b"", final=True)
        return self._emit(final=True)

    def _emit(self, final: bool) -> str:
        if self._read_start == len(self._ids):
            return ""
        decode = self._tokenizer.decode
        emitted = decode(self._ids[self._prefix_start:self._read_start], skip_special_tokens=self._skip)
        window = decode(self._ids[self._prefix_start:], skip_special_tokens=self._skip)
        if not final and window.endswith(REPLACEMENT_CHAR):
            return ""
        # A window that decodes shorter than before (a skipped special token) adds nothing.
        new_text = window[len(emitted):]
        self._prefix_start, self._read_start = self._read_start, len(self._ids)
        return new_text
