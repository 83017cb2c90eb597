"""`dscoder train pretrain|extend-context|sft`: the three training stages.

Run under `torchrun` for several processes (GPUs or nodes); see docs/training.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dscoder.model import PRESETS

STAGE_HELP = {
    "pretrain": "next-token pretraining with fill-in-the-middle on packed documents",
    "extend-context": "continue a checkpoint at a longer length with new RoPE settings",
    "sft": "instruction tuning on JSONL chats, loss on the responses only",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train a model: pretrain, extend-context, sft")
    stages = train.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for stage, help_text in STAGE_HELP.items():
        parser = stages.add_parser(stage, help=help_text, description=help_text)
        _add_arguments(parser, stage)
        parser.set_defaults(func=run)


def _add_arguments(p: argparse.ArgumentParser, stage: str) -> None:
    data_help = ("instruction JSONL files (instruction/output or messages)" if stage == "sft"
                 else "Parquet shards (or folders of them), JSONL with a 'text' field, or text files")
    p.add_argument("--data", nargs="+", type=Path, required=True, metavar="PATH", help=data_help)
    p.add_argument("--out", "-o", type=Path, required=True, help="output folder (resumed if it holds a run)")
    if stage == "pretrain":
        p.add_argument("--model", default="tiny", choices=sorted(PRESETS),
                       help="preset to train from scratch (default tiny)")
        p.add_argument("--init", type=Path, help="continue this checkpoint instead of a fresh preset")
    else:
        p.add_argument("--init", type=Path, required=True, help="the checkpoint to continue")
    p.add_argument("--tokenizer", type=Path, help="tokenizer folder (default: the one in --init)")

    size = p.add_argument_group("batch and length")
    size.add_argument("--seq-len", type=int, default=16384 if stage == "extend-context" else 1024,
                      help="tokens per training row (default %(default)s)")
    size.add_argument("--batch-size", type=int, default=16,
                      help="sequences per optimizer step, all processes together")
    size.add_argument("--micro-batch-size", type=int, default=4,
                      help="sequences per forward pass of one process")
    size.add_argument("--steps", type=int, required=stage == "pretrain",
                      help={"pretrain": "optimizer steps",
                            "extend-context": "optimizer steps (default 1000, as in the paper)",
                            "sft": "optimizer steps (default: from --epochs)"}[stage])
    if stage == "sft":
        size.add_argument("--epochs", type=float, default=3.0, help="passes over the data (default 3)")

    opt = p.add_argument_group("optimization")
    opt.add_argument("--lr", type=float, help={
        "pretrain": "peak learning rate (default 5.3e-4, the 1.3B model's)",
        "extend-context": "learning rate (default: where --init's training ended)",
        "sft": "peak learning rate (default 2e-5)"}[stage])
    opt.add_argument("--schedule", choices=("multistep", "cosine", "constant"),
                     help="default: multistep (pretrain), constant (extend-context), cosine (sft)")
    opt.add_argument("--warmup-steps", type=int,
                     help="default: 2000 (sft 100, extend-context 0), at most a tenth of the steps")
    opt.add_argument("--min-lr-ratio", type=float, default=0.0, help="cosine: final lr / peak lr")
    opt.add_argument("--weight-decay", type=float, default=0.1)
    opt.add_argument("--grad-clip", type=float, default=1.0)
    opt.add_argument("--seed", type=int, default=1234)

    data = p.add_argument_group("data")
    if stage != "sft":
        data.add_argument("--fim-rate", type=float, default=0.5, help="share of documents turned into FIM")
    data.add_argument("--eval-fraction", type=float, default=0.01,
                      help="share of documents held out for the held-out loss (by id hash)")
    data.add_argument("--eval-data", nargs="+", type=Path, default=[], metavar="PATH",
                      help="held-out data instead of --eval-fraction")
    data.add_argument("--eval-interval", type=int, default=100, help="steps between held-out evaluations")
    data.add_argument("--eval-sequences", type=int, default=16, help="held-out rows evaluated")
    if stage == "extend-context":
        data.add_argument("--rope-theta", type=float, default=100000.0)
        data.add_argument("--rope-scaling-factor", type=float, default=4.0, help="linear RoPE scaling")

    run_group = p.add_argument_group("running")
    run_group.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    run_group.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                           help="layers' compute precision (auto: bf16 on GPUs, fp32 on CPU); "
                           "weights, optimizer and loss softmax stay fp32")
    run_group.add_argument("--activation-checkpointing", action="store_true",
                           help="recompute each layer's activations in the backward pass")
    run_group.add_argument("--checkpoint-interval", type=int, default=500)
    run_group.add_argument("--keep-checkpoints", type=int, default=2)
    run_group.add_argument("--peak-tflops", type=float,
                           help="peak TFLOP/s of one device, for MFU (known GPUs are looked up)")
    run_group.add_argument("--tensorboard", action="store_true", help="also log to OUT/tensorboard")
    run_group.add_argument("--time-budget", type=float, metavar="SECONDS",
                           help="stop early (saving the model) once training took this long")
    run_group.add_argument("--no-progress", action="store_true", help="no progress bar or messages")


def config_from_args(args: argparse.Namespace):
    """The TrainConfig the arguments describe."""
    from dscoder.train import TrainConfig

    return TrainConfig(
        stage=args.stage, out_dir=args.out, data=args.data,
        model=getattr(args, "model", "tiny"), init_from=args.init, tokenizer=args.tokenizer,
        seq_len=args.seq_len, batch_size=args.batch_size, micro_batch_size=args.micro_batch_size,
        steps=args.steps, epochs=getattr(args, "epochs", 3.0),
        lr=args.lr, schedule=args.schedule, warmup_steps=args.warmup_steps, min_lr_ratio=args.min_lr_ratio,
        weight_decay=args.weight_decay, grad_clip=args.grad_clip, seed=args.seed,
        fim_rate=getattr(args, "fim_rate", 0.0), eval_fraction=args.eval_fraction, eval_data=args.eval_data,
        eval_interval=args.eval_interval, eval_sequences=args.eval_sequences,
        rope_theta=getattr(args, "rope_theta", 100000.0),
        rope_scaling_factor=getattr(args, "rope_scaling_factor", 4.0),
        device=args.device, precision=args.precision, activation_checkpointing=args.activation_checkpointing,
        checkpoint_interval=args.checkpoint_interval, keep_checkpoints=args.keep_checkpoints,
        peak_tflops=args.peak_tflops, tensorboard=args.tensorboard, time_budget_s=args.time_budget,
        progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    from dscoder.train import train

    train(config_from_args(args))
    return 0
