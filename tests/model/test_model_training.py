"""What training relies on: gradients, activation checkpointing, meta-device initialisation."""

from __future__ import annotations

import torch

from dscoder.model import ModelConfig, Transformer

CONFIG = ModelConfig(vocab_size=256, hidden_size=64, intermediate_size=160, num_layers=3, num_heads=4,
                     num_kv_heads=2, max_position_embeddings=512, bos_token_id=1, eos_token_id=2)
TOKENS = torch.randint(0, 256, (2, 128), generator=torch.Generator().manual_seed(0))


def _loss_and_grads(model: Transformer) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    logits = model(TOKENS[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), TOKENS[:, 1:].flatten())
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = Transformer(CONFIG).train()
    loss, grads = _loss_and_grads(model)
    model.gradient_checkpointing = True
    checkpointed_loss, checkpointed_grads = _loss_and_grads(model)
    assert torch.equal(loss, checkpointed_loss)
    for name, grad in grads.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(checkpointed_grads[name], grad, atol=1e-6, rtol=1e-5)


def test_meta_device_model_materialises_with_init_weights():
    with torch.device("meta"):
        model = Transformer(CONFIG)
    assert model.rope_cos.is_meta
    model.to_empty(device="cpu")
    model.init_weights()
    reference = Transformer(CONFIG)
    torch.testing.assert_close(model.rope_cos, reference.rope_cos, atol=0, rtol=0)
    torch.testing.assert_close(model.rope_sin, reference.rope_sin, atol=0, rtol=0)
    std = model.layers[0].mlp.up_proj.weight.std().item()
    assert 0.018 < std < 0.022
    assert torch.equal(model.norm.weight, torch.ones(CONFIG.hidden_size))
    assert torch.isfinite(model(TOKENS)).all()


@torch.no_grad()
def test_input_pos_without_cache_only_shifts_rotary_positions():
    # Rotary attention depends only on relative positions, so shifting every position by the
    # same offset leaves the logits unchanged (up to rounding), while input_pos is honoured.
    torch.manual_seed(0)
    model = Transformer(CONFIG).eval()
    model.init_weights(std=0.1)
    expected = model(TOKENS)
    torch.testing.assert_close(model(TOKENS, torch.arange(128).expand(2, 128)), expected, atol=0, rtol=0)
    torch.testing.assert_close(model(TOKENS, torch.arange(300, 428).expand(2, 128)), expected, atol=1e-4, rtol=0)
    spread = torch.arange(0, 256, 2).expand(2, 128)
    assert (model(TOKENS, spread) - expected).abs().max() > 1e-2
