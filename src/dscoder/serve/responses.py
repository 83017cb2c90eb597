"""Engine results and step outputs -> OpenAI response bodies and stream chunks.

Streams follow OpenAI's format: one chunk per piece of new text; the chunk that ends a choice
carries its `finish_reason` (with whatever text the last token completed, possibly none);
chat streams open each choice with a `{"role": "assistant"}` delta; with
`stream_options.include_usage` a last chunk with no choices carries the usage, and every chunk
before it has `"usage": null`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from dscoder.infer import Result
from dscoder.serve.scheduler import Generation
from dscoder.serve.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
    Completion,
    CompletionChoice,
    Usage,
)
from dscoder.serve.translate import Job


@dataclass(frozen=True)
class ResponseInfo:
    """What every body or chunk of one response repeats."""

    id: str
    model: str
    created: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def new(cls, prefix: str, model: str) -> ResponseInfo:
        return cls(f"{prefix}-{uuid.uuid4().hex}", model)


class UsageCounter:
    """Prompt tokens count once per prompt, however many choices answer it."""

    def __init__(self, jobs: Sequence[Job]) -> None:
        self._prompt_tokens = {job.prompt_index: len(job.request.prompt_ids) for job in jobs}
        self._completion_tokens = 0

    def add(self, result: Result) -> None:
        self._completion_tokens += result.completion_tokens

    def usage(self) -> Usage:
        prompt = sum(self._prompt_tokens.values())
        return Usage(prompt_tokens=prompt, completion_tokens=self._completion_tokens,
                     total_tokens=prompt + self._completion_tokens)


def _usage_of(jobs: Sequence[Job], results: Sequence[Result]) -> Usage:
    counter = UsageCounter(jobs)
    for result in results:
        counter.add(result)
    return counter.usage()


def completion_body(info: ResponseInfo, jobs: Sequence[Job], results: Sequence[Result]) -> Completion:
    choices = [CompletionChoice(index=job.choice, text=result.text, finish_reason=result.finish_reason)
               for job, result in zip(jobs, results, strict=True)]
    return Completion(id=info.id, created=info.created, model=info.model, choices=choices,
                      usage=_usage_of(jobs, results))


def chat_body(info: ResponseInfo, jobs: Sequence[Job], results: Sequence[Result]) -> ChatCompletion:
    choices = [ChatChoice(index=job.choice, message=AssistantMessage(content=result.text),
                          finish_reason=result.finish_reason)
               for job, result in zip(jobs, results, strict=True)]
    return ChatCompletion(id=info.id, created=info.created, model=info.model, choices=choices,
                          usage=_usage_of(jobs, results))


async def completion_chunks(info: ResponseInfo, jobs: Sequence[Job], generation: Generation,
                            include_usage: bool) -> AsyncIterator[Completion]:
    counter = UsageCounter(jobs)
    async for update in generation:
        output = update.output
        if output.result is not None:
            counter.add(output.result)
        if output.text or output.finished:
            choice = CompletionChoice(index=jobs[update.job].choice, text=output.text,
                                      finish_reason=output.finish_reason)
            yield Completion(id=info.id, created=info.created, model=info.model, choices=[choice])
    if include_usage:
        yield Completion(id=info.id, created=info.created, model=info.model, choices=[],
                         usage=counter.usage())


async def chat_chunks(info: ResponseInfo, jobs: Sequence[Job], generation: Generation,
                      include_usage: bool) -> AsyncIterator[ChatCompletionChunk]:
    def chunk(choices: list[ChatChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=info.id, created=info.created, model=info.model,
                                   choices=choices, usage=usage)

    counter = UsageCounter(jobs)
    yield chunk([ChatChunkChoice(index=job.choice, delta=ChatDelta(role="assistant", content=""))
                 for job in jobs])
    async for update in generation:
        output = update.output
        if output.result is not None:
            counter.add(output.result)
        if output.text or output.finished:
            delta = ChatDelta(content=output.text or None)
            yield chunk([ChatChunkChoice(index=jobs[update.job].choice, delta=delta,
                                         finish_reason=output.finish_reason)])
    if include_usage:
        yield chunk([], counter.usage())
