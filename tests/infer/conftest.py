"""A small tokenizer trained here and a tiny random checkpoint that fits it."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
import torch

from dscoder.infer import Engine
from dscoder.model import PRESETS, Transformer, load_model, save_model
from dscoder.tokenizer import Tokenizer, train_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
TRAINING_MODULES = ("argparse.py", "textwrap.py", "string.py")


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    texts = [(STDLIB / name).read_text(encoding="utf-8") for name in TRAINING_MODULES]
    texts.append("def 加法(a, b):\n    return a + b  # 😀 ünïcödé\n")
    return train_tokenizer(texts, vocab_size=500)


@pytest.fixture(scope="session")
def checkpoint(tokenizer: Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer model whose weights are large enough (std 0.2) that greedy decoding moves
    between many tokens instead of repeating one, which the stop tests rely on."""
    config = PRESETS["test"].replace(vocab_size=tokenizer.vocab_size, bos_token_id=tokenizer.bos_id,
                                     eos_token_id=tokenizer.eos_id, max_position_embeddings=512)
    torch.manual_seed(0)
    model = Transformer(config)
    model.init_weights(std=0.2)
    directory = tmp_path_factory.mktemp("checkpoint")
    save_model(model, directory)
    tokenizer.save(directory)
    return directory


@pytest.fixture
def model(checkpoint: Path) -> Transformer:
    return load_model(checkpoint)


@pytest.fixture
def engine(model: Transformer, tokenizer: Tokenizer) -> Engine:
    return Engine(model, tokenizer, max_batch_size=4, max_seq_len=256)


@pytest.fixture(autouse=True)
def one_thread():
    """Thread hand-offs cost more than they save on models this small, badly so on a loaded
    machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
