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
  faster (and large ones 0-20% faster). For one row it depends on the threads and the shape:
  with one thread MKL's column-major product is 1.1-2x faster on every shape measured; with two,
  MKL's hardly speeds up while oneDNN's does, and oneDNN wins on the 768-wide matrices.

`CpuLinear` keeps what each case wants: the matrix-vector copy, and the oneDNN copy when the
layer will see several rows at once (`max_rows > 1`) or when oneDNN is the faster for one row;
which one is faster is timed once per shape, batch size and thread count, at load, from a
cold cache as in decoding. Two copies cost the weights' memory twice, so they are made only
when the second fits in half of the memory available. Only fp32 weights on a torch whose oneDNN agrees with
`F.linear` (dscoder.model.onednn) get a oneDNN copy; anything else stays plain.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dscoder.model import onednn

log = logging.getLogger(__name__)


# (shape, strides, max_rows, threads) -> whether oneDNN multiplied one row by such a weight faster.
_ONE_ROW_CHOICES: dict[tuple, bool] = {}
# Writing this much evicts the weight from the caches (a core's share of L3 is at most 32 MB
# on common servers), as the layers before it do in a decoding step.
_EVICT_BYTES = 64 << 20
_TIMED_CALLS = 5


def _onednn_is_faster_for_one_row(weight: Tensor, max_rows: int) -> bool:
    """Time one-row products by `weight` (F.linear) and by oneDNN's copy of it reordered for
    `max_rows`, each from a cold cache, and say whether oneDNN's was faster (the best of a few
    calls each; cached per shape, reordering and thread count)."""
    key = (tuple(weight.shape), weight.stride(), max_rows, torch.get_num_threads())
    if key not in _ONE_ROW_CHOICES:
        packed = onednn.pack(weight, max_rows)
        evict = torch.empty(_EVICT_BYTES // 4)
        x = torch.randn(1, weight.shape[1])
        best = {}
        for name, product in (("mkl", lambda: F.linear(x, weight)),
                              ("onednn", lambda: onednn.packed_linear(x, packed))):
            times = []
            for _ in range(_TIMED_CALLS):
                evict.fill_(1.0)
                started = time.perf_counter()
                product()
                times.append(time.perf_counter() - started)
            best[name] = min(times)
        _ONE_ROW_CHOICES[key] = best["onednn"] < best["mkl"]
    return _ONE_ROW_CHOICES[key]


class CpuLinear(nn.Module):
    """A bias-free linear layer for CPU inference; same results as the nn.Linear it replaces.

    `weight` is the matrix-vector copy (column-major if the layer widens), a buffer, so code
    that reads a layer's weight or counts its bytes sees one copy; `packed`, when present, is
    oneDNN's copy, for products of several rows and, if `one_row_onednn`, of one.
    """

    def __init__(self, linear: nn.Linear, max_rows: int, second_copy: bool = True) -> None:
        super().__init__()
        weight = linear.weight.detach()
        self.out_features, self.in_features = weight.shape
        if self.out_features >= self.in_features:
            self.register_buffer("weight", weight.t().contiguous().t())
        else:
            self.register_buffer("weight", weight.contiguous())
        self.packed: Tensor | None = None
        self.one_row_onednn = False
        if second_copy and weight.dtype == torch.float32 and weight.device.type == "cpu" and onednn.available():
            self.one_row_onednn = _onednn_is_faster_for_one_row(self.weight, max_rows)
            if max_rows > 1 or self.one_row_onednn:
                self.packed = onednn.pack(weight, max_rows)

    def forward(self, x: Tensor) -> Tensor:
        if self.packed is None or (x.numel() == self.in_features and not self.one_row_onednn):
            return F.linear(x, self.weight)
        flat = onednn.packed_linear(x.reshape(-1, self.in_features), self.packed)
        return flat.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        onednn_rows = "none" if self.packed is None else "all" if self.one_row_onednn else "several"
        return f"in_features={self.in_features}, out_features={self.out_features}, onednn_rows={onednn_rows}"


def replace_linears(model: nn.Module, make: Callable[[nn.Linear], nn.Module]) -> nn.Module:
    """Replace, in place, every bias-free nn.Linear of `model` by `make(linear)`; returns `model`."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and child.bias is None:
                setattr(module, name, make(child))
    return model


def use_cpu_linears(model: nn.Module, max_rows: int) -> nn.Module:
    """Every bias-free nn.Linear of `model` becomes a CpuLinear for products of up to `max_rows`
    rows at a time (1: a single sequence); returns `model`. The oneDNN copies are left out when
    they would take more than half of the memory still available."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and m.bias is None]
    copy_bytes = sum(m.weight.numel() * m.weight.element_size() for m in linears)
    available = available_memory()
    second_copy = available is None or copy_bytes <= available // 2
    if not second_copy:
        log.warning("linear weights take %.1f GB and %.1f GB of memory is available: no oneDNN copies, "
                    "so batched CPU products run at MKL's speed", copy_bytes / 1e9, available / 1e9)
    return replace_linears(model, lambda linear: CpuLinear(linear, max_rows, second_copy))


def available_memory() -> int | None:
    """Bytes of memory the kernel says are available (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
