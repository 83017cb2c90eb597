"""The tokenizer every stage uses, stored as a Hugging Face tokenizer directory.

A directory holds `tokenizer.json` (the `tokenizers` pipeline), `tokenizer_config.json` (which
tokens are BOS/EOS/PAD, `add_bos_token`, the chat template) and `special_tokens_map.json`.
`Tokenizer.from_dir` reads ours and the released DeepSeek-Coder ones without `transformers`;
`transformers.AutoTokenizer` reads ours and gives the same ids.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tokenizers
from tokenizers import decoders, processors

from dscoder.errors import UserError
from dscoder.tokenizer import special
from dscoder.tokenizer.chat import DEEPSEEK_CODER_CHAT_TEMPLATE, render_chat

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
# transformers 5 saves the chat template beside the config instead of inside it.
CHAT_TEMPLATE_FILE = "chat_template.jinja"

# The context length of the released models: transformers warns beyond it.
MODEL_MAX_LENGTH = 16384


def _token_content(value: Any) -> str | None:
    # tokenizer_config.json spells a token as a string or as an AddedToken object with "content".
    if isinstance(value, Mapping):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path} is not readable JSON: {error}") from error
    if not isinstance(data, dict):
        raise UserError(f"{path} should hold a JSON object")
    return data


def _chat_template_from(directory: Path, config: Mapping[str, Any]) -> str:
    template_file = directory / CHAT_TEMPLATE_FILE
    if template_file.is_file():
        return template_file.read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):  # several named templates: the chat one is "default"
        named = {
            entry.get("name"): entry.get("template")
            for entry in template
            if isinstance(entry, Mapping)
        }
        template = named.get("default")
    # Base-model directories carry no template; the chat format is DeepSeek-Coder's either way.
    return template if isinstance(template, str) else DEEPSEEK_CODER_CHAT_TEMPLATE


def _control_tokens(backend: tokenizers.Tokenizer) -> set[str]:
    """Added tokens that steer the model: those flagged special, and DeepSeek's named tokens.

    The released tokenizers do not flag all of these as special (`<pad>` is not), so they are
    recognised by name too. Other added tokens (the release's single byte characters) are text.
    """
    named = set(special.NAMED_TOKENS)
    return {
        token.content
        for token in backend.get_added_tokens_decoder().values()
        if token.special or token.content in named
    }


def _byte_level_chars() -> dict[str, int]:
    """The byte each character of a byte-level BPE token stands for (GPT-2's scheme): printable
    Latin-1 bytes stand for themselves, the other 68 bytes for code points from 256 up, in order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {chr(byte): byte for byte in printable}
    others = sorted(set(range(256)) - set(printable))
    chars.update((chr(256 + n), byte) for n, byte in enumerate(others))
    return chars


def _token_bytes(backend: tokenizers.Tokenizer, skip_special_tokens: bool) -> list[bytes] | None:
    """The bytes each token id decodes to, when decoding is plain byte-level (decoding ids =
    their bytes joined, as UTF-8 with U+FFFD for invalid bytes), else None. Skipped special
    tokens decode to no bytes. Checked against the backend's own decoding of every token."""
    if not isinstance(backend.decoder, decoders.ByteLevel):
        return None
    chars = _byte_level_chars()
    added = backend.get_added_tokens_decoder()
    table = []
    for token_id in range(backend.get_vocab_size(with_added_tokens=True)):
        token = backend.id_to_token(token_id) or ""
        if skip_special_tokens and token_id in added and added[token_id].special:
            table.append(b"")
        elif all(char in chars for char in token):
            table.append(bytes(chars[char] for char in token))
        else:  # the byte-level decoder passes such tokens (DeepSeek's named tokens) through as UTF-8
            table.append(token.encode("utf-8"))
    decoded = backend.decode_batch([[token_id] for token_id in range(len(table))],
                                   skip_special_tokens=skip_special_tokens)
    if any(text != raw.decode("utf-8", errors="replace") for text, raw in zip(decoded, table, strict=True)):
        return None
    return table


def _without_added_tokens(
    backend: tokenizers.Tokenizer, removed: set[str]
) -> tokenizers.Tokenizer:
    # A copy that does not recognise the removed tokens, so their strings in user text go
    # through BPE like any other text.
    data = json.loads(backend.to_str())
    data["added_tokens"] = [
        token for token in data["added_tokens"] if token["content"] not in removed
    ]
    data["post_processor"] = None
    return tokenizers.Tokenizer.from_str(json.dumps(data))


class Tokenizer:
    """Byte-level BPE with DeepSeek-Coder's special tokens, looked up by name."""

    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        *,
        bos_token: str = special.BOS,
        eos_token: str = special.EOS,
        pad_token: str | None = special.EOS,
        chat_template: str = DEEPSEEK_CODER_CHAT_TEMPLATE,
        add_bos_token: bool = True,
        model_max_length: int = MODEL_MAX_LENGTH,
    ) -> None:
        self._backend = backend
        self._control = _control_tokens(backend)
        self._plain = _without_added_tokens(backend, self._control)
        self._token_bytes: dict[bool, list[bytes] | None] = {}
        self.bos_token, self.eos_token, self.pad_token = bos_token, eos_token, pad_token
        self.chat_template = chat_template
        self.add_bos_token = add_bos_token
        self.model_max_length = model_max_length

        self.bos_id = self.token_id(bos_token)
        self.eos_id = self.token_id(eos_token)
        self.pad_id = None if pad_token is None else self.token_id(pad_token)
        self.eot_id = backend.token_to_id(special.EOT)
        self.fim_begin_id = self.token_id(special.FIM_BEGIN)
        self.fim_hole_id = self.token_id(special.FIM_HOLE)
        self.fim_end_id = self.token_id(special.FIM_END)

    # ---- loading and saving -------------------------------------------------------------

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str]) -> Tokenizer:
        directory = Path(path)
        tokenizer_file = directory / TOKENIZER_FILE
        if not tokenizer_file.is_file():
            raise UserError(f"{directory} is not a tokenizer directory: it has no {TOKENIZER_FILE}")
        try:
            backend = tokenizers.Tokenizer.from_file(str(tokenizer_file))
        except Exception as error:  # the Rust side raises plain Exception for malformed files
            raise UserError(f"{tokenizer_file} is not a Hugging Face tokenizer: {error}") from error
        config_file = directory / CONFIG_FILE
        config = _read_json(config_file) if config_file.is_file() else {}
        try:
            model_max_length = int(config.get("model_max_length", MODEL_MAX_LENGTH))
        except (TypeError, ValueError) as error:
            raise UserError(f"{config_file} has a model_max_length that is not a number") from error
        try:
            return cls(
                backend,
                bos_token=_token_content(config.get("bos_token")) or special.BOS,
                eos_token=_token_content(config.get("eos_token")) or special.EOS,
                pad_token=_token_content(config.get("pad_token")),
                chat_template=_chat_template_from(directory, config),
                add_bos_token=bool(config.get("add_bos_token", True)),
                model_max_length=model_max_length,
            )
        except UserError as error:
            raise UserError(f"{directory} is not a DeepSeek-Coder tokenizer: {error}") from error

    def save(self, path: str | os.PathLike[str]) -> None:
        directory = Path(path)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._backend_to_save().save(str(directory / TOKENIZER_FILE))
            for name, content in (
                (CONFIG_FILE, self._config()),
                (SPECIAL_TOKENS_MAP_FILE, self._special_tokens_map()),
            ):
                text = json.dumps(content, indent=2, ensure_ascii=False) + "\n"
                (directory / name).write_text(text, encoding="utf-8")
        except OSError as error:
            raise UserError(f"cannot write the tokenizer to {directory}: {error}") from error

    def _backend_to_save(self) -> tokenizers.Tokenizer:
        # transformers' generic fast tokenizer adds BOS only through tokenizer.json's
        # post-processor and ignores add_bos_token, so the file must say the same as the config.
        # (encode adds BOS itself and never uses the post-processor.)
        backend = tokenizers.Tokenizer.from_str(self._backend.to_str())
        backend.post_processor = (
            processors.TemplateProcessing(
                single=f"{self.bos_token}:0 $A:0",
                pair=f"{self.bos_token}:0 $A:0 {self.bos_token}:1 $B:1",
                special_tokens=[(self.bos_token, self.bos_id)],
            )
            if self.add_bos_token
            else None
        )
        return backend

    def _special_tokens_map(self) -> dict[str, str]:
        tokens = {"bos_token": self.bos_token, "eos_token": self.eos_token}
        if self.pad_token is not None:
            tokens["pad_token"] = self.pad_token
        return tokens

    def _config(self) -> dict[str, Any]:
        added = {
            str(token_id): {
                "content": token.content,
                "lstrip": token.lstrip,
                "normalized": token.normalized,
                "rstrip": token.rstrip,
                "single_word": token.single_word,
                "special": token.special,
            }
            for token_id, token in sorted(self._backend.get_added_tokens_decoder().items())
        }
        return {
            "add_bos_token": self.add_bos_token,
            "add_eos_token": False,
            "added_tokens_decoder": added,
            **self._special_tokens_map(),
            "unk_token": None,
            "chat_template": self.chat_template,
            "clean_up_tokenization_spaces": False,
            "model_max_length": self.model_max_length,
            # The generic fast class reads tokenizer.json as is; LlamaTokenizerFast would let
            # transformers 5 swap in a SentencePiece-style pre-tokenizer.
            "tokenizer_class": "PreTrainedTokenizerFast",
        }

    def with_eos(self, token: str) -> Tokenizer:
        """This tokenizer with another EOS, e.g. `<|EOT|>` for an instruct checkpoint."""
        return Tokenizer(
            self._backend,
            bos_token=self.bos_token,
            eos_token=token,
            pad_token=self.pad_token,
            chat_template=self.chat_template,
            add_bos_token=self.add_bos_token,
            model_max_length=self.model_max_length,
        )

    # ---- vocabulary ---------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    @property
    def bpe_vocab_size(self) -> int:
        """Tokens of the BPE model alone, without the added tokens."""
        return self._backend.get_vocab_size(with_added_tokens=False)

    def token_id(self, token: str) -> int:
        token_id = self._backend.token_to_id(token)
        if token_id is None:
            raise UserError(f"the token {token!r} is not in this tokenizer's vocabulary")
        return token_id

    # ---- encoding and decoding ----------------------------------------------------------

    def encode(self, text: str, add_bos: bool = False, allow_special: bool = False) -> list[int]:
        """Token ids of `text`. Control-token strings inside `text` are plain text unless
        `allow_special`, so code that mentions `<|EOT|>` cannot end a turn."""
        backend = self._backend if allow_special else self._plain
        ids = backend.encode(text, add_special_tokens=False).ids
        return [self.bos_id, *ids] if add_bos else ids

    def encode_batch(
        self, texts: list[str], add_bos: bool = False, allow_special: bool = False
    ) -> list[list[int]]:
        backend = self._backend if allow_special else self._plain
        # The _fast variant skips computing character offsets, which nothing here needs.
        encodings = backend.encode_batch_fast(texts, add_special_tokens=False)
        if add_bos:
            return [[self.bos_id, *encoding.ids] for encoding in encodings]
        return [encoding.ids for encoding in encodings]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self._backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_bytes(self, skip_special_tokens: bool = False) -> list[bytes] | None:
        """Each token id's bytes, where decoding is byte-level (as for DeepSeek-Coder's
        tokenizers): decode(ids) is then their bytes joined, read as UTF-8 with U+FFFD for
        invalid bytes, which lets a stream be decoded a token at a time without calling the
        tokenizer. None for other decoders. Built once (32k tokens: 0.2 s)."""
        if skip_special_tokens not in self._token_bytes:
            self._token_bytes[skip_special_tokens] = _token_bytes(self._backend, skip_special_tokens)
        return self._token_bytes[skip_special_tokens]

    def apply_chat_template(
        self, messages: list[dict], add_generation_prompt: bool = True
    ) -> list[int]:
        """Token ids of a chat in the template's format, with exactly the control tokens the
        template writes (one BOS); control-token strings inside messages are plain text."""
        pieces = render_chat(
            self.chat_template,
            messages,
            control_tokens=self._control,
            special_tokens={
                "bos_token": self.bos_token,
                "eos_token": self.eos_token,
                "pad_token": self.pad_token,
            },
            add_generation_prompt=add_generation_prompt,
        )
        ids: list[int] = []
        for piece in pieces:
            if piece.is_control:
                ids.append(self.token_id(piece.text))
            else:
                ids += self._plain.encode(piece.text, add_special_tokens=False).ids
        return ids
