"""Training a DeepSeek-Coder style byte-level BPE tokenizer.

The id layout follows the release: ids 0..N-1 are the N trained BPE tokens, the next 13 are the
byte characters that never occur in UTF-8 (so every byte has a token), then the nine named
tokens of `special.NAMED_TOKENS`. With N = 32,000 this gives the released ids (BOS 32013, EOS
32014, FIM 32015..32017, `<|EOT|>` 32021). The release keeps those 13 characters as added
tokens, which makes `tokenizers` match them in text (any "ü" becomes one id) and decode them
to U+FFFD (huggingface/tokenizers#1392); here they sit in the BPE vocabulary instead, where
text never reaches them, and text round-trips.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import tokenizers
from tokenizers import AddedToken, decoders, models, trainers

from dscoder.errors import UserError
from dscoder.tokenizer import special
from dscoder.tokenizer.corpus import TextCorpus
from dscoder.tokenizer.hf import Tokenizer
from dscoder.tokenizer.pretokenizer import deepseek_coder_pre_tokenizer, utf8_byte_alphabet

PAPER_VOCAB_SIZE = 32000
# Below this BPE could not even hold one token per byte.
MIN_VOCAB_SIZE = 256


def _append_to_bpe_vocabulary(
    backend: tokenizers.Tokenizer, tokens: Sequence[str]
) -> tokenizers.Tokenizer:
    data = json.loads(backend.to_str())
    vocabulary: dict[str, int] = data["model"]["vocab"]
    for token in tokens:
        if token not in vocabulary:
            vocabulary[token] = len(vocabulary)
    return tokenizers.Tokenizer.from_str(json.dumps(data))


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = PAPER_VOCAB_SIZE,
    *,
    min_frequency: int = 2,
    show_progress: bool = False,
) -> Tokenizer:
    """Train BPE with `vocab_size` tokens (fewer if the texts allow no more merges), then add
    the 13 non-UTF-8 byte tokens and DeepSeek-Coder's named tokens after them."""
    if vocab_size < MIN_VOCAB_SIZE:
        raise UserError(f"the vocabulary size must be at least {MIN_VOCAB_SIZE}, got {vocab_size}")
    if min_frequency < 1:
        raise UserError(f"the minimum pair frequency must be at least 1, got {min_frequency}")
    backend = tokenizers.Tokenizer(models.BPE())
    backend.pre_tokenizer = deepseek_coder_pre_tokenizer()
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        initial_alphabet=utf8_byte_alphabet(),
        special_tokens=[],
        show_progress=show_progress,
    )
    remaining = iter(texts)
    first = next(remaining, None)
    if first is None:
        raise UserError("there is no text to train the tokenizer on")
    backend.train_from_iterator(itertools.chain([first], remaining), trainer=trainer)

    backend = _append_to_bpe_vocabulary(backend, special.NON_UTF8_BYTE_CHARS)
    backend.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in special.NAMED_TOKENS]
    )
    return Tokenizer(backend)


@dataclass(frozen=True)
class TrainingReport:
    output: Path
    vocab_size: int  # all tokens, added ones included
    requested_bpe_tokens: int
    trained_bpe_tokens: int  # fewer than requested when the input allows no more merges
    texts: int
    bytes: int
    seconds: float


def train_tokenizer_on_files(
    inputs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    vocab_size: int = PAPER_VOCAB_SIZE,
    *,
    min_frequency: int = 2,
    limit_bytes: int | None = None,
    show_progress: bool = False,
) -> TrainingReport:
    """Train on Parquet shards (their `text` column), directories of them, JSONL or text
    files, and save the tokenizer directory to `output`."""
    corpus = TextCorpus.from_inputs(inputs, limit_bytes)
    started = time.perf_counter()
    tokenizer = train_tokenizer(
        corpus, vocab_size, min_frequency=min_frequency, show_progress=show_progress
    )
    seconds = time.perf_counter() - started
    tokenizer.save(output)
    return TrainingReport(
        output=Path(output),
        vocab_size=tokenizer.vocab_size,
        requested_bpe_tokens=vocab_size,
        trained_bpe_tokens=tokenizer.bpe_vocab_size - len(special.NON_UTF8_BYTE_CHARS),
        texts=corpus.texts_read,
        bytes=corpus.bytes_read,
        seconds=seconds,
    )
