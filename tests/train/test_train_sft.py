"""Instruction data: chat rendering, label masking, packing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dscoder.errors import UserError
from dscoder.train.distributed import Dist
from dscoder.train.loss import IGNORE_INDEX
from dscoder.train.sft import SFTBatches, SFTData, pack_examples, read_chats, record_messages, tokenize_chat


def _trained_spans(example):
    """Runs of consecutive trained positions, as (start, end)."""
    trained = np.flatnonzero(example.labels != IGNORE_INDEX)
    spans, start = [], None
    for i, position in enumerate(trained):
        if start is None:
            start = position
        if i + 1 == len(trained) or trained[i + 1] != position + 1:
            spans.append((start, position + 1))
            start = None
    return spans


def test_only_the_response_and_its_eot_are_targets(tokenizer):
    messages = record_messages({"instruction": "Add two numbers.", "output": "def add(a, b):\n    return a + b"}, "r")
    example = tokenize_chat(tokenizer, messages)
    ids = example.ids.tolist()
    assert ids == tokenizer.apply_chat_template(messages, add_generation_prompt=False)
    assert ids.count(tokenizer.bos_id) == 1
    (start, end), = _trained_spans(example)
    # The prompt is the chat up to the generation prompt; the target is the response, "\n" and <|EOT|>.
    assert ids[:start] == tokenizer.apply_chat_template(messages[:1], add_generation_prompt=True)
    assert ids[end - 1] == tokenizer.eot_id
    assert tokenizer.decode(ids[start:end]) == "def add(a, b):\n    return a + b\n<|EOT|>"
    assert (example.labels[start:end] == example.ids[start:end]).all()
    assert tokenizer.decode(ids[end:]) == "\n"  # what the template writes after <|EOT|> is not learned


def test_every_assistant_turn_of_a_chat_is_trained(tokenizer):
    messages = record_messages({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a sort."},
        {"role": "assistant", "content": "Merge sort."},
        {"role": "user", "content": "Its cost?"},
        {"role": "assistant", "content": "O(n log n)."},
    ]}, "r")
    example = tokenize_chat(tokenizer, messages)
    spans = _trained_spans(example)
    assert [tokenizer.decode(example.ids[a:b].tolist()) for a, b in spans] == [
        "Merge sort.\n<|EOT|>", "O(n log n).\n<|EOT|>"]
    untrained = tokenizer.decode(example.ids[example.labels == IGNORE_INDEX].tolist())
    assert "Be brief." in untrained and "Its cost?" in untrained and "Merge sort" not in untrained


def test_eot_typed_by_a_user_is_text_not_a_turn_end(tokenizer):
    messages = [{"role": "user", "content": "print('<|EOT|>')"}, {"role": "assistant", "content": "ok"}]
    example = tokenize_chat(tokenizer, messages)
    assert example.ids.tolist().count(tokenizer.eot_id) == 1


def test_padding_is_masked_by_position_although_it_is_eos(tokenizer):
    pad = tokenizer.eos_id  # the released tokenizers pad with EOS
    examples = [tokenize_chat(tokenizer, [{"role": "user", "content": f"q{i}"},
                                          {"role": "assistant", "content": "a" * (i + 1)}]) for i in range(5)]
    row_len = len(examples[0].ids) * 2 + 3
    ids, labels = pack_examples(examples, row_len, pad)
    assert ids.shape[1] == row_len and len(ids) >= 3
    assert (ids == pad).any()
    assert (labels[ids == pad] == IGNORE_INDEX).all()
    # Whole examples, in order, each starting with BOS.
    flat = [t for row, lab in zip(ids, labels) for t, l in zip(row, lab)]
    assert sum(t == tokenizer.bos_id for t in flat) == 5
    assert int((labels != IGNORE_INDEX).sum()) == sum(e.num_targets for e in examples)


def test_sft_batches_cover_an_epoch_and_split_targets(tokenizer, sft_file):
    data = SFTData([sft_file], tokenizer, seq_len=512, eval_fraction=0.1)
    assert data.eval and data.train
    batches = SFTBatches(data, batch_size=2, micro_batch_size=1, seed=0, dist=Dist())
    seen = sum(b.num_targets for _ in range(batches.rows_per_epoch // 2) for b in batches.next_step())
    ids, labels = data.epoch_rows(0, 0)
    assert seen == int((labels[:batches.rows_per_epoch // 2 * 2] != IGNORE_INDEX).sum())
    state = batches.state_dict()
    again = SFTBatches(data, batch_size=2, micro_batch_size=1, seed=0, dist=Dist())
    again.load_state_dict(json.loads(json.dumps(state)))
    for a, b in zip(batches.next_step(), again.next_step()):
        assert (a.inputs == b.inputs).all() and (a.targets == b.targets).all()


@pytest.mark.parametrize("record, message", [
    ({"instruction": "x"}, "needs 'instruction' and 'output'"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant"),
    ({"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}]}, "before any user"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "role"),
])
def test_bad_records_are_user_errors(tmp_path, record, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(UserError, match=message):
        read_chats([path])
