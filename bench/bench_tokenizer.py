"""Encoding throughput: dscoder's Tokenizer against transformers' fast tokenizer, same directory.

Both wrap the same Rust `tokenizers` pipeline; what differs is the Python around it. The text
is this interpreter's standard-library .py files (up to --limit-mb). Without --tokenizer, a
tokenizer is first trained on the first --train-mb of that text.

    PYTHONPATH=src .venv/bin/python bench/bench_tokenizer.py --limit-mb 20
"""

from __future__ import annotations

import argparse
import statistics
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from dscoder.tokenizer import Tokenizer, train_tokenizer

MB = 1_000_000


def stdlib_python_texts(limit_bytes: int) -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts, total = [], 0
    for path in sorted(stdlib.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # a few test fixtures are deliberately not UTF-8
        texts.append(text)
        total += len(text.encode("utf-8"))
        if total >= limit_bytes:
            break
    return texts


@dataclass
class Timings:
    wall: list[float] = field(default_factory=list)
    # CPU seconds of the whole process (all encoding threads): on a shared machine this moves
    # far less with other processes' load than wall time does.
    cpu: list[float] = field(default_factory=list)

    def run(self, encode: Callable[[], list[list[int]]]) -> list[list[int]]:
        wall, cpu = time.perf_counter(), time.process_time()
        result = encode()
        self.wall.append(time.perf_counter() - wall)
        self.cpu.append(time.process_time() - cpu)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, help="tokenizer directory (default: train one)")
    parser.add_argument("--limit-mb", type=float, default=20.0, help="text to encode, in MB")
    parser.add_argument("--train-mb", type=float, default=5.0, help="text to train on, in MB")
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    texts = stdlib_python_texts(int(args.limit_mb * MB))
    total_bytes = sum(len(text.encode("utf-8")) for text in texts)
    print(f"text: {len(texts)} stdlib .py files, {total_bytes / MB:.1f} MB")

    with tempfile.TemporaryDirectory() as scratch:
        directory = args.tokenizer
        if directory is None:
            directory = Path(scratch) / "tokenizer"
            started = time.perf_counter()
            train_tokenizer(stdlib_python_texts(int(args.train_mb * MB)), args.vocab_size).save(
                directory
            )
            print(
                f"trained vocab {args.vocab_size} on {args.train_mb:.1f} MB "
                f"in {time.perf_counter() - started:.1f} s"
            )
        ours = Tokenizer.from_dir(directory)
        theirs = PreTrainedTokenizerFast.from_pretrained(str(directory))

    def encode_ours() -> list[list[int]]:
        return ours.encode_batch(texts)

    def encode_theirs() -> list[list[int]]:
        return theirs(
            texts, add_special_tokens=False, return_attention_mask=False, verbose=False
        )["input_ids"]

    # Alternate the two so that load from other processes falls on both alike.
    ours_timings, theirs_timings = Timings(), Timings()
    for repeat in range(args.repeats):
        ours_ids = ours_timings.run(encode_ours)
        theirs_ids = theirs_timings.run(encode_theirs)
        if repeat == 0 and ours_ids != theirs_ids:
            raise SystemExit("the two tokenizers disagree on this text; timings would mean nothing")
    tokens = sum(map(len, ours_ids))
    print(f"identical ids: yes ({tokens} tokens, {tokens / total_bytes:.3f} tokens per byte)")
    megabytes = total_bytes / MB
    for measure in ("wall", "cpu"):
        ours_rate = megabytes / statistics.median(getattr(ours_timings, measure))
        theirs_rate = megabytes / statistics.median(getattr(theirs_timings, measure))
        unit = "MB/s" if measure == "wall" else "MB per CPU-second"
        print(f"{measure} time, median of {args.repeats}:")
        print(f"  dscoder Tokenizer.encode_batch:      {ours_rate:7.2f} {unit}")
        print(f"  transformers {type(theirs).__name__}: {theirs_rate:7.2f} {unit}")
        print(f"  ratio (dscoder / transformers): {ours_rate / theirs_rate:.2f}x")

if __name__ == "__main__":
    main()
