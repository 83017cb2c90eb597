"""A small tokenizer trained here and a tiny random checkpoint that fits it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_checkpoint import stdlib_tokenizer, write_checkpoint

from dscoder.infer import Engine
from dscoder.infer.cpu_decode import use_panels
from dscoder.model import Transformer, load_model
from dscoder.tokenizer import Tokenizer

TRAINING_MODULES = ("argparse.py", "textwrap.py", "string.py")


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return stdlib_tokenizer(TRAINING_MODULES, 500, extra=["def 加法(a, b):\n    return a + b  # 😀 ünïcödé\n"])


@pytest.fixture(scope="session")
def checkpoint(tokenizer: Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tokenizer, tmp_path_factory.mktemp("checkpoint"))


@pytest.fixture
def model(checkpoint: Path) -> Transformer:
    return load_model(checkpoint)


@pytest.fixture(params=["pytorch", "cpu_kernel"])
def engine(request: pytest.FixtureRequest, checkpoint: Path, tokenizer: Tokenizer) -> Engine:
    """An engine on the checkpoint's model, running on PyTorch or on the native CPU kernel
    (dscoder.infer.cpu_decode: fused projections in its panel layout)."""
    model = load_model(checkpoint)
    if request.param == "cpu_kernel":
        model.fuse_projections()
        use_panels(model)
    engine = Engine(model, tokenizer, max_batch_size=4, max_seq_len=256)
    assert (engine._cpu_decoder is not None) == (request.param == "cpu_kernel")
    return engine


@pytest.fixture(autouse=True)
def one_thread():
    """Thread hand-offs cost more than they save on models this small, badly so on a loaded
    machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
