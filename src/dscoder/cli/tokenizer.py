"""`dscoder tokenizer train`: train the BPE tokenizer and save it as a Hugging Face directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from dscoder.tokenizer.train import PAPER_VOCAB_SIZE, train_tokenizer_on_files


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tokenizer", help="train the byte-level BPE tokenizer")
    commands = parser.add_subparsers(dest="tokenizer_command", metavar="SUBCOMMAND", required=True)

    train = commands.add_parser(
        "train",
        help="train on Parquet shards, JSONL or text files and save a tokenizer directory",
        description="Train a byte-level BPE with DeepSeek-Coder's pre-tokenizer and special "
        "tokens, and save it as a Hugging Face tokenizer directory.",
    )
    train.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="Parquet shards with a 'text' column, directories of them, JSONL files with a "
        "'text' field, or plain text files",
    )
    train.add_argument("--output", "-o", type=Path, required=True, help="directory to write")
    train.add_argument(
        "--vocab-size",
        type=int,
        default=PAPER_VOCAB_SIZE,
        help=f"BPE tokens to learn, before the added tokens (default {PAPER_VOCAB_SIZE})",
    )
    train.add_argument(
        "--min-frequency",
        type=int,
        default=2,
        help="merge only pairs seen at least this often (default 2)",
    )
    train.add_argument(
        "--limit-bytes", type=int, default=None, help="stop reading input after this many bytes"
    )
    train.add_argument("--progress", action="store_true", help="show the trainer's progress bars")
    train.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    report = train_tokenizer_on_files(
        args.inputs,
        args.output,
        args.vocab_size,
        min_frequency=args.min_frequency,
        limit_bytes=args.limit_bytes,
        show_progress=args.progress,
    )
    print(
        f"trained {report.trained_bpe_tokens} BPE tokens on {report.texts} texts "
        f"({report.bytes / 1e6:.1f} MB) in {report.seconds:.1f} s; {report.vocab_size} tokens "
        f"with the added ones -> {report.output}"
    )
    if report.trained_bpe_tokens < report.requested_bpe_tokens:
        print(
            f"note: asked for {report.requested_bpe_tokens} BPE tokens; the input allows no more "
            f"merges than {report.trained_bpe_tokens}, so the special-token ids are lower too"
        )
    return 0
