"""Hugging Face checkpoint directories in and out: config.json, safetensors (one file or shards
with an index), generation_config.json.

Loading memory-maps the safetensors files and builds the model on the meta device, so the
weights exist once, in the page cache, unless a dtype or device change forces a copy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from dscoder.errors import CheckpointError, UserError
from dscoder.model.config import ModelConfig
from dscoder.model.llama import Transformer

CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
_SHARD_NAME = "model-{:05d}-of-{:05d}.safetensors"

# Hugging Face names are ours with a "model." prefix, except the LM head.
_HF_PREFIX = "model."
_HF_LM_HEAD, _LM_HEAD = "lm_head.weight", "output.weight"
# Old LLaMA checkpoints stored this derived buffer; it is recomputed from the config.
_IGNORED_SUFFIX = "rotary_emb.inv_freq"


def _hf_name(name: str) -> str:
    return _HF_LM_HEAD if name == _LM_HEAD else _HF_PREFIX + name


def _our_name(hf_name: str) -> str | None:
    if hf_name == _HF_LM_HEAD:
        return _LM_HEAD
    if hf_name.startswith(_HF_PREFIX):
        return hf_name[len(_HF_PREFIX):]
    return None


def _checkpoint_dir(path: str | os.PathLike[str]) -> Path:
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is not a directory; a checkpoint is a Hugging Face "
                              f"model directory with config.json and safetensors weights")
    return directory


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {file}: {e}") from None


def load_config(path: str | os.PathLike[str]) -> ModelConfig:
    """The ModelConfig of a checkpoint directory's config.json (either RoPE spelling)."""
    directory = _checkpoint_dir(path)
    file = directory / CONFIG_FILE
    if not file.is_file():
        raise CheckpointError(f"{directory} has no {CONFIG_FILE}, so it is not a Hugging Face "
                              f"checkpoint directory")
    data = _read_json(file)
    if not isinstance(data, dict):
        raise CheckpointError(f"{file} does not hold a JSON object")
    try:
        return ModelConfig.from_hf(data)
    except CheckpointError as e:
        raise CheckpointError(f"{directory}: {e}") from None


def weight_files(path: str | os.PathLike[str]) -> list[Path]:
    """The safetensors files of a checkpoint directory, checking every indexed shard exists."""
    directory = _checkpoint_dir(path)
    index_file = directory / WEIGHTS_INDEX_FILE
    if index_file.is_file():
        index = _read_json(index_file)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index_file} has no weight_map")
        names = list(dict.fromkeys(weight_map.values()))
        for name in names:
            if not (directory / name).is_file():
                raise CheckpointError(f"{directory} is missing the shard {name} that "
                                      f"{WEIGHTS_INDEX_FILE} lists")
        return [directory / name for name in names]
    single = directory / WEIGHTS_FILE
    if single.is_file():
        return [single]
    if any(directory.glob("*.bin")):
        raise CheckpointError(f"{directory} has PyTorch .bin weights only; dscoder reads "
                              f"safetensors (convert them, e.g. with transformers' "
                              f"save_pretrained(safe_serialization=True))")
    raise CheckpointError(f"{directory} has neither {WEIGHTS_FILE} nor {WEIGHTS_INDEX_FILE}")


def load_model(path: str | os.PathLike[str], dtype: torch.dtype | None = None,
               device: str | torch.device = "cpu") -> Transformer:
    """Build the model of a Hugging Face LLaMA directory, in eval mode.

    dtype None keeps the stored dtype (that of the embedding). On CPU with the stored dtype the
    parameters are views of the memory-mapped files (copy-on-write: training may update them;
    the files stay unchanged). A dtype or device change converts one file at a time, so at most
    one file's pages are mapped beside the converted weights.
    """
    directory = _checkpoint_dir(path)
    config = load_config(directory)
    files = weight_files(directory)
    with torch.device("meta"):
        model = Transformer(config)
    expected = dict(model.named_parameters())  # a tied LM head appears once, as the embedding
    if dtype is None:
        dtype = _stored_dtype(files, _hf_name("embed_tokens.weight"))

    state: dict[str, Tensor] = {}
    for file in files:
        state.update(_read_weights(file, expected, config, dtype, device))
    missing = [_hf_name(name) for name in expected if name not in state]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise CheckpointError(f"{directory} lacks the weight {missing[0]}{more}")
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    model.init_rope(device)
    return model.eval()


def _stored_dtype(files: list[Path], hf_name: str) -> torch.dtype:
    for file in files:
        with _open_safetensors(file) as f:
            if hf_name in f.keys():
                return f.get_tensor(hf_name).dtype  # a mapping: nothing is read
    raise CheckpointError(f"{files[0].parent} lacks the weight {hf_name}")


def _read_weights(file: Path, expected: dict[str, Tensor], config: ModelConfig, dtype: torch.dtype,
                  device: str | torch.device) -> dict[str, Tensor]:
    """One safetensors file's weights under our names, checked against the model's shapes."""
    weights: dict[str, Tensor] = {}
    with _open_safetensors(file) as f:
        for hf_name in f.keys():
            if hf_name.endswith(_IGNORED_SUFFIX):
                continue
            name = _our_name(hf_name)
            if name == _LM_HEAD and config.tie_word_embeddings:
                continue  # some tied checkpoints store the head anyway; it is the embedding
            if name not in expected:
                raise CheckpointError(f"{file} holds {hf_name}, which a LLaMA model with this "
                                      f"config.json does not have")
            tensor = f.get_tensor(hf_name)
            if tensor.shape != expected[name].shape:
                raise CheckpointError(f"{file}: {hf_name} has shape {tuple(tensor.shape)}, but "
                                      f"config.json implies {tuple(expected[name].shape)}")
            weights[name] = tensor.to(device=device, dtype=dtype)
    return weights


@contextmanager
def _open_safetensors(file: Path) -> Iterator[Any]:
    try:
        with safe_open(file, framework="pt", device="cpu") as f:
            yield f
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"cannot read {file}: {e}") from None


def save_model(model: Transformer, path: str | os.PathLike[str], dtype: torch.dtype | None = None,
               max_shard_bytes: int | None = None) -> None:
    """Write a Hugging Face directory that `transformers` and `load_model` read."""
    save_state_dict(model.state_dict(), model.config, path, dtype=dtype, max_shard_bytes=max_shard_bytes)


def save_state_dict(state_dict: dict[str, Tensor], config: ModelConfig, path: str | os.PathLike[str],
                    dtype: torch.dtype | None = None, max_shard_bytes: int | None = None) -> None:
    """Write a Transformer's state dict (e.g. gathered from a sharded training model) as a
    Hugging Face directory: config.json, model.safetensors or shards + index,
    generation_config.json. Weight files of an earlier save in the same directory are replaced.
    """
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise UserError(f"cannot save a checkpoint to {directory}: it is a file")
    if max_shard_bytes is not None and max_shard_bytes <= 0:
        raise UserError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
    directory.mkdir(parents=True, exist_ok=True)

    tensors: dict[str, Tensor] = {}
    for name, tensor in state_dict.items():
        if name == _LM_HEAD and config.tie_word_embeddings:
            continue  # the same matrix as the embedding; safetensors refuses shared tensors
        tensor = tensor.detach().to(device="cpu", dtype=dtype or tensor.dtype)
        tensors[_hf_name(name)] = tensor.contiguous()
    saved_dtype = dtype or tensors[_hf_name("embed_tokens.weight")].dtype

    shards = _split_into_shards(tensors, max_shard_bytes)
    written: set[str] = set()
    if len(shards) == 1:
        _save_safetensors(shards[0], directory / WEIGHTS_FILE)
        written.add(WEIGHTS_FILE)
    else:
        weight_map: dict[str, str] = {}
        for i, shard in enumerate(shards, start=1):
            name = _SHARD_NAME.format(i, len(shards))
            _save_safetensors(shard, directory / name)
            weight_map.update(dict.fromkeys(shard, name))
            written.add(name)
        total_size = sum(t.numel() * t.element_size() for t in tensors.values())
        _write_json(directory / WEIGHTS_INDEX_FILE,
                    {"metadata": {"total_size": total_size}, "weight_map": weight_map})
        written.add(WEIGHTS_INDEX_FILE)
    _remove_stale_weights(directory, keep=written)

    hf_config = config.to_hf()
    hf_config["torch_dtype"] = str(saved_dtype).removeprefix("torch.")
    _write_json(directory / CONFIG_FILE, hf_config)
    _write_json(directory / GENERATION_CONFIG_FILE,
                {"bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_id})


def _split_into_shards(tensors: dict[str, Tensor], max_shard_bytes: int | None) -> list[dict[str, Tensor]]:
    """Greedy, in order; a tensor larger than the limit gets a shard of its own."""
    shards: list[dict[str, Tensor]] = [{}]
    shard_bytes = 0
    for name, tensor in tensors.items():
        size = tensor.numel() * tensor.element_size()
        if max_shard_bytes is not None and shards[-1] and shard_bytes + size > max_shard_bytes:
            shards.append({})
            shard_bytes = 0
        shards[-1][name] = tensor
        shard_bytes += size
    return shards


def _save_safetensors(tensors: dict[str, Tensor], file: Path) -> None:
    # Write beside and rename: a crash never leaves a truncated file under the real name, and a
    # model still mapping the old file (load_model maps rather than copies) keeps its old inode.
    partial = file.with_name(file.name + ".partial")
    save_file(tensors, partial, metadata={"format": "pt"})
    os.replace(partial, file)


def _write_json(file: Path, data: Any) -> None:
    partial = file.with_name(file.name + ".partial")
    partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, file)


def _remove_stale_weights(directory: Path, keep: set[str]) -> None:
    stale = [directory / WEIGHTS_FILE, directory / WEIGHTS_INDEX_FILE,
             *directory.glob("model-*-of-*.safetensors")]
    for file in stale:
        if file.name not in keep and file.exists():
            file.unlink()
