"""fp32 matrix products on CPU through oneDNN, where it beats the BLAS that `F.linear` calls.

PyTorch's CPU wheels multiply fp32 matrices with MKL, which on the AMD EPYC machines this
project is measured on runs a training layer's products (4096 rows) at 100-190 GFLOP/s on two
cores. oneDNN, which ships in the same wheels, multiplies by a weight it has first reordered
into its own blocked layout; counting that reorder, it ran the forward products 20-50% faster
and the input-gradient products 10-50% faster, and the weight-gradient products slower (they
would need the activations reordered), so those stay with MKL (docs/performance.md). A decoder
layer's forward and backward were 6-10% faster on the tiny and small presets.

`linear(x, weight)` is what the model's linear layers call: oneDNN for fp32 products on CPU
of at least MIN_ROWS rows by a weight of at least MIN_WEIGHT_ELEMENTS, `F.linear` for
everything else (GPUs, bf16, a token at a time, small layers, and any build of torch whose
oneDNN is missing or disagrees with `F.linear` at first use).
"""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

# Below these sizes reordering the weight costs more than the product saves (the embedded
# demo's hidden-96 model trained 12% slower through oneDNN).
MIN_ROWS = 64
MIN_WEIGHT_ELEMENTS = 1 << 16


def pack(weight: Tensor, rows: int) -> Tensor:
    """`weight` [out, in] reordered by oneDNN for products with about `rows` rows."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), rows)


def packed_linear(x: Tensor, packed: Tensor) -> Tensor:
    """x [rows, in] @ W^T, W given as `pack(W, ...)`."""
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), packed, None, "none", [], "")


@cache
def available() -> bool:
    """Whether this torch has oneDNN's linear ops and they agree with `F.linear` (checked once)."""
    if not torch.backends.mkldnn.is_available():
        return False
    generator = torch.Generator().manual_seed(0)
    x, weight = torch.randn(5, 24, generator=generator), torch.randn(40, 24, generator=generator)
    try:
        got = packed_linear(x, pack(weight, 5))
    except (RuntimeError, AttributeError):  # an op missing or refusing, in this build of torch
        return False
    return torch.allclose(got, F.linear(x, weight), rtol=1e-4, atol=1e-4)


class _Linear(torch.autograd.Function):
    """x @ W^T with the forward and input-gradient products in oneDNN, the weight gradient in MKL."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        flat = x.reshape(-1, weight.shape[1])
        return packed_linear(flat, pack(weight, flat.shape[0])).view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        flat_grad = grad.reshape(-1, weight.shape[0])
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            # dL/dx = g @ W: a product by W^T, reordered for it.
            grad_x = packed_linear(flat_grad, pack(weight.t(), flat_grad.shape[0])).view(x.shape)
        if ctx.needs_input_grad[1]:
            grad_weight = flat_grad.t() @ x.reshape(-1, weight.shape[1])
        return grad_x, grad_weight


def linear(x: Tensor, weight: Tensor) -> Tensor:
    """`F.linear(x, weight)` (no bias), through oneDNN where that is faster."""
    if (x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32
            and weight.numel() >= MIN_WEIGHT_ELEMENTS and x.numel() >= MIN_ROWS * weight.shape[1]
            and available()):
        return _Linear.apply(x, weight)
    return F.linear(x, weight)
