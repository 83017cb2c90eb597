"""Checkpoint directories: sharding, dtypes, memory mapping, and the errors users see."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from dscoder.errors import CheckpointError, UserError
from dscoder.model import ModelConfig, Transformer, load_config, load_model, save_model

CONFIG = ModelConfig(vocab_size=256, hidden_size=64, intermediate_size=160, num_layers=3, num_heads=4,
                     num_kv_heads=1, max_position_embeddings=512, bos_token_id=1, eos_token_id=2)
TOKENS = torch.randint(0, 256, (2, 100), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def model() -> Transformer:
    torch.manual_seed(0)
    model = Transformer(CONFIG).eval()
    model.init_weights(std=0.1)
    return model


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("saved")
    save_model(model, directory)
    return directory


@torch.no_grad()
def test_save_load_round_trip(model, saved):
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "generation_config.json", "model.safetensors"]
    assert json.loads((saved / "generation_config.json").read_text()) == {"bos_token_id": 1, "eos_token_id": 2}
    assert load_config(saved) == CONFIG
    loaded = load_model(saved)
    assert not loaded.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    torch.testing.assert_close(loaded.rope_cos, model.rope_cos, atol=0, rtol=0)
    torch.testing.assert_close(loaded(TOKENS), model(TOKENS), atol=0, rtol=0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_load_maps_the_file_instead_of_copying_it(saved):
    loaded = load_model(saved)
    file = str((saved / "model.safetensors").resolve())
    mapped = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(file):
            start, end = (int(address, 16) for address in line.split()[0].split("-"))
            mapped.append((start, end))
    for name, param in loaded.named_parameters():
        assert any(start <= param.data_ptr() < end for start, end in mapped), f"{name} was copied"


@torch.no_grad()
def test_sharded_save_and_load(model, tmp_path):
    from transformers import LlamaForCausalLM

    save_model(model, tmp_path, max_shard_bytes=200_000)
    shards = sorted(tmp_path.glob("model-*-of-*.safetensors"))
    assert len(shards) > 2 and not (tmp_path / "model.safetensors").exists()
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {p.name for p in shards}
    assert set(index["weight_map"]) == {"lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"} | {
        k for k in index["weight_map"] if k.startswith("model.layers.")}
    assert len(index["weight_map"]) == len(model.state_dict())
    assert index["metadata"]["total_size"] == sum(t.numel() * 4 for t in model.state_dict().values())

    expected = model(TOKENS)
    torch.testing.assert_close(load_model(tmp_path)(TOKENS), expected, atol=0, rtol=0)
    reference = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reference(TOKENS).logits, expected, atol=1e-4, rtol=0)

    # Saving unsharded into the same directory leaves no stale shards or index behind.
    save_model(model, tmp_path)
    assert sorted(p.name for p in tmp_path.glob("model*")) == ["model.safetensors"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@torch.no_grad()
def test_low_precision_round_trip(model, tmp_path, dtype):
    save_model(model, tmp_path, dtype=dtype)
    config_json = json.loads((tmp_path / "config.json").read_text())
    assert config_json["torch_dtype"] == str(dtype).removeprefix("torch.")
    assert (tmp_path / "model.safetensors").stat().st_size < 0.55 * CONFIG.num_parameters() * 4

    loaded = load_model(tmp_path)  # keeps the stored dtype
    for name, tensor in model.state_dict().items():
        assert loaded.state_dict()[name].dtype == dtype
        assert torch.equal(loaded.state_dict()[name], tensor.to(dtype)), name
    logits = loaded(TOKENS)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, model(TOKENS), atol=0.15, rtol=0.05)

    upcast = load_model(tmp_path, dtype=torch.float32)
    assert upcast.output.weight.dtype == torch.float32
    assert torch.equal(upcast.output.weight, model.output.weight.to(dtype).float())


@torch.no_grad()
def test_tied_embeddings_round_trip(tmp_path):
    torch.manual_seed(1)
    tied = Transformer(CONFIG.replace(tie_word_embeddings=True)).eval()
    assert tied.output.weight is tied.embed_tokens.weight
    save_model(tied, tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.output.weight is loaded.embed_tokens.weight
    torch.testing.assert_close(loaded(TOKENS), tied(TOKENS), atol=0, rtol=0)


def test_loaded_weights_train_without_touching_the_file(saved):
    model = load_model(saved).train()
    assert all(p.requires_grad for p in model.parameters())
    before = model.output.weight.detach().clone()
    model(TOKENS).logsumexp(-1).mean().backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
    assert not torch.equal(model.output.weight, before)
    assert torch.equal(load_model(saved).output.weight, before)


def test_resave_over_the_checkpoint_a_model_is_mapped_from(saved, tmp_path):
    directory = _copy(saved, tmp_path / "resaved")
    model = load_model(directory)
    expected = model(TOKENS).detach()
    with torch.no_grad():
        model.norm.weight.mul_(2.0)
    save_model(model, directory)
    assert torch.equal(load_model(directory).norm.weight, model.norm.weight)
    with torch.no_grad():
        model.norm.weight.div_(2.0)
    torch.testing.assert_close(model(TOKENS), expected, atol=0, rtol=0)


def _copy(saved: Path, target: Path) -> Path:
    target.mkdir()
    for file in saved.iterdir():
        (target / file.name).write_bytes(file.read_bytes())
    return target


def _edit_config(directory: Path, **changes) -> None:
    file = directory / "config.json"
    file.write_text(json.dumps({**json.loads(file.read_text()), **changes}))


def test_not_a_directory_or_no_config(tmp_path):
    with pytest.raises(CheckpointError, match="is not a directory"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="has no config.json"):
        load_model(tmp_path)


def test_not_a_llama_checkpoint(saved, tmp_path):
    directory = _copy(saved, tmp_path / "gpt2")
    _edit_config(directory, model_type="gpt2", architectures=["GPT2LMHeadModel"])
    with pytest.raises(CheckpointError, match="'gpt2' model, not a LLaMA"):
        load_model(directory)


def test_missing_shard(model, tmp_path):
    save_model(model, tmp_path, max_shard_bytes=200_000)
    shard = sorted(tmp_path.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=f"missing the shard {shard.name}"):
        load_model(tmp_path)


def test_no_weights_or_pytorch_bin_only(saved, tmp_path):
    directory = tmp_path / "empty"
    directory.mkdir()
    (directory / "config.json").write_bytes((saved / "config.json").read_bytes())
    with pytest.raises(CheckpointError, match="neither model.safetensors"):
        load_model(directory)
    (directory / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_model(directory)


def test_weights_that_do_not_fit_the_config(saved, tmp_path):
    directory = _copy(saved, tmp_path / "wider")
    _edit_config(directory, vocab_size=300)
    with pytest.raises(CheckpointError, match=r"has shape \(256, 64\).*\(300, 64\)"):
        load_model(directory)
    directory = _copy(saved, tmp_path / "deeper")
    _edit_config(directory, num_hidden_layers=4)
    with pytest.raises(CheckpointError, match=r"lacks the weight model.layers.3.\S+ and 8 more"):
        load_model(directory)
    directory = _copy(saved, tmp_path / "shallower")
    _edit_config(directory, num_hidden_layers=2)
    with pytest.raises(CheckpointError, match="model.layers.2.* does not have"):
        load_model(directory)


def test_corrupt_files(saved, tmp_path):
    directory = _copy(saved, tmp_path / "corrupt")
    (directory / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(directory)
    (directory / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_config(directory)


def test_save_to_a_file_is_a_user_error(model, tmp_path):
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(UserError, match="it is a file"):
        save_model(model, file)
