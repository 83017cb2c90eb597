"""MinHash signature speed: dscoder's `MinHasher` against `datasketch` on one core.

Documents: the `.py` files of the running interpreter's standard library and site-packages.
Both sides compute 128-permutation MinHash over 5-gram word shingles of the same words
(`dscoder.data.dedup.words`); datasketch hashes each shingle with its default hashing (SHA-1,
32 bits). datasketch is timed twice: as users usually call it (a new `MinHash(num_perm=128)` per
document) and at its best (permutations drawn once and passed to every `MinHash`). Each round
times every implementation on the same chunks of documents, alternating chunk by chunk so that
load from other processes on a shared machine falls on all of them alike; the figures are
medians over --repeats rounds.

Run from the repository root:
    PYTHONPATH=src python bench/bench_minhash.py --limit 3000
"""

from __future__ import annotations

import os

# One core: pin the process and keep numeric libraries single-threaded before numpy loads.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import argparse  # noqa: E402
import random  # noqa: E402
import site  # noqa: E402
import statistics  # noqa: E402
import sysconfig  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

from datasketch import MinHash  # noqa: E402

from dscoder.data.dedup import DedupConfig, MinHasher, estimated_jaccard, words  # noqa: E402

NUM_PERM = 128
NGRAM = 5
CHUNK = 50  # documents timed per implementation before switching to the next


def corpus_files() -> list[Path]:
    """Every .py file of the stdlib (without its site-packages) and of this interpreter's
    site-packages, in a fixed order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    roots = [stdlib, *(Path(p) for p in site.getsitepackages())]
    found: set[Path] = set()
    for root in roots:
        for folder, subfolders, names in os.walk(root):
            if Path(folder) == stdlib:
                subfolders[:] = [s for s in subfolders if s not in ("site-packages", "dist-packages")]
            found.update(Path(folder) / name for name in names if name.endswith(".py"))
    return sorted(found)


def load_documents(limit: int | None) -> list[str]:
    files = corpus_files()
    if limit is not None and limit < len(files):
        # Evenly spaced, so a limited run still mixes stdlib and every installed package.
        files = [files[i * len(files) // limit] for i in range(limit)]
    documents = []
    for path in files:
        try:
            documents.append(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    return documents


def datasketch_shingles(text: str) -> list[bytes]:
    tokens = words(text)
    if not tokens:
        return []
    width = min(NGRAM, len(tokens))
    return [b" ".join(tokens[i : i + width]) for i in range(len(tokens) - width + 1)]


def datasketch_signature(text: str) -> MinHash:
    sketch = MinHash(num_perm=NUM_PERM)
    sketch.update_batch(datasketch_shingles(text))
    return sketch


def datasketch_signature_shared(permutations) -> Callable[[str], MinHash]:
    def signature(text: str) -> MinHash:
        sketch = MinHash(num_perm=NUM_PERM, permutations=permutations, scheme="affine32")
        sketch.update_batch(datasketch_shingles(text))
        return sketch

    return signature


def seconds_for(signature: Callable[[str], object], documents: list[str]) -> float:
    started = time.perf_counter()
    for text in documents:
        signature(text)
    return time.perf_counter() - started


def edited_copy(text: str, rng: random.Random) -> str:
    """The text with a random 5-60% of its lines dropped: a range of true similarities."""
    lines = text.splitlines()
    drop = rng.uniform(0.05, 0.6)
    return "\n".join(line for line in lines if rng.random() >= drop)


def shingle_set(text: str) -> set[bytes]:
    return set(datasketch_shingles(text))


def agreement(documents: list[str], hasher: MinHasher, pairs: int) -> None:
    rng = random.Random(0)
    candidates = [text for text in documents if len(words(text)) >= 200]
    rows = []
    for text in rng.sample(candidates, min(pairs, len(candidates))):
        edited = edited_copy(text, rng)
        a, b = shingle_set(text), shingle_set(edited)
        true = len(a & b) / len(a | b)
        ours = estimated_jaccard(hasher.signature(text), hasher.signature(edited))
        theirs = datasketch_signature(text).jaccard(datasketch_signature(edited))
        rows.append((true, ours, theirs))
    if not rows:
        print("agreement: no document has 200 words")
        return

    def mean_abs(i: int, j: int) -> float:
        return statistics.fmean(abs(row[i] - row[j]) for row in rows)

    print(
        f"Jaccard agreement on {len(rows)} (document, copy with lines dropped) pairs, "
        f"true Jaccard {min(r[0] for r in rows):.2f}..{max(r[0] for r in rows):.2f}: mean |error| "
        f"dscoder {mean_abs(1, 0):.3f}, datasketch {mean_abs(2, 0):.3f}; "
        f"mean |dscoder - datasketch| {mean_abs(1, 2):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="use N evenly spaced files (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds; medians are reported")
    parser.add_argument("--pairs", type=int, default=50, help="document pairs for the Jaccard agreement")
    args = parser.parse_args()

    documents = load_documents(args.limit)
    megabytes = sum(len(text.encode("utf-8", "surrogatepass")) for text in documents) / 1e6
    print(f"{len(documents)} documents, {megabytes:.1f} MB, one core (cpu {sorted(os.sched_getaffinity(0))})")

    hasher = MinHasher(DedupConfig(num_perm=NUM_PERM, ngram=NGRAM))
    shared_permutations = MinHash(num_perm=NUM_PERM).permutations
    contenders: dict[str, Callable[[str], object]] = {
        "dscoder MinHasher": hasher.signature,
        "datasketch MinHash per document": datasketch_signature,
        "datasketch, shared permutations": datasketch_signature_shared(shared_permutations),
    }
    timings: dict[str, list[float]] = {name: [] for name in contenders}
    chunks = [documents[i : i + CHUNK] for i in range(0, len(documents), CHUNK)]
    for _ in range(args.repeats):
        totals = dict.fromkeys(contenders, 0.0)
        for chunk in chunks:
            for name, signature in contenders.items():
                totals[name] += seconds_for(signature, chunk)
        for name, seconds in totals.items():
            timings[name].append(seconds)

    ours = statistics.median(timings["dscoder MinHasher"])
    for name, seconds in timings.items():
        median = statistics.median(seconds)
        print(
            f"{name:34s} {len(documents) / median:8.0f} docs/s {megabytes / median:7.2f} MB/s "
            f"(median of {len(seconds)}: {median:.2f} s)  dscoder is {median / ours:.2f}x"
        )
    agreement(documents, hasher, args.pairs)


if __name__ == "__main__":
    main()
