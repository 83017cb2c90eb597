"""Checkpoints: a Hugging Face model directory plus the state that resumes training exactly.

    out/checkpoint-000200/
        config.json, model.safetensors, generation_config.json, tokenizer files
        trainer_state/
            state.json         step, tokens seen, data position, the run's settings
            optimizer/         AdamW moments, sharded as in training (torch.distributed.checkpoint)
            rng-rank00000.pt   each process's torch random state

`transformers`, `dscoder.model.load_model` and the inference engine read the directory as a
model and ignore `trainer_state/`. Weights are saved in fp32, so resuming loses nothing. A
checkpoint is written under a `.partial` name and renamed once complete, so a run killed while
saving resumes from the previous one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from dscoder.errors import UserError
from dscoder.model import ModelConfig, save_state_dict
from dscoder.tokenizer import Tokenizer
from dscoder.train.distributed import Dist

STATE_DIR = "trainer_state"
STATE_FILE = "state.json"
OPTIMIZER_DIR = "optimizer"
CHECKPOINT_PATTERN = re.compile(r"checkpoint-(\d+)")
PARTIAL_SUFFIX = ".partial"


def checkpoint_dir(out_dir: Path, step: int) -> Path:
    return out_dir / f"checkpoint-{step:06d}"


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The complete checkpoint of the highest step in `out_dir`, if any."""
    found = []
    for path in out_dir.glob("checkpoint-*"):
        match = CHECKPOINT_PATTERN.fullmatch(path.name)
        if match and (path / STATE_DIR / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def remove_partial_checkpoints(out_dir: Path) -> None:
    """Delete what a killed run left half-written."""
    for path in out_dir.glob(f"checkpoint-*{PARTIAL_SUFFIX}"):
        shutil.rmtree(path, ignore_errors=True)


def prune_checkpoints(out_dir: Path, keep: int) -> None:
    """Keep the `keep` most recent complete checkpoints."""
    found = sorted((int(m.group(1)), p) for p in out_dir.glob("checkpoint-*")
                   if (m := CHECKPOINT_PATTERN.fullmatch(p.name)))
    for _, path in found[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)


def full_model_state(module: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """The model's complete weights on CPU (gathered from every process when sharded), with
    `prefix` removed from the names; empty on processes other than the main one when sharded."""
    state = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {name.removeprefix(prefix): tensor for name, tensor in state.items()}


def save_model_dir(directory: Path, state: dict[str, torch.Tensor], config: ModelConfig,
                   tokenizer: Tokenizer, dtype: torch.dtype | None = None) -> None:
    """A Hugging Face model directory: weights, config, generation config, tokenizer."""
    save_state_dict(state, config, directory, dtype=dtype)
    tokenizer.save(directory)


def save_checkpoint(out_dir: Path, step: int, module: nn.Module, optimizer: torch.optim.Optimizer,
                    config: ModelConfig, tokenizer: Tokenizer, trainer_state: dict[str, Any],
                    dist: Dist) -> Path:
    """Write checkpoint-<step> (every process takes part); returns its path."""
    final = checkpoint_dir(out_dir, step)
    partial = final.with_name(final.name + PARTIAL_SUFFIX)
    weights = full_model_state(module, "model.")
    if dist.is_main:
        shutil.rmtree(partial, ignore_errors=True)
        save_model_dir(partial, weights, config, tokenizer)
        (partial / STATE_DIR).mkdir()
    dist.barrier()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*single process.*")  # dcp without torchrun
        dcp.save({"optimizer": get_optimizer_state_dict(module, optimizer)},
                 checkpoint_id=partial / STATE_DIR / OPTIMIZER_DIR)
    torch.save(_rng_state(), partial / STATE_DIR / f"rng-rank{dist.rank:05d}.pt")
    dist.barrier()
    if dist.is_main:
        write_json(partial / STATE_DIR / STATE_FILE, trainer_state)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
    dist.barrier()
    return final


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    path = checkpoint / STATE_DIR / STATE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read the training state {path}: {error}") from error


def load_optimizer(checkpoint: Path, module: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Fill the optimizer from a checkpoint (saved with any number of processes)."""
    state = {"optimizer": get_optimizer_state_dict(module, optimizer)}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*single process.*")
        dcp.load(state, checkpoint_id=checkpoint / STATE_DIR / OPTIMIZER_DIR)
    set_optimizer_state_dict(module, optimizer, state["optimizer"])


def load_rng(checkpoint: Path, dist: Dist) -> None:
    """Restore this process's random state (when the checkpoint has one for its rank)."""
    path = checkpoint / STATE_DIR / f"rng-rank{dist.rank:05d}.pt"
    if path.is_file():
        state = torch.load(path, weights_only=True)
        torch.set_rng_state(state["cpu"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda"])


def _rng_state() -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def write_json(path: Path, data: Any) -> None:
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)
