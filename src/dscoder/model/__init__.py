"""The DeepSeek-Coder network (LLaMA) and its Hugging Face checkpoint I/O."""

from dscoder.model.checkpoint import load_config, load_model, save_model, save_state_dict, weight_files
from dscoder.model.config import PRESETS, ModelConfig, check_tokenizer_fits
from dscoder.model.llama import KVCache, Transformer

__all__ = [
    "PRESETS",
    "KVCache",
    "ModelConfig",
    "Transformer",
    "check_tokenizer_fits",
    "load_config",
    "load_model",
    "save_model",
    "save_state_dict",
    "weight_files",
]
