"""DeepSeek-Coder's pre-tokenizer: where BPE merges may never cross.

The released `tokenizer.json` splits text, in this order, into: single line breaks, letter runs
with at most one leading whitespace character, punctuation runs with at most one leading
whitespace character, runs of CJK and other wide scripts, and single digits; then maps bytes to
printable characters (GPT-2's byte-level alphabet) without further regex splitting. Whatever is
left between matches (runs of spaces, symbols such as `+` or `=` that are not punctuation) stays
a piece of its own.
"""

from __future__ import annotations

from tokenizers import Regex, pre_tokenizers

from dscoder.tokenizer.special import NON_UTF8_BYTE_CHARS

LINE_BREAK = r"[\r\n]"
LETTER_RUN = r"\s?\p{L}+"
PUNCTUATION_RUN = r"\s?\p{P}+"
# U+4E00..U+9FA5 (CJK ideographs), U+0800..U+4E00 (Samaritan through Yi and kana),
# U+AC00..U+D7FF (Hangul syllables and jamo).
WIDE_SCRIPT_RUN = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"

SPLIT_PATTERNS: tuple[str, ...] = (LINE_BREAK, LETTER_RUN, PUNCTUATION_RUN, WIDE_SCRIPT_RUN)


def deepseek_coder_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    splits = [
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False)
        for pattern in SPLIT_PATTERNS
    ]
    return pre_tokenizers.Sequence(
        [
            *splits,
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )


def utf8_byte_alphabet() -> list[str]:
    """The byte-level characters of every byte that can occur in UTF-8 text (243 of 256).

    Seeding BPE training with them gives every such byte a token even when the corpus lacks
    it (control characters, rare lead bytes), so no text ever falls outside the vocabulary.
    """
    unreachable = set(NON_UTF8_BYTE_CHARS)
    return sorted(c for c in pre_tokenizers.ByteLevel.alphabet() if c not in unreachable)
