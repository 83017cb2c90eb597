"""The three stages end to end on tiny models, their outputs, and the command line."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from dscoder.cli.train import config_from_args, register
from dscoder.errors import UserError
from dscoder.model import load_model
from dscoder.tokenizer import Tokenizer
from dscoder.train import train
from dscoder.train.metrics import flops_per_token, peak_tflops, read_metrics
from dscoder.train.state import STATE_DIR
from train_helpers import tiny_config


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, shard_dir, tokenizer_dir):
    out = tmp_path_factory.mktemp("pretrain")
    return train(tiny_config(out, [shard_dir], tokenizer_dir, steps=8, eval_interval=4))


def test_pretraining_writes_a_model_metrics_and_a_plot(pretrained, tokenizer):
    final = pretrained.final_dir
    model = load_model(final)
    assert model.config.eos_token_id == tokenizer.eos_id
    assert Tokenizer.from_dir(final).eos_id == tokenizer.eos_id
    assert (pretrained.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n")
    records = read_metrics(pretrained.metrics_path)
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 9))
    assert all(r["tokens_per_s"] > 0 and r["flops_per_s"] > 0 and r["mfu"] is None for r in steps)
    assert [s for s, _ in pretrained.eval_losses] == [0, 4, 8]
    assert pretrained.eval_losses[-1][1] < pretrained.eval_losses[0][1]
    # Only the most recent checkpoints are kept; each is a complete model directory.
    checkpoints = sorted(p.name for p in pretrained.out_dir.glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-000006", "checkpoint-000008"]
    assert (pretrained.out_dir / checkpoints[-1] / "config.json").is_file()


def test_transformers_loads_the_result(pretrained):
    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM.from_pretrained(pretrained.final_dir).eval()
    ours = load_model(pretrained.final_dir)
    tokens = torch.randint(0, 600, (1, 20))
    with torch.no_grad():
        torch.testing.assert_close(hf(tokens).logits, ours(tokens), atol=1e-4, rtol=1e-4)


def test_extend_context_rescales_rope_and_trains_longer_rows(tmp_path, pretrained, shard_dir):
    config = tiny_config(tmp_path, [shard_dir], None, stage="extend-context", init_from=pretrained.final_dir,
                         seq_len=128, steps=2, lr=None, rope_theta=200000.0, rope_scaling_factor=8.0)
    result = train(config)
    extended = load_model(result.final_dir).config
    rope = (extended.rope_theta, extended.rope_scaling_factor, extended.rope_scaling_type)
    assert rope == (200000.0, 8.0, "linear")
    assert extended.max_position_embeddings >= 128
    records = [r for r in read_metrics(result.metrics_path) if "loss" in r]
    # The learning rate stays where pretraining ended (multistep: 0.316^2 of its peak).
    assert [r["lr"] for r in records] == pytest.approx([3e-3 * 0.316**2] * 2)
    assert all(r["tokens"] % (4 * 128) == 0 for r in records)


def test_sft_makes_an_instruct_model_that_ends_turns_with_eot(tmp_path, pretrained, sft_file):
    config = tiny_config(tmp_path, [sft_file], None, stage="sft", init_from=pretrained.final_dir,
                         seq_len=512, steps=None, epochs=1.0, lr=1e-3, eval_fraction=0.1)
    result = train(config)
    tokenizer = Tokenizer.from_dir(result.final_dir)
    assert tokenizer.eos_id == tokenizer.eot_id
    assert load_model(result.final_dir).config.eos_token_id == tokenizer.eot_id
    generation = json.loads((result.final_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == tokenizer.eot_id
    assert result.total_steps >= 2 and result.eval_losses[-1][1] < result.eval_losses[0][1]
    assert json.loads((result.final_dir / STATE_DIR / "state.json").read_text())["stage"] == "sft"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dscoder")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_command_line_builds_the_config(tmp_path):
    args = _parse(["train", "pretrain", "--data", "d1", "d2", "--out", str(tmp_path), "--tokenizer", "tok",
                   "--model", "small", "--steps", "10", "--fim-rate", "0.3", "--activation-checkpointing"])
    config = config_from_args(args)
    assert (config.stage, config.model, config.steps, config.fim_rate) == ("pretrain", "small", 10, 0.3)
    assert config.activation_checkpointing and config.schedule_kind == "multistep"
    sft = config_from_args(_parse(["train", "sft", "--data", "x.jsonl", "--out", "o", "--init", "ckpt"]))
    assert (sft.schedule_kind, sft.fim_rate, sft.warmup_for(1000)) == ("cosine", 0.0, 100)
    extend = config_from_args(_parse(["train", "extend-context", "--data", "d", "--out", "o", "--init", "c"]))
    assert (extend.seq_len, extend.schedule_kind, extend.rope_scaling_factor) == (16384, "constant", 4.0)


@pytest.mark.parametrize("changes, message", [
    (dict(batch_size=6, micro_batch_size=4), "not a multiple"),
    (dict(stage="sft"), "continues a checkpoint"),
    (dict(model="huge"), "unknown model preset"),
    (dict(fim_rate=1.5), "fim-rate"),
    (dict(steps=0), "steps must be positive"),
])
def test_bad_settings_are_user_errors(tmp_path, changes, message):
    with pytest.raises(UserError, match=message):
        tiny_config(tmp_path, [tmp_path], tmp_path, **changes)


def test_missing_data_is_a_user_error(tmp_path, tokenizer_dir):
    with pytest.raises(UserError, match="does not exist"):
        train(tiny_config(tmp_path / "out", [tmp_path / "nothing"], tokenizer_dir))


def test_model_flops_and_peaks():
    from dscoder.model import PRESETS

    config = PRESETS["1.3b"]
    # 6 x (parameters without the input embedding) + 12 x layers x hidden x length
    expected = 6 * (config.num_parameters() - 32256 * 2048) + 12 * 24 * 2048 * 4096
    assert flops_per_token(config, 4096) == expected
    assert expected == 10_098_388_992  # 1.28e9 matmul parameters x 6 + 2.4e9 for attention
    assert peak_tflops(torch.device("cpu"), None) is None
    assert peak_tflops(torch.device("cpu"), 1.5) == 1.5
    with pytest.raises(UserError):
        peak_tflops(torch.device("cpu"), 0.0)
