"""The training half of `make demo`: pretrain a small model on the pipeline's shards, then
instruction-tune it on a generated instruction set, within a few minutes on two CPU cores.

The model is small (hidden 128, 4 layers) so that a two-core machine sees about a million
tokens in the time: enough for the held-out loss to fall below half its starting value with a
small demo tokenizer (a few thousand tokens; with the full 32K vocabulary the starting value
is higher and the bar is met later). Both stages run under a time budget, so a slow machine
ends them early rather than overrunning the demo.

On a machine shared with other work, an OpenMP team with a thread per core is several times
slower than one thread (every parallel region waits for the thread that lost its core), so the
demo times a few steps with each thread count and keeps the faster.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dscoder.errors import UserError
from dscoder.model import PRESETS, ModelConfig, Transformer, save_model
from dscoder.tokenizer import Tokenizer
from dscoder.train.build import VOCAB_MULTIPLE
from dscoder.train.config import TrainConfig
from dscoder.train.instructions import write_instructions
from dscoder.train.loss import CausalLMLoss
from dscoder.train.loop import train


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of the demo run, chosen for two CPU cores."""

    hidden_size: int = 128
    intermediate_size: int = 352  # the released models' FFN ratio, a multiple of 32
    num_layers: int = 4
    num_heads: int = 2
    seq_len: int = 256
    batch_size: int = 16
    pretrain_steps: int = 400
    pretrain_lr: float = 5e-3
    pretrain_share: float = 0.75  # of the time budget; the rest is instruction tuning
    eval_interval: int = 50
    instructions: int = 300
    sft_seq_len: int = 512
    sft_batch_size: int = 8
    sft_epochs: float = 2.0
    sft_lr: float = 2e-3
    seed: int = 0


def run_training_demo(data_dir: Path, tokenizer_dir: Path, out_dir: Path, time_budget_s: float = 360.0,
                      plan: DemoPlan = DemoPlan()) -> dict[str, Any]:
    """Pretrain with FIM on `data_dir`'s shards, check the held-out loss fell below half its
    start, write an instruction set, instruction-tune; returns paths, losses and timings.

    `ok` in the result says whether the loss bar was met.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    tokenizer = Tokenizer.from_dir(tokenizer_dir)
    init_dir = out_dir / "init"
    model_config = _write_initial_model(init_dir, tokenizer, plan)
    threads = _pick_threads(model_config, plan)

    pretrain_budget = time_budget_s * plan.pretrain_share
    pretrained = train(TrainConfig(
        stage="pretrain", out_dir=out_dir / "pretrain", data=[Path(data_dir)], init_from=init_dir,
        seq_len=plan.seq_len, batch_size=plan.batch_size, micro_batch_size=plan.batch_size,
        steps=plan.pretrain_steps, lr=plan.pretrain_lr, schedule="cosine", min_lr_ratio=0.1,
        warmup_steps=plan.pretrain_steps // 20, eval_interval=plan.eval_interval, eval_sequences=16,
        eval_fraction=0.01, checkpoint_interval=plan.pretrain_steps, keep_checkpoints=1,
        seed=plan.seed, device="cpu", time_budget_s=pretrain_budget))
    if not pretrained.eval_losses:
        raise UserError(f"{data_dir} holds too little text to hold any out for evaluation")
    start_loss, end_loss = pretrained.eval_losses[0][1], pretrained.eval_losses[-1][1]

    instructions = write_instructions(out_dir / "instructions.jsonl", plan.instructions, seed=plan.seed)
    remaining = max(time_budget_s - (time.perf_counter() - started), 30.0)
    tuned = train(TrainConfig(
        stage="sft", out_dir=out_dir / "sft", data=[instructions], init_from=pretrained.final_dir,
        seq_len=plan.sft_seq_len, batch_size=plan.sft_batch_size, micro_batch_size=plan.sft_batch_size,
        epochs=plan.sft_epochs, lr=plan.sft_lr, warmup_steps=5, eval_fraction=0.05, eval_interval=20,
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
    vocab = -(-tokenizer.vocab_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    config = PRESETS["tiny"].replace(
        hidden_size=plan.hidden_size, intermediate_size=plan.intermediate_size, num_layers=plan.num_layers,
        num_heads=plan.num_heads, num_kv_heads=plan.num_heads, vocab_size=vocab,
        bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id)
    torch.manual_seed(plan.seed)
    save_model(Transformer(config), directory)
    tokenizer.save(directory)
    return config


def _pick_threads(config: ModelConfig, plan: DemoPlan, trials: int = 3) -> int:
    """Set torch's thread count to whichever of 1 and all cores trains the demo model faster
    right now (the median of a few steps on random tokens); returns it."""
    choices = sorted({1, torch.get_num_threads()})
    module = CausalLMLoss(Transformer(config))
    tokens = torch.randint(0, config.vocab_size, (plan.batch_size, plan.seq_len + 1))
    seconds = {}
    for threads in choices:
        torch.set_num_threads(threads)
        times = []
        for _ in range(trials):
            begun = time.perf_counter()
            module(tokens[:, :-1], tokens[:, 1:], 1.0).backward()
            times.append(time.perf_counter() - begun)
        seconds[threads] = statistics.median(times)
    best = min(seconds, key=seconds.get)
    torch.set_num_threads(best)
    return best
