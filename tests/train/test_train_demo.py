"""The training demo's machinery on a miniature plan (the real plan's loss bar is `make demo`'s)."""

from __future__ import annotations

import json

import torch

from dscoder.model import load_model
from dscoder.tokenizer import Tokenizer
from dscoder.train.demo import DemoPlan, run_training_demo

MINIATURE = DemoPlan(hidden_size=32, intermediate_size=96, num_layers=1, num_heads=2, seq_len=64, batch_size=4,
                     pretrain_steps=6, pretrain_lr=1e-2, evaluations=2, eval_fraction=0.2, instructions=30,
                     sft_seq_len=512, sft_batch_size=4, sft_epochs=1.0, sft_eval_fraction=0.2)


def test_demo_pretrains_then_instruction_tunes(tmp_path, shard_dir, tokenizer_dir):
    threads = torch.get_num_threads()
    result = run_training_demo(shard_dir, tokenizer_dir, tmp_path, time_budget_s=120, plan=MINIATURE)
    assert torch.get_num_threads() == threads
    assert [step for step, _ in result["pretrain_eval_losses"]] == [0, 3, 6]
    assert result["start_loss"] == result["pretrain_eval_losses"][0][1]
    assert result["ok"] == (result["end_loss"] < result["start_loss"] / 2)
    assert len(result["instructions"].read_text().splitlines()) == 30
    base, instruct = load_model(result["base_model"]), load_model(result["instruct_model"])
    assert base.config.hidden_size == 32
    assert instruct.config.eos_token_id == Tokenizer.from_dir(tokenizer_dir).eot_id
    assert json.loads((result["instruct_model"] / "generation_config.json").read_text())["eos_token_id"] == \
        instruct.config.eos_token_id
    assert all(path.is_file() for path in result["plots"])
    assert result["sft_eval_losses"][-1][1] < result["sft_eval_losses"][0][1]
