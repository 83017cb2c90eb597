"""The DeepSeek-Coder instruct chat format, and rendering a chat into text and control tokens.

A chat is rendered with the Jinja template stored in `tokenizer_config.json`, under the same
Jinja settings `transformers` uses (trim_blocks, lstrip_blocks, sandboxed), so both render the
same text. Rendering to text and tokenizing it again cannot tell a `<|EOT|>` written by the
template from one a user typed, and re-adds a BOS the template already wrote; so `render_chat`
returns pieces instead: control tokens the template itself wrote, and the text around them
(message contents included) that must be encoded as plain text. This relies on the template
writing message contents unchanged, as DeepSeek-Coder's does.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dscoder.errors import UserError

# The template of the released deepseek-coder-*-instruct tokenizers, verbatim. A system message
# replaces the default system text and is written as is, with no line break after it.
DEEPSEEK_CODER_CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}\n"
    "{% set add_generation_prompt = false %}\n"
    "{% endif %}\n"
    "{%- set ns = namespace(found=false) -%}\n"
    "{%- for message in messages -%}\n"
    "    {%- if message['role'] == 'system' -%}\n"
    "        {%- set ns.found = true -%}\n"
    "    {%- endif -%}\n"
    "{%- endfor -%}\n"
    "{{bos_token}}{%- if not ns.found -%}\n"
    "{{'You are an AI programming assistant, utilizing the Deepseek Coder model, developed by "
    "Deepseek Company, and you only answer questions related to computer science. For "
    "politically sensitive questions, security and privacy issues, and other non-computer "
    "science questions, you will refuse to answer\\n'}}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if message['role'] == 'system' %}\n"
    "{{ message['content'] }}\n"
    "    {%- else %}\n"
    "        {%- if message['role'] == 'user' %}\n"
    "{{'### Instruction:\\n' + message['content'] + '\\n'}}\n"
    "        {%- else %}\n"
    "{{'### Response:\\n' + message['content'] + '\\n<|EOT|>\\n'}}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{% if add_generation_prompt %}\n"
    "{{'### Response:'}}\n"
    "{% endif %}"
)

CHAT_ROLES = ("system", "user", "assistant")

# Message contents are swapped for markers made of private-use characters while rendering, so
# the rendered text shows exactly where each content went.
_MARKER_OPEN_FIRST = 0xE000
_MARKER_OPEN_LAST = 0xF8FE


@dataclass(frozen=True)
class ChatPiece:
    """A control token written by the template (`is_control`), or text to encode as plain text."""

    text: str
    is_control: bool


def _raise_from_template(message: str) -> None:
    raise UserError(f"the chat template refused this conversation: {message}")


@lru_cache(maxsize=8)
def _compile(template: str) -> jinja2.Template:
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    environment.globals["raise_exception"] = _raise_from_template
    try:
        return environment.from_string(template)
    except jinja2.TemplateSyntaxError as error:
        raise UserError(f"the chat template is not valid Jinja: {error}") from error


def _check_messages(messages: Sequence[Mapping[str, object]]) -> None:
    if not messages:
        raise UserError("a chat needs at least one message")
    for position, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("content"), str):
            raise UserError(f"chat message {position} needs a string 'content'")
        if message.get("role") not in CHAT_ROLES:
            raise UserError(
                f"chat message {position} has role {message.get('role')!r}; "
                f"expected one of {', '.join(CHAT_ROLES)}"
            )


def _marker_brackets(messages: Sequence[Mapping[str, object]]) -> tuple[str, str]:
    contents = [str(message["content"]) for message in messages]
    for code_point in range(_MARKER_OPEN_FIRST, _MARKER_OPEN_LAST):
        opening, closing = chr(code_point), chr(code_point + 1)
        if not any(opening in content or closing in content for content in contents):
            return opening, closing
    raise UserError("the chat messages use every private-use character; cannot render them")


def _split_controls(text: str, control_pattern: re.Pattern[str] | None) -> list[ChatPiece]:
    if control_pattern is None:
        return [ChatPiece(text, is_control=False)]
    pieces = []
    position = 0
    for match in control_pattern.finditer(text):
        if match.start() > position:
            pieces.append(ChatPiece(text[position : match.start()], is_control=False))
        pieces.append(ChatPiece(match.group(), is_control=True))
        position = match.end()
    if position < len(text):
        pieces.append(ChatPiece(text[position:], is_control=False))
    return pieces


def _merge_text(pieces: list[ChatPiece]) -> list[ChatPiece]:
    # Adjacent text pieces must be encoded as one string, or BPE would see a boundary that
    # tokenizing the rendered chat in one go (as transformers does) does not have.
    merged: list[ChatPiece] = []
    for piece in pieces:
        if not piece.text:
            continue
        if merged and not piece.is_control and not merged[-1].is_control:
            merged[-1] = ChatPiece(merged[-1].text + piece.text, is_control=False)
        else:
            merged.append(piece)
    return merged


def render_chat(
    template: str,
    messages: Sequence[Mapping[str, object]],
    *,
    control_tokens: Collection[str],
    special_tokens: Mapping[str, str | None],
    add_generation_prompt: bool,
) -> list[ChatPiece]:
    """Render `messages` with `template` into control tokens and plain-text runs.

    `control_tokens` are the token strings that count as control tokens when the template's
    own text contains them; inside message contents they are plain text. `special_tokens`
    are the template variables such as `bos_token` and `eos_token`.
    """
    _check_messages(messages)
    opening, closing = _marker_brackets(messages)
    marked = [
        {**message, "content": f"{opening}{index}{closing}"}
        for index, message in enumerate(messages)
    ]
    try:
        rendered = _compile(template).render(
            messages=marked, add_generation_prompt=add_generation_prompt, **special_tokens
        )
    except jinja2.TemplateError as error:
        raise UserError(f"the chat template failed to render: {error}") from error

    ordered = sorted(control_tokens, key=len, reverse=True)
    control_pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
    marker_pattern = re.compile(f"{re.escape(opening)}([0-9]+){re.escape(closing)}")
    pieces: list[ChatPiece] = []
    position = 0
    for match in marker_pattern.finditer(rendered):
        pieces += _split_controls(rendered[position : match.start()], control_pattern)
        pieces.append(ChatPiece(str(messages[int(match.group(1))]["content"]), is_control=False))
        position = match.end()
    pieces += _split_controls(rendered[position:], control_pattern)
    return _merge_text(pieces)
