"""Exact and near-duplicate detection over samples: content hashes, MinHash signatures, LSH.

Exact duplicates are found by a content hash of the UTF-8 text. Near duplicates are found by
MinHash over word n-gram shingles, candidate pairs come from banded locality-sensitive hashing
(LSH), and every candidate pair is verified by its estimated Jaccard similarity before two
samples are put in one cluster.

The signature, in the order it is computed:

1. Words: maximal runs of ASCII letters, digits, ``_`` and non-ASCII bytes in the UTF-8 text
   (`words`). Operators, punctuation and whitespace only separate words, so re-indenting or
   re-spacing code does not change its shingles.
2. Word hash ``w``: the low 32 bits of xxh3-64 (seed 0) of the word's bytes.
3. Shingle key: for each run of ``ngram`` consecutive words,
   ``x = ((g_0 + g_1*w_1 + ... + g_n*w_n) mod 2^64) >> 32``, computed in uint64 (numpy's
   uint64 arrays wrap modulo 2^64, and no term needs more than 64 bits). This is Thorup's
   vector multiply-shift, strongly universal for 32-bit characters ("High speed hashing for
   integers and strings", 2015), so keys are uniform 32-bit values whatever the words look
   like. A text with fewer words than ``ngram`` is one shingle of all its words.
4. Permutation ``k``: ``h_k(x) = (a_k*x + b_k) mod 2^32`` with ``a_k`` odd, computed in uint32
   (wrapping is the modulo). Each ``h_k`` is a bijection of the 32-bit keys, so it adds no
   collisions. Affine maps mod 2^32 are not provably min-wise independent; because the keys
   are already strongly universal hashes, the estimator behaves like ideal MinHash in practice
   (the tests and bench/bench_minhash.py check it against the true Jaccard). 64-bit
   multiply-add-shift would be provably strongly universal, but uint32 arithmetic measured
   about twice as fast here, and this step costs as much as tokenizing. The signature holds the minimum of each ``h_k`` as uint32; a text
   without words has the all-``0xFFFFFFFF`` signature.

The parameters ``g``, ``a`` and ``b`` are drawn by splitmix64 from the configured seed in plain
integer arithmetic, so signatures are identical across processes, machines and numpy versions.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import xxhash

from dscoder.errors import UserError

DuplicateKind = Literal["exact", "near"]

WORD_PATTERN = re.compile(rb"[0-9A-Za-z_\x80-\xff]+")

_EMPTY_SIGNATURE_VALUE = np.uint32(0xFFFFFFFF)
_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
# Shingles per block when applying the permutations: the block's (num_perm x block) uint32
# scratch (512 KB at 128 permutations) stays in cache, and large files need no large buffers.
_PERMUTATION_BLOCK = 1024


@dataclass(frozen=True)
class DedupConfig:
    """MinHash + LSH settings. Defaults follow BigCode's dedup of The Stack: 5-gram word
    shingles, Jaccard threshold 0.7."""

    num_perm: int = 128
    ngram: int = 5
    threshold: float = 0.7
    # LSH bands x rows per band (bands * rows <= num_perm). Both None: `optimal_lsh_params`.
    bands: int | None = None
    rows: int | None = None
    seed: int = 1

    def __post_init__(self) -> None:
        if self.num_perm < 1:
            raise UserError(f"num_perm must be at least 1, got {self.num_perm}")
        if self.ngram < 1:
            raise UserError(f"ngram must be at least 1, got {self.ngram}")
        if not 0.0 < self.threshold <= 1.0:
            raise UserError(f"the Jaccard threshold must be in (0, 1], got {self.threshold}")
        if (self.bands is None) != (self.rows is None):
            raise UserError("give both LSH bands and rows, or neither to have them chosen")
        if self.bands is not None and self.rows is not None:
            if self.bands < 1 or self.rows < 1 or self.bands * self.rows > self.num_perm:
                raise UserError(
                    f"LSH bands x rows must be positive with bands * rows <= num_perm "
                    f"({self.num_perm}), got {self.bands} x {self.rows}"
                )

    def lsh_params(self) -> tuple[int, int]:
        """(bands, rows): the configured values, or those `optimal_lsh_params` chooses."""
        if self.bands is not None and self.rows is not None:
            return self.bands, self.rows
        return optimal_lsh_params(self.num_perm, self.threshold)


def optimal_lsh_params(
    num_perm: int,
    threshold: float,
    false_positive_weight: float = 0.5,
    false_negative_weight: float = 0.5,
) -> tuple[int, int]:
    """The (bands, rows) with bands * rows <= num_perm that minimise the weighted error mass.

    Two samples with Jaccard similarity s share at least one band with probability
    P(s) = 1 - (1 - s^rows)^bands. Taking s uniform on [0, 1], the false-positive mass is the
    integral of P over [0, threshold] and the false-negative mass the integral of 1 - P over
    [threshold, 1]; both are integrated numerically (midpoint rule) and the pair with the least
    weighted sum wins, ties going to fewer bands (fewer buckets to build).
    """
    if num_perm < 1 or not 0.0 < threshold <= 1.0:
        raise UserError(f"need num_perm >= 1 and 0 < threshold <= 1, got {num_perm}, {threshold}")
    steps = 2000
    below = (np.arange(steps) + 0.5) * (threshold / steps)
    above = threshold + (np.arange(steps) + 0.5) * ((1.0 - threshold) / steps)
    best: tuple[float, int, int] | None = None
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            false_positive = np.mean(1.0 - (1.0 - below**rows) ** bands) * threshold
            false_negative = np.mean((1.0 - above**rows) ** bands) * (1.0 - threshold)
            error = false_positive_weight * false_positive + false_negative_weight * false_negative
            if best is None or error < best[0] - 1e-15:
                best = (float(error), bands, rows)
    assert best is not None
    return best[1], best[2]


def _splitmix64(seed: int, count: int) -> np.ndarray:
    """`count` pseudo-random 64-bit values from splitmix64, in Python integers so the stream is
    the same everywhere."""
    mask = (1 << 64) - 1
    state = seed & mask
    values = []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        values.append(z ^ (z >> 31))
    return np.array(values, dtype=np.uint64)


def _utf8(text: str) -> bytes:
    # surrogatepass: a file decoded with surrogateescape must not crash the dedup stage.
    return text.encode("utf-8", "surrogatepass")


def words(text: str) -> list[bytes]:
    """The words MinHash shingles are built from (see the module docstring), as UTF-8 bytes."""
    return WORD_PATTERN.findall(_utf8(text))


def content_hash(text: str) -> str:
    """Hex xxh3-128 digest of the UTF-8 text: equal texts, and only those in practice, match."""
    return xxhash.xxh3_128_hexdigest(_utf8(text))


class MinHasher:
    """Computes MinHash signatures for one `DedupConfig`; reusable across texts and threads."""

    def __init__(self, config: DedupConfig = DedupConfig()) -> None:
        self.config = config
        params = _splitmix64(config.seed, config.ngram + 1 + 2 * config.num_perm)
        # g_0 (the additive term) then g_1..g_n, one multiplier per position in the shingle.
        self.shingle_coefficients = params[: config.ngram + 1]
        perm = (params[config.ngram + 1 :] >> _SHIFT32).astype(np.uint32)
        # Column vectors so that a_k * x broadcasts to (num_perm, shingles).
        self.perm_multipliers = (perm[: config.num_perm] | np.uint32(1)).reshape(-1, 1)
        self.perm_offsets = perm[config.num_perm :].reshape(-1, 1)

    def signature(self, text: str) -> np.ndarray:
        """The (num_perm,) uint32 MinHash signature of the text's word-shingle set."""
        word_hashes = np.fromiter(map(xxhash.xxh3_64_intdigest, words(text)), dtype=np.uint64)
        if word_hashes.size == 0:
            return np.full(self.config.num_perm, _EMPTY_SIGNATURE_VALUE, dtype=np.uint32)
        word_hashes &= _LOW32
        keys = self._shingle_keys(word_hashes)
        return self._min_permuted(keys)

    def _shingle_keys(self, word_hashes: np.ndarray) -> np.ndarray:
        coefficients = self.shingle_coefficients
        width = min(self.config.ngram, word_hashes.size)
        count = word_hashes.size - width + 1
        acc = np.full(count, coefficients[0], dtype=np.uint64)
        for position in range(width):
            acc += word_hashes[position : position + count] * coefficients[position + 1]
        acc >>= _SHIFT32
        return acc.astype(np.uint32)

    def _min_permuted(self, keys: np.ndarray) -> np.ndarray:
        minima = np.full(self.config.num_perm, _EMPTY_SIGNATURE_VALUE, dtype=np.uint32)
        for start in range(0, keys.size, _PERMUTATION_BLOCK):
            block = keys[start : start + _PERMUTATION_BLOCK]
            permuted = self.perm_multipliers * block
            permuted += self.perm_offsets
            np.minimum(minima, permuted.min(axis=1), out=minima)
        return minima


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """The fraction of signature positions where two MinHash signatures agree."""
    if a.shape != b.shape:
        raise UserError(f"signatures of different shapes cannot be compared: {a.shape}, {b.shape}")
    return float(np.count_nonzero(a == b)) / a.size


# eq=False: comparing the signature arrays field by field would raise, not answer.
@dataclass(frozen=True, eq=False)
class DedupItem:
    """What deduplication needs to know about one sample."""

    id: str
    text_hash: str
    signature: np.ndarray
    size: int  # bytes of UTF-8 text; the larger of two duplicates is kept


def dedup_item(id: str, text: str, hasher: MinHasher) -> DedupItem:
    """The `DedupItem` of one sample's text."""
    return DedupItem(id, content_hash(text), hasher.signature(text), len(_utf8(text)))


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, node: int) -> int:
        parent = self.parent
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)


def _keep_rank(item: DedupItem) -> tuple[int, str]:
    """Sort key whose first element is the item to keep: the largest, then the smallest id."""
    return (-item.size, item.id)


def _band_buckets(signatures: np.ndarray, bands: int, rows: int) -> list[np.ndarray]:
    """For each band, the groups (of two or more row indices, ascending) whose rows agree there."""
    # A band's rows are reduced to one 64-bit key by a random linear combination mod 2^64;
    # distinct 32-bit rows collide with probability about 2^-32, and such a collision only adds
    # a candidate pair, which verification then rejects.
    coefficients = _splitmix64(0xBA4D5, rows + 1)
    groups: list[np.ndarray] = []
    for band in range(bands):
        columns = signatures[:, band * rows : (band + 1) * rows].astype(np.uint64)
        keys = np.full(len(signatures), coefficients[0], dtype=np.uint64)
        for row in range(rows):
            keys += columns[:, row] * coefficients[row + 1]
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))
        ends = np.append(starts[1:], len(keys))
        shared = ends - starts > 1
        groups.extend(order[start:end] for start, end in zip(starts[shared], ends[shared]))
    return groups


def _link_bucket(
    members: np.ndarray, signatures: np.ndarray, matches_needed: int, clusters: _UnionFind
) -> None:
    """Union the verified near-duplicate pairs of one LSH bucket.

    Members are scanned in index order; each is compared with the bucket's representatives so
    far, joined with every one it matches, and becomes a representative itself if it matches
    none. The cost is members x distinct clusters rather than members squared, which matters
    for the large buckets that boilerplate files form; a pair linked only through a
    non-representative can be missed here and is usually found through another band.
    """
    representatives = [int(members[0])]
    for member in members[1:]:
        agreements = np.count_nonzero(signatures[representatives] == signatures[member], axis=1)
        matched = np.flatnonzero(agreements >= matches_needed)
        if matched.size == 0:
            representatives.append(int(member))
        for index in matched:
            clusters.union(int(member), representatives[index])


def deduplicate(
    items: Sequence[DedupItem], config: DedupConfig = DedupConfig()
) -> dict[str, tuple[str, DuplicateKind]]:
    """Find exact and near duplicates; return removed id -> (kept id, "exact" | "near").

    Exact duplicates (same text hash) are collapsed first. The remaining items are bucketed by
    MinHash LSH, candidate pairs with estimated Jaccard >= threshold are linked, and each
    connected cluster keeps one item: the largest, ties going to the smallest id, so the result
    does not depend on the input order. Every other member maps to the kept item, with kind
    "exact" when its text equals the kept text and "near" otherwise. Ids must be unique.
    """
    ordered = sorted(items, key=_keep_rank)
    ids = [item.id for item in ordered]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i, count in Counter(ids).items() if count > 1)
        raise UserError(f"sample id {duplicate!r} appears more than once in the dedup input")
    for item in ordered:
        if np.shape(item.signature) != (config.num_perm,):
            raise UserError(
                f"sample {item.id!r} has a signature of shape {np.shape(item.signature)}, "
                f"expected ({config.num_perm},): was it computed with another DedupConfig?"
            )

    # `ordered` puts each group's keeper first, so the first item seen per hash is the one kept.
    exact_keeper: dict[str, int] = {}
    exact_of: dict[int, int] = {}
    for index, item in enumerate(ordered):
        keeper = exact_keeper.setdefault(item.text_hash, index)
        if keeper != index:
            exact_of[index] = keeper
    survivors = [index for index in range(len(ordered)) if index not in exact_of]

    clusters = _UnionFind(len(survivors))
    if len(survivors) > 1:
        signatures = np.stack([ordered[index].signature for index in survivors])
        bands, rows = config.lsh_params()
        matches_needed = math.ceil(config.threshold * config.num_perm - 1e-9)
        for bucket in _band_buckets(signatures, bands, rows):
            _link_bucket(bucket, signatures, matches_needed, clusters)

    # Union-find roots are the smallest survivor position, and positions follow keep rank,
    # so each root is its cluster's keeper.
    final_keeper = {index: survivors[clusters.find(position)] for position, index in enumerate(survivors)}
    removed: dict[str, tuple[str, DuplicateKind]] = {}
    for index in range(len(ordered)):
        keeper = final_keeper[exact_of.get(index, index)]
        if keeper == index:
            continue
        kind: DuplicateKind = "exact" if ordered[keeper].text_hash == ordered[index].text_hash else "near"
        removed[ordered[index].id] = (ordered[keeper].id, kind)
    return dict(sorted(removed.items()))

