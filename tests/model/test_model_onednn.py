"""oneDNN products for CPU: the same values and gradients as F.linear."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dscoder.model import onednn


def close(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to fp32 rounding of sums in another order: relative to the largest value."""
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * float(expected.detach().abs().max()))


def test_this_torch_has_a_working_onednn():
    # The CPU wheels ship oneDNN; without it every product silently takes F.linear, which
    # is correct but slower, so say so here rather than only in the benchmarks.
    assert onednn.available()


def test_linear_matches_f_linear_in_values_and_gradients():
    torch.manual_seed(0)
    x = torch.randn(3, 50, 256, requires_grad=True)  # 150 rows by 256 x 320: the oneDNN path
    weight = torch.randn(320, 256, requires_grad=True)
    upstream = torch.randn(3, 50, 320)
    got = onednn.linear(x, weight)
    got_grads = torch.autograd.grad(got, (x, weight), upstream)
    expected = F.linear(x, weight)
    expected_grads = torch.autograd.grad(expected, (x, weight), upstream)
    close(got, expected)
    for g, e in zip(got_grads, expected_grads):
        close(g, e)


def test_only_the_input_or_only_the_weight_may_need_a_gradient():
    torch.manual_seed(0)
    x, weight = torch.randn(128, 256), torch.randn(256, 256)
    for needs in ("input", "weight"):
        grads = []
        for product in (onednn.linear, F.linear):
            leaf = (x if needs == "input" else weight).clone().requires_grad_()
            out = product(leaf, weight) if needs == "input" else product(x, leaf)
            (out * torch.arange(256.0)).sum().backward()
            grads.append(leaf.grad)
        close(grads[0], grads[1])


def test_small_and_non_fp32_products_take_f_linear():
    x, weight = torch.randn(2, 16), torch.randn(24, 16)
    torch.testing.assert_close(onednn.linear(x, weight), F.linear(x, weight))
    xb, wb = x.bfloat16().repeat(64, 1), weight.bfloat16()
    assert torch.equal(onednn.linear(xb, wb), F.linear(xb, wb))
