"""Instruction-tuning data: chats rendered with the chat template, loss only on the responses.

A record is `{"instruction": ..., "output": ...}` (Alpaca style, what DeepSeek's fine-tuning
script reads, optionally with "system") or `{"messages": [{"role": ..., "content": ...}, ...]}`.
Every assistant turn is trained on: its content, the line break and `<|EOT|>` the template
writes after it, so the model learns to end its turn. The prompt (system text, instructions,
`### Response:` headers) and padding are not targets. Padding is masked by position, never by
token id: the released tokenizers pad with EOS, a token base models must learn to produce.

Examples are packed whole into rows of seq_len + 1 tokens in an order shuffled per epoch; a row
that cannot take the next example is padded. An example longer than a row is cut to fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dscoder.errors import UserError
from dscoder.tokenizer import Tokenizer
from dscoder.train.data import JSONL_SUFFIXES, MicroBatch, json_record, held_out, micro_batches
from dscoder.train.distributed import Dist
from dscoder.train.loss import IGNORE_INDEX


@dataclass(frozen=True)
class Example:
    """A tokenized chat: ids, and per token its label (the id, or IGNORE_INDEX when the token
    is context, not a target)."""

    id: str
    ids: np.ndarray
    labels: np.ndarray

    @property
    def num_targets(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())


def record_messages(record: dict[str, Any], where: str) -> list[dict[str, str]]:
    """The chat of one JSONL record, in either layout."""
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise UserError(f"{where}: 'messages' must be a list of objects")
        messages = [{"role": m.get("role"), "content": m.get("content")} for m in messages]
    elif "instruction" in record and "output" in record:
        messages = [{"role": "user", "content": record["instruction"]},
                    {"role": "assistant", "content": record["output"]}]
        if record.get("system"):
            messages.insert(0, {"role": "system", "content": record["system"]})
    else:
        raise UserError(f"{where} needs 'instruction' and 'output' fields, or 'messages'")
    for message in messages:
        if message["role"] not in ("system", "user", "assistant") or not isinstance(message["content"], str):
            raise UserError(f"{where}: each message needs a role (system, user or assistant) and "
                            f"a string content")
    if not any(m["role"] == "assistant" for m in messages):
        raise UserError(f"{where} has no assistant message to learn from")
    first_reply = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
    if not any(m["role"] == "user" for m in messages[:first_reply]):
        raise UserError(f"{where}: an assistant message comes before any user message")
    return messages


def read_chats(paths: list[Path]) -> list[tuple[str, list[dict[str, str]]]]:
    """(id, messages) of every record of some JSONL files."""
    chats = []
    for path in paths:
        if path.suffix not in JSONL_SUFFIXES:
            raise UserError(f"instruction data must be JSONL ({', '.join(JSONL_SUFFIXES)}), got {path}")
        try:
            with path.open(encoding="utf-8") as lines:
                for number, line in enumerate(lines, start=1):
                    if line.strip():
                        record = json_record(path, number, line)
                        doc_id = str(record.get("id", f"{path.name}:{number}"))
                        chats.append((doc_id, record_messages(record, f"{path}:{number}")))
        except UnicodeDecodeError as error:
            raise UserError(f"{path} is not UTF-8 text") from error
        except OSError as error:
            raise UserError(f"cannot read {path}: {error}") from error
    if not chats:
        raise UserError("the instruction data holds no records")
    return chats


def tokenize_chat(tokenizer: Tokenizer, messages: list[dict[str, str]], doc_id: str = "") -> Example:
    """Ids of the whole chat, with labels only on each assistant turn's tokens up to `<|EOT|>`."""
    if tokenizer.eot_id is None:
        raise UserError("the tokenizer has no <|EOT|> token to end assistant turns with")
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=False)
    labels = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        # The turn's tokens are those the chat gains from its generation prompt to the end of
        # the turn: render both and check they are prefixes of the whole chat.
        start = len(tokenizer.apply_chat_template(messages[:k], add_generation_prompt=True))
        turn = tokenizer.apply_chat_template(messages[:k + 1], add_generation_prompt=False)
        if ids[:len(turn)] != turn or start > len(turn):
            raise UserError(f"chat {doc_id or '?'}: the chat template does not render turns as "
                            f"prefixes of the chat, so responses cannot be located")
        ends = [i for i in range(start, len(turn)) if turn[i] == tokenizer.eot_id]
        if not ends:
            raise UserError(f"chat {doc_id or '?'}: the chat template wrote no <|EOT|> after a response")
        labels[start:ends[-1] + 1] = ids[start:ends[-1] + 1]
    return Example(doc_id, np.asarray(ids, dtype=np.int64), labels)


def pack_examples(examples: list[Example], row_len: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows [R, row_len] of ids and of labels, each holding whole examples in the given order."""
    rows_ids: list[np.ndarray] = []
    rows_labels: list[np.ndarray] = []
    ids = np.full(row_len, pad_id, dtype=np.int64)
    labels = np.full(row_len, IGNORE_INDEX, dtype=np.int64)
    used = 0
    for example in examples:
        n = min(len(example.ids), row_len)
        if used + n > row_len:
            rows_ids.append(ids)
            rows_labels.append(labels)
            ids = np.full(row_len, pad_id, dtype=np.int64)
            labels = np.full(row_len, IGNORE_INDEX, dtype=np.int64)
            used = 0
        ids[used:used + n] = example.ids[:n]
        labels[used:used + n] = example.labels[:n]
        used += n
    if used:
        rows_ids.append(ids)
        rows_labels.append(labels)
    return np.stack(rows_ids), np.stack(rows_labels)


class SFTData:
    """The tokenized instruction set, split into training and held-out examples."""

    def __init__(self, paths: list[Path], tokenizer: Tokenizer, seq_len: int, eval_fraction: float,
                 eval_paths: list[Path] | None = None) -> None:
        self.row_len = seq_len + 1
        self.pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else tokenizer.eos_id
        chats = read_chats(paths)
        if eval_paths:
            train_chats, eval_chats = chats, read_chats(eval_paths)
        else:
            train_chats = [c for c in chats if not held_out(c[0], eval_fraction)]
            eval_chats = [c for c in chats if held_out(c[0], eval_fraction)]
        self.train = self._tokenize(train_chats, tokenizer)
        self.eval = self._tokenize(eval_chats, tokenizer)
        if not self.train:
            raise UserError("no instruction example is left for training; lower --eval-fraction")
        self.truncated = sum(len(e.ids) > self.row_len for e in self.train + self.eval)

    def _tokenize(self, chats: list[tuple[str, list[dict[str, str]]]], tokenizer: Tokenizer) -> list[Example]:
        examples = [tokenize_chat(tokenizer, messages, doc_id) for doc_id, messages in chats]
        # A response cut off entirely by truncation teaches nothing.
        return [e for e in examples if (e.labels[:self.row_len] != IGNORE_INDEX).any()]

    def epoch_rows(self, epoch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        order = np.random.default_rng([seed, epoch]).permutation(len(self.train))
        return pack_examples([self.train[i] for i in order], self.row_len, self.pad_id)

    def eval_rows(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.eval:
            return np.zeros((0, self.row_len), np.int64), np.zeros((0, self.row_len), np.int64)
        return pack_examples(self.eval, self.row_len, self.pad_id)


class SFTBatches:
    """Global batches of `batch_size` packed rows, epoch after epoch; position (epoch, row)."""

    def __init__(self, data: SFTData, batch_size: int, micro_batch_size: int, seed: int, dist: Dist) -> None:
        self.data, self.batch_size, self.micro_batch_size = data, batch_size, micro_batch_size
        self.seed, self.dist = seed, dist
        self.epoch, self.row = 0, 0
        self._rows = data.epoch_rows(0, seed)

    @property
    def rows_per_epoch(self) -> int:
        return len(self._rows[0])

    def next_step(self) -> list[MicroBatch]:
        ids, labels = [], []
        needed = self.batch_size
        while needed:
            take = min(needed, len(self._rows[0]) - self.row)
            ids.append(self._rows[0][self.row:self.row + take])
            labels.append(self._rows[1][self.row:self.row + take])
            self.row += take
            needed -= take
            if self.row == len(self._rows[0]):
                self._seek(self.epoch + 1, 0)
        return micro_batches(np.concatenate(ids), np.concatenate(labels), self.dist, self.micro_batch_size)

    def _seek(self, epoch: int, row: int) -> None:
        if epoch != self.epoch:
            self._rows = self.data.epoch_rows(epoch, self.seed)
        self.epoch, self.row = epoch, row

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "row": self.row}

    def load_state_dict(self, state: dict) -> None:
        self._seek(int(state["epoch"]), int(state["row"]))
