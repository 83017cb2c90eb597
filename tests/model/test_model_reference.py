"""dscoder's model against `transformers`' LlamaForCausalLM on the same random weights."""

from __future__ import annotations

import pytest
import torch

from dscoder.model import load_model, save_model

ATOL = 1e-4
SEQ_LEN = 400
VOCAB = 320  # conftest's
LINEAR_X4 = {"type": "linear", "factor": 4.0}

# (kv heads, rope scaling): multi-head, grouped-query and multi-query attention, each with the
# released checkpoints' linear x4 RoPE scaling and without scaling.
VARIANTS = [(kv, scaling) for kv in (4, 2, 1) for scaling in (LINEAR_X4, None)]
VARIANT_IDS = [f"{ {4: 'mha', 2: 'gqa', 1: 'mqa'}[kv]}-{'linear4' if s else 'noscale'}" for kv, s in VARIANTS]


def _tokens(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (batch, length), generator=generator)


@pytest.mark.parametrize(("num_kv_heads", "rope_scaling"), VARIANTS, ids=VARIANT_IDS)
def test_logits_match_reference_with_and_without_cache(hf_checkpoint, num_kv_heads, rope_scaling):
    reference, directory = hf_checkpoint(num_kv_heads=num_kv_heads, rope_scaling=rope_scaling)
    model = load_model(directory)
    tokens = _tokens(2, SEQ_LEN)
    with torch.no_grad():
        expected = reference(tokens).logits
        full = model(tokens)
        assert full.dtype == torch.float32
        torch.testing.assert_close(full, expected, atol=ATOL, rtol=0)

        # Cached: a 250-token prefill, a 100-token chunk, then one token at a time.
        model.setup_cache(max_batch_size=2, max_seq_len=512)
        positions = torch.arange(SEQ_LEN).expand(2, SEQ_LEN)
        pieces = [model(tokens[:, :250], positions[:, :250]), model(tokens[:, 250:350], positions[:, 250:350])]
        pieces += [model(tokens[:, i:i + 1], positions[:, i:i + 1]) for i in range(350, SEQ_LEN)]
        torch.testing.assert_close(torch.cat(pieces, dim=1), expected, atol=ATOL, rtol=0)


def test_linear_scaling_changes_the_logits(hf_checkpoint):
    # Guards the comparison above: with the same weights, scaled and unscaled RoPE must differ,
    # or matching the reference would not show that the scaling is applied.
    _, scaled_dir = hf_checkpoint(rope_scaling=LINEAR_X4)
    _, plain_dir = hf_checkpoint(rope_scaling=None)
    tokens = _tokens(1, 64)
    with torch.no_grad():
        difference = (load_model(scaled_dir)(tokens) - load_model(plain_dir)(tokens)).abs().max()
    assert difference > 1e-2


@pytest.mark.parametrize("num_kv_heads", [4, 1], ids=["mha", "mqa"])
def test_greedy_decoding_matches_reference_generate(hf_checkpoint, num_kv_heads):
    reference, directory = hf_checkpoint(num_kv_heads=num_kv_heads, rope_scaling=LINEAR_X4)
    model = load_model(directory)
    prompt = _tokens(1, 300)
    max_new_tokens = 40
    eos = reference.config.eos_token_id
    with torch.no_grad():
        expected = reference.generate(prompt, do_sample=False, max_new_tokens=max_new_tokens,
                                      pad_token_id=0)[0, prompt.shape[1]:].tolist()

        model.setup_cache(max_batch_size=1, max_seq_len=prompt.shape[1] + max_new_tokens)
        logits = model(prompt, torch.arange(prompt.shape[1])[None])
        generated: list[int] = []
        position = prompt.shape[1]
        while len(generated) < max_new_tokens:
            token = int(logits[0, -1].argmax())
            generated.append(token)
            if token == eos:
                break
            logits = model(torch.tensor([[token]]), torch.tensor([[position]]))
            position += 1
    assert generated == expected


@pytest.mark.parametrize(("num_kv_heads", "tie"), [(2, False), (4, True)], ids=["gqa", "tied"])
def test_transformers_loads_saved_checkpoint(hf_checkpoint, tmp_path, num_kv_heads, tie):
    from transformers import LlamaForCausalLM

    _, directory = hf_checkpoint(num_kv_heads=num_kv_heads, rope_scaling=LINEAR_X4, tie_word_embeddings=tie)
    model = load_model(directory)
    saved = tmp_path / "saved"
    save_model(model, saved)
    reloaded = LlamaForCausalLM.from_pretrained(saved).eval()
    assert reloaded.config.rope_parameters["rope_type"] == "linear"
    assert reloaded.config.rope_parameters["factor"] == 4.0
    tokens = _tokens(2, 300)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(tokens).logits, model(tokens), atol=ATOL, rtol=0)


def test_bf16_logits_match_reference_in_bf16(hf_checkpoint):
    # Same casts as the reference (fp32 RMSNorm and RoPE tables, cast back before the gain),
    # so bf16 activations round alike; on this CPU the logits agree exactly.
    from transformers import LlamaForCausalLM

    _, directory = hf_checkpoint(num_kv_heads=2, rope_scaling=LINEAR_X4)
    reference = LlamaForCausalLM.from_pretrained(directory, dtype=torch.bfloat16).eval()
    model = load_model(directory, dtype=torch.bfloat16)
    assert model.output.weight.dtype == torch.bfloat16
    tokens = _tokens(2, 300)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), reference(tokens).logits.float(), atol=1e-2, rtol=0)
