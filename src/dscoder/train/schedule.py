"""Learning-rate schedules: a function from the step about to be taken to its learning rate.

All start with a linear warm-up over `warmup_steps` (step 0 uses max_lr / warmup_steps, the
last warm-up step max_lr). Being pure functions of the step, they need no state of their own
to resume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dscoder.errors import UserError

SCHEDULES = ("multistep", "cosine", "constant")
# DeepSeek's multi-step schedule: x0.316 (about sqrt(0.1)) at 80% and again at 90% of training.
MULTISTEP_MILESTONES = (0.8, 0.9)
MULTISTEP_FACTOR = 0.316


@dataclass(frozen=True)
class Schedule:
    kind: str
    max_lr: float
    total_steps: int
    warmup_steps: int
    min_lr_ratio: float = 0.0  # cosine: where the decay ends, as a share of max_lr

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise UserError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.kind!r}")
        if self.max_lr <= 0:
            raise UserError(f"the learning rate must be positive, got {self.max_lr}")
        if self.total_steps <= 0:
            raise UserError(f"the number of steps must be positive, got {self.total_steps}")
        if not 0 <= self.warmup_steps < self.total_steps:
            raise UserError(f"warm-up steps must be in [0, {self.total_steps}), got {self.warmup_steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise UserError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")

    def __call__(self, step: int) -> float:
        """Learning rate of step `step` (0-based: the update that makes step + 1 updates)."""
        if step < self.warmup_steps:
            return self.max_lr * (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return self.max_lr
        if self.kind == "multistep":
            # Milestones count in steps: with a constant batch, steps are proportional to tokens.
            passed = sum(step >= round(m * self.total_steps) for m in MULTISTEP_MILESTONES)
            return self.max_lr * MULTISTEP_FACTOR**passed
        decay_steps = self.total_steps - self.warmup_steps
        progress = (step - self.warmup_steps) / max(decay_steps - 1, 1)
        cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return self.max_lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine)
