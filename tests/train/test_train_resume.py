"""A run killed with SIGKILL and started again with the same command continues exactly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from dscoder.errors import UserError
from dscoder.train import train
from dscoder.train.metrics import read_metrics
from dscoder.train.state import checkpoint_dir, latest_checkpoint
from train_helpers import ENTRY, cli_args, subprocess_env, tiny_config


def test_sigkill_then_same_command_resumes_with_identical_losses(tmp_path, shard_dir, tokenizer_dir):
    settings = dict(steps=24, checkpoint_interval=4, eval_interval=8)
    reference = train(tiny_config(tmp_path / "reference", [shard_dir], tokenizer_dir, **settings))

    killed_config = tiny_config(tmp_path / "killed", [shard_dir], tokenizer_dir, **settings)
    command = [sys.executable, str(ENTRY), *cli_args(killed_config)]
    process = subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while not checkpoint_dir(killed_config.out_dir, 4).is_dir():
        assert process.poll() is None, process.stdout.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (killed_config.out_dir / "final").exists()
    resumed_from = latest_checkpoint(killed_config.out_dir)
    assert resumed_from is not None and resumed_from.name < "checkpoint-000024"

    done = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr

    expected = read_metrics(reference.metrics_path)
    got = read_metrics(killed_config.out_dir / "metrics.jsonl")
    key = lambda r: (r["step"], "loss" in r)  # noqa: E731
    assert [key(r) for r in got] == [key(r) for r in expected]  # no step lost or repeated
    for g, e in zip(got, expected):
        assert g.get("loss") == e.get("loss") and g.get("eval_loss") == e.get("eval_loss"), g["step"]
    final = load_file(killed_config.out_dir / "final" / "model.safetensors")
    reference_final = load_file(reference.final_dir / "model.safetensors")
    assert all((final[name] == tensor).all() for name, tensor in reference_final.items())


def test_resuming_with_other_settings_is_refused(tmp_path, shard_dir, tokenizer_dir):
    train(tiny_config(tmp_path, [shard_dir], tokenizer_dir, steps=3))
    with pytest.raises(UserError, match="other settings.*seq_len"):
        train(tiny_config(tmp_path, [shard_dir], tokenizer_dir, steps=3, seq_len=32))


def test_a_finished_run_started_again_does_nothing(tmp_path, shard_dir, tokenizer_dir):
    first = train(tiny_config(tmp_path, [shard_dir], tokenizer_dir, steps=3))
    again = train(tiny_config(tmp_path, [shard_dir], tokenizer_dir, steps=3))
    assert again.steps == first.steps == 3
    assert again.train_losses == first.train_losses
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-000003"]
