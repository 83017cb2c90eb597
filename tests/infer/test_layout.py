"""CPU linear layers for inference: the same products as nn.Linear, in faster forms."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dscoder.infer import layout
from dscoder.infer.layout import CpuLinear, use_cpu_linears


@pytest.mark.parametrize("shape", [(96, 32), (32, 96)])  # widening, narrowing
@pytest.mark.parametrize("max_rows", [1, 8])
@pytest.mark.parametrize("one_row_onednn", [False, True])
def test_cpu_linear_gives_nn_linear_results_for_one_row_and_many(shape, max_rows, one_row_onednn, monkeypatch):
    torch.manual_seed(0)
    linear = nn.Linear(shape[1], shape[0], bias=False)
    # Which kernel is faster for one row is timed; here each answer is imposed in turn.
    monkeypatch.setattr(layout, "_onednn_is_faster_for_one_row", lambda weight, max_rows: one_row_onednn)
    layer = CpuLinear(linear, max_rows)
    # oneDNN ships in torch's CPU wheels: a copy for several rows, and for one if faster.
    assert (layer.packed is not None) == (max_rows > 1 or one_row_onednn)
    assert layer.weight.t().is_contiguous() == (shape[0] >= shape[1])
    with torch.inference_mode():
        for x in (torch.randn(1, 1, shape[1]), torch.randn(5, shape[1]), torch.randn(2, 7, shape[1]),
                  torch.randn(40, shape[1])):  # more rows than the hint: still right
            expected = F.linear(x, linear.weight)
            got = layer(x)
            assert got.shape == expected.shape
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_weights_oneDNN_is_not_given_stay_plain():
    linear = nn.Linear(16, 48, bias=False).to(torch.bfloat16)
    layer = CpuLinear(linear, max_rows=8)
    assert layer.packed is None
    x = torch.randn(4, 16, dtype=torch.bfloat16)
    torch.testing.assert_close(layer(x), F.linear(x, linear.weight))


def test_every_bias_free_linear_is_replaced_and_biased_ones_are_kept():
    model = nn.Sequential(nn.Linear(8, 16, bias=False), nn.Sequential(nn.Linear(16, 4, bias=False)), nn.Linear(4, 2))
    use_cpu_linears(model, max_rows=4)
    assert isinstance(model[0], CpuLinear) and isinstance(model[1][0], CpuLinear)
    assert type(model[2]) is nn.Linear


def test_the_one_row_kernel_is_timed_once_per_shape_and_thread_count(monkeypatch):
    monkeypatch.setattr(layout, "_ONE_ROW_CHOICES", {})
    first = CpuLinear(nn.Linear(64, 128, bias=False), max_rows=1)
    assert len(layout._ONE_ROW_CHOICES) == 1
    second = CpuLinear(nn.Linear(64, 128, bias=False), max_rows=1)
    assert len(layout._ONE_ROW_CHOICES) == 1 and first.one_row_onednn == second.one_row_onednn
    CpuLinear(nn.Linear(128, 64, bias=False), max_rows=1)
    assert len(layout._ONE_ROW_CHOICES) == 2


def test_no_second_copies_without_the_memory_for_them(monkeypatch, caplog):
    monkeypatch.setattr(layout, "available_memory", lambda: 1000)  # bytes: far too few
    model = use_cpu_linears(nn.Sequential(nn.Linear(64, 128, bias=False)), max_rows=8)
    assert model[0].packed is None and not model[0].one_row_onednn
    assert "no oneDNN copies" in caplog.text
    x = torch.randn(5, 64)
    with torch.inference_mode():
        torch.testing.assert_close(model[0](x), F.linear(x, model[0].weight))


def test_available_memory_is_read_where_the_kernel_tells_it():
    available = layout.available_memory()
    if Path("/proc/meminfo").exists():  # Linux: the figure is there
        assert available is not None and 1 << 20 < available < 1 << 50
    else:
        assert available is None
