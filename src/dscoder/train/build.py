"""What a run is made of, built from its TrainConfig: tokenizer, model, optimizer, data."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dscoder.errors import UserError
from dscoder.model import PRESETS, ModelConfig, Transformer, check_tokenizer_fits, load_model
from dscoder.tokenizer import Tokenizer
from dscoder.tokenizer.special import EOT
from dscoder.train.config import TrainConfig
from dscoder.train.data import Corpus, DocumentEncoder, PackedStream, PretrainBatches, find_shards, held_out
from dscoder.train.distributed import Dist
from dscoder.train.sft import SFTBatches, SFTData
from dscoder.train.state import STATE_DIR, STATE_FILE

# The released models pad their 32,022 tokens to 32,256 rows, a multiple of 256; models
# trained here from scratch round their tokenizer's size up the same way.
VOCAB_MULTIPLE = 256
PRETRAIN_LR = 5.3e-4  # the paper's 1.3B model
SFT_LR = 2e-5  # DeepSeek's public fine-tuning script (the paper: 1e-5)
EXTEND_CONTEXT_STEPS = 1000
EVAL_ROWS_PER_DOCUMENT = 16


def padded_vocab_size(tokenizer: Tokenizer) -> int:
    """Embedding rows for a tokenizer: its size rounded up to a multiple of VOCAB_MULTIPLE."""
    return math.ceil(tokenizer.vocab_size / VOCAB_MULTIPLE) * VOCAB_MULTIPLE


def load_tokenizer(config: TrainConfig) -> Tokenizer:
    source = config.tokenizer or config.init_from
    assert source is not None  # TrainConfig requires one of them
    return Tokenizer.from_dir(source)


def build_model(config: TrainConfig, tokenizer: Tokenizer, resume: Path | None) -> Transformer:
    """The fp32 model on CPU: the resumed checkpoint's, the initial checkpoint's (with the new
    RoPE settings for long-context extension), or a preset initialised from the seed."""
    if resume is not None:
        model = load_model(resume, dtype=torch.float32)
    elif config.init_from is not None:
        model = load_model(config.init_from, dtype=torch.float32)
        if config.stage == "extend-context":
            model.config = model.config.replace(
                rope_theta=config.rope_theta, rope_scaling_type="linear",
                rope_scaling_factor=config.rope_scaling_factor,
                max_position_embeddings=max(model.config.max_position_embeddings, config.seq_len))
            model.init_rope()
    else:
        preset = PRESETS[config.model]
        model_config = preset.replace(
            vocab_size=padded_vocab_size(tokenizer),
            bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id,
            max_position_embeddings=max(preset.max_position_embeddings, config.seq_len))
        torch.manual_seed(config.seed)
        model = Transformer(model_config)
    check_tokenizer_fits(model.config, tokenizer.vocab_size)
    if config.seq_len > model.config.max_position_embeddings:
        raise UserError(f"seq-len {config.seq_len} exceeds the model's max_position_embeddings "
                        f"{model.config.max_position_embeddings}; extend the context first")
    model.gradient_checkpointing = config.activation_checkpointing
    return model.train()


def saved_identity(config: TrainConfig, model: Transformer,
                   tokenizer: Tokenizer) -> tuple[ModelConfig, Tokenizer]:
    """The config and tokenizer checkpoints are saved with: instruction-tuned models end their
    turns with <|EOT|>, so that is their EOS, for generation and for the tokenizer."""
    if config.stage != "sft":
        return model.config, tokenizer
    if tokenizer.eot_id is None:
        raise UserError("the tokenizer has no <|EOT|> token; instruction tuning needs it")
    return model.config.replace(eos_token_id=tokenizer.eot_id), tokenizer.with_eos(EOT)


def build_optimizer(module: nn.Module, config: TrainConfig, lr: float) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices (embeddings included), none on the norm gains."""
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    # The fused kernel updates every tensor in one pass (CPU and CUDA, sharded or not).
    return torch.optim.AdamW(groups, lr=lr, betas=(config.beta1, config.beta2), eps=config.eps, fused=True)


def default_lr(config: TrainConfig) -> float:
    if config.lr is not None:
        if config.lr <= 0:
            raise UserError(f"the learning rate must be positive, got {config.lr}")
        return config.lr
    if config.stage == "pretrain":
        return PRETRAIN_LR
    if config.stage == "sft":
        return SFT_LR
    # Long-context extension keeps the learning rate where pretraining ended.
    assert config.init_from is not None
    state_file = config.init_from / STATE_DIR / STATE_FILE
    if not state_file.is_file():
        raise UserError(f"{config.init_from} records no final learning rate; give --lr")
    return float(json.loads(state_file.read_text(encoding="utf-8"))["lr"])


@dataclass
class RunData:
    """Training batches, the fixed held-out rows, and the number of optimizer steps."""

    batches: PretrainBatches | SFTBatches
    eval_ids: np.ndarray
    eval_labels: np.ndarray
    total_steps: int


def build_data(config: TrainConfig, tokenizer: Tokenizer, dist: Dist) -> RunData:
    if config.stage == "sft":
        data = SFTData(config.data, tokenizer, config.seq_len, config.eval_fraction, config.eval_data)
        batches = SFTBatches(data, config.batch_size, config.micro_batch_size, config.seed, dist)
        eval_ids, eval_labels = data.eval_rows()
        steps = config.steps or math.ceil(config.epochs * batches.rows_per_epoch / config.batch_size)
        if dist.is_main and data.truncated:
            print(f"sft: {data.truncated} examples are longer than seq-len {config.seq_len} and were cut")
    else:
        encoder = DocumentEncoder(tokenizer, config.fim_rate, config.seed)
        corpus = Corpus(find_shards(config.data), config.seed)
        if config.eval_data:
            eval_corpus = Corpus(find_shards(config.eval_data), config.seed)
            keep_train, keep_eval = (lambda _id: True), (lambda _id: True)
        else:
            eval_corpus = corpus  # both streams start in epoch 0: the shards are read once
            fraction = config.eval_fraction
            keep_train = lambda doc_id: not held_out(doc_id, fraction)  # noqa: E731
            keep_eval = lambda doc_id: held_out(doc_id, fraction)  # noqa: E731
        # Held-out rows are packed as training rows are, but with at most EVAL_ROWS_PER_DOCUMENT
        # rows from one document, so that one large repository does not make up the whole set.
        # (Only the first row of each document would over-sample file headers and docstrings,
        # which are harder than the average training row.)
        eval_stream = PackedStream(eval_corpus, encoder, config.seq_len, dist, keep_eval, epochs=1,
                                   max_document_tokens=EVAL_ROWS_PER_DOCUMENT * (config.seq_len + 1))
        eval_ids = eval_stream.take(config.eval_sequences) if config.eval_fraction or config.eval_data \
            else np.zeros((0, config.seq_len + 1), np.int32)
        eval_labels = eval_ids
        stream = PackedStream(corpus, encoder, config.seq_len, dist, keep_train)
        batches = PretrainBatches(stream, config.batch_size, config.micro_batch_size)
        steps = config.steps or (EXTEND_CONTEXT_STEPS if config.stage == "extend-context" else None)
        if steps is None:
            raise UserError("pretraining needs --steps")
    # Every process evaluates the same number of rows: sharded forward passes are collective.
    usable = min(len(eval_ids), config.eval_sequences) // dist.world_size * dist.world_size
    return RunData(batches, eval_ids[:usable], eval_labels[:usable], steps)
