"""The key/value cache: incremental decoding, padded batches, rows at different positions."""

from __future__ import annotations

import pytest
import torch

from dscoder.errors import UserError
from dscoder.model import ModelConfig, Transformer

ATOL = 1e-4
CONFIG = ModelConfig(vocab_size=256, hidden_size=64, intermediate_size=160, num_layers=2, num_heads=4,
                     num_kv_heads=2, max_position_embeddings=512, bos_token_id=1, eos_token_id=2)


@pytest.fixture(scope="module")
def model() -> Transformer:
    torch.manual_seed(0)
    model = Transformer(CONFIG).eval()
    model.init_weights(std=0.1)
    return model


def _sequence(length: int, seed: int) -> torch.Tensor:
    return torch.randint(0, CONFIG.vocab_size, (length,), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_padded_batch_with_rows_at_different_positions_matches_each_row_alone(model):
    lengths = [50, 120, 80]
    new_tokens = 6
    sequences = [_sequence(n + new_tokens, seed) for seed, n in enumerate(lengths)]
    expected = [model(s[None])[0] for s in sequences]

    longest = max(lengths)
    prompt = torch.zeros(len(lengths), longest, dtype=torch.long)  # right-padded with token 0
    for row, (s, n) in enumerate(zip(sequences, lengths)):
        prompt[row, :n] = s[:n]
    model.setup_cache(max_batch_size=len(lengths), max_seq_len=256)
    logits = model(prompt, torch.arange(longest).expand(len(lengths), longest))
    for row, n in enumerate(lengths):
        torch.testing.assert_close(logits[row, :n], expected[row][:n], atol=ATOL, rtol=0)

    # Each row decodes at its own position, overwriting the padding slots as it goes.
    for step in range(new_tokens):
        positions = torch.tensor([[n + step] for n in lengths])
        tokens = torch.stack([s[n + step] for s, n in zip(sequences, lengths)])[:, None]
        logits = model(tokens, positions)
        for row, n in enumerate(lengths):
            torch.testing.assert_close(logits[row, 0], expected[row][n + step], atol=ATOL, rtol=0)


@torch.no_grad()
def test_rows_select_cache_rows_for_continuous_batching(model):
    first, second, third = _sequence(90, 10), _sequence(40, 11), _sequence(30, 12)
    model.setup_cache(max_batch_size=4, max_seq_len=128)
    cache = model.cache

    # Two sequences arrive at different times and land in rows 2 and 0.
    model(first[None, :80], torch.arange(80)[None], rows=torch.tensor([2]))
    model(second[None, :30], torch.arange(30)[None], rows=torch.tensor([0]))
    assert cache.k[2, :, :80].abs().sum(-1).gt(0).all()
    assert cache.k[0, :, :30].abs().sum(-1).gt(0).all() and cache.k[0, :, 30:].eq(0).all()
    assert cache.k[[1, 3]].eq(0).all() and cache.v[[1, 3]].eq(0).all()

    # Decoded together, each at its own position.
    for step in range(10):
        tokens = torch.stack([first[80 + step], second[30 + step]])[:, None]
        positions = torch.tensor([[80 + step], [30 + step]])
        logits = model(tokens, positions, rows=torch.tensor([2, 0]))
        torch.testing.assert_close(logits[0, 0], model(first[None, :81 + step])[0, -1], atol=ATOL, rtol=0)
        torch.testing.assert_close(logits[1, 0], model(second[None, :31 + step])[0, -1], atol=ATOL, rtol=0)

    # Row 2 is reused by a shorter sequence: its stale slots beyond position 29 must be ignored.
    logits = model(third[None], torch.arange(30)[None], rows=torch.tensor([2]))
    torch.testing.assert_close(logits[0], model(third[None])[0], atol=ATOL, rtol=0)
    assert cache.k[[1, 3]].eq(0).all()


@torch.no_grad()
def test_training_mode_forward_leaves_the_cache_alone(model):
    model.setup_cache(max_batch_size=2, max_seq_len=64)
    model(_sequence(40, 3)[None])
    assert model.cache.k.eq(0).all() and model.cache.v.eq(0).all()


@torch.no_grad()
def test_low_precision_cache_on_fp32_model(model):
    tokens = _sequence(60, 4)[None]
    expected = model(tokens)
    model.setup_cache(max_batch_size=1, max_seq_len=64, dtype=torch.bfloat16)
    assert model.cache.k.dtype == torch.bfloat16
    logits = model(tokens, torch.arange(60)[None])
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, expected, atol=0.1, rtol=0)


def test_cache_misuse_is_a_user_error(model):
    with pytest.raises(UserError, match="max_position_embeddings"):
        model.setup_cache(max_batch_size=1, max_seq_len=CONFIG.max_position_embeddings + 1)
    model.setup_cache(max_batch_size=2, max_seq_len=32)
    tokens = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(UserError, match="cache's length"):
        model(tokens, torch.arange(30, 34)[None])
    with pytest.raises(UserError, match="exceeds the cache"):
        model(torch.zeros(3, 4, dtype=torch.long), torch.arange(4).expand(3, 4))
    with pytest.raises(UserError, match="input_pos shape"):
        model(tokens, torch.arange(3)[None])
    with pytest.raises(UserError, match="rows must have shape"):
        model(tokens, torch.arange(4)[None], rows=torch.tensor([0, 1]))
    with pytest.raises(UserError, match="max_position_embeddings"):
        model(torch.zeros(1, CONFIG.max_position_embeddings + 1, dtype=torch.long))


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
def test_fused_projections_give_the_same_logits(num_kv_heads):
    config = CONFIG.replace(num_kv_heads=num_kv_heads)
    torch.manual_seed(0)
    plain = Transformer(config).eval()
    plain.init_weights(std=0.1)
    fused = Transformer(config).eval()
    fused.load_state_dict(plain.state_dict())
    fused.fuse_projections()
    assert sum(p.numel() for p in fused.parameters()) == sum(p.numel() for p in plain.parameters())
    tokens = torch.randint(0, config.vocab_size, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(fused(tokens), plain(tokens), rtol=0, atol=ATOL)
        for model in (plain, fused):
            model.setup_cache(2, 16)
        positions = torch.arange(12).expand(2, 12)
        torch.testing.assert_close(fused(tokens, positions), plain(tokens, positions), rtol=0, atol=ATOL)
