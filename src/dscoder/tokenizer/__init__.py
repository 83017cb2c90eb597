"""Byte-level BPE tokenizer with DeepSeek-Coder's pre-tokenizer, special tokens and chat format."""

from dscoder.tokenizer.chat import DEEPSEEK_CODER_CHAT_TEMPLATE
from dscoder.tokenizer.hf import Tokenizer
from dscoder.tokenizer.train import TrainingReport, train_tokenizer, train_tokenizer_on_files

__all__ = [
    "DEEPSEEK_CODER_CHAT_TEMPLATE",
    "Tokenizer",
    "TrainingReport",
    "train_tokenizer",
    "train_tokenizer_on_files",
]
