"""Executors run a function over tasks and hand back results as they finish. They know nothing
about what the tasks do (the datatrove split: steps separate from the machinery that runs them).

- `LocalExecutor`: worker processes on this machine (all cores by default; 1 runs inline).
- `RayExecutor`: a Ray cluster (an address, or a local cluster started for the run). The tasks
  read their inputs where they run, so on a multi-node cluster inputs must be on shared storage;
  results come back to the driver, which alone writes the output.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any, Protocol

from dscoder.errors import UserError


class Executor(Protocol):
    def map_unordered(self, fn: Callable, items: Sequence, *args: Any) -> Iterator[Any]:
        """Call fn(item, *args) for every item; yield the results in completion order."""


class LocalExecutor:
    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1

    def map_unordered(self, fn: Callable, items: Sequence, *args: Any) -> Iterator[Any]:
        if self.workers == 1 or len(items) <= 1:
            for item in items:
                yield fn(item, *args)
            return
        # spawn, not fork: workers start clean, whatever threads the driver has running.
        with ProcessPoolExecutor(self.workers, mp_context=get_context("spawn")) as pool:
            pending = {pool.submit(fn, item, *args) for item in items}
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield future.result()
            finally:
                for future in pending:
                    future.cancel()


class RayExecutor:
    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("the Ray executor needs Ray: pip install 'dscoder[ray]'") from None
        self._ray = ray
        self.address = address
        self.workers = workers

    def map_unordered(self, fn: Callable, items: Sequence, *args: Any) -> Iterator[Any]:
        ray = self._ray
        started_here = not ray.is_initialized()
        if started_here:
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address:
                options["address"] = self.address
            elif self.workers:
                options["num_cpus"] = self.workers
            try:
                ray.init(**options)
            except ConnectionError as error:
                raise UserError(f"cannot reach the Ray cluster at {self.address}: {error}") from None
        try:
            remote_fn = ray.remote(fn)
            shared_args = [ray.put(arg) for arg in args]
            pending = [remote_fn.remote(item, *shared_args) for item in items]
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    yield ray.get(ref)
        finally:
            if started_here:
                ray.shutdown()


def make_executor(kind: str, workers: int | None = None, address: str | None = None) -> Executor:
    if kind == "local":
        return LocalExecutor(workers)
    if kind == "ray":
        return RayExecutor(address, workers)
    raise UserError(f"unknown executor {kind!r}: choose local or ray")
