"""The fused output layer + cross-entropy against the plain computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dscoder.model import ModelConfig, Transformer
from dscoder.train.loss import IGNORE_INDEX, CausalLMLoss, linear_cross_entropy


@pytest.mark.parametrize("chunk_rows", [7, 64, 1000])
@pytest.mark.parametrize("masked", [False, True])
def test_matches_cross_entropy_of_full_logits(chunk_rows, masked):
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
