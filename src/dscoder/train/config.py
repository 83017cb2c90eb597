"""Settings of a training run, for all three stages, with DeepSeek-Coder's values as defaults.

Sizes count sequences (rows of seq_len tokens): `batch_size` is the global batch of one
optimizer step, split over processes and then into micro-batches of `micro_batch_size`, so
batch_size = processes x micro_batch_size x gradient-accumulation steps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from dscoder.errors import UserError
from dscoder.model import PRESETS
from dscoder.train.schedule import SCHEDULES

STAGES = ("pretrain", "extend-context", "sft")
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass
class TrainConfig:
    stage: str
    out_dir: Path
    data: list[Path]
    # Model: a preset trained from scratch, or a checkpoint to continue (required after pretraining).
    model: str = "tiny"
    init_from: Path | None = None
    tokenizer: Path | None = None  # default: the tokenizer saved in init_from
    # Batch and length.
    seq_len: int = 1024
    batch_size: int = 16
    micro_batch_size: int = 4
    steps: int | None = None  # sft: default from `epochs`
    epochs: float = 3.0  # sft only
    # Optimizer and schedule (DeepSeek LLM / Coder: AdamW 0.9/0.95, wd 0.1, clip 1.0).
    lr: float | None = None  # default per stage, see default_lr
    schedule: str | None = None  # default per stage: multistep, constant, cosine
    warmup_steps: int | None = None  # default: 2000 (sft: 100), at most a tenth of the steps
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    # Data.
    fim_rate: float = 0.5
    eval_fraction: float = 0.01
    eval_data: list[Path] = field(default_factory=list)
    eval_interval: int = 100
    eval_sequences: int = 16
    seed: int = 1234
    # Long-context extension: the new RoPE settings (defaults: the released models').
    rope_theta: float = 100000.0
    rope_scaling_factor: float = 4.0
    # Running.
    device: str = "auto"
    precision: str = "auto"  # "auto": bf16 on GPUs, fp32 on CPU; or "bf16" / "fp32" anywhere
    activation_checkpointing: bool = False
    checkpoint_interval: int = 500
    keep_checkpoints: int = 2
    peak_tflops: float | None = None
    tensorboard: bool = False
    time_budget_s: float | None = None  # stop early (and save) once training took this long
    progress: bool = True

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.data = [Path(p) for p in self.data]
        self.eval_data = [Path(p) for p in self.eval_data]
        if self.stage not in STAGES:
            raise UserError(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if not self.data:
            raise UserError("no training data given")
        if self.init_from is None:
            if self.stage != "pretrain":
                raise UserError(f"the {self.stage} stage continues a checkpoint: give --init")
            if self.model not in PRESETS:
                raise UserError(f"unknown model preset {self.model!r}; presets: {', '.join(PRESETS)}")
        if self.init_from is None and self.tokenizer is None:
            raise UserError("a model trained from scratch needs --tokenizer")
        for name in ("seq_len", "batch_size", "micro_batch_size", "eval_interval",
                     "checkpoint_interval"):
            if getattr(self, name) <= 0:
                raise UserError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.steps is not None and self.steps <= 0:
            raise UserError(f"steps must be positive, got {self.steps}")
        if self.batch_size % self.micro_batch_size:
            raise UserError(f"batch size {self.batch_size} is not a multiple of the micro-batch "
                            f"size {self.micro_batch_size}")
        if not 0 <= self.fim_rate <= 1:
            raise UserError(f"fim-rate must be in [0, 1], got {self.fim_rate}")
        if not 0 <= self.eval_fraction < 1:
            raise UserError(f"eval-fraction must be in [0, 1), got {self.eval_fraction}")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise UserError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.epochs <= 0:
            raise UserError(f"epochs must be positive, got {self.epochs}")
        if self.rope_scaling_factor <= 0 or self.rope_theta <= 0:
            raise UserError("rope-theta and rope-scaling-factor must be positive")
        if self.precision not in PRECISIONS:
            raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def bf16_on(self, device: torch.device) -> bool:
        """Whether the layers compute in bf16 (master weights, optimizer and softmax stay fp32)."""
        return self.precision == "bf16" or (self.precision == "auto" and device.type == "cuda")

    def check_world_size(self, world_size: int) -> None:
        if self.batch_size % (world_size * self.micro_batch_size):
            raise UserError(f"batch size {self.batch_size} is not a multiple of {world_size} processes "
                            f"x micro-batch size {self.micro_batch_size}")

    @property
    def schedule_kind(self) -> str:
        return self.schedule or {"pretrain": "multistep", "extend-context": "constant",
                                 "sft": "cosine"}[self.stage]

    def warmup_for(self, total_steps: int) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        # The paper's warm-up (2000 steps; 100 for instruction tuning), shortened for short runs.
        paper = 100 if self.stage == "sft" else 2000
        return 0 if self.stage == "extend-context" else min(paper, total_steps // 10)

    def fingerprint(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run it continues."""
        keys = ("stage", "model", "seq_len", "batch_size", "steps", "epochs", "lr", "schedule",
                "warmup_steps", "fim_rate", "eval_fraction", "seed", "rope_theta", "rope_scaling_factor")
        d = asdict(self)
        out = {k: d[k] for k in keys}
        out["data"] = [str(p.resolve()) for p in self.data]
        out["init_from"] = str(self.init_from.resolve()) if self.init_from else None
        return out
