"""What a run reports: JSONL metrics (optionally TensorBoard), model FLOPs and MFU, a loss plot.

Model FLOPs follow the PaLM paper's accounting (appendix B), as nanoGPT does: 6 FLOPs per
parameter per token for the matrix multiplications of the forward and backward passes (the
input embedding is a lookup and does not count) plus 12 x layers x hidden x sequence length
for the attention scores. Activation recomputation is not counted: MFU measures useful work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from dscoder.errors import UserError
from dscoder.model import ModelConfig

# Dense bf16 tensor-core peaks (TFLOP/s, without sparsity) from NVIDIA's datasheets, matched
# against torch.cuda.get_device_name() in this order (the first substring that occurs wins).
GPU_PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0),
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # SXM, e.g. "NVIDIA H100 80GB HBM3"
    ("H800 PCIe", 756.0),
    ("H800", 989.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)


def flops_per_token(config: ModelConfig, seq_len: int) -> float:
    """Training FLOPs (forward + backward) per token of a row of `seq_len` tokens."""
    matmul_params = config.num_parameters()
    if not config.tie_word_embeddings:
        matmul_params -= config.vocab_size * config.hidden_size
    return 6.0 * matmul_params + 12.0 * config.num_layers * config.hidden_size * seq_len


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    """Peak bf16 TFLOP/s of one device: as given, or looked up for a known GPU; None on CPU
    and unknown GPUs, where MFU is not defined without --peak-tflops."""
    if given is not None:
        if given <= 0:
            raise UserError(f"--peak-tflops must be positive, got {given}")
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in GPU_PEAK_BF16_TFLOPS if key in name), None)


class MetricsLog:
    """Appends one JSON object per line to `path` (main process only) and mirrors numbers to
    TensorBoard when asked. Resuming at step s keeps the records of steps up to s."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None,
                 tensorboard_dir: Path | None = None) -> None:
        self.path, self.enabled = path, enabled
        self._writer = None
        if not enabled:
            return
        kept = [] if resume_step is None else [r for r in read_metrics(path) if r["step"] <= resume_step]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:
                raise UserError("--tensorboard needs the tensorboard package "
                                "(pip install tensorboard)") from error
            self._writer = SummaryWriter(str(tensorboard_dir))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._writer.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_losses(records: list[dict[str, Any]], png: Path, title: str) -> None:
    """Training loss per step and held-out loss at each evaluation, on one chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    held = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if train:
        ax.plot(*zip(*train), label="training loss", linewidth=1, alpha=0.8)
    if held:
        ax.plot(*zip(*held), "o-", label="held-out loss", linewidth=1.5, markersize=4)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
