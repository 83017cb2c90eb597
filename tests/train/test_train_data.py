"""Pretraining data: FIM, packing, held-out split, determinism and resuming."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dscoder.errors import UserError
from dscoder.train.data import (
    Corpus,
    DocumentEncoder,
    PackedStream,
    PretrainBatches,
    StreamPosition,
    find_shards,
    fim_split,
    held_out,
)
from dscoder.train.distributed import Dist
from dscoder.train.loss import IGNORE_INDEX

TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "# 注释: 斐波那契 fib(30) = 832040\nclass Fib:\n\tpass\n",
    "emoji 🚀 and café\r\n",
    "x",
    "",
]


@pytest.mark.parametrize("text", TEXTS)
def test_fim_parts_reassemble_the_document(text):
    rng = np.random.default_rng(0)
    seen_empty_middle = False
    for _ in range(200):
        prefix, middle, suffix = fim_split(text, rng)
        assert prefix + middle + suffix == text
        seen_empty_middle |= middle == ""
    assert seen_empty_middle or len(text) > 3  # any part may be empty


def test_fim_sample_layout_and_tokens_decode_to_the_document(tokenizer):
    encoder = DocumentEncoder(tokenizer, fim_rate=1.0, seed=7)
    text = TEXTS[1]
    tokens = encoder.encode([(text, 0, 3)])[0].tolist()
    t = tokenizer
    assert tokens[:2] == [t.bos_id, t.fim_begin_id] and tokens[-1] == t.eos_id
    hole, end = tokens.index(t.fim_hole_id), tokens.index(t.fim_end_id)
    prefix, suffix, middle = tokens[2:hole], tokens[hole + 1:end], tokens[end + 1:-1]
    assert t.decode(prefix) + t.decode(middle) + t.decode(suffix) == text
    # Each part is tokenized on its own: the pieces are what the encoder drew.
    pieces = encoder.pieces(text, 0, 3)
    assert [t.decode(p) for p in (prefix, suffix, middle)] == pieces


@pytest.mark.parametrize("rate", [0.0, 0.5, 0.9])
def test_share_of_fim_documents_matches_the_rate(tokenizer, rate):
    encoder = DocumentEncoder(tokenizer, fim_rate=rate, seed=1)
    n = 4000
    fim = sum(len(encoder.pieces("some text", 0, position)) == 3 for position in range(n))
    sigma = math.sqrt(n * rate * (1 - rate))
    assert abs(fim - n * rate) <= 4 * sigma + 1e-9


def test_plain_documents_are_bos_text_eos(tokenizer):
    tokens = DocumentEncoder(tokenizer, fim_rate=0.0, seed=0).encode([(TEXTS[0], 0, 0)])[0].tolist()
    assert tokens == [tokenizer.bos_id, *tokenizer.encode(TEXTS[0]), tokenizer.eos_id]


def _stream(shard_dir, tokenizer, seq_len=32, seed=3, fim_rate=0.5, keep=lambda _id: True, epochs=None):
    corpus = Corpus(find_shards([shard_dir]), seed)
    return PackedStream(corpus, DocumentEncoder(tokenizer, fim_rate, seed), seq_len, Dist(), keep, epochs)


def test_packing_cuts_the_document_stream_into_overlapping_rows(shard_dir, tokenizer):
    stream = _stream(shard_dir, tokenizer, fim_rate=0.0, epochs=1)
    rows = stream.take(50)
    assert rows.shape == (50, 33)
    assert (rows[1:, 0] == rows[:-1, -1]).all()  # one token of overlap: each token a target once
    flat = np.concatenate([rows[0], *[r[1:] for r in rows[1:]]])
    # The stream is the corpus's documents in the epoch's order, BOS text EOS each.
    corpus = Corpus(find_shards([shard_dir]), 3)
    expected = []
    for position in range(corpus.num_documents):
        expected += [tokenizer.bos_id, *tokenizer.encode(corpus.document(0, position)[1]), tokenizer.eos_id]
        if len(expected) >= len(flat):
            break
    assert flat.tolist() == expected[:len(flat)]


def test_eos_ends_every_document_and_is_a_target(shard_dir, tokenizer):
    batches = PretrainBatches(_stream(shard_dir, tokenizer, fim_rate=0.5), batch_size=1024, micro_batch_size=1024)
    batch = batches.next_step()[0]
    eos_targets = (batch.targets == tokenizer.eos_id).sum()
    assert eos_targets > 0
    assert (batch.targets != IGNORE_INDEX).all()
    # Every EOS is followed by the next document's BOS (an EOS at a row's end has its BOS in the next row).
    inputs = batch.inputs.numpy()
    follows = inputs[:, 1:][inputs[:, :-1] == tokenizer.eos_id]
    assert (follows == tokenizer.bos_id).all()
    assert (batch.targets[:, :-1] == batch.inputs[:, 1:]).all()


def test_stream_is_deterministic_and_epochs_are_shuffled(shard_dir, tokenizer):
    a = _stream(shard_dir, tokenizer).take(40)
    b = _stream(shard_dir, tokenizer).take(40)
    c = _stream(shard_dir, tokenizer, seed=4).take(40)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    corpus = Corpus(find_shards([shard_dir]), 3)
    epoch0 = [corpus.document(0, i)[0] for i in range(corpus.num_documents)]
    epoch1 = [corpus.document(1, i)[0] for i in range(corpus.num_documents)]
    assert sorted(epoch0) == sorted(epoch1) and epoch0 != epoch1


def test_resuming_from_a_position_continues_the_same_stream(tmp_path, corpus_texts, tokenizer):
    # Short documents in two files, so the stream crosses epochs and files; some held out.
    lines = [line for _, text in corpus_texts[:6] for line in text.splitlines() if line.strip()]
    for i in range(2):
        records = [{"id": f"{i}-{k}", "text": "\n".join(lines[k:k + 5])} for k in range(i * 60, i * 60 + 60, 5)]
        (tmp_path / f"{i}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    keep = lambda doc_id: not held_out(doc_id, 0.2)  # noqa: E731
    whole = _stream(tmp_path, tokenizer, keep=keep)
    expected = [whole.take(7) for _ in range(60)]
    assert whole.position.epoch >= 2
    for k in (5, 23, 41):
        first = _stream(tmp_path, tokenizer, keep=keep)
        for _ in range(k):
            first.take(7)
        position = json.loads(json.dumps(first.position.__dict__))  # through JSON, as checkpoints do
        resumed = _stream(tmp_path, tokenizer, keep=keep)
        resumed.seek(StreamPosition(**position))
        got = [resumed.take(7) for _ in range(60 - k)]
        assert all(np.array_equal(g, e) for g, e in zip(got, expected[k:])), k


def test_held_out_documents_never_reach_training(shard_dir, tokenizer):
    corpus = Corpus(find_shards([shard_dir]), 3)
    documents = [corpus.document(0, i) for i in range(corpus.num_documents)]
    assert 0 < sum(held_out(doc_id, 0.2) for doc_id, _ in documents) < len(documents)
    assert held_out("x.py", 0.0) is False and held_out("x.py", 1.0) is True
    for side in (True, False):
        stream = _stream(shard_dir, tokenizer, fim_rate=0.0, keep=lambda i, s=side: held_out(i, 0.2) == s,
                         epochs=1)
        rows = stream.take(100_000)
        flat = np.concatenate([rows[0], *[r[1:] for r in rows[1:]]]).tolist()
        # Exactly that side's documents, in the epoch's order: none of the other side's.
        expected = [t for doc_id, text in documents if held_out(doc_id, 0.2) == side
                    for t in (tokenizer.bos_id, *tokenizer.encode(text), tokenizer.eos_id)]
        assert len(expected) - 33 < len(flat) <= len(expected)
        assert flat == expected[:len(flat)]


def test_inputs_are_checked(tmp_path, shard_dir):
    with pytest.raises(UserError, match="does not exist"):
        find_shards([tmp_path / "missing"])
    with pytest.raises(UserError, match="holds no"):
        find_shards([tmp_path])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"content": "no text field"}\n')
    corpus = Corpus(find_shards([bad]), 0)
    with pytest.raises(UserError, match="no string 'text'"):
        corpus.document(0, 0)
    assert corpus.num_documents == 2


def test_jsonl_and_text_files_are_documents(tmp_path, tokenizer):
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "alpha"}) + "\n\n" + json.dumps({"text": "beta"}) + "\n")
    (tmp_path / "c.txt").write_text("gamma")
    corpus = Corpus(find_shards([tmp_path / "a.jsonl", tmp_path / "c.txt"]), 0)
    texts = sorted(corpus.document(0, i)[1] for i in range(corpus.num_documents))
    assert texts == ["alpha", "beta", "gamma"]
