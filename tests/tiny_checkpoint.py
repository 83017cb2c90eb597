"""A tokenizer trained on a few standard-library modules and a tiny random checkpoint that fits
it: what the inference, server and evaluation tests run on (no weights can be downloaded)."""

from __future__ import annotations

import sysconfig
from collections.abc import Sequence
from pathlib import Path

import torch

from dscoder.model import PRESETS, Transformer, save_model
from dscoder.tokenizer import Tokenizer, train_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def stdlib_tokenizer(modules: Sequence[str], vocab_size: int, extra: Sequence[str] = ()) -> Tokenizer:
    texts = [(STDLIB / name).read_text(encoding="utf-8") for name in modules]
    return train_tokenizer([*texts, *extra], vocab_size=vocab_size)


def write_checkpoint(tokenizer: Tokenizer, directory: Path, context: int = 512) -> Path:
    """A 2-layer random model saved with `tokenizer`. Its weights are large enough (std 0.2) that
    greedy decoding wanders over many tokens instead of repeating one: outputs are long and
    varied, which the stop and streaming tests rely on."""
    config = PRESETS["test"].replace(vocab_size=tokenizer.vocab_size, bos_token_id=tokenizer.bos_id,
                                     eos_token_id=tokenizer.eos_id, max_position_embeddings=context)
    torch.manual_seed(0)
    model = Transformer(config)
    model.init_weights(std=0.2)
    save_model(model, directory)
    tokenizer.save(directory)
    return directory
