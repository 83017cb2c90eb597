"""The training loop, one for all three stages (pretraining, long-context extension, SFT).

Run it in one process, or in several with `torchrun` (FSDP2). A run writes to its output
folder: checkpoint-NNNNNN/ (Hugging Face model + trainer_state/), metrics.jsonl, loss.png and,
at the end, final/. Started again with the same settings it resumes from its last checkpoint
and, on CPU, repeats the uninterrupted run's losses exactly.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from dscoder.errors import UserError
from dscoder.train.build import (
    RunData,
    build_data,
    build_model,
    build_optimizer,
    default_lr,
    load_tokenizer,
    saved_identity,
)
from dscoder.train.config import TrainConfig
from dscoder.train.data import micro_batches
from dscoder.train.distributed import Dist, init_distributed, shard_model, shutdown
from dscoder.train.loss import CausalLMLoss
from dscoder.train.metrics import MetricsLog, flops_per_token, peak_tflops, plot_losses, read_metrics
from dscoder.train.schedule import Schedule
from dscoder.train.state import (
    STATE_DIR,
    STATE_FILE,
    full_model_state,
    latest_checkpoint,
    load_optimizer,
    load_rng,
    prune_checkpoints,
    read_trainer_state,
    remove_partial_checkpoints,
    save_checkpoint,
    save_model_dir,
    write_json,
)

FINAL_DIR = "final"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"


@dataclass
class TrainResult:
    out_dir: Path
    final_dir: Path
    steps: int  # optimizer steps done, in this and earlier sessions
    total_steps: int
    stopped_early: bool  # the time budget ran out first
    eval_losses: list[tuple[int, float]]  # (step, held-out loss), step 0 before training
    train_losses: list[tuple[int, float]]
    tokens_per_s: float | None  # medians over this session's steps (global, all processes)
    flops_per_s: float | None
    mfu: float | None  # None when the device's peak is unknown (CPU without --peak-tflops)
    metrics_path: Path
    plot_path: Path


def train(config: TrainConfig) -> TrainResult:
    """Run (or resume) one training stage; every process of a torchrun job calls this."""
    dist = init_distributed(config.device)
    try:
        return _train(config, dist)
    finally:
        shutdown(dist)


def _train(config: TrainConfig, dist: Dist) -> TrainResult:
    config.check_world_size(dist.world_size)
    out = config.out_dir
    say = print if dist.is_main and config.progress else (lambda *a, **k: None)
    if dist.is_main:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot create the output folder {out}: {error}") from error
        remove_partial_checkpoints(out)
    dist.barrier()
    resume = latest_checkpoint(out)

    # ---- model, optimizer, data ----
    tokenizer = load_tokenizer(config)
    model = build_model(config, tokenizer, resume)
    save_config, save_tokenizer = saved_identity(config, model, tokenizer)
    module = CausalLMLoss(model)
    if dist.sharded:
        shard_model(module, list(model.layers), bf16=config.bf16_on(dist.device))
    else:
        module.to(dist.device)
    lr = default_lr(config)
    optimizer = build_optimizer(module, config, lr)
    data = build_data(config, tokenizer, dist)
    schedule = Schedule(config.schedule_kind, lr, data.total_steps, config.warmup_for(data.total_steps),
                        config.min_lr_ratio)

    step, tokens_seen, train_time, lr_now = 0, 0, 0.0, schedule(0)
    if resume is not None:
        state = read_trainer_state(resume)
        _check_same_run(state["run"], config.fingerprint(), out)
        load_optimizer(resume, module, optimizer)
        data.batches.load_state_dict(state["data"])
        load_rng(resume, dist)
        step, tokens_seen, lr_now = state["step"], state["tokens"], state["lr"]
        train_time = state["train_time_s"]
        say(f"{config.stage}: resuming {out} at step {step} from {resume.name}")
    log = MetricsLog(out / METRICS_FILE, dist.is_main, resume_step=step if resume else None,
                     tensorboard_dir=out / "tensorboard" if config.tensorboard else None)

    # ---- what a step costs ----
    tokens_per_step = config.batch_size * config.seq_len
    step_flops = flops_per_token(model.config, config.seq_len) * tokens_per_step
    peak = peak_tflops(dist.device, config.peak_tflops)
    bf16_autocast = config.bf16_on(dist.device) and not dist.sharded  # sharded: FSDP casts instead
    def autocast() -> contextlib.AbstractContextManager:
        if not bf16_autocast:
            return contextlib.nullcontext()
        return torch.autocast(dist.device.type, dtype=torch.bfloat16)
    say(f"{config.stage}: {model.config.num_parameters() / 1e6:.1f}M parameters, {dist.world_size} "
        f"process(es) on {dist.device.type}, {data.total_steps} steps of {config.batch_size} x "
        f"{config.seq_len} tokens, {len(data.eval_ids)} held-out rows, output {out}")

    def evaluate() -> float | None:
        if not len(data.eval_ids):
            return None
        with torch.no_grad(), autocast():
            total = count = 0.0
            for batch in micro_batches(data.eval_ids, data.eval_labels, dist, config.micro_batch_size):
                total += module(batch.inputs.to(dist.device), batch.targets.to(dist.device), 1.0).item()
                count += batch.num_targets
        total, count = dist.all_reduce_sum([total, count])
        return total / max(count, 1.0)

    def checkpoint(lr_now: float) -> None:
        trainer_state = {"step": step, "tokens": tokens_seen, "train_time_s": train_time, "lr": lr_now,
                         "total_steps": data.total_steps, "data": data.batches.state_dict(),
                         "run": config.fingerprint()}
        save_checkpoint(out, step, module, optimizer, save_config, save_tokenizer, trainer_state, dist)
        if dist.is_main:
            prune_checkpoints(out, config.keep_checkpoints)

    if resume is None:
        eval_loss = evaluate()
        if eval_loss is not None:
            log.write({"step": 0, "eval_loss": eval_loss})
            say(f"step 0: held-out loss {eval_loss:.4f}")

    # ---- the loop ----
    session: list[dict] = []
    stopped_early = False
    last_saved = step if resume is not None else -1
    bar = tqdm(total=data.total_steps, initial=step, disable=not (dist.is_main and config.progress),
               unit="step", dynamic_ncols=True)
    while step < data.total_steps:
        started = time.perf_counter()
        lr_now = schedule(step)
        for group in optimizer.param_groups:
            group["lr"] = lr_now
        batches = data.batches.next_step()
        # The loss is a mean over every target of the global batch; FSDP averages gradients
        # over processes, so each process scales its sum by processes / targets.
        global_targets = dist.all_reduce_sum([sum(b.num_targets for b in batches)])[0]
        scale = dist.world_size / max(global_targets, 1.0)
        loss_sum = torch.zeros((), device=dist.device)
        for batch in batches:
            with autocast():
                loss = module(batch.inputs.to(dist.device), batch.targets.to(dist.device), scale)
            loss.backward()
            loss_sum += loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(module.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        local_loss = loss_sum.item()  # waits for the device, so the step's time is all in
        elapsed = time.perf_counter() - started
        out_of_time = config.time_budget_s is not None and train_time + elapsed >= config.time_budget_s
        # Every process stops at the same step: any one out of time stops them all.
        loss_total, stop_votes = dist.all_reduce_sum([local_loss / dist.world_size, float(out_of_time)])
        grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        step += 1
        tokens_seen += tokens_per_step
        train_time += elapsed

        record = {"step": step, "loss": loss_total, "lr": lr_now, "grad_norm": float(grad_norm),
                  "tokens": tokens_seen, "step_time_s": elapsed,
                  "tokens_per_s": tokens_per_step / elapsed, "flops_per_s": step_flops / elapsed,
                  "mfu": step_flops / elapsed / (peak * 1e12 * dist.world_size) if peak else None}
        session.append(record)
        log.write(record)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_total:.4f}", tok_s=f"{record['tokens_per_s']:,.0f}", lr=f"{lr_now:.2e}")

        stopped_early = stop_votes > 0 and step < data.total_steps
        if step % config.eval_interval == 0 or step == data.total_steps or stopped_early:
            eval_loss = evaluate()
            if eval_loss is not None:
                log.write({"step": step, "eval_loss": eval_loss})
                if dist.is_main and config.progress:
                    bar.write(f"step {step}: held-out loss {eval_loss:.4f}")
        if step % config.checkpoint_interval == 0 or step == data.total_steps or stopped_early:
            checkpoint(lr_now)
            last_saved = step
        if stopped_early:
            say(f"{config.stage}: time budget of {config.time_budget_s:.0f} s reached at step {step}")
            break
    bar.close()
    if last_saved != step:
        checkpoint(lr_now)

    # ---- the final model and the report ----
    final_dir = out / FINAL_DIR
    weights = full_model_state(module, "model.")
    if dist.is_main:
        save_model_dir(final_dir, weights, save_config, save_tokenizer)
        (final_dir / STATE_DIR).mkdir(exist_ok=True)
        write_json(final_dir / STATE_DIR / STATE_FILE,
                    {"stage": config.stage, "step": step, "tokens": tokens_seen, "lr": lr_now})
    log.close()
    records = read_metrics(out / METRICS_FILE) if dist.is_main else []
    if dist.is_main:
        plot_losses(records, out / PLOT_FILE, f"{config.stage}: {out.name}")
    dist.barrier()
    result = _result(config, out, final_dir, step, data, stopped_early, records, session)
    if dist.is_main and config.progress:
        print(_summary(result, dist, peak))
    return result


def _check_same_run(saved: dict, current: dict, out: Path) -> None:
    changed = [k for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
    if changed:
        raise UserError(f"{out} holds a run with other settings ({', '.join(changed)}); use the same "
                        f"settings to resume it, or another output folder")


def _result(config: TrainConfig, out: Path, final_dir: Path, step: int, data: RunData, stopped_early: bool,
            records: list[dict], session: list[dict]) -> TrainResult:
    # The first step of a session includes warm-up costs (allocation, thread pools).
    timed = session[1:] or session

    def median(key: str) -> float | None:
        values = [r[key] for r in timed if r.get(key) is not None]
        return statistics.median(values) if values else None

    return TrainResult(
        out_dir=out, final_dir=final_dir, steps=step, total_steps=data.total_steps,
        stopped_early=stopped_early,
        eval_losses=[(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r],
        train_losses=[(r["step"], r["loss"]) for r in records if "loss" in r],
        tokens_per_s=median("tokens_per_s"), flops_per_s=median("flops_per_s"), mfu=median("mfu"),
        metrics_path=out / METRICS_FILE, plot_path=out / PLOT_FILE)


def _summary(result: TrainResult, dist: Dist, peak: float | None) -> str:
    lines = [f"done: {result.steps}/{result.total_steps} steps; model in {result.final_dir}"]
    if result.tokens_per_s is not None and result.flops_per_s is not None:
        speed = (f"{result.tokens_per_s:,.0f} tokens/s, {result.flops_per_s / 1e12:.3f} TFLOP/s "
                 f"(model FLOPs, median step)")
        if result.mfu is not None:
            speed += f", MFU {100 * result.mfu:.1f}% of {peak:g} TFLOP/s x {dist.world_size} device(s)"
        else:
            speed += f"; MFU is not defined on {dist.device.type} unless --peak-tflops gives the peak"
        lines.append(speed)
    if result.eval_losses:
        first, last = result.eval_losses[0][1], result.eval_losses[-1][1]
        lines.append(f"held-out loss {first:.4f} -> {last:.4f}")
    lines.append(f"metrics: {result.metrics_path}, plot: {result.plot_path}")
    return "\n".join(lines)

