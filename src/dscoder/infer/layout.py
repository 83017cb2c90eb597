"""Linear weights in the forms CPU libraries multiply fastest, for inference.

`nn.Linear` keeps its weight [out, in] row-major and multiplies x @ W^T through MKL. Two things
were measured here (fp32, AMD EPYC, one thread; docs/performance.md):

- One token is a matrix-vector product, and MKL's speed at it depends on the layout: storing W
  column-major (W^T contiguous) reads a 256 -> 32256 vocabulary projection 2.6x faster and the
  256 -> 704 or 768 -> 2048 up-projections 1.5-1.6x faster, while a projection that narrows
  (704 -> 256, 2048 -> 768) reads faster row-major. So widening matrices are re-stored
  column-major and narrowing ones are left alone.
- Several rows at once (a batch of decoding sequences, a prompt) are a small matrix product,
  where MKL on this CPU reaches only 4-7 GB/s of weights at 8 rows. oneDNN, multiplying by a
  copy of W it has reordered into its own blocked format once, runs the same products 2-2.5x
  faster (and large ones 0-20% faster), but one row 1.5-2x slower than MKL's column-major
  matrix-vector product.

`CpuLinear` keeps what each case wants: the matrix-vector copy for one row and, when it will
see more rows at once, the oneDNN copy. That costs the weights' memory twice, so it is done
only for engines that batch (`max_rows > 1`), and only for fp32 weights on a torch whose oneDNN
agrees with `F.linear` (dscoder.model.onednn); anything else stays plain.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dscoder.model import onednn


class CpuLinear(nn.Module):
    """A bias-free linear layer for CPU inference; same results as the nn.Linear it replaces.

    `weight` is the matrix-vector copy (column-major if the layer widens), a buffer, so code
    that reads a layer's weight or counts its bytes sees one copy; `packed`, when present, is
    oneDNN's copy for products of several rows.
    """

    def __init__(self, linear: nn.Linear, max_rows: int) -> None:
        super().__init__()
        weight = linear.weight.detach()
        self.out_features, self.in_features = weight.shape
        if self.out_features >= self.in_features:
            self.register_buffer("weight", weight.t().contiguous().t())
        else:
            self.register_buffer("weight", weight.contiguous())
        use_onednn = max_rows > 1 and weight.dtype == torch.float32 and weight.device.type == "cpu"
        self.packed = onednn.pack(weight, max_rows) if use_onednn and onednn.available() else None

    def forward(self, x: Tensor) -> Tensor:
        if self.packed is None or x.numel() == self.in_features:
            return F.linear(x, self.weight)
        flat = onednn.packed_linear(x.reshape(-1, self.in_features), self.packed)
        return flat.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, onednn={self.packed is not None}"


def replace_linears(model: nn.Module, make: Callable[[nn.Linear], nn.Module]) -> nn.Module:
    """Replace, in place, every bias-free nn.Linear of `model` by `make(linear)`; returns `model`."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and child.bias is None:
                setattr(module, name, make(child))
    return model


def use_cpu_linears(model: nn.Module, max_rows: int) -> nn.Module:
    """Every bias-free nn.Linear of `model` becomes a CpuLinear for products of up to `max_rows`
    rows at a time (1: a single sequence, no oneDNN copy); returns `model`."""
    return replace_linears(model, lambda linear: CpuLinear(linear, max_rows))
