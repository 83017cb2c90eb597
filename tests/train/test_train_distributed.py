"""Two processes (torchrun, gloo, FSDP2) train like one process with the same global batch."""

from __future__ import annotations

import shutil

from safetensors.torch import load_file

from dscoder.train import train
from dscoder.train.metrics import read_metrics
from train_helpers import assert_same_losses, run_two_processes, tiny_config

# Sharding changes the order of floating-point sums (gradient reduction, norms), nothing else.
# Measured: identical losses at most steps, 4e-8 relative at worst; the bounds leave margin.
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-4


def test_two_processes_match_one_with_the_same_global_batch(tmp_path, shard_dir, tokenizer_dir):
    settings = dict(steps=6, batch_size=4, micro_batch_size=2, checkpoint_interval=3, eval_interval=3)
    # One process: 2 micro-batches of 2 rows per step. Two: 1 micro-batch of 2 rows each,
    # sharded, with activation checkpointing (which must not change the numbers either).
    one = train(tiny_config(tmp_path / "one", [shard_dir], tokenizer_dir, **settings))
    two_config = tiny_config(tmp_path / "two", [shard_dir], tokenizer_dir, activation_checkpointing=True,
                             **settings)
    run_two_processes(two_config)

    assert_same_losses(two_config.out_dir / "metrics.jsonl", one.metrics_path, LOSS_RTOL)
    expected = read_metrics(one.metrics_path)
    assert expected[-1]["eval_loss"] < expected[0]["eval_loss"]  # it did learn something
    two_weights = load_file(two_config.out_dir / "final" / "model.safetensors")
    for name, tensor in load_file(one.final_dir / "model.safetensors").items():
        assert (two_weights[name] - tensor).abs().max() <= WEIGHT_ATOL, name

    # The two-process checkpoint (optimizer sharded in two) resumes in one process.
    shutil.rmtree(two_config.out_dir / "checkpoint-000006")
    shutil.rmtree(two_config.out_dir / "final")
    resumed = train(tiny_config(tmp_path / "two", [shard_dir], tokenizer_dir, **settings))
    for (step, loss), (_, reference) in zip(resumed.train_losses[3:], one.train_losses[3:]):
        assert abs(loss - reference) <= LOSS_RTOL * reference, step
