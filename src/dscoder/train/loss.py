"""The training loss: the output layer and cross-entropy fused, a chunk of rows at a time.

With a 32256-token vocabulary the logits of a batch are the largest tensor of a training step
(8 x 512 positions x 32256 x 4 bytes = 528 MB in fp32), and materialising them, their softmax
and their gradient is most of a small model's step. Here each chunk of rows gets its logits,
its loss and its softmax gradient in one pass; the gradients of the hidden states and of the
output matrix are accumulated right away, in the forward pass, so nothing of the size
[rows, vocab] outlives a chunk and the backward pass is a multiplication by a scalar.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from dscoder.model import Transformer

# Targets with this value are not trained on (prompt tokens of instruction data, padding). It
# is the value torch's cross_entropy ignores by default.
IGNORE_INDEX = -100

# Rows per chunk on GPUs: 4096 x 32256 fp32 logits are 528 MB, big enough for efficient
# matmuls and a fraction of a device's memory.
GPU_CHUNK_ROWS = 4096
# On CPU a chunk's logits stay under 32 MiB, glibc's largest threshold for serving an
# allocation with a fresh mmap: larger blocks are mapped, page-faulted in and unmapped again
# for every chunk, which costs more than the arithmetic on them. Smaller blocks are reused.
CPU_CHUNK_BYTES = 32 << 20


class _LinearCrossEntropy(torch.autograd.Function):
    """sum over rows with a target of cross_entropy(hidden @ weight.T, target) * scale."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, scale: float,  # type: ignore[override]
                chunk_rows: int, compute_dtype: torch.dtype) -> Tensor:
        needs_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        keep = targets != IGNORE_INDEX
        if not bool(keep.all()):
            # Prompt and padding rows cost nothing: only rows with a target go through the
            # output layer (their hidden-state gradient stays zero).
            rows = keep.nonzero().squeeze(1)
            hidden_kept, targets = hidden.index_select(0, rows), targets.index_select(0, rows)
        else:
            rows, hidden_kept = None, hidden
        # Softmax and sums in fp32 at least, whatever the matmuls run in.
        acc_dtype = torch.promote_types(compute_dtype, torch.float32)
        w = weight.to(compute_dtype)
        # MKL multiplies by a row-major [hidden, vocab] copy about 10% faster than by the
        # transposed view; GPUs' BLAS takes the view as it is.
        w_t = w.T.contiguous() if w.device.type == "cpu" else w.T
        total = torch.zeros((), dtype=acc_dtype, device=hidden.device)
        grad_hidden = torch.empty_like(hidden_kept) if needs_grad else None
        grad_weight = torch.zeros(weight.shape, dtype=acc_dtype, device=weight.device) if needs_grad else None
        for start in range(0, hidden_kept.shape[0], chunk_rows):
            h = hidden_kept[start:start + chunk_rows].to(compute_dtype)
            t = targets[start:start + chunk_rows, None]
            logits = (h @ w_t).to(acc_dtype)
            target_logits = logits.gather(1, t)
            # Softmax in place, each exponential computed once: exp(z - max) / sum.
            row_max = logits.amax(dim=1, keepdim=True)
            exps = logits.sub_(row_max).exp_()
            row_sum = exps.sum(dim=1, keepdim=True)
            total += (row_max + row_sum.log() - target_logits).sum()
            if needs_grad:
                # d loss / d logits = softmax - one_hot(target), built in place; `scale` is
                # applied to the two [rows, hidden]-sized products instead of to this.
                g = exps.div_(row_sum)
                g.scatter_add_(1, t, torch.full_like(t, -1.0, dtype=g.dtype))
                g = g.to(compute_dtype)
                grad_hidden[start:start + chunk_rows] = g @ w
                if compute_dtype == acc_dtype:
                    grad_weight.addmm_(g.T, h)
                else:
                    grad_weight += (g.T @ h).to(acc_dtype)
        if needs_grad:
            grad_hidden.mul_(scale)
            grad_weight.mul_(scale)
            if rows is not None:
                grad_hidden = torch.zeros_like(hidden).index_copy_(0, rows, grad_hidden)
            ctx.save_for_backward(grad_hidden.to(hidden.dtype), grad_weight.to(weight.dtype))
        return total * scale

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        grad_hidden, grad_weight = ctx.saved_tensors
        # In place: the gradients were computed for this one backward pass, and the output
        # matrix's gradient is as large as the matrix.
        return grad_hidden.mul_(grad_output), grad_weight.mul_(grad_output), None, None, None, None


def default_chunk_rows(vocab_size: int, device: torch.device) -> int:
    """Rows of logits computed at once: see GPU_CHUNK_ROWS and CPU_CHUNK_BYTES."""
    if device.type != "cpu":
        return GPU_CHUNK_ROWS
    return max(64, CPU_CHUNK_BYTES // (vocab_size * 4) // 64 * 64)


def linear_cross_entropy(hidden: Tensor, weight: Tensor, targets: Tensor, scale: float = 1.0,
                         chunk_rows: int | None = None) -> Tensor:
    """Summed cross-entropy of the logits `hidden @ weight.T` against `targets`, times `scale`.

    hidden [N, H], weight [V, H], targets [N] (IGNORE_INDEX rows are skipped). Equal to
    `F.cross_entropy(hidden @ weight.T, targets, reduction="sum") * scale` with fp32 logits,
    without ever holding more than `chunk_rows` rows of logits (default: default_chunk_rows).
    Under autocast the matmuls run in the autocast dtype (bf16 on GPU) and the softmax in fp32.
    """
    if chunk_rows is None:
        chunk_rows = default_chunk_rows(weight.shape[0], hidden.device)
    device_type = hidden.device.type
    compute_dtype = hidden.dtype
    if torch.is_autocast_enabled(device_type):
        compute_dtype = torch.get_autocast_dtype(device_type)
    with torch.autocast(device_type, enabled=False):
        return _LinearCrossEntropy.apply(hidden, weight, targets, scale, chunk_rows, compute_dtype)


class CausalLMLoss(nn.Module):
    """The Transformer with its loss as the forward pass: what training wraps and shards.

    FSDP gathers a module's parameters in its forward hook, so the output matrix the loss
    multiplies by has to be used inside a module's forward; this module is that forward.
    """

    def __init__(self, model: Transformer, chunk_rows: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.chunk_rows = chunk_rows

    def forward(self, inputs: Tensor, targets: Tensor, scale: float) -> Tensor:
        """Summed next-token loss of inputs [B, T] against targets [B, T], times scale."""
        hidden = self.model.forward_hidden(inputs)
        return linear_cross_entropy(hidden.flatten(0, 1), self.model.output.weight, targets.flatten(),
                                    scale, self.chunk_rows)
