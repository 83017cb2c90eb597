"""`dscoder eval`: score a checkpoint, an OpenAI-compatible endpoint or a samples file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Literal

from dscoder.errors import UserError
from dscoder.eval.api import REFERENCE, evaluate
from dscoder.eval.benchmarks import BENCHMARK_NAMES
from dscoder.eval.runner import Capacity, RunSettings
from dscoder.eval.sources import CompletionSource, LocalModel, OpenAIEndpoint, SamplesFile


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="run a benchmark (HumanEval x8, MBPP, PAL-Math, DS-1000, APPS) and write reports",
        description="Score a model on one benchmark file and (re)write OUTPUT's summary.json, "
        "samples.jsonl and results.{md,json,png}. Rerunning with the same arguments resumes: "
        "finished samples are neither regenerated nor re-executed.",
    )
    parser.add_argument("--benchmark", required=True, choices=BENCHMARK_NAMES,
                        help="humaneval takes any of its 8 language files")
    parser.add_argument("--data", required=True, type=Path,
                        help="the benchmark's file in its published format (JSONL, gzipped or not)")
    parser.add_argument("--output", "-o", required=True, type=Path, help="output directory (one per model)")
    source = parser.add_argument_group("what to score (one of)")
    source.add_argument("--model", help="a dscoder checkpoint directory; with --openai-base-url, "
                        "the model name the endpoint serves")
    source.add_argument("--openai-base-url",
                        help="an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    source.add_argument("--samples", type=Path,
                        help="ready completions: JSONL rows with task_id and completion")
    source.add_argument("--reference", action="store_true",
                        help="score the data file's own reference solutions: a check of the harness, "
                        "sandbox and runtimes on this machine")
    source.add_argument("--api-key", help="bearer token for the endpoint (default: $OPENAI_API_KEY)")
    source.add_argument("--name", help="the row label in the tables (default: the model or file name)")
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--style", choices=("base", "instruct"), default="base",
                          help="base: continue the prompt; instruct: chat prompt, code taken from the answer")
    sampling.add_argument("--n", type=int, default=1, help="samples per problem (default 1)")
    sampling.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    sampling.add_argument("--top-p", type=float, default=0.95)
    sampling.add_argument("--max-new-tokens", type=int, help="default: the benchmark's own")
    sampling.add_argument("--seed", type=int, default=1234)
    sampling.add_argument("--limit", type=int, help="only the first N problems (a quick, partial check)")
    capacity = parser.add_argument_group("capacity")
    capacity.add_argument("--batch-size", type=int, default=16,
                          help="requests per generation batch (for --model DIR, the engine's batch rows)")
    capacity.add_argument("--concurrency", type=int, default=8, help="parallel requests to an endpoint")
    capacity.add_argument("--workers", type=int, help="sandbox processes (default: the executor's choice)")
    report = parser.add_argument_group("report")
    report.add_argument("--note", help="a sentence added to the notes under the tables")
    report.add_argument("--compare", type=Path, action="append", default=[],
                        help="another output directory whose model gets a row too (repeatable)")
    parser.set_defaults(func=run)


def _source(args: argparse.Namespace) -> CompletionSource | Literal["reference"]:
    chosen = [args.reference, bool(args.samples), bool(args.openai_base_url),
              bool(args.model and not args.openai_base_url)]
    if sum(chosen) != 1:
        raise UserError("give exactly one of --samples FILE, --openai-base-url URL --model NAME, "
                        "--model DIR or --reference")
    if args.reference:
        return REFERENCE
    if args.samples:
        return SamplesFile(args.samples, name=args.name)
    if args.openai_base_url:
        if not args.model:
            raise UserError("--openai-base-url needs --model NAME, the model the endpoint serves")
        endpoint = OpenAIEndpoint(args.openai_base_url, args.model, api_key=args.api_key,
                                  concurrency=args.concurrency)
        if args.name:
            endpoint.name = args.name
        return endpoint
    return LocalModel(Path(args.model), name=args.name, max_batch_size=args.batch_size)


def run(args: argparse.Namespace) -> int:
    settings = RunSettings(
        style=args.style,
        samples_per_problem=args.n,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        max_problems=args.limit,
    )
    capacity = Capacity(batch_size=args.batch_size, workers=args.workers)
    score = evaluate(
        args.benchmark, args.data, _source(args), args.output, settings, capacity,
        note=args.note, compare=tuple(args.compare),
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    passes = ", ".join(f"{key} {100 * value:.1f}%" for key, value in score.pass_at_k.items())
    print(f"{score.benchmark}: {passes} over {score.problems} problems "
          f"({score.statuses.get('passed', 0)} samples passed); report: {args.output / 'results.md'}")
    return 0
