"""The added tokens of the released DeepSeek-Coder tokenizers, as strings.

Code never hard-codes their ids: a tokenizer of any size looks them up through its vocabulary
(`Tokenizer.token_id`). The bars in the sentence and FIM tokens are FULLWIDTH VERTICAL LINE
(U+FF5C) and the word separator is LOWER ONE EIGHTH BLOCK (U+2581); `<|EOT|>`, `<|User|>` and
`<|Assistant|>` use the ASCII bar. The escapes below make that impossible to get wrong by
copying from a rendered page.
"""

from __future__ import annotations

BOS = "<\uff5cbegin\u2581of\u2581sentence\uff5c>"
EOS = "<\uff5cend\u2581of\u2581sentence\uff5c>"
FIM_HOLE = "<\uff5cfim\u2581hole\uff5c>"
FIM_BEGIN = "<\uff5cfim\u2581begin\uff5c>"
FIM_END = "<\uff5cfim\u2581end\uff5c>"
PAD = "<pad>"
USER = "<|User|>"
ASSISTANT = "<|Assistant|>"
EOT = "<|EOT|>"

# In the released order: with 32,000 BPE tokens they take ids 32013..32021.
NAMED_TOKENS: tuple[str, ...] = (BOS, EOS, FIM_HOLE, FIM_BEGIN, FIM_END, PAD, USER, ASSISTANT, EOT)

# The byte-level characters of the 13 byte values that never occur in UTF-8 (0xC0, 0xC1,
# 0xF5..0xFF). A BPE trained on text never sees them, so the release appends them after the
# BPE tokens (ids 32000..32012) to give every byte a token.
NON_UTF8_BYTE_CHARS: tuple[str, ...] = tuple(chr(b) for b in (0xC0, 0xC1, *range(0xF5, 0x100)))
