"""Throughput of the per-file data stages on this interpreter's standard library (.py files).

    PYTHONPATH=src .venv/bin/python bench/bench_data_screening.py [--benchmarks ../shared/benchmarks]

Prints MB/s (UTF-8 bytes of input per second, one core) for the rule filters, the quality
screening and decontamination, and how many files each drops. Each stage sees every file, so the
figures do not depend on which files an earlier stage would have removed.
"""

from __future__ import annotations

import argparse
import sysconfig
import time
from collections import Counter
from pathlib import Path

from dscoder.data.decontam import load_decontaminator
from dscoder.data.filters import rule_filter
from dscoder.data.languages import LANGUAGES
from dscoder.data.quality import quality_check


def stdlib_sources() -> list[tuple[str, str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    sources = []
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            sources.append((str(path.relative_to(root)), path.read_text(encoding="utf-8")))
        except UnicodeDecodeError:
            continue
    return sources


def timed(stage, sources) -> tuple[float, Counter]:
    outcomes: Counter = Counter()
    start = time.perf_counter()
    for path, text in sources:
        outcomes[stage(path, text)] += 1
    return time.perf_counter() - start, outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmarks", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"))
    args = parser.parse_args()

    sources = stdlib_sources()
    megabytes = sum(len(text.encode("utf-8")) for _, text in sources) / 1e6
    print(f"{len(sources)} files, {megabytes:.1f} MB")

    start = time.perf_counter()
    decontaminator = load_decontaminator(args.benchmarks)
    decontaminator.match("warm up the presence tables")
    ngrams, shorts = decontaminator.size
    print(f"decontaminator built in {time.perf_counter() - start:.1f} s ({ngrams} 10-grams, {shorts} short strings)")

    python = LANGUAGES["Python"]
    stages = {
        "rule_filter": lambda path, text: rule_filter(path, python, text),
        "quality_check": lambda path, text: quality_check(path, python, text),
        "decontaminate": lambda path, text: decontaminator.match(text) and "contaminated",
    }
    print(f"{'stage':<15} {'seconds':>8} {'MB/s':>7}  dropped")
    for name, stage in stages.items():
        seconds, outcomes = timed(stage, sources)
        dropped = {reason: count for reason, count in outcomes.items() if reason}
        print(f"{name:<15} {seconds:8.1f} {megabytes / seconds:7.1f}  {sum(dropped.values())} {dropped}")


if __name__ == "__main__":
    main()
