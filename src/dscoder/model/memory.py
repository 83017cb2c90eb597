"""Host memory backed by 2 MB pages, for tensors that decoding reads end to end every step.

A token reads every weight once and every cached key and value so far: with 4 KB pages that
is a page-table walk every 4 KB, and in a virtual machine a walk whose tables have left the
cache costs microseconds (measured here: a 0.8 MB matrix read cold took 0.37 ms on 4 KB pages).
2 MB pages make those walks 512 times rarer; docs/performance.md has the figures.
"""

from __future__ import annotations

import math
import mmap

import torch
from torch import Tensor

HUGE_PAGE = 2 << 20


def huge_page_bytes(nbytes: int) -> Tensor:
    """A zero-filled uint8 CPU tensor of `nbytes` that starts on a 2 MB boundary, in memory the
    kernel was asked (madvise, before anything touched it) to back with 2 MB pages. Where that
    cannot be asked (not Linux, or smaller than a page), an ordinary zeroed tensor."""
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is None or nbytes < HUGE_PAGE:
        return torch.zeros(nbytes, dtype=torch.uint8)
    # Private and anonymous: zero-filled, and not shared memory (whose huge pages are a
    # separate setting, usually off).
    mapping = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        mapping.madvise(advice)
    except OSError:  # transparent huge pages turned off: ordinary pages, same contents
        pass
    whole = torch.frombuffer(mapping, dtype=torch.uint8)  # keeps `mapping` alive
    start = -whole.data_ptr() % HUGE_PAGE
    return whole[start: start + nbytes]


def huge_page_zeros(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """torch.zeros(shape, dtype=dtype) on the CPU, in memory from `huge_page_bytes`."""
    return huge_page_bytes(math.prod(shape) * dtype.itemsize).view(dtype).view(shape)
