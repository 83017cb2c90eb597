"""A tiny random checkpoint with a tokenizer trained here, served on 127.0.0.1 for the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import torch

from dscoder.infer import Engine
from dscoder.serve import BackgroundServer, Scheduler, create_app
from dscoder.tokenizer import Tokenizer
from serve_support import BATCH, CONTEXT, MODEL_NAME
from tiny_checkpoint import stdlib_tokenizer, write_checkpoint

TRAINING_MODULES = ("argparse.py", "textwrap.py", "string.py")


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return stdlib_tokenizer(TRAINING_MODULES, 500)


@pytest.fixture(scope="session")
def checkpoint(tokenizer: Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tokenizer, tmp_path_factory.mktemp("checkpoint") / MODEL_NAME)


@pytest.fixture(scope="session")
def scheduler(checkpoint: Path) -> Iterator[Scheduler]:
    # One intra-op thread: on models this small thread hand-offs cost more than they save.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    engine = Engine.from_checkpoint(checkpoint, max_batch_size=BATCH, max_seq_len=CONTEXT)
    with Scheduler(engine) as scheduler:
        yield scheduler
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def server(scheduler: Scheduler) -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(scheduler, MODEL_NAME)) as server:
        yield server


@pytest.fixture(scope="session")
def reference(checkpoint: Path) -> Engine:
    """A second engine on the same weights, driven directly, for expected outputs."""
    return Engine.from_checkpoint(checkpoint, max_batch_size=1, max_seq_len=CONTEXT)


@pytest.fixture
def client(server: BackgroundServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0,
                       timeout=60) as client:
        yield client
