"""`make demo`: the whole recipe on code every machine has, the running Python's standard library
and site-packages.

data -> tokenizer -> pretraining with FIM + instruction tuning -> completion, infill and chat
from the result -> HumanEval on it. Each stage prints where its output is. The data and the
tokenizer already there (from an earlier, interrupted demo) are reused unless the installation
changed since; training, and so the evaluation of its model, start afresh on every run.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from dscoder.data.dedup import DedupConfig
from dscoder.data.executors import LocalExecutor
from dscoder.data.pipeline import OtherInputs, build
from dscoder.data.sources import interpreter_description, python_installation_repos
from dscoder.data.steps import PipelineConfig

# Decontamination and the closing HumanEval run read the benchmark files from here when present.
BENCHMARKS = Path(os.environ.get("DSCODER_BENCHMARKS")
                  or Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks")
# Far smaller than the paper's 32,000: a model small enough to train on two cores in minutes
# halves its held-out loss (from about ln(vocabulary)) soonest with a vocabulary of a few
# hundred tokens (docs/training.md).
DEMO_VOCAB_SIZE = 512
TOKENIZER_TRAINING_BYTES = 40 << 20
TRAINING_BUDGET_S = 10 * 60
EVAL_PROBLEMS = 20


def _stage(title: str) -> float:
    print(f"\n== {title} ==", flush=True)
    return time.perf_counter()


def _data_stage(output: Path, workers: int | None) -> Path:
    started = _stage(f"data: repositories from {interpreter_description()}")
    refs = python_installation_repos()
    decontaminate = str(BENCHMARKS) if BENCHMARKS.is_dir() else None
    config = PipelineConfig(decontaminate=decontaminate, dedup=DedupConfig())
    try:
        data = build(refs, output / "data", config, LocalExecutor(workers))
    except OtherInputs:
        # Packages were installed or removed since the last demo: its data, and the tokenizer
        # learned from it, are of another corpus.
        print("the installation changed since the last demo: building the data and the tokenizer afresh")
        shutil.rmtree(output / "tokenizer", ignore_errors=True)
        data = build(refs, output / "data", config, LocalExecutor(workers), overwrite=True)
    report = data.report
    print(f"{len(refs)} repositories -> {report['samples']:,} samples, {report['files_kept']:,} of "
          f"{report['files_seen']:,} files kept ({time.perf_counter() - started:.0f} s)")
    top = ", ".join(f"{name} {entry['share']:.1f}%" for name, entry in list(report["languages"].items())[:5])
    print(f"languages: {top}")
    print(f"shards: {data.output}/part-*.parquet")
    print(f"report: {data.output / 'report.md'}, {data.output / 'report.json'}, {data.output / 'languages.png'}")
    return data.output


def _tokenizer_stage(data_dir: Path, output: Path) -> Path:
    from dscoder.tokenizer import train_tokenizer_on_files

    started = _stage(f"tokenizer: byte-level BPE, a {DEMO_VOCAB_SIZE:,}-token vocabulary learned from the samples")
    target = output / "tokenizer"
    if (target / "tokenizer.json").exists():
        print(f"tokenizer: {target} (already trained)")
        return target
    report = train_tokenizer_on_files([data_dir], target, DEMO_VOCAB_SIZE, limit_bytes=TOKENIZER_TRAINING_BYTES)
    print(f"{report.vocab_size:,} tokens from {report.bytes / 1e6:.0f} MB ({time.perf_counter() - started:.0f} s)")
    print(f"tokenizer: {target}")
    return target


def _training_stage(data_dir: Path, tokenizer_dir: Path, output: Path) -> tuple[Path, Path]:
    from dscoder.train.demo import run_training_demo

    started = _stage("training: pretraining with FIM (rate 0.5), then instruction tuning")
    run = run_training_demo(data_dir, tokenizer_dir, output / "train", time_budget_s=TRAINING_BUDGET_S)
    verdict = "below half its start: the bar is met" if run["ok"] else "NOT below half its start"
    print(f"pretraining: held-out loss {run['start_loss']:.3f} -> {run['end_loss']:.3f}, {verdict}")
    sft = run["sft_eval_losses"]
    if sft:
        print(f"instruction tuning: held-out loss {sft[0][1]:.3f} -> {sft[-1][1]:.3f} on {run['instructions']}")
    print(f"checkpoints: {run['base_model']} (base), {run['instruct_model']} (instruct); "
          f"loss curves: {', '.join(str(p) for p in run['plots'])} ({time.perf_counter() - started:.0f} s)")
    return run["base_model"], run["instruct_model"]


def _generate(engine, prompt, max_new_tokens: int = 64) -> str:
    from dscoder.infer import Request, SamplingParams

    request = Request(prompt.ids, SamplingParams(max_new_tokens=max_new_tokens), stop_token_ids=prompt.stop_token_ids)
    return engine.generate([request])[0].text


def _inference_stage(base: Path, instruct: Path) -> None:
    from dscoder.infer import Engine, chat_prompt, completion_prompt, infill_prompt

    _stage("inference: completion and infilling (base), chat (instruct); greedy")
    engine = Engine.from_checkpoint(base, max_batch_size=1, max_seq_len=512)
    prefix = "def add(a, b):\n    "
    print(f"completion of {prefix!r}:\n{prefix}{_generate(engine, completion_prompt(engine.tokenizer, prefix))}")
    before, after = "def is_even(n):\n    return ", "\n\n\nprint(is_even(4))\n"
    middle = _generate(engine, infill_prompt(engine.tokenizer, before, after), 24)
    print(f"infill between {before!r} and {after!r}: {middle!r}")
    chat = Engine.from_checkpoint(instruct, max_batch_size=1, max_seq_len=512)
    question = "Write a function that returns the sum of a and b."
    answer = _generate(chat, chat_prompt(chat.tokenizer, [{"role": "user", "content": question}]), 96)
    print(f"chat: {question}\n{answer}")


def _eval_stage(instruct: Path, output: Path) -> None:
    from dscoder.eval.api import evaluate
    from dscoder.eval.runner import RunSettings
    from dscoder.eval.sources import LocalModel

    data = BENCHMARKS / "humaneval" / "HumanEval.jsonl.gz"
    started = _stage(f"evaluation: HumanEval (Python), first {EVAL_PROBLEMS} problems, sandboxed")
    if not data.is_file():
        print(f"skipped: {data} not found (point `dscoder eval --data` at your copy)")
        return
    # The demo trains afresh on every run, so an earlier run's scores belong to another model:
    # resuming them would mix the two (the runner refuses), so the evaluation starts afresh too.
    shutil.rmtree(output / "eval", ignore_errors=True)
    source = LocalModel(instruct, name="dscoder-demo-instruct", max_seq_len=512)
    score = evaluate(
        "humaneval", data, source, output / "eval",
        RunSettings(style="instruct", max_new_tokens=128, max_problems=EVAL_PROBLEMS),
        note="A model of about half a million parameters trained for minutes on a CPU: scores near zero are "
             "expected, and the row is here to show the harness end to end, not the recipe's quality.",
    )
    scores = ", ".join(f"{k} {v:.3f}" for k, v in score.pass_at_k.items())
    statuses = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in score.statuses.items() if v)
    print(f"{scores} on {score.problems} problems ({statuses}; {time.perf_counter() - started:.0f} s)")
    print("a model this small is expected to score near zero: this shows the harness, not the recipe")
    print(f"results: {output / 'eval' / 'results.md'}, {output / 'eval' / 'summary.json'}")


def run_demo(output: Path, workers: int | None = None) -> int:
    output.mkdir(parents=True, exist_ok=True)
    data_dir = _data_stage(output, workers)
    tokenizer_dir = _tokenizer_stage(data_dir, output)
    base, instruct = _training_stage(data_dir, tokenizer_dir, output)
    _inference_stage(base, instruct)
    _eval_stage(instruct, output)
    print(f"\nall outputs under {output}")
    return 0
