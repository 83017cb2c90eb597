"""The fused output layer + cross-entropy against the plain computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dscoder.model import ModelConfig, Transformer
from dscoder.train import loss as loss_module
from dscoder.train.loss import IGNORE_INDEX, CausalLMLoss, linear_cross_entropy


@pytest.fixture(params=["cpu-path", "accelerator-path"])
def path(request, monkeypatch):
    """Both ways of reading the loss off the softmax: the CPU's, and the one without host syncs
    that accelerators take (run here on CPU)."""
    if request.param == "accelerator-path":
        monkeypatch.setattr(loss_module, "_host_sync_is_cheap", lambda device: False)
    return request.param


@pytest.mark.parametrize("chunk_rows", [7, 64, 1000])
@pytest.mark.parametrize("masked", [False, True])
def test_matches_cross_entropy_of_full_logits(chunk_rows, masked, path):
    torch.manual_seed(0)
    hidden = torch.randn(100, 32, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(300, 32, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 300, (100,))
    if masked:
        targets[::3] = IGNORE_INDEX
    scale = 1 / 37
    expected = F.cross_entropy(hidden @ weight.T, targets, reduction="sum") * scale
    expected_grads = torch.autograd.grad(expected * 2.5, (hidden, weight))
    got = linear_cross_entropy(hidden, weight, targets, scale, chunk_rows)
    grads = torch.autograd.grad(got * 2.5, (hidden, weight))
    torch.testing.assert_close(got, expected)
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e)
    if masked:
        assert (grads[0][::3] == 0).all()


def test_no_gradient_work_without_grad():
    hidden, weight = torch.randn(10, 8), torch.randn(20, 8)
    with torch.no_grad():
        value = linear_cross_entropy(hidden, weight, torch.randint(0, 20, (10,)))
    assert value.requires_grad is False and value > 0


def test_model_loss_equals_the_logits_loss():
    config = ModelConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                         num_kv_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = Transformer(config)
    tokens = torch.randint(0, 128, (3, 17))
    inputs, targets = tokens[:, :-1], tokens[:, 1:].clone()
    targets[0, :5] = IGNORE_INDEX
    expected = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten(), reduction="mean")
    count = int((targets != IGNORE_INDEX).sum())
    got = CausalLMLoss(model, chunk_rows=10)(inputs, targets, 1 / count)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_targets_with_underflowing_probability_keep_an_exact_finite_loss(path):
    # Logits 200 apart: the target's softmax probability is exp(-200), zero in fp32. The loss
    # (200) must come out exact, not inf: it is derived from the largest probability instead.
    hidden = torch.eye(4, dtype=torch.float32).requires_grad_()
    weight = torch.zeros(6, 4)
    weight[0] = 200.0  # token 0 wins every row by 200
    targets = torch.tensor([1, 2, 3, 5])
    got = linear_cross_entropy(hidden, weight, targets, chunk_rows=3)
    expected = F.cross_entropy((hidden @ weight.T).double(), targets, reduction="sum")
    assert torch.isfinite(got)
    torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-4)


def test_bf16_autocast_runs_the_products_in_bf16_and_the_softmax_in_fp32():
    torch.manual_seed(0)
    hidden = torch.randn(50, 32, requires_grad=True)
    weight = (torch.randn(300, 32) * 0.3).requires_grad_()
    targets = torch.randint(0, 300, (50,))
    expected = F.cross_entropy(hidden @ weight.T, targets, reduction="sum")
    expected_grads = torch.autograd.grad(expected, (hidden, weight))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = linear_cross_entropy(hidden, weight, targets, chunk_rows=16)
    grads = torch.autograd.grad(got, (hidden, weight))
    assert got.dtype == torch.float32 and all(g.dtype == torch.float32 for g in grads)
    torch.testing.assert_close(got, expected, rtol=2e-2, atol=0)
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=0, atol=5e-2 * float(e.abs().max()))


def test_a_batch_without_targets_has_zero_loss_and_zero_gradients():
    hidden = torch.randn(5, 8, requires_grad=True)
    weight = torch.randn(20, 8, requires_grad=True)
    loss = linear_cross_entropy(hidden, weight, torch.full((5,), IGNORE_INDEX))
    loss.backward()
    assert loss.item() == 0 and (hidden.grad == 0).all() and (weight.grad == 0).all()
