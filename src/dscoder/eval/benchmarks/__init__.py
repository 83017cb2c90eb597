"""The benchmarks, by the name `dscoder eval --benchmark` takes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dscoder.errors import UserError
from dscoder.eval.benchmarks.apps import APPS
from dscoder.eval.benchmarks.base import Benchmark, Problem, Verdict
from dscoder.eval.benchmarks.ds1000 import DS1000
from dscoder.eval.benchmarks.humaneval import HumanEval
from dscoder.eval.benchmarks.mbpp import MBPP
from dscoder.eval.benchmarks.pal_math import DATASETS as PAL_MATH_DATASETS
from dscoder.eval.benchmarks.pal_math import PalMath

_LOADERS: dict[str, Callable[[Path | str], Benchmark]] = {
    # HumanEval takes any of its language files; the language comes from the file.
    "humaneval": HumanEval,
    "mbpp": MBPP,
    **{name: (lambda data, name=name: PalMath(name, data)) for name in PAL_MATH_DATASETS},
    "ds1000": DS1000,
    "apps": APPS,
}
BENCHMARK_NAMES: tuple[str, ...] = tuple(_LOADERS)


def load_benchmark(name: str, data: Path | str) -> Benchmark:
    """The benchmark `name` with its problems read from the user's `data` file."""
    loader = _LOADERS.get(name)
    if loader is None:
        raise UserError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARK_NAMES)}")
    return loader(data)


__all__ = ["BENCHMARK_NAMES", "Benchmark", "Problem", "Verdict", "load_benchmark"]
