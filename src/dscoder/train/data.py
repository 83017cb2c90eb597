"""Pretraining data: documents from shards, fill-in-the-middle, packing into fixed-length rows.

The token stream is a pure function of the seed: each epoch visits the documents in an order
drawn from (seed, epoch), every document becomes `BOS text EOS` or, for a `fim_rate` share of
them, `BOS <fim_begin> prefix <fim_hole> suffix <fim_end> middle EOS` (PSM, split at two
random characters drawn from (seed, epoch, position of the document)), and the documents are
concatenated and cut into rows of seq_len + 1 tokens that overlap by one token, so every token
of the stream is a target exactly once. EOS is an ordinary target: the model learns to stop.

A place in the stream is three numbers (epoch, document, tokens of it already used), so a run
resumes by tokenizing one document, never by re-reading what came before. The stream does not
depend on how many processes read it: with several, each tokenizes its share of the next
documents and they exchange the tokens, so all hold the same global batch and take their rows.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import Tensor

from dscoder.errors import UserError
from dscoder.tokenizer import Tokenizer
from dscoder.train.distributed import Dist
from dscoder.train.loss import IGNORE_INDEX

TEXT_FIELD = "text"
ID_FIELD = "id"
PARQUET_SUFFIX = ".parquet"
JSONL_SUFFIXES = (".jsonl", ".ndjson")
# Shards whose texts stay in memory: the stream reads them in order, so two suffice.
CACHED_SHARDS = 2
# Characters read per missing token when more documents are needed. Code averages 3-4
# characters per token, so one round of reading usually covers what a step needs, while a
# round never reads much more than that.
CHARS_PER_MISSING_TOKEN = 2


# ---- shards and documents ----------------------------------------------------------------------

@dataclass(frozen=True)
class Shard:
    """One input file: a Parquet shard, a JSONL file (a document per line) or a text file."""

    path: Path
    num_documents: int


def find_shards(paths: Sequence[str | Path]) -> list[Shard]:
    """The input files in a stable order: files as given, directories' Parquet shards (or, with
    none, their JSONL files) in name order."""
    files: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            found = sorted(entry.rglob(f"*{PARQUET_SUFFIX}")) or sorted(
                p for suffix in JSONL_SUFFIXES for p in entry.rglob(f"*{suffix}"))
            if not found:
                raise UserError(f"{entry} holds no {PARQUET_SUFFIX} or JSONL files")
            files += found
        elif entry.is_file():
            files.append(entry)
        else:
            raise UserError(f"training data {entry} does not exist")
    if not files:
        raise UserError("no training data given")
    return [Shard(path, _count_documents(path)) for path in files]


def _count_documents(path: Path) -> int:
    try:
        if path.suffix == PARQUET_SUFFIX:
            parquet = pq.ParquetFile(path)
            if TEXT_FIELD not in parquet.schema_arrow.names:
                raise UserError(f"{path} has no '{TEXT_FIELD}' column")
            return parquet.metadata.num_rows
        if path.suffix in JSONL_SUFFIXES:
            with path.open("rb") as f:
                return sum(1 for line in f if line.strip())
        return 1
    except OSError as error:
        raise UserError(f"cannot read {path}: {error}") from error
    except Exception as error:  # pyarrow raises ArrowInvalid and friends for broken files
        if isinstance(error, UserError):
            raise
        raise UserError(f"{path} is not a readable Parquet file: {error}") from error


def read_shard(path: Path) -> tuple[list[str], list[str]]:
    """(ids, texts) of every document of a shard, in file order.

    Documents without an id get `<file name>:<row>`, stable as long as the file is.
    """
    try:
        if path.suffix == PARQUET_SUFFIX:
            names = pq.ParquetFile(path).schema_arrow.names
            columns = [TEXT_FIELD] + ([ID_FIELD] if ID_FIELD in names else [])
            table = pq.read_table(path, columns=columns)
            texts = [t or "" for t in table.column(TEXT_FIELD).to_pylist()]
            ids = ([str(i) for i in table.column(ID_FIELD).to_pylist()] if ID_FIELD in names
                   else [f"{path.name}:{row}" for row in range(len(texts))])
            return ids, texts
        if path.suffix in JSONL_SUFFIXES:
            ids, texts = [], []
            with path.open(encoding="utf-8") as lines:
                for number, line in enumerate(lines, start=1):
                    if not line.strip():
                        continue
                    record = json_record(path, number, line)
                    text = record.get(TEXT_FIELD)
                    if not isinstance(text, str):
                        raise UserError(f"{path}:{number} has no string '{TEXT_FIELD}' field")
                    ids.append(str(record.get(ID_FIELD, f"{path.name}:{number}")))
                    texts.append(text)
            return ids, texts
        return [path.name], [path.read_text(encoding="utf-8")]
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not UTF-8 text") from error
    except OSError as error:
        raise UserError(f"cannot read {path}: {error}") from error


def json_record(path: Path, number: int, line: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}:{number} is not JSON: {error}") from error
    if not isinstance(record, dict):
        raise UserError(f"{path}:{number} is not a JSON object")
    return record


class Corpus:
    """The documents of some shards, in an order shuffled per epoch, looked up by position.

    The order permutes the shards and the rows within each shard, so a sequential reader loads
    each shard once per epoch while neighbouring documents still come from unrelated places.
    """

    def __init__(self, shards: Sequence[Shard], seed: int) -> None:
        self.shards = list(shards)
        self.seed = seed
        self.num_documents = sum(s.num_documents for s in self.shards)
        if self.num_documents == 0:
            raise UserError("the training data holds no documents")
        self._epoch_orders: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._rows: dict[tuple[int, int], np.ndarray] = {}
        self._cache: OrderedDict[int, tuple[list[str], list[str]]] = OrderedDict()

    def _epoch_order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(shard order, first position of each shard in that order) for one epoch."""
        if epoch not in self._epoch_orders:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.shards))
            sizes = np.array([self.shards[i].num_documents for i in order], dtype=np.int64)
            self._epoch_orders = {epoch: (order, np.cumsum(sizes) - sizes)}
        return self._epoch_orders[epoch]

    def _shard(self, index: int) -> tuple[list[str], list[str]]:
        if index in self._cache:
            self._cache.move_to_end(index)
        else:
            ids, texts = read_shard(self.shards[index].path)
            if len(texts) != self.shards[index].num_documents:
                raise UserError(f"{self.shards[index].path} changed while training read it")
            self._cache[index] = ids, texts
            while len(self._cache) > CACHED_SHARDS:
                self._cache.popitem(last=False)
        return self._cache[index]

    def document(self, epoch: int, position: int) -> tuple[str, str]:
        """(id, text) of the document at `position` (0 <= position < num_documents) of `epoch`."""
        order, starts = self._epoch_order(epoch)
        k = int(np.searchsorted(starts, position, side="right")) - 1
        shard = int(order[k])
        key = (epoch, shard)
        if key not in self._rows:
            rng = np.random.default_rng([self.seed, epoch, shard])
            self._rows = {key: rng.permutation(self.shards[shard].num_documents)}
        ids, texts = self._shard(shard)
        row = int(self._rows[key][position - int(starts[k])])
        return ids[row], texts[row]


def held_out(document_id: str, fraction: float) -> bool:
    """Whether a document belongs to the held-out set: a hash of its id, so the same documents
    are held out by every run over the same data, whatever its seed."""
    digest = hashlib.blake2b(document_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") < fraction * 2.0**64


# ---- fill-in-the-middle -------------------------------------------------------------------------

def fim_split(text: str, rng: np.random.Generator) -> tuple[str, str, str]:
    """(prefix, middle, suffix) at two uniform random character positions; any may be empty."""
    a, b = sorted(int(x) for x in rng.integers(0, len(text) + 1, size=2))
    return text[:a], text[a:b], text[b:]


@dataclass(frozen=True)
class DocumentEncoder:
    """Turns documents into their training tokens, FIM or not, decided by (seed, epoch, position)."""

    tokenizer: Tokenizer
    fim_rate: float
    seed: int

    def pieces(self, text: str, epoch: int, position: int) -> list[str]:
        """[text], or [prefix, suffix, middle] for a FIM document (in PSM order)."""
        rng = np.random.default_rng([self.seed, epoch, position])
        if rng.random() < self.fim_rate:
            prefix, middle, suffix = fim_split(text, rng)
            return [prefix, suffix, middle]
        return [text]

    def assemble(self, encoded: list[list[int]]) -> np.ndarray:
        """The document's tokens from its encoded pieces (each piece is encoded on its own)."""
        t = self.tokenizer
        if len(encoded) == 1:
            tokens = [t.bos_id, *encoded[0], t.eos_id]
        else:
            prefix, suffix, middle = encoded
            tokens = [t.bos_id, t.fim_begin_id, *prefix, t.fim_hole_id, *suffix, t.fim_end_id,
                      *middle, t.eos_id]
        return np.asarray(tokens, dtype=np.int32)

    def encode(self, documents: list[tuple[str, int, int]]) -> list[np.ndarray]:
        """Tokens of (text, epoch, position) documents, encoded in one batch."""
        pieces = [self.pieces(text, epoch, position) for text, epoch, position in documents]
        flat = self.tokenizer.encode_batch([p for doc in pieces for p in doc])
        out, i = [], 0
        for doc in pieces:
            out.append(self.assemble(flat[i:i + len(doc)]))
            i += len(doc)
        return out


# ---- the packed stream --------------------------------------------------------------------------

@dataclass
class StreamPosition:
    """The first token not yet used: `offset` tokens into the document at `position` of `epoch`."""

    epoch: int = 0
    position: int = 0
    offset: int = 0


class PackedStream:
    """Documents of a corpus, encoded and concatenated, taken as rows of seq_len + 1 tokens.

    `keep(id)` chooses the documents (training or held-out ones). With `epochs` set the stream
    ends after that many epochs; otherwise it cycles forever. `max_document_tokens` cuts each
    document short (held-out rows use it so that they sample many documents, not one long one).
    """

    def __init__(self, corpus: Corpus, encoder: DocumentEncoder, seq_len: int, dist: Dist,
                 keep: Callable[[str], bool] = lambda _id: True, epochs: int | None = None,
                 max_document_tokens: int | None = None) -> None:
        self.corpus, self.encoder, self.seq_len, self.dist = corpus, encoder, seq_len, dist
        self.keep, self.epochs, self.max_document_tokens = keep, epochs, max_document_tokens
        self._start = StreamPosition()
        self._reset(self._start)

    def _reset(self, start: StreamPosition) -> None:
        self._start = StreamPosition(**asdict(start))
        # Encoded documents from the start position on: (epoch, position, tokens).
        self._pending: deque[tuple[int, int, np.ndarray]] = deque()
        self._pending_tokens = 0
        self._next = (start.epoch, start.position)  # the next document to read
        self._skip = start.offset  # tokens of the first document read that are already used
        self._passed_over = 0  # documents rejected by `keep` since the last one kept

    @property
    def position(self) -> StreamPosition:
        return StreamPosition(**asdict(self._start))

    def seek(self, position: StreamPosition) -> None:
        self._reset(position)

    def _read_documents(self, min_chars: int) -> list[tuple[str, int, int]]:
        """The next kept documents as (text, epoch, position), at least `min_chars` of text
        (less where a bounded stream ends)."""
        found, chars = [], 0
        while chars < min_chars:
            epoch, position = self._next
            if position == self.corpus.num_documents:
                if self.epochs is not None and epoch + 1 >= self.epochs:
                    break
                self._next = (epoch + 1, 0)
                continue
            self._next = (epoch, position + 1)
            doc_id, text = self.corpus.document(epoch, position)
            if self.keep(doc_id):
                self._passed_over = 0
                found.append((text, epoch, position))
                chars += max(len(text), 1)
            else:
                self._passed_over += 1
                if self._passed_over > self.corpus.num_documents:
                    raise UserError("every training document is held out for evaluation; lower "
                                    "--eval-fraction or give --eval-data")
        return found

    def _fill(self, needed: int) -> None:
        """Read and encode documents until `needed` tokens are pending (or the data ends)."""
        world, rank = self.dist.world_size, self.dist.rank
        while self._pending_tokens < needed:
            # Every process reads the same documents and tokenizes every world_size-th one (in
            # one batch, which the Rust tokenizer spreads over threads), then they swap tokens.
            batch = self._read_documents((needed - self._pending_tokens) * CHARS_PER_MISSING_TOKEN)
            if not batch:
                return
            mine = self.encoder.encode(batch[rank::world])
            if world > 1:
                gathered = self.dist.all_gather_objects(mine)
                encoded = [gathered[i % world][i // world] for i in range(len(batch))]
            else:
                encoded = mine
            for (_, epoch, position), tokens in zip(batch, encoded):
                tokens = tokens[:self.max_document_tokens]
                if self._skip:
                    tokens, self._skip = tokens[self._skip:], 0
                self._pending.append((epoch, position, tokens))
                self._pending_tokens += len(tokens)

    def take(self, rows: int) -> np.ndarray:
        """The next `rows` rows [rows, seq_len + 1] (fewer if a bounded stream ends)."""
        t = self.seq_len
        self._fill(rows * t + 1)
        rows = min(rows, max(self._pending_tokens - 1, 0) // t)
        if rows == 0:
            return np.zeros((0, t + 1), dtype=np.int32)
        flat = np.concatenate([tokens for _, _, tokens in self._pending])[:rows * t + 1]
        out = np.lib.stride_tricks.sliding_window_view(flat, t + 1)[::t].copy()
        self._consume(rows * t)
        return out

    def _consume(self, count: int) -> None:
        while count:
            epoch, position, tokens = self._pending[0]
            used = min(count, len(tokens))
            count -= used
            self._pending_tokens -= used
            self._start.offset += used
            if used == len(tokens):
                self._pending.popleft()
                self._advance_start()
            else:
                self._pending[0] = (epoch, position, tokens[used:])

    def _advance_start(self) -> None:
        # Past a used-up document, the start is the next pending document, or the reader's
        # next one if none is pending (held-out documents in between need not be re-read).
        if self._pending:
            epoch, position = self._pending[0][:2]
        else:
            epoch, position = self._next
        self._start = StreamPosition(epoch, position, 0)


# ---- batches for a training step ----------------------------------------------------------------

@dataclass
class MicroBatch:
    """inputs [B, T] and targets [B, T] (IGNORE_INDEX where nothing is learned)."""

    inputs: Tensor
    targets: Tensor

    @property
    def num_targets(self) -> int:
        return int((self.targets != IGNORE_INDEX).sum())


def micro_batches(rows: np.ndarray, labels: np.ndarray, dist: Dist,
                  micro_batch_size: int) -> list[MicroBatch]:
    """This process's share of a global batch of rows [G, T + 1], as micro-batches.

    Process r takes rows [r G/W, (r+1) G/W), so the global batch is the same whatever the
    number of processes; `labels` gives the target of each token (IGNORE_INDEX: none).
    """
    share = rows.shape[0] // dist.world_size
    mine = slice(dist.rank * share, (dist.rank + 1) * share)
    inputs = torch.from_numpy(rows[mine, :-1].astype(np.int64))
    targets = torch.from_numpy(labels[mine, 1:].astype(np.int64))
    return [MicroBatch(inputs[i:i + micro_batch_size], targets[i:i + micro_batch_size])
            for i in range(0, share, micro_batch_size)]


class PretrainBatches:
    """Global batches of `batch_size` packed rows from a stream; no token is masked."""

    def __init__(self, stream: PackedStream, batch_size: int, micro_batch_size: int) -> None:
        self.stream, self.batch_size, self.micro_batch_size = stream, batch_size, micro_batch_size

    def next_step(self) -> list[MicroBatch]:
        rows = self.stream.take(self.batch_size)
        return micro_batches(rows, rows, self.stream.dist, self.micro_batch_size)

    def state_dict(self) -> dict:
        return asdict(self.stream.position)

    def load_state_dict(self, state: dict) -> None:
        self.stream.seek(StreamPosition(**state))


def eval_rows(stream: PackedStream, count: int) -> np.ndarray:
    """Up to `count` rows of a (bounded) held-out stream, read once and kept for every evaluation."""
    return stream.take(count)
