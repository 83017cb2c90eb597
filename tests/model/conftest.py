"""Tiny random LLaMA checkpoints written by `transformers`, the reference the model must match."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

VOCAB = 320
HIDDEN = 64
HEADS = 4


def hf_llama(num_kv_heads: int = HEADS, rope_scaling: dict | None = None, seed: int = 0,
             tie_word_embeddings: bool = False):
    """A random `transformers` LlamaForCausalLM, with weights large enough (std 0.1) that
    attention is far from uniform and position errors would show in the logits."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=160,
                         num_hidden_layers=2, num_attention_heads=HEADS, num_key_value_heads=num_kv_heads,
                         max_position_embeddings=1024, rope_theta=100000.0, rope_scaling=rope_scaling,
                         rms_norm_eps=1e-6, initializer_range=0.1, bos_token_id=1, eos_token_id=2,
                         tie_word_embeddings=tie_word_embeddings)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    # transformers initialises RMSNorm gains to 1; random gains also test that they are loaded.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.uniform_(0.5, 1.5)
    return model


@pytest.fixture
def hf_checkpoint(tmp_path: Path) -> Callable[..., tuple[object, Path]]:
    """Factory: (the transformers model, the directory its save_pretrained wrote)."""

    def make(**kwargs) -> tuple[object, Path]:
        model = hf_llama(**kwargs)
        directory = tmp_path / f"hf-{len(list(tmp_path.iterdir()))}"
        model.save_pretrained(directory)
        return model, directory

    return make


@pytest.fixture(autouse=True)
def one_thread():
    """These models are so small that thread hand-offs cost more than they save, badly so on a
    loaded machine; run each test on one thread and restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
