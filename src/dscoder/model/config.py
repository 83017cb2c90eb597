"""The LLaMA configuration DeepSeek-Coder uses, its presets, and its Hugging Face `config.json` form."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dscoder.errors import CheckpointError, UserError

# RoPE scaling kinds this model implements. "linear" divides positions by the factor (what every
# released DeepSeek-Coder checkpoint uses); None is plain RoPE.
ROPE_SCALING_TYPES = (None, "linear")

# Defaults `transformers`' LlamaConfig applies when config.json omits a key. Reading a file the
# way `transformers` reads it matters more than our own defaults: a config.json without
# `rope_scaling` means no scaling, even though the released models all use linear x4.
_HF_LLAMA_DEFAULTS: dict[str, Any] = {
    "rope_theta": 10000.0,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "tie_word_embeddings": False,
}
_HF_REQUIRED_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
)


@dataclass
class ModelConfig:
    """Shape and positional-encoding settings of a DeepSeek-Coder (LLaMA) decoder.

    Defaults are the released 1.3B model's `config.json`.
    """

    vocab_size: int = 32256
    hidden_size: int = 2048
    intermediate_size: int = 5504
    num_layers: int = 24
    num_heads: int = 16
    num_kv_heads: int = 16
    max_position_embeddings: int = 16384
    rope_theta: float = 100000.0
    rope_scaling_type: str | None = "linear"
    rope_scaling_factor: float = 4.0
    rms_norm_eps: float = 1e-6
    bos_token_id: int = 32013
    eos_token_id: int = 32014
    tie_word_embeddings: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                     "num_kv_heads", "max_position_embeddings"):
            if getattr(self, name) <= 0:
                raise UserError(f"model config: {name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise UserError(f"model config: hidden_size {self.hidden_size} is not a multiple of "
                            f"num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise UserError(f"model config: num_heads {self.num_heads} is not a multiple of "
                            f"num_kv_heads {self.num_kv_heads}")
        if self.head_dim % 2:
            raise UserError(f"model config: head_dim {self.head_dim} must be even for rotary embeddings")
        if self.rope_scaling_type not in ROPE_SCALING_TYPES:
            raise UserError(f"model config: rope scaling type {self.rope_scaling_type!r} is not "
                            f"supported (supported: 'linear' or none)")
        if self.rope_scaling_factor <= 0:
            raise UserError(f"model config: rope_scaling_factor must be positive, got "
                            f"{self.rope_scaling_factor}")
        if self.rope_scaling_type is None:
            # The factor means nothing without scaling; pin it so equal models compare equal.
            self.rope_scaling_factor = 1.0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def rope_position_scale(self) -> float:
        """What positions are multiplied by before the rotary angles are taken."""
        return 1.0 / self.rope_scaling_factor if self.rope_scaling_type == "linear" else 1.0

    def num_parameters(self) -> int:
        """Parameter count (the output matrix counted once when tied to the embedding)."""
        h, kv = self.hidden_size, self.num_kv_heads * self.head_dim
        attention = 2 * h * h + 2 * h * kv
        mlp = 3 * h * self.intermediate_size
        per_layer = attention + mlp + 2 * h
        embeddings = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * per_layer + embeddings + h

    @classmethod
    def from_hf(cls, d: dict[str, Any]) -> ModelConfig:
        """Read a Hugging Face LLaMA `config.json` dict, in either RoPE spelling.

        Released checkpoints write `rope_theta` + `rope_scaling`; `transformers` 5 writes
        `rope_parameters` (with `rope_theta` inside). Raises CheckpointError for anything this
        model cannot run faithfully.
        """
        model_type = d.get("model_type")
        if model_type != "llama":
            raise CheckpointError(f"config.json describes a {model_type!r} model, not a LLaMA "
                                  f"(model_type 'llama') model")
        missing = [k for k in _HF_REQUIRED_KEYS if k not in d]
        if missing:
            raise CheckpointError(f"config.json lacks {', '.join(missing)}")
        if d.get("hidden_act", "silu") != "silu":
            raise CheckpointError(f"config.json asks for activation {d['hidden_act']!r}; only "
                                  f"'silu' (SwiGLU) is supported")
        if d.get("attention_bias") or d.get("mlp_bias"):
            raise CheckpointError("config.json asks for biases in attention or MLP layers, which "
                                  "this LLaMA implementation does not have")

        def get(key: str) -> Any:
            return d.get(key, _HF_LLAMA_DEFAULTS[key])

        heads = d["num_attention_heads"]
        head_dim = d.get("head_dim")
        if head_dim is not None and head_dim * heads != d["hidden_size"]:
            raise CheckpointError(f"config.json sets head_dim {head_dim}, but only "
                                  f"hidden_size / num_attention_heads is supported")
        rope_theta, scaling_type, factor = _read_rope(d, get("rope_theta"))
        try:
            return cls(
                vocab_size=d["vocab_size"],
                hidden_size=d["hidden_size"],
                intermediate_size=d["intermediate_size"],
                num_layers=d["num_hidden_layers"],
                num_heads=heads,
                num_kv_heads=d.get("num_key_value_heads") or heads,
                max_position_embeddings=get("max_position_embeddings"),
                rope_theta=float(rope_theta),
                rope_scaling_type=scaling_type,
                rope_scaling_factor=float(factor),
                rms_norm_eps=float(get("rms_norm_eps")),
                bos_token_id=_first_id(get("bos_token_id")),
                eos_token_id=_first_id(get("eos_token_id")),
                tie_word_embeddings=bool(get("tie_word_embeddings")),
            )
        except UserError as e:
            raise CheckpointError(f"config.json: {e}") from None

    def to_hf(self) -> dict[str, Any]:
        """The `config.json` dict, in the released checkpoints' spelling (`rope_theta` +
        `rope_scaling`), which both `transformers` 4 and 5 read."""
        rope_scaling = None
        if self.rope_scaling_type == "linear":
            rope_scaling = {"type": "linear", "factor": self.rope_scaling_factor}
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_position_embeddings,
            "rope_theta": self.rope_theta,
            "rope_scaling": rope_scaling,
            "rms_norm_eps": self.rms_norm_eps,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": False,
            "mlp_bias": False,
            "initializer_range": 0.02,
            "use_cache": True,
        }

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (e.g. `PRESETS["tiny"].replace(vocab_size=1024)`)."""
        return dataclasses.replace(self, **changes)


def _read_rope(d: dict[str, Any], default_theta: float) -> tuple[float, str | None, float]:
    """(theta, scaling type, factor) from either spelling of the RoPE settings."""
    if d.get("rope_parameters") is not None:
        params = d["rope_parameters"]
        theta = params.get("rope_theta", default_theta)
    else:
        params = d.get("rope_scaling") or {}
        theta = default_theta
    kind = params.get("rope_type", params.get("type", "default"))
    if kind in (None, "default"):
        return theta, None, 1.0
    if kind == "linear":
        if "factor" not in params:
            raise CheckpointError("config.json asks for linear RoPE scaling without a factor")
        return theta, "linear", params["factor"]
    raise CheckpointError(f"config.json asks for RoPE scaling {kind!r}; supported: 'linear' or none")


def _first_id(token_id: int | list[int] | None) -> int:
    # `transformers` allows a list of EOS ids; the first one is the model's own. An explicit
    # null (no such token) becomes -1, an id no tokenizer produces.
    if isinstance(token_id, list):
        token_id = token_id[0] if token_id else None
    return -1 if token_id is None else int(token_id)


def check_tokenizer_fits(config: ModelConfig, tokenizer_vocab_size: int) -> None:
    """Raise CheckpointError when the tokenizer can produce ids the embedding has no row for."""
    if tokenizer_vocab_size > config.vocab_size:
        raise CheckpointError(f"the tokenizer has {tokenizer_vocab_size} tokens but the model's "
                              f"embedding has only {config.vocab_size} rows; use the tokenizer "
                              f"the model was trained with")


# The released checkpoints' config.json (RoPE: theta 1e5, positions divided by 4 always).
_RELEASED = ModelConfig()
PRESETS: dict[str, ModelConfig] = {
    "1.3b": _RELEASED.replace(),
    "5.7b-mqa": _RELEASED.replace(hidden_size=4096, intermediate_size=11008, num_layers=32,
                                  num_heads=32, num_kv_heads=1),
    "6.7b": _RELEASED.replace(hidden_size=4096, intermediate_size=11008, num_layers=32,
                              num_heads=32, num_kv_heads=32),
    "33b": _RELEASED.replace(hidden_size=7168, intermediate_size=19200, num_layers=62,
                             num_heads=56, num_kv_heads=8),
    # Small models for CPU training and tests keep the released vocabulary, special-token ids
    # and RoPE settings, so they run with the real tokenizer and behave like the big ones.
    # FFN widths follow the released 5504/2048 ratio, rounded to a multiple of 64.
    "tiny": _RELEASED.replace(hidden_size=256, intermediate_size=704, num_layers=4,
                              num_heads=4, num_kv_heads=4),
    "small": _RELEASED.replace(hidden_size=768, intermediate_size=2048, num_layers=12,
                               num_heads=12, num_kv_heads=12),
    "test": _RELEASED.replace(hidden_size=64, intermediate_size=176, num_layers=2,
                              num_heads=4, num_kv_heads=2, max_position_embeddings=2048),
}
