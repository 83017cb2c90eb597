"""Training: pretraining with fill-in-the-middle, long-context extension and instruction tuning,
one loop for all three, in one process or sharded over many with torchrun + FSDP2."""

from dscoder.train.config import STAGES, TrainConfig
from dscoder.train.loop import TrainResult, train

__all__ = ["STAGES", "TrainConfig", "TrainResult", "train"]
