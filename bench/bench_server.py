"""Server throughput and latency: 1 streaming client against 8 concurrent ones.

A random model of a preset (`tiny` by default; its vocabulary cut to the tokenizer's, so
every token decodes to text) is served by `dscoder serve`'s code in a child process; each client sends
requests one after another (closed loop) over HTTP and reads the server-sent events. Every
request asks for the same number of tokens (`ignore_eos`), greedily.

With --join-prompt-tokens N, one more scenario: all but one client stream as before, and once
they are decoding one request with an N-token prompt joins them. Reported: the longest gap and
the ITL p99 of the running streams while it was prefilled, and its own TTFT; the server's
--max-prefill-tokens sets how much of that prompt a step may feed while others decode.

Reported per scenario: completion tokens per second (median over rounds), time to first token
(TTFT: request sent -> first text chunk), time per output token (TPOT: per request, from the
first chunk to the last over the tokens after the first), and the gaps between consecutive
chunks (ITL), as p50/p90/p99. The 8-client run's throughput over the 1-client run's, per round
(the two run back to back, under the same load), is the batching speedup; the engine alone
at batch 1 and 8 shows the ceiling.

    PYTHONPATH=src .venv/bin/python bench/bench_server.py
    PYTHONPATH=src .venv/bin/python bench/bench_server.py --rounds 5 --max-tokens 128 --json out.json
    PYTHONPATH=src .venv/bin/python bench/bench_server.py --preset small
    PYTHONPATH=src .venv/bin/python bench/bench_server.py --join-prompt-tokens 1500 --max-prefill-tokens 128

The two presets sit at the two ends of what batching can gain on a CPU. With `small` (~100M
parameters) one stream is bound by memory bandwidth, and a batch reads each weight once for
all its rows, as with the released models. `tiny` reads so few bytes per token that one
stream is already fast, and a batch of 8 is bound by the multiply-adds of its output layer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import sysconfig
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import httpx
import torch

from dscoder.infer import Engine, Request, SamplingParams, completion_prompt, cpu_decode
from dscoder.infer.engine import DEFAULT_MAX_PREFILL_TOKENS
from dscoder.model import PRESETS, Transformer, save_model
from dscoder.serve import ServeOptions, serve
from dscoder.serve.server import model_threads
from dscoder.tokenizer import Tokenizer, train_tokenizer

PROMPT = "import os\nimport sys\n\n\ndef main(argv):\n    parser = "
MODEL_NAME = "bench-model"


@dataclass
class RequestTiming:
    ttft_s: float
    chunk_times: list[float]  # seconds since the request was sent, one per text chunk
    completion_tokens: int
    sent: float  # time.perf_counter() when it was sent


@dataclass
class Scenario:
    clients: int
    requests: int
    completion_tokens: int
    wall_s: float
    tokens_per_s: float
    ttft_ms: dict[str, float]
    tpot_ms: dict[str, float]
    itl_ms: dict[str, float]


def percentiles(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        # Nearest rank: the smallest value with at least q of the values at or below it.
        return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))] * scale

    return {"p50": round(at(0.50), 2), "p90": round(at(0.90), 2), "p99": round(at(0.99), 2)}


# ---- the model and the server -------------------------------------------------------------


def build_checkpoint(directory: Path, train_mb: float, preset: str = "tiny") -> Path:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts, total = [], 0
    for path in sorted(stdlib.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        texts.append(text)
        total += len(text)
        if total >= train_mb * 1e6:
            break
    tokenizer = train_tokenizer(texts, vocab_size=32000, min_frequency=1)
    config = PRESETS[preset].replace(vocab_size=tokenizer.vocab_size, bos_token_id=tokenizer.bos_id,
                                     eos_token_id=tokenizer.eos_id)
    torch.manual_seed(0)
    model = Transformer(config)
    model.init_weights()
    checkpoint = directory / MODEL_NAME
    save_model(model, checkpoint)
    tokenizer.save(checkpoint)
    return checkpoint


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: multiprocessing.Process, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process.is_alive():
            raise RuntimeError("the server process exited")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not become ready")


# ---- the clients --------------------------------------------------------------------------


# The clients use aiohttp: they share the machine with the server, so what they spend per
# token is taken from it. Reading the same streams, httpx cost 329-419 us of CPU a token with
# one client and 117-137 us with eight; aiohttp (its HTTP parser is compiled) 176-178 and
# 51-53 (docs/performance.md, Server).
async def one_request(client: aiohttp.ClientSession, url: str, max_tokens: int, prompt: str = PROMPT,
                      started: asyncio.Event | None = None) -> RequestTiming:
    """One streaming request; `started` is set when its first text arrives."""
    body = {"model": MODEL_NAME, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    sent = time.perf_counter()
    chunks: list[float] = []
    tokens = 0
    async with client.post(url + "/v1/completions", json=body) as response:
        response.raise_for_status()
        async for raw in response.content:  # one line at a time
            line = raw.decode().rstrip("\r\n")
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[len("data: "):])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            if any(choice["text"] for choice in event["choices"]):
                chunks.append(time.perf_counter() - sent)
                if started is not None:
                    started.set()
    if not chunks:
        raise RuntimeError(f"a request of {max_tokens} tokens streamed no text")
    return RequestTiming(chunks[0], chunks, tokens, sent)


def session(clients: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients + 1),
                                 timeout=aiohttp.ClientTimeout(total=300))


@dataclass
class Run:
    timings: list[RequestTiming]
    wall_s: float

    @property
    def tokens_per_s(self) -> float:
        return sum(t.completion_tokens for t in self.timings) / self.wall_s


async def run_clients(url: str, clients: int, requests_each: int, max_tokens: int) -> Run:
    async with session(clients) as client:
        await one_request(client, url, 8)  # warm up: first-call allocations, connections

        async def client_loop() -> list[RequestTiming]:
            return [await one_request(client, url, max_tokens) for _ in range(requests_each)]

        started = time.perf_counter()
        per_client = await asyncio.gather(*(client_loop() for _ in range(clients)))
        wall = time.perf_counter() - started
    return Run([t for results in per_client for t in results], wall)


async def run_joining(url: str, clients: int, max_tokens: int, long_prompt: str) -> tuple[list[float], float]:
    """clients - 1 streams, then a request with a long prompt: the gaps between the streams'
    chunks that arrived while it was being prefilled, and its time to first token."""
    async with session(clients) as client:
        await one_request(client, url, 8)
        decoding = [asyncio.Event() for _ in range(clients - 1)]
        running = [asyncio.create_task(one_request(client, url, max_tokens, started=event)) for event in decoding]
        await asyncio.gather(*(event.wait() for event in decoding))
        joined = await one_request(client, url, 8, long_prompt)
        timings = await asyncio.gather(*running)
    window = (joined.sent, joined.sent + joined.ttft_s)
    gaps = []
    for t in timings:
        arrivals = [t.sent + c for c in t.chunk_times]
        gaps += [b - a for a, b in zip(arrivals, arrivals[1:], strict=False) if window[0] <= b <= window[1] + 0.05]
    return gaps, joined.ttft_s


def prompt_of_tokens(checkpoint: Path, tokens: int) -> str:
    """Standard-library source cut to `tokens` tokens of the checkpoint's tokenizer."""
    tokenizer = Tokenizer.from_dir(checkpoint)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    ids: list[int] = []
    for path in sorted(stdlib.glob("*.py"), reverse=True):
        ids += tokenizer.encode(path.read_text(encoding="utf-8", errors="replace"))
        if len(ids) >= tokens:
            return tokenizer.decode(ids[:tokens])
    raise ValueError("not enough standard-library source for the long prompt")


def summarize(clients: int, runs: list[Run]) -> Scenario:
    """Throughput: the median over rounds; latencies: percentiles over every request."""
    timings = [t for run in runs for t in run.timings]
    tpot = [(t.chunk_times[-1] - t.chunk_times[0]) / (t.completion_tokens - 1)
            for t in timings if t.completion_tokens > 1]
    gaps = [b - a for t in timings for a, b in zip(t.chunk_times, t.chunk_times[1:], strict=False)]
    return Scenario(clients=clients, requests=len(timings),
                    completion_tokens=sum(t.completion_tokens for t in timings),
                    wall_s=round(sum(run.wall_s for run in runs), 3),
                    tokens_per_s=round(statistics.median(run.tokens_per_s for run in runs), 1),
                    ttft_ms=percentiles([t.ttft_s for t in timings]), tpot_ms=percentiles(tpot),
                    itl_ms=percentiles(gaps))


def engine_tokens_per_s(checkpoint: Path, batch: int, max_tokens: int, threads: int) -> float:
    """The engine alone, in this process, on `batch` copies of the prompt: the ceiling the
    server's batching is measured against."""
    torch.set_num_threads(threads)
    engine = Engine.from_checkpoint(checkpoint, max_batch_size=batch, max_seq_len=512)
    prompt = completion_prompt(engine.tokenizer, PROMPT).ids
    engine.generate([Request(prompt, SamplingParams(max_new_tokens=8), ignore_eos=True)] * batch)
    started = time.perf_counter()
    engine.generate([Request(prompt, SamplingParams(max_new_tokens=max_tokens), ignore_eos=True)] * batch)
    return batch * max_tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients of the batched run")
    parser.add_argument("--requests", type=int, default=4, help="requests per client and round")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds; each runs 1 client, then the concurrent clients, so both see "
                        "the same load on a shared machine")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens per request")
    parser.add_argument("--preset", choices=["tiny", "small"], default="tiny", help="model size (default tiny)")
    parser.add_argument("--join-prompt-tokens", type=int, default=0, metavar="N",
                        help="also run the joining scenario with an N-token prompt (default: off)")
    parser.add_argument("--max-prefill-tokens", type=int, default=DEFAULT_MAX_PREFILL_TOKENS, metavar="N",
                        help="the server's prompt positions per step while others decode "
                        f"(default {DEFAULT_MAX_PREFILL_TOKENS})")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None,
                        help="model threads in the server (default: as `dscoder serve`)")
    parser.add_argument("--train-mb", type=float, default=4.0, help="text to train the tokenizer on")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    threads = model_threads(args.threads, torch.get_num_threads(), cpu_decode.available())

    runs: dict[int, list[Run]] = {1: [], args.clients: []}
    ratios = []
    with tempfile.TemporaryDirectory() as workdir:
        checkpoint = build_checkpoint(Path(workdir), args.train_mb, args.preset)
        vocab = json.loads((checkpoint / "config.json").read_text())["vocab_size"]
        engine = {batch: engine_tokens_per_s(checkpoint, batch, args.max_tokens, threads)
                  for batch in (1, args.clients)}
        port = free_port()
        max_seq_len = max(512, args.join_prompt_tokens + 64)
        options = ServeOptions(model=checkpoint, port=port, max_batch_size=args.max_batch_size,
                               max_seq_len=max_seq_len, max_prefill_tokens=args.max_prefill_tokens,
                               threads=threads, log_level="warning")
        long_prompt = prompt_of_tokens(checkpoint, args.join_prompt_tokens) if args.join_prompt_tokens else None
        process = multiprocessing.get_context("spawn").Process(target=serve, args=(options,), daemon=True)
        process.start()
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, process)
            for _ in range(args.rounds):
                for clients in runs:
                    runs[clients].append(asyncio.run(run_clients(url, clients, args.requests, args.max_tokens)))
                ratios.append(runs[args.clients][-1].tokens_per_s / runs[1][-1].tokens_per_s)
            if long_prompt is not None:
                joining = asyncio.run(run_joining(url, args.clients, args.max_tokens, long_prompt))
        finally:
            process.terminate()
            process.join(30)
            if process.is_alive():
                process.kill()

    scenarios = [summarize(clients, client_runs) for clients, client_runs in runs.items()]
    speedup = statistics.median(ratios)
    print(f"{args.preset} preset (vocab {vocab}), {args.max_tokens} tokens per request, {args.requests} requests "
          f"per client and round, {args.rounds} rounds, server model threads {threads}")
    print(f"engine alone: batch 1 {engine[1]:.1f} tokens/s, batch {args.clients} "
          f"{engine[args.clients]:.1f} tokens/s ({engine[args.clients] / engine[1]:.2f}x)")
    print(f"{'clients':>7} {'tokens/s':>9} {'TTFT p50/p90/p99 ms':>24} {'TPOT p50/p90/p99 ms':>24} "
          f"{'ITL p50/p90/p99 ms':>24}")
    for s in scenarios:
        print(f"{s.clients:>7} {s.tokens_per_s:>9} {_triple(s.ttft_ms):>24} {_triple(s.tpot_ms):>24} "
              f"{_triple(s.itl_ms):>24}")
    print(f"throughput with {args.clients} clients / 1 client: {speedup:.2f}x (median of the rounds: "
          f"{', '.join(f'{r:.2f}' for r in ratios)})")
    if long_prompt is not None:
        gaps, ttft = joining
        spread = percentiles(gaps) if gaps else {"p50": 0.0, "p99": 0.0}
        print(f"a {args.join_prompt_tokens}-token prompt joining {args.clients - 1} streams "
              f"(--max-prefill-tokens {args.max_prefill_tokens}): its TTFT {ttft * 1000:.1f} ms; "
              f"the streams' gaps meanwhile: longest {max(gaps, default=0) * 1000:.1f} ms, "
              f"p99 {spread['p99']:.1f} ms, p50 {spread['p50']:.1f} ms")
    if args.json:
        joining_json = None if long_prompt is None else {
            "prompt_tokens": args.join_prompt_tokens, "max_prefill_tokens": args.max_prefill_tokens,
            "ttft_ms": round(joining[1] * 1000, 1), "longest_gap_ms": round(max(joining[0], default=0) * 1000, 1)}
        args.json.write_text(json.dumps({
            "scenarios": [asdict(s) for s in scenarios], "speedup": round(speedup, 2), "joining": joining_json,
            "round_speedups": [round(r, 2) for r in ratios],
            "engine_tokens_per_s": {str(batch): round(value, 1) for batch, value in engine.items()},
        }, indent=2) + "\n")


def _triple(values: dict[str, float]) -> str:
    return f"{values['p50']:.1f}/{values['p90']:.1f}/{values['p99']:.1f}"


if __name__ == "__main__":
    main()
