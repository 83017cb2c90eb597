"""bf16 training, the precision GPUs use, exercised on CPU: autocast in one process and FSDP2's
mixed precision in two. Master weights, optimizer state and the loss's softmax stay fp32."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from dscoder.errors import UserError
from dscoder.train import train
from train_helpers import assert_same_losses, run_two_processes, tiny_config

# bf16 keeps 8 bits of mantissa; over six steps of a tiny model the losses stayed within 0.1%
# of the reference (fp32, or one process); the bound leaves margin.
BF16_LOSS_RTOL = 1e-2
SETTINGS = dict(steps=6, batch_size=4, micro_batch_size=2, checkpoint_interval=3, eval_interval=3)


def test_bf16_on_cpu_trains_close_to_fp32_and_saves_fp32_weights(tmp_path, shard_dir, tokenizer_dir):
    fp32 = train(tiny_config(tmp_path / "fp32", [shard_dir], tokenizer_dir, **SETTINGS))
    bf16 = train(tiny_config(tmp_path / "bf16", [shard_dir], tokenizer_dir, precision="bf16", **SETTINGS))
    for (step, got), (_, expected) in zip(bf16.train_losses, fp32.train_losses, strict=True):
        assert abs(got - expected) <= BF16_LOSS_RTOL * expected, step
    assert bf16.train_losses != fp32.train_losses  # it did compute in bf16
    weights = load_file(bf16.final_dir / "model.safetensors")
    assert {str(t.dtype) for t in weights.values()} == {"torch.float32"}


def test_two_processes_in_bf16_train_like_one(tmp_path, shard_dir, tokenizer_dir):
    one = train(tiny_config(tmp_path / "one", [shard_dir], tokenizer_dir, precision="bf16", **SETTINGS))
    two_config = tiny_config(tmp_path / "two", [shard_dir], tokenizer_dir, precision="bf16", **SETTINGS)
    run_two_processes(two_config)
    # FSDP2 casts whole layers' parameters to bf16 where autocast casts each operation's
    # inputs: the same precision, rounded in different places.
    assert_same_losses(two_config.out_dir / "metrics.jsonl", one.metrics_path, BF16_LOSS_RTOL)
    weights = load_file(two_config.out_dir / "final" / "model.safetensors")
    assert {str(t.dtype) for t in weights.values()} == {"torch.float32"}


def test_an_unknown_precision_is_a_user_error(tmp_path, shard_dir, tokenizer_dir):
    with pytest.raises(UserError, match="precision"):
        tiny_config(tmp_path / "x", [shard_dir], tokenizer_dir, precision="fp8")
