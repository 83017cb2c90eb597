"""Serving: an OpenAI-compatible HTTP server with continuous batching, and a web page.

`dscoder serve --model DIR` runs `serve(ServeOptions(...))`. The pieces, each with one job:
`schemas` (request/response bodies), `translate` (bodies -> engine requests), `scheduler`
(one thread steps the engine for every request), `responses` (results -> bodies and stream
chunks), `app` (routes, errors, streaming, disconnects), `server` (loading and uvicorn).
"""

from dscoder.serve.app import create_app
from dscoder.serve.scheduler import Generation, GenerationFailed, Scheduler, SchedulerStats, Update
from dscoder.serve.server import BackgroundServer, ServeOptions, load_engine, serve

__all__ = [
    "BackgroundServer",
    "Generation",
    "GenerationFailed",
    "Scheduler",
    "SchedulerStats",
    "ServeOptions",
    "Update",
    "create_app",
    "load_engine",
    "serve",
]
