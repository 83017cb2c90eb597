"""Continuous batching for the HTTP server: one thread owns the engine and steps it.

The engine is not thread-safe, so exactly one thread touches it. Request handlers, on the
event loop, hand it work through an inbox (add these requests, cancel that generation); the
thread applies the inbox between steps, so a request that arrives while others are decoding
joins their batch at the next step instead of waiting for them to finish. While the engine has
work the thread steps it back to back; when it has none the thread sleeps until the inbox
fills.

Each step's outputs go back to the event loop in one `call_soon_threadsafe` (one wake-up of
the loop a step, however many requests are running), each generation's into its own asyncio
queue. Handlers read them with

    async with scheduler.generate(requests) as generation:
        async for update in generation:     # update.job: index into requests
            ...                             # update.output: the engine's StepOutput

Leaving the block early (a client that disconnected cancels the handler's task) cancels the
sequences that have not finished, which frees their cache rows at the next step.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace

from dscoder.errors import UserError
from dscoder.infer import Engine, Request, Result, StepOutput

log = logging.getLogger(__name__)


class GenerationFailed(Exception):
    """The engine refused a request (status 400), failed while running it (500), or the
    scheduler closed before it finished (503)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Update:
    job: int  # index into the requests of the generation
    output: StepOutput


@dataclass(frozen=True)
class SchedulerStats:
    steps: int = 0
    tokens: int = 0  # outputs delivered, one per sequence per step
    peak_running: int = 0  # most sequences in one step
    joined_running_batch: int = 0  # sequences whose first token came in a step others decoded in
    cancelled: int = 0  # sequences stopped before they finished
    failed_steps: int = 0


class Generation:
    """The sequences of one HTTP request; iterate its updates on the loop that created it."""

    def __init__(self, scheduler: Scheduler, requests: Sequence[Request],
                 loop: asyncio.AbstractEventLoop) -> None:
        self.requests = list(requests)
        self._scheduler = scheduler
        self._loop = loop
        self._queue: asyncio.Queue[list[Update] | GenerationFailed] = asyncio.Queue()
        self._unfinished = len(self.requests)
        # Owned by the scheduler thread: the engine's ids of this generation's live sequences.
        self._live: dict[int, int] = {}  # seq_id -> job

    @property
    def done(self) -> bool:
        return self._unfinished == 0

    async def __aiter__(self) -> AsyncIterator[Update]:
        while self._unfinished:
            item = await self._queue.get()
            if isinstance(item, GenerationFailed):
                self._unfinished = 0
                raise item
            for update in item:
                if update.output.finished:
                    self._unfinished -= 1
                yield update

    async def results(self) -> list[Result]:
        """Wait for every sequence; results in the order of the requests."""
        results: dict[int, Result] = {}
        async for update in self:
            if update.output.result is not None:
                results[update.job] = update.output.result
        return [results[job] for job in range(len(self.requests))]

    def cancel(self) -> None:
        """Stop the sequences that have not finished (no-op when all have)."""
        if not self.done:
            self._unfinished = 0
            self._scheduler._post("cancel", self)

    async def __aenter__(self) -> Generation:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.cancel()


Delivery = tuple[Generation, "list[Update] | GenerationFailed"]


def _send(deliveries: list[Delivery]) -> None:
    """From the scheduler thread: each item into its generation's queue, with one wake-up of
    each event loop involved (waking a loop writes to a socket: a system call a step, not one a
    running request)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Delivery]] = {}
    for generation, item in deliveries:
        by_loop.setdefault(generation._loop, []).append((generation, item))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_put_all, items)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            for generation, _ in items:
                generation._scheduler._post("cancel", generation)


def _put_all(deliveries: list[Delivery]) -> None:
    for generation, item in deliveries:
        generation._queue.put_nowait(item)


class Scheduler:
    """Runs an engine in its own thread and multiplexes it between concurrent requests."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._wakeup = threading.Condition()
        self._inbox: list[tuple[str, Generation]] = []
        self._closing = False
        self._thread: threading.Thread | None = None
        self._stats = SchedulerStats()
        # Scheduler-thread state.
        self._owners: dict[int, Generation] = {}  # seq_id -> the generation it belongs to
        self._started: set[int] = set()  # seq_ids that have produced a token

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> Scheduler:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dscoder-scheduler", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop stepping; generations still running fail with status 503."""
        with self._wakeup:
            self._closing = True
            self._wakeup.notify()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Scheduler:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- for request handlers -----------------------------------------------------------

    def generate(self, requests: Sequence[Request]) -> Generation:
        """Queue requests as one generation; call from a running event loop."""
        if not requests:
            raise ValueError("a generation needs at least one request")
        generation = Generation(self, requests, asyncio.get_running_loop())
        if not self._post("add", generation):
            raise GenerationFailed(503, "the server is shutting down")
        return generation

    @property
    def stats(self) -> SchedulerStats:
        return self._stats

    @property
    def context_length(self) -> int:
        return self.engine.max_seq_len

    def load(self) -> tuple[int, int]:
        """(running, waiting) sequences: a snapshot for health checks."""
        return self.engine.num_running, self.engine.num_waiting

    def _post(self, command: str, generation: Generation) -> bool:
        with self._wakeup:
            if self._closing:
                return False
            self._inbox.append((command, generation))
            self._wakeup.notify()
            return True

    # ---- the scheduler thread -----------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not (self._inbox or self._closing or self.engine.has_work()):
                    self._wakeup.wait()
                if self._closing:
                    break
                commands, self._inbox = self._inbox, []
            for command, generation in commands:
                if command == "add":
                    self._add(generation)
                else:
                    self._cancel(generation)
            if self.engine.has_work():
                self._step()
        self._fail_all(GenerationFailed(503, "the server is shutting down"))

    def _add(self, generation: Generation) -> None:
        try:
            for job, request in enumerate(generation.requests):
                seq_id = self.engine.add(request)
                generation._live[seq_id] = job
                self._owners[seq_id] = generation
        except UserError as error:
            self._drop(generation)
            _send([(generation, GenerationFailed(400, str(error)))])
        except Exception:
            # A bug must cost one request, not the thread every request depends on.
            log.exception("the engine failed to accept a request")
            self._drop(generation)
            _send([(generation, GenerationFailed(500, "the engine failed to accept this request"))])

    def _cancel(self, generation: Generation) -> None:
        self._stats = replace(self._stats, cancelled=self._stats.cancelled + len(generation._live))
        self._drop(generation)

    def _drop(self, generation: Generation) -> None:
        for seq_id in generation._live:
            self.engine.cancel(seq_id)
            self._owners.pop(seq_id, None)
            self._started.discard(seq_id)
        generation._live.clear()

    def _step(self) -> None:
        try:
            outputs = self.engine.step()
        except Exception:
            # The engine's state is unknown after a failed step: end everything it was running
            # and keep serving new requests.
            log.exception("an engine step failed; ending the sequences it was running")
            self._stats = replace(self._stats, failed_steps=self._stats.failed_steps + 1)
            self._fail_all(GenerationFailed(500, "generation failed inside the engine"))
            return
        batches: dict[Generation, list[Update]] = {}
        joined = 0
        for output in outputs:
            generation = self._owners.get(output.seq_id)
            if generation is None:
                continue
            if output.seq_id not in self._started:
                self._started.add(output.seq_id)
                joined += 1
            batches.setdefault(generation, []).append(
                Update(generation._live[output.seq_id], output))
            if output.finished:
                del generation._live[output.seq_id]
                del self._owners[output.seq_id]
                self._started.discard(output.seq_id)
        stats = self._stats
        self._stats = replace(
            stats,
            steps=stats.steps + 1,
            tokens=stats.tokens + len(outputs),
            peak_running=max(stats.peak_running, len(outputs)),
            # New sequences count as joining when sequences already running decoded alongside.
            joined_running_batch=stats.joined_running_batch + (joined if joined < len(outputs) else 0),
        )
        # After the stats: a client that has its tokens sees the step counted.
        _send(list(batches.items()))

    def _fail_all(self, failure: GenerationFailed) -> None:
        running = set(self._owners.values())
        for generation in running:
            self._drop(generation)
        _send([(generation, failure) for generation in [*running, *(g for _, g in self._inbox)]])
        self._inbox.clear()
