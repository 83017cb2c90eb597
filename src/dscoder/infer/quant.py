"""Int8 weight-only quantization of a model's linear layers, for faster decoding.

Decoding one token reads every weight once, so its speed is set by how many bytes the weights
take: int8 weights are a quarter of fp32. Each output channel gets one scale (its largest
absolute weight / 127), and PyTorch's `_weight_int8pack_mm` multiplies without ever
materializing a float copy. Activations enter that kernel in bf16, the type its vectorized CPU
path is written for (with fp32 activations it falls back to a path many times slower); results
come back in the activations' own dtype. Embeddings and norms stay as they were.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dscoder.infer.layout import replace_linears

_COMPUTE_DTYPE = torch.bfloat16


def quantize_rows(weight: Tensor) -> tuple[Tensor, Tensor]:
    """int8 weights [out, in] and fp32 scales [out]: each row's largest magnitude maps to 127."""
    weight = weight.detach().float()
    scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    return torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8).contiguous(), scales


class Int8Linear(nn.Module):
    """A bias-free linear layer with int8 weights [out, in] and one scale per output."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        quantized, scales = quantize_rows(weight)
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.register_buffer("weight", quantized)
        self.register_buffer("scales", scales.to(_COMPUTE_DTYPE))

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu":
            # The dequantized product, for devices without the packed kernel's fast path.
            return F.linear(x, self.weight.to(x.dtype) * self.scales.to(x.dtype)[:, None])
        flat = x.reshape(-1, self.in_features).to(_COMPUTE_DTYPE)
        y = torch.ops.aten._weight_int8pack_mm(flat, self.weight, self.scales)
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace every bias-free nn.Linear of `model` in place with an Int8Linear; returns it."""
    return replace_linears(model, lambda linear: Int8Linear(linear.weight))
