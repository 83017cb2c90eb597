"""Where the tests find the shared benchmark files (HumanEval, MBPP, ...), never copied here.

In order: $DSCODER_BENCHMARKS; `../shared/benchmarks` beside the project (the CI layout); and,
for a clone made elsewhere (`git clone . /tmp/x`), `../shared/benchmarks` beside the repository
it was cloned from. Tests that need the files read them when they run, so a missing folder fails
those tests with the path in the message instead of breaking collection.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _origin_checkout() -> Path | None:
    try:
        url = subprocess.run(["git", "-C", str(ROOT), "remote", "get-url", "origin"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    path = Path(url.removeprefix("file://"))
    return path if url and path.is_absolute() and path.is_dir() else None


def _find() -> Path:
    if os.environ.get("DSCODER_BENCHMARKS"):
        return Path(os.environ["DSCODER_BENCHMARKS"])
    beside = ROOT.parent / "shared" / "benchmarks"
    if beside.is_dir():
        return beside
    origin = _origin_checkout()
    if origin is not None and (origin.parent / "shared" / "benchmarks").is_dir():
        return origin.parent / "shared" / "benchmarks"
    return beside


BENCHMARKS = _find()


def require(path: Path) -> Path:
    """`path` under the benchmarks folder, or an assertion naming where it was looked for."""
    assert path.exists(), (f"{path} not found: put the shared benchmarks at ../shared/benchmarks "
                           "or set DSCODER_BENCHMARKS")
    return path
