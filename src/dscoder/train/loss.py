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
# On CPU, chunks of about 1,000 rows (128 MiB of logits at a 32256-token vocabulary): the
# matrix products run ~15% faster than on chunks of a few hundred rows, and one buffer serves
# every chunk, so its size costs memory once, not an allocation per chunk.
CPU_CHUNK_BYTES = 128 << 20


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
        total = torch.zeros((), dtype=acc_dtype, device=hidden.device)
        grad_hidden = torch.empty_like(hidden_kept) if needs_grad else None
        grad_weight = None
        # One logits buffer serves every chunk: a fresh allocation this large per chunk would
        # be mapped and page-faulted in by the CPU allocator each time.
        buffer = None
        if compute_dtype == acc_dtype:
            buffer = torch.empty(min(chunk_rows, hidden_kept.shape[0]), weight.shape[0], dtype=acc_dtype,
                                 device=hidden.device)
        host_sync_is_cheap = _host_sync_is_cheap(hidden.device)
        for start in range(0, hidden_kept.shape[0], chunk_rows):
            h = hidden_kept[start:start + chunk_rows].to(compute_dtype)
            t = targets[start:start + chunk_rows, None]
            if buffer is None:
                logits = (h @ w.T).to(acc_dtype)
            else:
                logits = torch.mm(h, w.T, out=buffer[: h.shape[0]])
            # Softmax in place: one pass per row while the row is in cache, each exponential
            # computed once; the loss is then read off the target's probability.
            if host_sync_is_cheap:
                probs = torch.softmax(logits, dim=1, out=logits)
                total += _target_losses(probs, t, h, w, acc_dtype).sum()
            else:
                # Without a host sync per chunk: log-sum-exp from the largest probability,
                # which (unlike the target's) is at least 1/vocab and cannot underflow.
                target_logits = logits.gather(1, t)
                row_max = logits.amax(dim=1, keepdim=True)
                probs = torch.softmax(logits, dim=1, out=logits)
                total += (row_max - probs.amax(dim=1, keepdim=True).log() - target_logits).sum()
            if needs_grad:
                # d loss / d logits = softmax - one_hot(target), built in place; `scale` is
                # applied to the two [rows, hidden]-sized products instead of to this.
                g = probs.scatter_add_(1, t, torch.full_like(t, -1.0, dtype=probs.dtype))
                g = g.to(compute_dtype)
                grad_hidden[start:start + chunk_rows] = g @ w
                if grad_weight is None:
                    grad_weight = (g.T @ h).to(acc_dtype)
                elif compute_dtype == acc_dtype:
                    grad_weight.addmm_(g.T, h)
                else:
                    grad_weight += (g.T @ h).to(acc_dtype)
        if needs_grad:
            if grad_weight is None:  # no row had a target
                grad_weight = torch.zeros(weight.shape, dtype=acc_dtype, device=weight.device)
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


def _host_sync_is_cheap(device: torch.device) -> bool:
    """On CPU a data-dependent branch costs nothing; on an accelerator it stalls the stream."""
    return device.type == "cpu"


# Below this, a target's fp32 softmax probability may have lost digits to underflow.
_SMALLEST_EXACT_PROBABILITY = 1e-30


def _target_losses(probs: Tensor, targets: Tensor, hidden: Tensor, weight: Tensor,
                   acc_dtype: torch.dtype) -> Tensor:
    """-log p(target) per row [rows, 1], from the softmax `probs`; rows whose target probability
    underflowed (a target some 70+ nats below the best) get theirs from their logits, recomputed."""
    target_probs = probs.gather(1, targets)
    losses = -target_probs.log()
    underflow = target_probs[:, 0] < _SMALLEST_EXACT_PROBABILITY
    if bool(underflow.any()):
        rows = underflow.nonzero()[:, 0]
        logits = (hidden[rows] @ weight.T).to(acc_dtype)
        losses[rows] = torch.logsumexp(logits, dim=1, keepdim=True) - logits.gather(1, targets[rows])
    return losses


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
