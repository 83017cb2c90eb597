"""Continuous batching, disconnects and engine failures, through the running server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from itertools import islice
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from dscoder.serve import BackgroundServer, Scheduler
from serve_support import MODEL_NAME

LONG = {"max_tokens": 200, "ignore_eos": True, "temperature": 0}


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def idle(scheduler: Scheduler) -> bool:
    return scheduler.load() == (0, 0)


def test_requests_that_arrive_mid_generation_join_the_running_batch(client: openai.OpenAI, scheduler: Scheduler,
                                                                    monkeypatch: pytest.MonkeyPatch):
    prompts = ["def add(a, b):\n", "import os\n", "class Stack:\n", "x = [1, 2, 3]\n"]
    lengths = [150, 40, 40, 40]  # the first runs long enough for the others to join it

    def complete(i: int, **stream) -> Iterator:
        return client.completions.create(model=MODEL_NAME, prompt=prompts[i], max_tokens=lengths[i],
                                         temperature=0, extra_body={"ignore_eos": True}, **stream)

    alone = [complete(i).choices[0].text for i in range(len(prompts))]
    assert wait_until(lambda: idle(scheduler))
    # The test model writes its 150 tokens in a few tens of milliseconds, about what starting the
    # other clients' threads and requests takes on a loaded machine; 2 ms a step gives them 0.3 s.
    step = scheduler.engine.step

    def slow_step():
        time.sleep(0.002)
        return step()

    monkeypatch.setattr(scheduler.engine, "step", slow_step)
    before = scheduler.stats
    texts: dict[int, str] = {}
    first_started = threading.Event()

    def stream(i: int) -> None:
        pieces = []
        for chunk in complete(i, stream=True):
            pieces.append(chunk.choices[0].text)
            if len(pieces) == 3:
                first_started.set()
        texts[i] = "".join(pieces)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(len(prompts))]
    threads[0].start()
    assert first_started.wait(30)
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [texts.get(i) for i in range(len(prompts))] == alone
    after = scheduler.stats
    assert after.joined_running_batch - before.joined_running_batch == len(prompts) - 1
    assert after.peak_running >= 2
    # Shared steps: the tokens took fewer steps than one step per token.
    assert after.steps - before.steps < after.tokens - before.tokens


def test_a_streaming_client_that_disconnects_stops_its_generation(server: BackgroundServer,
                                                                  scheduler: Scheduler):
    assert wait_until(lambda: idle(scheduler))
    before = scheduler.stats
    body = {"model": MODEL_NAME, "prompt": "def f():", "stream": True, **LONG}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=30) as response:
        received = [line for line in islice(response.iter_lines(), 6) if line.startswith("data: ")]
    assert received  # it was generating when the client left
    assert wait_until(lambda: idle(scheduler))
    after = scheduler.stats
    assert after.cancelled - before.cancelled == 1
    assert after.tokens - before.tokens < LONG["max_tokens"]


def test_a_waiting_client_that_disconnects_stops_its_generation(server: BackgroundServer,
                                                                scheduler: Scheduler):
    assert wait_until(lambda: idle(scheduler))
    before = scheduler.stats
    body = json.dumps({"model": MODEL_NAME, "prompt": "def f():", **LONG}).encode()
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        assert wait_until(lambda: scheduler.stats.tokens - before.tokens >= 3)
    assert wait_until(lambda: idle(scheduler))
    after = scheduler.stats
    assert after.cancelled - before.cancelled == 1
    assert after.tokens - before.tokens < LONG["max_tokens"]


def test_an_engine_failure_ends_its_requests_with_an_error_and_serving_goes_on(
        client: openai.OpenAI, server: BackgroundServer, scheduler: Scheduler, monkeypatch):
    def failing_step():
        raise RuntimeError("simulated failure")

    assert wait_until(lambda: idle(scheduler))
    monkeypatch.setattr(scheduler.engine, "step", failing_step)
    body = {"model": MODEL_NAME, "prompt": "a", "max_tokens": 3}
    response = httpx.post(server.url + "/v1/completions", json=body, timeout=30)
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    stream = httpx.post(server.url + "/v1/completions", json={**body, "stream": True}, timeout=30)
    events = [line.removeprefix("data: ") for line in stream.text.splitlines() if line]
    assert json.loads(events[0])["error"]["type"] == "server_error"
    assert events[1:] == ["[DONE]"]
    monkeypatch.undo()
    assert idle(scheduler)
    ok = client.completions.create(model=MODEL_NAME, prompt="a", max_tokens=3, temperature=0)
    assert ok.choices[0].finish_reason in ("stop", "length")
