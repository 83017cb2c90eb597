"""Decontamination (SPEC 1.5): drop files that share a 10-gram with benchmark test data, or that
contain a short benchmark string (3 to 9 tokens) exactly.

Tokens are maximal runs of ASCII letters, digits, `_` and non-ASCII bytes (so a UTF-8 word stays
one token), compared case-insensitively; everything else separates tokens. Each token is hashed
to 64 bits and an n-gram's hash combines its tokens' hashes, all vectorised with numpy, so a file
is checked without a Python-level loop over its n-grams. Which benchmark fields are used, and the
rules that keep boilerplate from flagging ordinary code, are in docs/data-rules.md.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from dscoder.errors import UserError

NGRAM = 10
MIN_SHORT_TOKENS = 3  # benchmark strings of 3..NGRAM-1 tokens must appear exactly
# An n-gram in this many records of one file is boilerplate (an import header, a test harness);
# two records may share one, since benchmarks hold near-duplicate tasks (MBPP does).
BOILERPLATE_MIN_RECORDS = 3
# A benchmark n-gram counts only if it holds this many distinct words (tokens of 2+ characters
# with a letter) or a snake_case/camelCase identifier. Runs such as `a b c d e f g h i j` or
# `for i in range n for j in range n` are in ordinary code; docs/data-rules.md has the numbers.
MIN_DISTINCT_WORDS = 4
MIN_WORD_LENGTH = 2
BENCHMARK_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")

# --- tokens and their hashes ----------------------------------------------------------------

_WORD_BYTE = np.zeros(256, dtype=bool)
_WORD_BYTE[[*b"0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"]] = True
_WORD_BYTE[0x80:] = True
_LETTER_BYTE = _WORD_BYTE.copy()
_LETTER_BYTE[[*b"0123456789_"]] = False
_ASCII_ALNUM_BYTE = np.zeros(256, dtype=bool)
_ASCII_ALNUM_BYTE[[*b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"]] = True
_LOWER_BYTE = np.zeros(256, dtype=bool)
_LOWER_BYTE[ord("a") : ord("z") + 1] = True
_UPPER_BYTE = np.zeros(256, dtype=bool)
_UPPER_BYTE[ord("A") : ord("Z") + 1] = True
# Byte value + 1 (so that no byte hashes as zero), ASCII upper case folded to lower case.
_FOLDED = np.arange(1, 257, dtype=np.uint64)
_FOLDED[ord("A") : ord("Z") + 1] += 32

_BYTE_BASE = 0x100000001B3  # odd, so invertible modulo 2**64
_NGRAM_BASE = np.uint64(0x9E3779B97F4A7C15)
_CHUNK_BYTES = 1 << 20  # texts are hashed in pieces of at most this size, cut between tokens


@lru_cache(maxsize=1)
def _powers() -> tuple[np.ndarray, np.ndarray]:
    """_BYTE_BASE**i and its inverse modulo 2**64 for i < _CHUNK_BYTES (uint64 wraps around)."""
    inverse = pow(_BYTE_BASE, -1, 1 << 64)
    tables = []
    for base in (_BYTE_BASE, inverse):
        table = np.empty(_CHUNK_BYTES, dtype=np.uint64)
        table[0] = 1
        np.cumprod(np.full(_CHUNK_BYTES - 1, base, dtype=np.uint64), out=table[1:])
        tables.append(table)
    return tables[0], tables[1]


def _mix(x: np.ndarray) -> np.ndarray:
    # splitmix64's finaliser: spreads the polynomial hash so every output bit depends on every byte
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@dataclass
class Tokens:
    """A text's tokens: 64-bit hashes and, on request, each token's byte offset, whether it is a
    word (MIN_WORD_LENGTH or more bytes, one of them a letter) and whether it is an identifier in
    snake_case or camelCase."""

    hashes: np.ndarray
    offsets: np.ndarray | None = None
    words: np.ndarray | None = None
    identifiers: np.ndarray | None = None


def tokenize(text: str, detailed: bool = False) -> Tokens:
    """The tokens of `text`, in order. Equal tokens (ignoring ASCII case) get equal hashes in every
    process, so hashes computed in one worker can be looked up in tables built in another."""
    data = np.frombuffer(text.encode("utf-8", "replace"), dtype=np.uint8)
    pieces = []
    start = 0
    while start < data.size:
        end = min(start + _CHUNK_BYTES, data.size)
        if end < data.size:
            # Cut after the last separator so no token is split; a 1 MiB token is cut anyway.
            separators = np.flatnonzero(~_WORD_BYTE[data[start:end]])
            if separators.size:
                end = start + int(separators[-1]) + 1
        pieces.append(_tokenize_chunk(data[start:end], start, detailed))
        start = end
    if not pieces:  # the empty text
        return _tokenize_chunk(data, 0, detailed)
    if len(pieces) == 1:
        return pieces[0]
    hashes = np.concatenate([piece.hashes for piece in pieces])
    if not detailed:
        return Tokens(hashes)
    offsets, words, identifiers = (
        np.concatenate([getattr(piece, name) for piece in pieces]) for name in ("offsets", "words", "identifiers")
    )
    return Tokens(hashes, offsets, words, identifiers)


def _tokenize_chunk(data: np.ndarray, base_offset: int, detailed: bool) -> Tokens:
    positions = np.flatnonzero(_WORD_BYTE[data])
    if positions.size == 0:
        empty = np.empty(0, np.uint64)
        return Tokens(empty, np.empty(0, np.int64), np.empty(0, bool), np.empty(0, bool)) if detailed else Tokens(empty)
    starts = np.flatnonzero(np.diff(positions, prepend=-2) != 1)  # token starts, as indices into positions
    word_bytes = data[positions]
    power, inverse_power = _powers()
    terms = _FOLDED[word_bytes] * power[: positions.size]
    # Each token's polynomial, shifted back so that it does not depend on where the token sits.
    hashes = _mix(np.add.reduceat(terms, starts) * inverse_power[starts])
    if not detailed:
        return Tokens(hashes)
    lengths = np.diff(starts, append=positions.size)
    has_letter = np.add.reduceat(_LETTER_BYTE[word_bytes], starts) > 0
    words = has_letter & (lengths >= MIN_WORD_LENGTH)
    return Tokens(hashes, positions[starts] + base_offset, words, _identifiers(word_bytes, starts))


def _identifiers(word_bytes: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """For each token (word_bytes cut at starts): does it contain `a_b` or `aB`?"""
    token_start = np.zeros(word_bytes.size, dtype=bool)
    token_start[starts] = True
    token_of_byte = np.cumsum(token_start) - 1
    alnum = _ASCII_ALNUM_BYTE[word_bytes]
    pattern_at = np.zeros(word_bytes.size, dtype=bool)
    same_token = token_of_byte[:-1] == token_of_byte[1:]
    pattern_at[:-1] |= _LOWER_BYTE[word_bytes[:-1]] & _UPPER_BYTE[word_bytes[1:]] & same_token
    pattern_at[:-2] |= alnum[:-2] & (word_bytes[1:-1] == ord("_")) & alnum[2:] & same_token[:-1] & same_token[1:]
    return np.add.reduceat(pattern_at, starts) > 0


def _extend(ngrams: np.ndarray, hashes: np.ndarray, length: int) -> np.ndarray:
    """Hashes of the `length`-grams from those of the (`length`-1)-grams (Horner's rule)."""
    count = max(hashes.size - length + 1, 0)
    return ngrams[:count] * _NGRAM_BASE + hashes[length - 1 : length - 1 + count]


def ngram_hashes(hashes: np.ndarray, length: int) -> np.ndarray:
    """The hash of every run of `length` consecutive tokens (empty when there are fewer)."""
    if hashes.size < length:
        return np.empty(0, np.uint64)
    ngrams = hashes.copy()
    for current in range(2, length + 1):
        ngrams = _extend(ngrams, hashes, current)
    return ngrams


# --- benchmark files ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Schema:
    """How to read one benchmark's records: which fields hold test data and which names a record."""

    name: str
    required: frozenset[str]  # fields that identify the benchmark
    fields: tuple[str, ...]  # text fields (a list field contributes each of its strings)
    id_field: str | None = None
    joined: tuple[str, ...] = ()  # fields read as one text, in this order
    variant_field: str | None = None  # appended to the name, e.g. MultiPL-E's language

    def texts(self, record: dict) -> list[str]:
        texts = [text for field in self.fields for text in _strings(record.get(field))]
        if self.joined:
            texts.append(" ".join(text for field in self.joined for text in _strings(record.get(field))))
        return texts

    def label(self, record: dict, index: int) -> str:
        name = self.name
        if self.variant_field and isinstance(record.get(self.variant_field), str):
            name = f"{name}-{record[self.variant_field]}"
        return f"{name} {_record_id(record, self.id_field, index)}"


# Matched in this order against each file's first record; see docs/data-rules.md for why these
# fields. HumanEval-X and MultiPL-E are the DeepSeek multilingual files.
_SCHEMAS = (
    _Schema(
        "humaneval",
        required=frozenset({"task_id", "prompt", "canonical_solution", "test", "entry_point"}),
        fields=("prompt", "canonical_solution", "test"),
        id_field="task_id",
    ),
    _Schema(
        "humaneval-x",
        required=frozenset({"task_id", "prompt", "canonical_solution", "test", "declaration"}),
        fields=("prompt", "canonical_solution", "test"),
        id_field="task_id",
    ),
    _Schema(
        "multipl-e",
        required=frozenset({"name", "language", "prompt", "tests"}),
        fields=("prompt", "tests"),
        id_field="name",
        variant_field="language",
    ),
    _Schema(
        "mbpp",
        required=frozenset({"text", "code", "test_list"}),
        fields=("text", "code", "test_list", "test_setup_code", "challenge_test_list"),
        id_field="task_id",
    ),
    _Schema(
        "mbpp",  # DeepSeek's mbpp_test.jsonl
        required=frozenset({"prompt", "code", "test", "task_id"}),
        fields=("prompt", "code", "test"),
        id_field="task_id",
    ),
    _Schema("gsm-hard", required=frozenset({"input", "code", "target"}), fields=("input", "code"), id_field="idx"),
    _Schema("gsm8k", required=frozenset({"question", "answer"}), fields=("question", "answer"), id_field="idx"),
    _Schema("math", required=frozenset({"problem", "solution"}), fields=("problem", "solution"), id_field="idx"),
    _Schema(
        "svamp",
        required=frozenset({"Body", "Question", "Equation"}),
        fields=(),
        id_field="ID",
        joined=("Body", "Question"),  # the question alone is often a generic phrase
    ),
)
_ID_FIELDS = ("task_id", "id", "ID", "idx", "name")


def _strings(value) -> list[str]:
    """Every string in a JSON value, depth first."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    return []


def _record_id(record, id_field: str | None, index: int) -> str:
    fields = (id_field,) if id_field else _ID_FIELDS
    for field in fields:
        if isinstance(record, dict) and isinstance(record.get(field), (str, int)):
            return str(record[field])
    return f"#{index}"


class _AnyStrings(_Schema):
    """Unknown files: every string anywhere in a record is test data."""

    def texts(self, record) -> list[str]:
        return _strings(record)


def _schema_for(path: Path, first_record) -> _Schema:
    if isinstance(first_record, dict):
        for schema in _SCHEMAS:
            if schema.required <= first_record.keys():
                return schema
    stem = path.name.split(".", 1)[0]
    return _AnyStrings(stem, frozenset(), ())


def _read_records(path: Path) -> list:
    """The JSON values of a benchmark file: a JSON document's list items, or one per JSON line."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            content = handle.read()
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise UserError(f"cannot read benchmark file {path}: {error}") from error
    if path.name.endswith((".json", ".json.gz")):
        try:
            document = json.loads(content)
        except json.JSONDecodeError:
            pass  # many ".json" benchmark files are really JSON Lines (DeepSeek's PAL-Math copies)
        else:
            return document if isinstance(document, list) else [document]
    records = []
    for number, line in enumerate(content.splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise UserError(f"benchmark file {path} line {number} is not JSON: {error.msg}") from error
    return records


# --- short strings --------------------------------------------------------------------------

# Token text exactly as the byte-level tokenizer cuts it (a non-ASCII character is a word byte).
_TOKEN_TEXT = re.compile(r"[0-9A-Za-z_\u0080-\U0010FFFF]+")
_IDENTIFIER = re.compile(r"[0-9A-Za-z]_[0-9A-Za-z]|[a-z][A-Z]")  # snake_case or camelCase


def _short_entry(text: str, hashes: np.ndarray) -> tuple[int, int, int] | None:
    """(hash of the first two tokens, length, hash of all tokens) of a distinctive short string.

    A short string is matched only when it holds a token that names something specific: an
    identifier in snake_case or camelCase (a task's function name, as in MBPP's asserts) or a
    number of two or more digits (a maths problem's constants), and a token with a letter.
    Strings of common words, such as `return len(string)` or "How much did each book cost?",
    would flag ordinary files.
    """
    tokens = _TOKEN_TEXT.findall(text)
    if len(tokens) != hashes.size or not any(token.strip("0123456789_") for token in tokens):
        return None
    if not any(_IDENTIFIER.search(token) or (token.isdigit() and len(token) >= 2) for token in tokens):
        return None
    return int(ngram_hashes(hashes[:2], 2)[0]), int(hashes.size), int(ngram_hashes(hashes, hashes.size)[0])


def _informative(tokens: Tokens, batch: int = 1 << 17) -> np.ndarray:
    """For each NGRAM-gram of `tokens`: whether it holds MIN_DISTINCT_WORDS distinct words or an
    identifier (snake_case or camelCase, such as a task's function name)."""
    identifier_counts = np.concatenate(([0], np.cumsum(tokens.identifiers)))
    with_identifier = identifier_counts[NGRAM:] - identifier_counts[:-NGRAM] > 0
    word_hashes = np.where(tokens.words, tokens.hashes, np.uint64(0))  # 0 marks a non-word
    windows = np.lib.stride_tricks.sliding_window_view(word_hashes, NGRAM)
    result = np.empty(windows.shape[0], dtype=bool)
    for start in range(0, windows.shape[0], batch):  # sorted copies in batches bound the memory
        rows = np.sort(windows[start : start + batch], axis=1)
        new_word = rows != 0
        new_word[:, 1:] &= rows[:, 1:] != rows[:, :-1]
        result[start : start + batch] = new_word.sum(axis=1) >= MIN_DISTINCT_WORDS
    return result | with_identifier


# --- the matcher ----------------------------------------------------------------------------

# Presence tables indexed by the top bits of a hash let `match` skip the binary search for nearly
# every n-gram: 16 MiB for the benchmark 10-grams, 1 MiB for the first bigrams of short strings.
_NGRAM_TABLE_BITS = 24
_BIGRAM_TABLE_BITS = 20


def _presence_table(keys: np.ndarray, bits: int) -> np.ndarray:
    table = np.zeros(1 << bits, dtype=bool)
    table[keys >> np.uint64(64 - bits)] = True
    return table


def _lookup(table: np.ndarray, bits: int, values: np.ndarray) -> np.ndarray:
    return table[values >> np.uint64(64 - bits)]


class Decontaminator:
    """Benchmark n-grams and short strings, and the test of a text against them.

    Picklable (numpy arrays and strings); the presence tables that speed up `match` are rebuilt
    on first use in each process rather than shipped.
    """

    def __init__(
        self,
        labels: list[str],
        ngrams: np.ndarray,
        ngram_labels: np.ndarray,
        short_strings: list[tuple[int, int, int, int]],
    ) -> None:
        """`short_strings`: (first-bigram hash, length, hash, label index) for each short string."""
        self._labels = labels
        order = np.argsort(ngrams, kind="stable")
        self._ngrams = ngrams[order]
        self._ngram_labels = ngram_labels[order]
        columns = list(zip(*sorted(short_strings))) if short_strings else [()] * 4
        self._short_bigrams = np.array(columns[0], dtype=np.uint64)
        self._short_lengths = np.array(columns[1], dtype=np.int64)
        self._short_keys = np.array(columns[2], dtype=np.uint64)
        self._short_labels = np.array(columns[3], dtype=np.int64)
        self._tables: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def from_dir(cls, directory: str | os.PathLike) -> Decontaminator:
        """Read every benchmark file (*.jsonl, *.jsonl.gz, *.json, *.json.gz) under `directory`."""
        root = Path(directory)
        if not root.is_dir():
            raise UserError(f"benchmark folder {root} does not exist or is not a folder")
        paths = sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(BENCHMARK_SUFFIXES))
        if not paths:
            patterns = ", ".join("*" + suffix for suffix in BENCHMARK_SUFFIXES)
            raise UserError(f"benchmark folder {root} holds no benchmark files ({patterns})")
        builder = _Builder()
        for path in paths:
            builder.add_file(path)
        decontaminator = builder.build()
        if decontaminator.size == (0, 0):
            raise UserError(f"the benchmark files in {root} hold no text that can be matched")
        return decontaminator

    @property
    def size(self) -> tuple[int, int]:
        """(number of benchmark n-grams, number of short strings) this matcher knows."""
        return int(self._ngrams.size), int(self._short_keys.size)

    def match(self, text: str) -> str | None:
        """None if `text` is clean, else what it matched, e.g. "humaneval HumanEval/12 (10-gram)"."""
        hashes = tokenize(text).hashes
        if hashes.size < MIN_SHORT_TOKENS:
            return None
        bigrams = ngram_hashes(hashes, 2)
        grams = bigrams
        for length in range(3, NGRAM + 1):
            grams = _extend(grams, hashes, length)
        return self._match_ngrams(grams) or self._match_short(hashes, bigrams)

    def _match_ngrams(self, grams: np.ndarray) -> str | None:
        grams = grams[_lookup(self._presence()[0], _NGRAM_TABLE_BITS, grams)]
        if grams.size == 0 or self._ngrams.size == 0:
            return None
        where = np.minimum(np.searchsorted(self._ngrams, grams), self._ngrams.size - 1)
        found = np.flatnonzero(self._ngrams[where] == grams)
        if found.size == 0:
            return None
        return f"{self._labels[self._ngram_labels[where[found[0]]]]} ({NGRAM}-gram)"

    def _match_short(self, hashes: np.ndarray, bigrams: np.ndarray) -> str | None:
        starts = np.flatnonzero(_lookup(self._presence()[1], _BIGRAM_TABLE_BITS, bigrams))
        if starts.size == 0 or self._short_bigrams.size == 0:
            return None
        first = np.searchsorted(self._short_bigrams, bigrams[starts], side="left")
        last = np.searchsorted(self._short_bigrams, bigrams[starts], side="right")
        starts, first, last = starts[last > first], first[last > first], last[last > first]
        if starts.size == 0:
            return None
        # One candidate per (place in the text, short string that begins with the bigram there).
        per_start = last - first
        rank = np.arange(per_start.sum()) - np.repeat(np.cumsum(per_start) - per_start, per_start)
        entries = np.repeat(first, per_start) + rank
        starts = np.repeat(starts, per_start)
        lengths = self._short_lengths[entries]
        fits = starts + lengths <= hashes.size
        keys = np.zeros(entries.size, dtype=np.uint64)
        for k in range(int(lengths.max())):
            token = hashes[np.minimum(starts + k, hashes.size - 1)]
            keys = np.where(k < lengths, keys * _NGRAM_BASE + token, keys)
        found = np.flatnonzero(fits & (keys == self._short_keys[entries]))
        if found.size == 0:
            return None
        return f"{self._labels[self._short_labels[entries[found[0]]]]} (exact)"

    def _presence(self) -> tuple[np.ndarray, np.ndarray]:
        if self._tables is None:
            self._tables = (
                _presence_table(self._ngrams, _NGRAM_TABLE_BITS),
                _presence_table(self._short_bigrams, _BIGRAM_TABLE_BITS),
            )
        return self._tables

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_tables"] = None
        return state


class _Builder:
    """Collects one benchmark file after another into a Decontaminator."""

    def __init__(self) -> None:
        self.labels: list[str] = []
        self.ngrams: list[np.ndarray] = []
        self.ngram_labels: list[np.ndarray] = []
        self.short_strings: list[tuple[int, int, int, int]] = []

    def add_file(self, path: Path) -> None:
        records = _read_records(path)
        if not records:
            return
        schema = _schema_for(path, records[0])
        texts: list[str] = []
        owners: list[int] = []  # label index of each text's record
        for index, record in enumerate(records):
            owners.extend([len(self.labels)] * self._add_texts(schema, record, index, texts))
        if not texts:
            return
        # One tokenizer pass over the whole file: the texts joined by a separator byte, each
        # token then assigned to its text by byte offset (thousands of small numpy calls are slow).
        tokens = tokenize("\n".join(texts), detailed=True)
        text_starts = np.cumsum([0] + [len(text.encode("utf-8", "replace")) + 1 for text in texts[:-1]])
        text_of_token = np.searchsorted(text_starts, tokens.offsets, side="right") - 1
        self._add_ngrams(tokens, text_of_token, np.asarray(owners, dtype=np.int64))
        self._add_short_strings(texts, owners, tokens.hashes, text_of_token)

    def _add_texts(self, schema: _Schema, record, index: int, texts: list[str]) -> int:
        if isinstance(record, dict):
            self.labels.append(schema.label(record, index))
            new = schema.texts(record)
        else:
            self.labels.append(f"{schema.name} #{index}")
            new = _strings(record)
        texts.extend(new)
        return len(new)

    def _add_ngrams(self, tokens: Tokens, text_of_token: np.ndarray, owners: np.ndarray) -> None:
        grams = ngram_hashes(tokens.hashes, NGRAM)
        if grams.size == 0:
            return
        first_text = text_of_token[: grams.size]
        # Windows across two texts do not exist in the benchmark.
        keep = (first_text == text_of_token[NGRAM - 1 :]) & _informative(tokens)
        grams, records = grams[keep], owners[first_text[keep]]
        # Boilerplate is in many records of a file and identifies no task: drop it.
        order = np.lexsort((records, grams))
        grams, records = grams[order], records[order]
        distinct = np.ones(grams.size, dtype=bool)
        distinct[1:] = (grams[1:] != grams[:-1]) | (records[1:] != records[:-1])
        grams, records = grams[distinct], records[distinct]
        values, first, counts = np.unique(grams, return_index=True, return_counts=True)
        own = counts < BOILERPLATE_MIN_RECORDS
        self.ngrams.append(values[own])
        self.ngram_labels.append(records[first[own]])

    def _add_short_strings(
        self, texts: list[str], owners: list[int], hashes: np.ndarray, text_of_token: np.ndarray
    ) -> None:
        counts = np.bincount(text_of_token, minlength=len(texts))
        bounds = np.concatenate(([0], np.cumsum(counts)))
        shorts: dict[tuple[int, int, int], set[int]] = {}
        for index in np.flatnonzero((counts >= MIN_SHORT_TOKENS) & (counts < NGRAM)):
            entry = _short_entry(texts[index], hashes[bounds[index] : bounds[index + 1]])
            if entry is not None:
                shorts.setdefault(entry, set()).add(owners[index])
        for entry, entry_owners in shorts.items():
            if len(entry_owners) < BOILERPLATE_MIN_RECORDS:
                self.short_strings.append((*entry, min(entry_owners)))

    def build(self) -> Decontaminator:
        ngrams = np.concatenate(self.ngrams) if self.ngrams else np.empty(0, np.uint64)
        labels = np.concatenate(self.ngram_labels) if self.ngram_labels else np.empty(0, np.int64)
        return Decontaminator(self.labels, ngrams, labels, self.short_strings)


def load_decontaminator(directory: str | os.PathLike) -> Decontaminator:
    """A Decontaminator for `directory`, built once per process and folder (by resolved path)."""
    return _load_resolved(str(Path(directory).resolve()))


@lru_cache(maxsize=4)
def _load_resolved(directory: str) -> Decontaminator:
    return Decontaminator.from_dir(directory)
