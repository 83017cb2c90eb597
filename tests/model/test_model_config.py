"""ModelConfig: presets, both config.json spellings, validation."""

from __future__ import annotations

import pytest
import torch

from dscoder.errors import CheckpointError, UserError
from dscoder.model import PRESETS, ModelConfig, Transformer, check_tokenizer_fits
from dscoder.model.llama import rope_tables

# deepseek-ai/deepseek-coder-1.3b-base config.json, as released (transformers 4.x spelling).
RELEASED_1_3B = {
    "architectures": ["LlamaForCausalLM"],
    "bos_token_id": 32013,
    "eos_token_id": 32014,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 5504,
    "max_position_embeddings": 16384,
    "model_type": "llama",
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "num_key_value_heads": 16,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-06,
    "rope_scaling": {"factor": 4.0, "type": "linear"},
    "rope_theta": 100000,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.33.1",
    "use_cache": True,
    "vocab_size": 32256,
}


def _transformers5_spelling(d: dict) -> dict:
    """The same config as current `transformers` writes it (RoPE under `rope_parameters`)."""
    from transformers import LlamaConfig

    written = LlamaConfig(**d).to_dict()
    assert "rope_parameters" in written and "rope_scaling" not in written
    return written


@pytest.mark.parametrize(("name", "shape"), [
    ("1.3b", (2048, 5504, 24, 16, 16)),
    ("5.7b-mqa", (4096, 11008, 32, 32, 1)),
    ("6.7b", (4096, 11008, 32, 32, 32)),
    ("33b", (7168, 19200, 62, 56, 8)),
])
def test_released_presets(name, shape):
    config = PRESETS[name]
    assert (config.hidden_size, config.intermediate_size, config.num_layers, config.num_heads,
            config.num_kv_heads) == shape
    assert config.vocab_size == 32256
    assert config.max_position_embeddings == 16384
    assert config.rope_theta == 100000.0
    assert (config.rope_scaling_type, config.rope_scaling_factor) == ("linear", 4.0)
    assert config.rms_norm_eps == 1e-6
    assert not config.tie_word_embeddings
    assert (config.bos_token_id, config.eos_token_id) == (32013, 32014)


def test_released_config_json_is_the_1_3b_preset_in_both_spellings():
    assert ModelConfig.from_hf(RELEASED_1_3B) == PRESETS["1.3b"]
    assert ModelConfig.from_hf(_transformers5_spelling(RELEASED_1_3B)) == PRESETS["1.3b"]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_to_hf_round_trips_and_transformers_reads_it(name):
    from transformers import LlamaConfig

    config = PRESETS[name]
    assert ModelConfig.from_hf(config.to_hf()) == config
    assert ModelConfig.from_hf(_transformers5_spelling(config.to_hf())) == config
    hf = LlamaConfig(**config.to_hf())
    assert hf.rope_parameters["rope_type"] == "linear" and hf.rope_parameters["factor"] == 4.0
    assert hf.rope_parameters["rope_theta"] == 100000.0


def test_unscaled_rope_in_both_spellings():
    plain = {k: v for k, v in RELEASED_1_3B.items() if k != "rope_scaling"}
    config = ModelConfig.from_hf(plain)
    assert config.rope_scaling_type is None and config.rope_position_scale == 1.0
    assert ModelConfig.from_hf(_transformers5_spelling(plain)) == config
    assert config.to_hf()["rope_scaling"] is None
    unscaled = PRESETS["tiny"].replace(rope_scaling_type=None)
    assert unscaled.rope_scaling_factor == 1.0
    assert ModelConfig.from_hf(unscaled.to_hf()) == unscaled


def test_missing_keys_take_transformers_defaults():
    minimal = {k: RELEASED_1_3B[k] for k in ("model_type", "vocab_size", "hidden_size", "intermediate_size",
                                             "num_hidden_layers", "num_attention_heads")}
    config = ModelConfig.from_hf(minimal)
    assert config.rope_theta == 10000.0 and config.rope_scaling_type is None
    assert config.num_kv_heads == config.num_heads
    assert config.max_position_embeddings == 2048
    assert (config.bos_token_id, config.eos_token_id) == (1, 2)


@pytest.mark.parametrize(("change", "message"), [
    ({"model_type": "gpt2"}, "not a LLaMA"),
    ({"hidden_size": None}, "lacks hidden_size"),
    ({"rope_scaling": {"type": "dynamic", "factor": 2.0}}, "'dynamic'"),
    ({"rope_scaling": {"type": "linear"}}, "without a factor"),
    ({"hidden_act": "gelu"}, "'gelu'"),
    ({"attention_bias": True}, "biases"),
    ({"head_dim": 64, "hidden_size": 2048, "num_attention_heads": 8}, "head_dim"),
    ({"num_key_value_heads": 5}, "not a multiple of num_kv_heads"),
])
def test_unsupported_configs_are_checkpoint_errors(change, message):
    d = {**RELEASED_1_3B, **change}
    d = {k: v for k, v in d.items() if v is not None}
    with pytest.raises(CheckpointError, match=message):
        ModelConfig.from_hf(d)


def test_invalid_config_is_a_user_error():
    with pytest.raises(UserError, match="multiple of num_heads"):
        ModelConfig(hidden_size=100, num_heads=16)
    with pytest.raises(UserError, match="rope scaling type"):
        ModelConfig(rope_scaling_type="yarn")


def test_tokenizer_must_fit_the_embedding():
    check_tokenizer_fits(PRESETS["1.3b"], 32022)
    check_tokenizer_fits(PRESETS["1.3b"], 32256)
    with pytest.raises(CheckpointError, match="32300 tokens"):
        check_tokenizer_fits(PRESETS["1.3b"], 32300)


def test_small_presets_sizes():
    tiny, small, test = PRESETS["tiny"], PRESETS["small"], PRESETS["test"]
    assert (tiny.hidden_size, tiny.num_layers, tiny.vocab_size) == (256, 4, 32256)
    assert (small.hidden_size, small.num_layers) == (768, 12)
    assert 100e6 <= small.num_parameters() <= 140e6
    assert test.num_parameters() < tiny.num_parameters() < small.num_parameters()


@pytest.mark.parametrize("tied", [False, True])
def test_num_parameters_counts_the_model(tied):
    config = PRESETS["test"].replace(vocab_size=512, tie_word_embeddings=tied)
    model = Transformer(config)
    assert config.num_parameters() == sum(p.numel() for p in model.parameters())


def test_linear_scaling_divides_positions():
    plain = ModelConfig(hidden_size=64, num_heads=4, num_kv_heads=4, max_position_embeddings=64,
                        rope_scaling_type=None)
    scaled = plain.replace(rope_scaling_type="linear", rope_scaling_factor=4.0)
    cos_plain, sin_plain = rope_tables(plain)
    cos_scaled, sin_scaled = rope_tables(scaled)
    assert cos_scaled.dtype == torch.float32 and cos_scaled.shape == (64, 16)
    torch.testing.assert_close(cos_scaled[0:64:4], cos_plain[:16])
    torch.testing.assert_close(sin_scaled[0:64:4], sin_plain[:16])
    assert not torch.allclose(cos_scaled[1:16], cos_plain[1:16])
