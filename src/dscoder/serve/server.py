"""Loading a checkpoint into a scheduler and running the HTTP server with uvicorn.

`serve(options)` is what `dscoder serve` runs: it blocks until the server is stopped.
`BackgroundServer` runs an app in a thread of this process on a free port, for notebooks,
tests and benchmarks that want a real server next to their own code.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI

from dscoder.errors import UserError
from dscoder.infer import Engine
from dscoder.infer.engine import DEFAULT_MAX_PREFILL_TOKENS, DEFAULT_MAX_SEQ_LEN
from dscoder.serve.app import create_app
from dscoder.serve.scheduler import Scheduler

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Seconds open streams get to finish when the server is asked to stop.
GRACEFUL_SHUTDOWN_S = 5


@dataclass(frozen=True)
class ServeOptions:
    model: Path
    served_model_name: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_size: int = 8
    max_prefill_tokens: int = DEFAULT_MAX_PREFILL_TOKENS  # prompt positions a step computes while others decode
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN
    dtype: str | None = None
    int8: bool = False
    compile: bool = False
    threads: int | None = None  # model threads; None: see `model_threads`
    log_level: str = "info"

    @property
    def model_name(self) -> str:
        # What clients put in "model": the checkpoint folder's name unless told otherwise.
        return self.served_model_name or self.model.resolve().name


def load_engine(options: ServeOptions) -> Engine:
    if not options.model.is_dir():
        raise UserError(f"{options.model} is not a checkpoint directory")
    if options.dtype is not None and options.dtype not in DTYPES:
        raise UserError(f"unknown dtype {options.dtype!r}; choose one of {', '.join(DTYPES)}")
    dtype = DTYPES[options.dtype] if options.dtype else None
    return Engine.from_checkpoint(options.model, dtype=dtype, int8=options.int8,
                                  max_batch_size=options.max_batch_size,
                                  max_prefill_tokens=options.max_prefill_tokens,
                                  max_seq_len=options.max_seq_len, compile=options.compile)


def model_threads(threads: int | None, cores: int, kernel: bool) -> int:
    """Threads for the model: as asked, else one per core where the CPU kernel runs it (its
    helper threads take chunks of work only while they run and sleep soon after, leaving the
    HTTP loop the time it needs: on two cores, 8 clients got 2787-3401 tokens/s with two threads
    against 2568 with one, docs/performance.md, Server, session 6), and one per core but one on
    PyTorch (there, a second thread's OpenMP spin-waiting took the HTTP loop's core: one client
    decoded at 371 tokens/s against 502-597, session 4)."""
    if threads is None:
        return max(1, cores if kernel else cores - 1)
    if threads < 1:
        raise UserError(f"threads must be at least 1, got {threads}")
    return threads


def serve(options: ServeOptions) -> None:
    """Serve the checkpoint until interrupted."""
    logging.basicConfig(level=options.log_level.upper(), format="%(levelname)s: %(name)s: %(message)s")
    cores = torch.get_num_threads()
    model_threads(options.threads, cores, kernel=True)  # a bad count fails before the model loads
    engine = load_engine(options)
    torch.set_num_threads(model_threads(options.threads, cores, engine.on_cpu_kernel))
    with Scheduler(engine) as scheduler:
        app = create_app(scheduler, options.model_name)
        uvicorn.run(app, host=options.host, port=options.port, log_level=options.log_level,
                    timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)


class BackgroundServer:
    """An app served by uvicorn in a thread of this process, on 127.0.0.1 and a free port.

        with BackgroundServer(app) as server:
            httpx.get(server.url + "/health")
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0,
                 startup_timeout_s: float = 30.0) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="dscoder-http", daemon=True)
        self._startup_timeout_s = startup_timeout_s
        self.url = ""

    def start(self) -> BackgroundServer:
        self._thread.start()
        # uvicorn sets `started` from its own thread; poll it, for a bounded time.
        deadline = time.monotonic() + self._startup_timeout_s
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._server.started:
            self.stop()
            raise RuntimeError("the HTTP server did not start")
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
