"""Helpers shared by the training tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dscoder.train import TrainConfig
from dscoder.train.metrics import read_metrics

ENTRY = Path(__file__).with_name("train_entry.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def write_shard(path: Path, texts: list[str], ids: list[str]) -> Path:
    """A Parquet shard in the data pipeline's schema."""
    table = pa.table({
        "id": ids,
        "repo": ["stdlib"] * len(texts),
        "language": ["Python"] * len(texts),
        "paths": [[i] for i in ids],
        "text": texts,
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def tiny_config(out_dir: Path, data: list[Path], tokenizer_dir: Path | None, **changes) -> TrainConfig:
    """A run of the 'test' preset that takes about a second on one CPU thread."""
    settings = dict(stage="pretrain", out_dir=out_dir, data=data, tokenizer=tokenizer_dir, model="test",
                    seq_len=64, batch_size=4, micro_batch_size=2, steps=6, lr=3e-3, eval_fraction=0.15,
                    eval_interval=3, eval_sequences=4, checkpoint_interval=3, device="cpu", progress=False)
    settings.update(changes)
    return TrainConfig(**settings)


def cli_args(config: TrainConfig) -> list[str]:
    """The `dscoder train pretrain` command line of a tiny_config run."""
    args = ["train", "pretrain", "--data", *map(str, config.data), "--out", str(config.out_dir),
            "--tokenizer", str(config.tokenizer), "--model", config.model, "--seq-len", str(config.seq_len),
            "--batch-size", str(config.batch_size), "--micro-batch-size", str(config.micro_batch_size),
            "--steps", str(config.steps), "--lr", str(config.lr), "--eval-fraction", str(config.eval_fraction),
            "--eval-interval", str(config.eval_interval), "--eval-sequences", str(config.eval_sequences),
            "--checkpoint-interval", str(config.checkpoint_interval), "--device", "cpu", "--no-progress",
            "--precision", config.precision]
    return args + (["--activation-checkpointing"] if config.activation_checkpointing else [])


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}


def run_two_processes(config: TrainConfig) -> None:
    """`torchrun --nproc-per-node 2` (gloo, FSDP2) on the command line of `config`."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(ENTRY), *cli_args(config)]
    done = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def assert_same_losses(got: Path, expected: Path, rtol: float) -> None:
    """The metrics files log the same steps, with training and held-out losses within `rtol`."""
    got_rows, expected_rows = read_metrics(got), read_metrics(expected)
    assert [r["step"] for r in got_rows] == [r["step"] for r in expected_rows]
    for g, e in zip(got_rows, expected_rows):
        for key in ("loss", "eval_loss"):
            if key in e:
                assert abs(g[key] - e[key]) <= rtol * abs(e[key]), (g["step"], key, g[key], e[key])
