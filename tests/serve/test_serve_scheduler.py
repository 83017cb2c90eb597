"""The scheduler on its own: a thread stepping an engine for asyncio callers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dscoder.infer import Engine, Request, SamplingParams, completion_prompt
from dscoder.serve import GenerationFailed, Scheduler
from dscoder.tokenizer import Tokenizer

PROMPTS = ["def add(a, b):\n", "import os\n", "x"]


@pytest.fixture
def own_scheduler(checkpoint: Path) -> Iterator[Scheduler]:
    engine = Engine.from_checkpoint(checkpoint, max_batch_size=2, max_seq_len=64)
    with Scheduler(engine) as scheduler:
        yield scheduler


def requests(tokenizer: Tokenizer, n: int) -> list[Request]:
    return [Request(completion_prompt(tokenizer, p).ids, SamplingParams(max_new_tokens=n), ignore_eos=True)
            for p in PROMPTS]


def test_results_match_the_engine_run_directly(own_scheduler: Scheduler, reference: Engine, tokenizer: Tokenizer):
    async def run():
        async with own_scheduler.generate(requests(tokenizer, 6)) as generation:
            return await generation.results()

    # Three requests on two rows: the third waits for a free row.
    assert asyncio.run(run()) == reference.generate(requests(tokenizer, 6))


def test_updates_stream_per_job_and_end_with_a_result(own_scheduler: Scheduler, tokenizer: Tokenizer):
    async def run():
        pieces: dict[int, list[str]] = {0: [], 1: [], 2: []}
        results = {}
        async with own_scheduler.generate(requests(tokenizer, 5)) as generation:
            async for update in generation:
                pieces[update.job].append(update.output.text)
                if update.output.finished:
                    results[update.job] = update.output.result
        return pieces, results

    pieces, results = asyncio.run(run())
    assert sorted(results) == [0, 1, 2]
    for job, result in results.items():
        assert "".join(pieces[job]) == result.text and len(pieces[job]) == 5


def test_leaving_early_cancels_the_rest(own_scheduler: Scheduler, tokenizer: Tokenizer):
    async def run():
        async with own_scheduler.generate(requests(tokenizer, 50)[:2]) as generation:
            async for _ in generation:
                break

    asyncio.run(run())
    engine = own_scheduler.engine
    assert _eventually(lambda: not engine.has_work())
    assert own_scheduler.stats.cancelled == 2
    assert own_scheduler.stats.tokens < 100


def test_a_request_the_engine_refuses_fails_alone(own_scheduler: Scheduler, tokenizer: Tokenizer):
    too_long = Request(list(range(100)), SamplingParams(max_new_tokens=2))  # the rows hold 64

    async def run(batch):
        async with own_scheduler.generate(batch) as generation:
            return await generation.results()

    with pytest.raises(GenerationFailed) as raised:
        asyncio.run(run([requests(tokenizer, 2)[0], too_long]))
    assert raised.value.status == 400 and "64" in raised.value.message
    assert len(asyncio.run(run(requests(tokenizer, 2)))) == 3
    assert not own_scheduler.engine.has_work()


def test_an_unexpected_engine_error_fails_the_request_not_the_thread(own_scheduler: Scheduler,
                                                                    tokenizer: Tokenizer, monkeypatch):
    async def run():
        async with own_scheduler.generate(requests(tokenizer, 2)) as generation:
            return await generation.results()

    def broken_add(request):
        raise RuntimeError("a bug")

    monkeypatch.setattr(own_scheduler.engine, "add", broken_add)
    with pytest.raises(GenerationFailed) as raised:
        asyncio.run(run())
    assert raised.value.status == 500
    monkeypatch.undo()
    assert len(asyncio.run(run())) == 3


def test_a_closed_scheduler_refuses_work(checkpoint: Path, tokenizer: Tokenizer):
    scheduler = Scheduler(Engine.from_checkpoint(checkpoint, max_batch_size=1, max_seq_len=32)).start()
    scheduler.close()

    async def run():
        scheduler.generate(requests(tokenizer, 2))

    with pytest.raises(GenerationFailed) as raised:
        asyncio.run(run())
    assert raised.value.status == 503


def _eventually(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_a_step_wakes_the_event_loop_once_for_all_its_requests(checkpoint: Path, reference: Engine,
                                                               tokenizer: Tokenizer):
    # Waking a loop is a system call; three requests decoding together need one a step, not three.
    engine = Engine.from_checkpoint(checkpoint, max_batch_size=3, max_seq_len=64)
    batch = requests(tokenizer, 8)

    async def run():
        loop = asyncio.get_running_loop()
        wakeups = 0
        wake = loop.call_soon_threadsafe

        def counted(*args, **kwargs):
            nonlocal wakeups
            wakeups += 1
            return wake(*args, **kwargs)

        loop.call_soon_threadsafe = counted
        generations = [scheduler.generate([request]) for request in batch]
        results = await asyncio.gather(*(generation.results() for generation in generations))
        return [result for (result,) in results], wakeups

    with Scheduler(engine) as scheduler:
        results, wakeups = asyncio.run(run())
        steps = scheduler.stats.steps
    assert results == reference.generate(batch)
    assert scheduler.stats.tokens == 3 * 8
    assert wakeups <= steps < 3 * 8
