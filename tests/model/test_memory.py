"""Tensors in 2 MB pages: zero-filled, aligned, alive as long as the tensor, and (where the
kernel offers transparent huge pages) really backed by them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from dscoder.model import PRESETS, Transformer
from dscoder.model.memory import HUGE_PAGE, huge_page_bytes, huge_page_zeros

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def huge_page_faults() -> int:
    """2 MB pages the kernel has handed out on page faults so far (all processes)."""
    stats = THP.parent / "hugepages-2048kB" / "stats" / "anon_fault_alloc"
    if stats.exists():
        return int(stats.read_text())
    return int(re.search(r"thp_fault_alloc (\d+)", Path("/proc/vmstat").read_text()).group(1))


def test_huge_page_memory_is_zeroed_aligned_and_outlives_its_mapping():
    data = huge_page_zeros((3, HUGE_PAGE // 4), torch.float32)
    assert data.shape == (3, HUGE_PAGE // 4) and data.dtype == torch.float32
    assert not data.any()
    assert data.data_ptr() % HUGE_PAGE == 0
    data.fill_(2.5)  # the mapping object lives on inside the tensor
    assert float(data.sum()) == 2.5 * data.numel()
    assert huge_page_bytes(100).numel() == 100  # small: an ordinary tensor


@pytest.mark.skipif(not THP.exists() or "[never]" in THP.read_text(),
                    reason="this kernel offers no transparent huge pages")
def test_the_memory_is_backed_by_huge_pages_where_the_kernel_offers_them():
    data = huge_page_bytes(8 * HUGE_PAGE)
    before = huge_page_faults()
    data.fill_(1)  # first touch: the faults that allocate its pages
    assert huge_page_faults() - before >= 4  # most of its 8 pages (other processes only add)


def test_cpu_key_value_caches_start_on_huge_page_boundaries():
    model = Transformer(PRESETS["test"])
    model.setup_cache(8, 2048)  # 8 rows x 2 heads x 2048 positions x 16 fp32 = 2 MB per cache
    for layer in model.layers:
        cache = layer.self_attn.kv_cache
        assert cache.k.data_ptr() % HUGE_PAGE == 0 and not cache.v.any()
