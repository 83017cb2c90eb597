"""The training half of `make demo`: pretrain a small model on the pipeline's shards, then
instruction-tune it on a generated instruction set, within a few minutes on two CPU cores.

What halves the held-out loss fastest on two cores is a very small model that sees many
tokens: hidden 96, 3 layers (0.36M parameters besides the embeddings), millions of tokens in
about five minutes, with a small demo tokenizer (a few hundred tokens: larger vocabularies raise
the loss per token faster than its starting value, about ln(vocabulary)). The number of steps
is fitted to the time budget from a timing of whole optimizer steps, so the cosine schedule
runs to its end; the budget also stops training early if the machine slows down.

The thread count is chosen by the same timing: on a quiet two-core machine two threads are
1.6-1.8x faster than one, but on one shared with other work an OpenMP team with a thread per
core can be several times slower (every parallel region waits for the thread that lost its
core), so whichever was faster just now is kept.
"""

from __future__ import annotations

import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dscoder.errors import UserError
from dscoder.model import PRESETS, ModelConfig, Transformer, save_model
from dscoder.tokenizer import Tokenizer
from dscoder.train.build import padded_vocab_size
from dscoder.train.config import TrainConfig
from dscoder.train.instructions import write_instructions
from dscoder.train.loss import CausalLMLoss
from dscoder.train.loop import train


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of the demo run, chosen for two CPU cores."""

    hidden_size: int = 96
    intermediate_size: int = 288  # about the released models' FFN ratio (2.69), a multiple of 32
    num_layers: int = 3
    num_heads: int = 2
    seq_len: int = 256
    batch_size: int = 8
    pretrain_steps: int | None = None  # None: as many as the time budget allows
    pretrain_lr: float = 5e-3
    pretrain_share: float = 0.8  # of the time budget; the rest is instruction tuning
    evaluations: int = 8
    eval_sequences: int = 256
    eval_fraction: float = 0.01
    instructions: int = 300
    sft_seq_len: int = 1024
    sft_batch_size: int = 4
    sft_epochs: float = 6.0  # a small set, seen often enough that the answer format sticks
    sft_lr: float = 3e-3
    sft_eval_fraction: float = 0.05
    seed: int = 0


def run_training_demo(data_dir: Path, tokenizer_dir: Path, out_dir: Path, time_budget_s: float = 300.0,
                      plan: DemoPlan = DemoPlan()) -> dict[str, Any]:
    """Pretrain with FIM on `data_dir`'s shards, check the held-out loss fell below half its
    start, write an instruction set, instruction-tune; returns paths, losses and timings.

    `ok` in the result says whether the loss bar was met. Earlier demo runs in `out_dir` are
    replaced: the demo always trains afresh.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    tokenizer = Tokenizer.from_dir(tokenizer_dir)
    for stage in ("init", "pretrain", "sft"):
        shutil.rmtree(out_dir / stage, ignore_errors=True)
    init_dir = out_dir / "init"
    model_config = _write_initial_model(init_dir, tokenizer, plan)
    threads = torch.get_num_threads()
    try:
        return _pretrain_and_tune(data_dir, out_dir, init_dir, model_config, time_budget_s, plan, started)
    finally:
        torch.set_num_threads(threads)


def _pretrain_and_tune(data_dir: Path, out_dir: Path, init_dir: Path, model_config: ModelConfig,
                       time_budget_s: float, plan: DemoPlan, started: float) -> dict[str, Any]:
    """The two training stages of run_training_demo, with the faster thread count."""
    threads, step_seconds = _pick_threads(model_config, plan)

    pretrain_budget = time_budget_s * plan.pretrain_share
    # Real steps took about 1.5x the bare timing here (data, clipping, logging, and the timing
    # runs on a freshly built model); the budget stops training if they take longer still.
    steps = plan.pretrain_steps or max(50, int(0.65 * pretrain_budget / step_seconds))
    pretrained = train(TrainConfig(
        stage="pretrain", out_dir=out_dir / "pretrain", data=[Path(data_dir)], init_from=init_dir,
        seq_len=plan.seq_len, batch_size=plan.batch_size, micro_batch_size=plan.batch_size,
        steps=steps, lr=plan.pretrain_lr, schedule="cosine", min_lr_ratio=0.1, warmup_steps=steps // 20,
        eval_interval=max(steps // plan.evaluations, 1), eval_sequences=plan.eval_sequences,
        eval_fraction=plan.eval_fraction, checkpoint_interval=steps, keep_checkpoints=1, seed=plan.seed,
        device="cpu", time_budget_s=pretrain_budget))
    if not pretrained.eval_losses:
        raise UserError(f"{data_dir} holds too little text to hold any out for evaluation")
    start_loss, end_loss = pretrained.eval_losses[0][1], pretrained.eval_losses[-1][1]

    instructions = write_instructions(out_dir / "instructions.jsonl", plan.instructions, seed=plan.seed)
    remaining = max(time_budget_s - (time.perf_counter() - started), 30.0)
    tuned = train(TrainConfig(
        stage="sft", out_dir=out_dir / "sft", data=[instructions], init_from=pretrained.final_dir,
        seq_len=plan.sft_seq_len, batch_size=plan.sft_batch_size, micro_batch_size=plan.sft_batch_size,
        epochs=plan.sft_epochs, lr=plan.sft_lr, eval_fraction=plan.sft_eval_fraction, eval_interval=20,
        eval_sequences=8, checkpoint_interval=10**6, keep_checkpoints=1, seed=plan.seed, device="cpu",
        time_budget_s=remaining))

    return {
        "ok": end_loss < start_loss / 2,
        "base_model": pretrained.final_dir,
        "instruct_model": tuned.final_dir,
        "instructions": instructions,
        "pretrain_eval_losses": pretrained.eval_losses,
        "sft_eval_losses": tuned.eval_losses,
        "start_loss": start_loss,
        "end_loss": end_loss,
        "loss_ratio": end_loss / start_loss,
        "plots": [pretrained.plot_path, tuned.plot_path],
        "pretrain_tokens_per_s": pretrained.tokens_per_s,
        "threads": threads,
        "seconds": time.perf_counter() - started,
        "results": {"pretrain": pretrained, "sft": tuned},
    }


def _write_initial_model(directory: Path, tokenizer: Tokenizer, plan: DemoPlan) -> ModelConfig:
    """The demo's model, freshly initialised, as a checkpoint for `train` to start from."""
    config = PRESETS["tiny"].replace(
        hidden_size=plan.hidden_size, intermediate_size=plan.intermediate_size, num_layers=plan.num_layers,
        num_heads=plan.num_heads, num_kv_heads=plan.num_heads, vocab_size=padded_vocab_size(tokenizer),
        bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id)
    torch.manual_seed(plan.seed)
    save_model(Transformer(config), directory)
    tokenizer.save(directory)
    return config


def _pick_threads(config: ModelConfig, plan: DemoPlan, warmup: int = 2, trials: int = 5) -> tuple[int, float]:
    """Set torch's thread count to whichever of 1 and all cores runs whole optimizer steps of
    the demo model (random tokens) faster right now; returns it and its median seconds per step."""
    module = CausalLMLoss(Transformer(config))
    optimizer = torch.optim.AdamW(module.parameters(), lr=plan.pretrain_lr)
    tokens = torch.randint(0, config.vocab_size, (plan.batch_size, plan.seq_len + 1))
    seconds = {}
    for threads in sorted({1, torch.get_num_threads()}):
        torch.set_num_threads(threads)
        times = []
        for _ in range(warmup + trials):
            begun = time.perf_counter()
            module(tokens[:, :-1], tokens[:, 1:], 1.0).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - begun)
        seconds[threads] = statistics.median(times[warmup:])
    best = min(seconds, key=seconds.get)
    torch.set_num_threads(best)
    return best, seconds[best]
