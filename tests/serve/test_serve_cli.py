"""`dscoder serve`'s arguments become ServeOptions; a bad checkpoint is a one-line user error."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from dscoder.cli import serve as serve_cli
from dscoder.errors import UserError
from dscoder.infer.engine import DEFAULT_MAX_PREFILL_TOKENS, DEFAULT_MAX_SEQ_LEN
from dscoder.serve import ServeOptions, load_engine


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve_cli.register(parser.add_subparsers())
    return parser.parse_args(["serve", *argv])


def test_arguments_become_options(tmp_path: Path):
    args = parse("--model", str(tmp_path / "my-coder"), "--port", "9000", "--max-batch-size", "4",
                 "--max-seq-len", "1024", "--dtype", "bfloat16", "--int8", "--max-prefill-tokens", "64")
    options = serve_cli.options_from(args)
    assert options == ServeOptions(model=tmp_path / "my-coder", port=9000, max_batch_size=4, max_seq_len=1024,
                                   dtype="bfloat16", int8=True, max_prefill_tokens=64)
    assert options.host == "127.0.0.1"  # only this machine, unless asked
    assert options.model_name == "my-coder"
    assert args.func is serve_cli.run_serve


def test_the_served_name_and_the_defaults(tmp_path: Path):
    options = serve_cli.options_from(parse("--model", str(tmp_path), "--served-model-name", "deepseek-coder"))
    assert options.model_name == "deepseek-coder"
    assert (options.max_seq_len, options.max_batch_size, options.port) == (DEFAULT_MAX_SEQ_LEN, 8, 8000)
    assert options.max_prefill_tokens == DEFAULT_MAX_PREFILL_TOKENS


def test_a_missing_checkpoint_is_a_user_error(tmp_path: Path):
    with pytest.raises(UserError, match="not a checkpoint directory"):
        load_engine(ServeOptions(model=tmp_path / "absent"))


def test_the_served_engine_has_the_asked_shape(checkpoint: Path):
    engine = load_engine(ServeOptions(model=checkpoint, max_batch_size=3, max_seq_len=100, max_prefill_tokens=16))
    assert (engine.max_batch_size, engine.max_seq_len, engine.max_prefill_tokens) == (3, 100, 16)


def test_the_model_runs_a_thread_per_core_on_the_kernel_unless_told_otherwise():
    from dscoder.serve.server import model_threads

    assert [model_threads(None, cores, kernel=True) for cores in (1, 2, 16)] == [1, 2, 16]
    # On PyTorch one core is left to the HTTP loop.
    assert [model_threads(None, cores, kernel=False) for cores in (1, 2, 16)] == [1, 1, 15]
    assert model_threads(4, 2, kernel=False) == 4
    with pytest.raises(UserError):
        model_threads(0, 2, kernel=True)
