"""The HTTP application: OpenAI-compatible routes, errors in OpenAI's shape, the web page.

Routes: `POST /v1/completions` (with `suffix`: infilling), `POST /v1/chat/completions`,
`GET /v1/models`, `GET /v1/models/{model}`, `GET /health`, and the web page at `/` (its files
under `/static/`). Every error, including malformed JSON, unknown paths and failures inside
the engine, is a JSON body `{"error": {"message", "type", "param", "code"}}` with a 4xx or 5xx
status, and the server goes on serving.

A client that disconnects stops its generation: a stream's generator is cancelled by the
server when the connection closes, and a non-streaming request races its generation against
the disconnect notice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from dscoder.infer import Result
from dscoder.serve.errors import ApiError
from dscoder.serve.responses import (
    ResponseInfo,
    chat_body,
    chat_chunks,
    completion_body,
    completion_chunks,
)
from dscoder.serve.scheduler import Generation, GenerationFailed, Scheduler
from dscoder.serve.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    ModelCard,
    ModelList,
)
from dscoder.serve.translate import Job, chat_jobs, completion_jobs

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
# Not an HTTP status a client ever reads (the connection is gone); nginx's name for it.
CLIENT_CLOSED_REQUEST = 499

T = TypeVar("T")
B = TypeVar("B", bound=BaseModel)


def create_app(scheduler: Scheduler, model_name: str) -> FastAPI:
    """The application for one model, run by `scheduler` (started and closed by the caller)."""
    # No /docs page: FastAPI's loads its scripts from a CDN, which offline hosts cannot reach;
    # the schema stays at /openapi.json.
    app = FastAPI(title="dscoder", summary="DeepSeek-Coder, OpenAI-compatible",
                  docs_url=None, redoc_url=None)
    card = ModelCard(id=model_name, created=int(time.time()), max_model_len=scheduler.context_length)
    tokenizer = scheduler.engine.tokenizer
    _install_error_handlers(app)

    def check_model(name: str | None) -> None:
        if name is not None and name != model_name:
            raise ApiError(404, f"The model '{name}' does not exist; this server serves "
                                f"'{model_name}'.", param="model", code="model_not_found")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        running, waiting = scheduler.load()
        return {"status": "ok", "running": running, "waiting": waiting}

    @app.get("/v1/models", response_model=ModelList)
    async def models() -> ModelList:
        return ModelList(data=[card])

    @app.get("/v1/models/{name:path}", response_model=ModelCard)
    async def model(name: str) -> ModelCard:
        check_model(name)
        return card

    async def answer(http: HttpRequest, request_type, make_jobs, id_prefix: str, make_chunks,
                     make_body) -> Response:
        """The one flow both endpoints share: parse, check the model, template, then stream
        chunks or wait for the whole result (cancelled if the client goes away)."""
        body = await _parse(http, request_type)
        check_model(body.model)
        jobs = make_jobs(body, tokenizer, scheduler.context_length)
        info = ResponseInfo.new(id_prefix, model_name)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        if body.stream:
            return _event_stream(scheduler, jobs, lambda generation: make_chunks(
                info, jobs, generation, include_usage))
        results = await _unless_disconnected(http, _results(scheduler, jobs))
        return _json(make_body(info, jobs, results))

    @app.post("/v1/completions", response_model=Completion)
    async def completions(http: HttpRequest) -> Response:
        return await answer(http, CompletionRequest, completion_jobs, "cmpl", completion_chunks,
                            completion_body)

    @app.post("/v1/chat/completions", response_model=ChatCompletion)
    async def chat_completions(http: HttpRequest) -> Response:
        return await answer(http, ChatCompletionRequest, chat_jobs, "chatcmpl", chat_chunks, chat_body)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


async def _parse(http: HttpRequest, schema: type[B]) -> B:
    """The body as `schema`. It is read as JSON whatever the Content-Type says: `curl -d`
    sends JSON labelled as a form, and refusing it would help nobody."""
    raw = await http.body()
    if not raw.strip():
        raise ApiError(400, "The request has no body; send a JSON object.")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(400, f"The request body is not valid JSON ({error}).",
                       code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise _describe_validation(error.errors()) from None


def _json(body: BaseModel) -> Response:
    return Response(body.model_dump_json(), media_type="application/json")


# ---- generation ---------------------------------------------------------------------------


async def _results(scheduler: Scheduler, jobs: Sequence[Job]) -> list[Result]:
    try:
        async with scheduler.generate([job.request for job in jobs]) as generation:
            return await generation.results()
    except GenerationFailed as failure:
        raise ApiError(failure.status, failure.message) from None


async def _unless_disconnected(http: HttpRequest, work: Awaitable[T]) -> T:
    """Run `work` until it finishes or the client goes away; then it is cancelled."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(http))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        gone = not task.done()
        if gone:
            task.cancel()  # its `async with generation` cancels the sequences
    if gone:
        await asyncio.gather(task, return_exceptions=True)
        raise ApiError(CLIENT_CLOSED_REQUEST, "the client closed the connection")
    return task.result()


async def _disconnected(http: HttpRequest) -> None:
    # The body has been read, so the next message the server sends is the disconnect.
    while (await http.receive())["type"] != "http.disconnect":
        pass


def _event_stream(scheduler: Scheduler, jobs: Sequence[Job],
                  chunks: Callable[[Generation], AsyncIterator[BaseModel]]) -> StreamingResponse:
    async def events() -> AsyncIterator[str]:
        # The generation starts inside the stream, so a connection that closes before the
        # stream begins never starts one; leaving this block (the server cancels the stream
        # when the client goes) cancels what is still running.
        try:
            async with scheduler.generate([job.request for job in jobs]) as generation:
                async for chunk in chunks(generation):
                    yield f"data: {chunk.model_dump_json()}\n\n"
        except GenerationFailed as failure:
            error = ApiError(failure.status, failure.message)
            yield f"data: {error.body().model_dump_json()}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# ---- errors -------------------------------------------------------------------------------


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: HttpRequest, error: ApiError) -> JSONResponse:
        return _error_response(error)

    @app.exception_handler(HTTPException)
    async def http_error(http: HttpRequest, error: HTTPException) -> JSONResponse:
        # Unknown paths (404) and methods (405), said with the request they refer to.
        message = f"{error.detail}: {http.method} {http.url.path}"
        return _error_response(ApiError(error.status_code, message))

    @app.exception_handler(Exception)
    async def server_error(_: HttpRequest, error: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a request", exc_info=error)
        return _error_response(ApiError(500, "the server failed to handle this request"))


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body().model_dump(), status_code=error.status)


def _describe_validation(errors: Sequence[Any]) -> ApiError:
    """One sentence about a field with a wrong type or value. When a value matched no branch
    of a union, the error that got deepest into the value says the most."""
    first = max(errors, key=lambda error: len(error["loc"]))
    # loc is (field, index or union branch, ...); the field path is the param.
    param = ".".join(str(part) for part in first["loc"] if not _is_union_branch(part))
    if first["type"] == "missing":
        return ApiError(400, f"Missing required parameter: '{param}'.", param=param)
    value = json.dumps(first.get("input"), default=str)[:80]
    return ApiError(400, f"Invalid value for '{param}' ({value}): {first['msg']}.", param=param)


def _is_union_branch(part: object) -> bool:
    # pydantic names the branch of a union it tried, e.g. "str" or "list[str]".
    return isinstance(part, str) and (part in {"str", "int", "float", "bool"} or "[" in part)
