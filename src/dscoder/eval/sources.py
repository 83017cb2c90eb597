"""Where completions come from: the one interface the evaluation talks to a model through.

Three implementations: a file of ready samples (openai/human-eval's JSONL), any
OpenAI-compatible endpoint (dscoder's server, vLLM, ...), and a dscoder checkpoint loaded in
this process.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dscoder.errors import UserError
from dscoder.eval.jsonl import read_jsonl


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system", "user" or "assistant"
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    """One sample to generate: a prompt to continue, or chat messages to answer."""

    task_id: str
    sample_index: int  # 0..n-1 within the task; with the seed, what makes a sample reproducible
    prompt: str | None = None
    messages: tuple[ChatMessage, ...] | None = None
    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("a GenerationRequest has either a prompt or messages, not both")


class CompletionSource(Protocol):
    """Anything that turns requests into texts, one text per request, in order."""

    name: str  # the row label in the reports
    # What the texts depend on besides the sampling settings (a file's hash, a checkpoint's
    # files, an endpoint and model); a run resumes only with the same identity.
    identity: str
    # True when the texts are final completions (a samples file), so no stop-sequence cutting
    # or code-block extraction is applied to them.
    ready_samples: bool

    def complete(self, requests: list[GenerationRequest]) -> list[str]: ...


class ReadySamples(CompletionSource, Protocol):
    """A source of final completions, which also says how many samples each task has."""

    def samples_per_task(self) -> dict[str, int]: ...


class SamplesFile:
    """Completions read from JSONL rows with `task_id` and `completion`, the format of
    openai/human-eval; several rows for one task are its samples, in file order."""

    ready_samples = True

    def __init__(self, path: Path | str, name: str | None = None) -> None:
        self.path = Path(path)
        self.name = name or self.path.name.split(".")[0]
        self._by_task: dict[str, list[str]] = defaultdict(list)
        for number, row in enumerate(read_jsonl(self.path, "samples file"), start=1):
            task_id, completion = row.get("task_id"), row.get("completion")
            if not isinstance(task_id, (str, int)) or not isinstance(completion, str):
                raise UserError(
                    f"samples file {self.path} row {number} needs a string `task_id` and a "
                    "string `completion`"
                )
            self._by_task[str(task_id)].append(completion)
        self.identity = f"samples file sha256:{hashlib.sha256(self.path.read_bytes()).hexdigest()}"

    def samples_per_task(self) -> dict[str, int]:
        return {task_id: len(completions) for task_id, completions in self._by_task.items()}

    def complete(self, requests: list[GenerationRequest]) -> list[str]:
        texts = []
        for request in requests:
            completions = self._by_task.get(request.task_id, [])
            if request.sample_index >= len(completions):
                raise UserError(
                    f"samples file {self.path} has no sample {request.sample_index} for task "
                    f"{request.task_id!r}"
                )
            texts.append(completions[request.sample_index])
        return texts


class ReferenceSolutions:
    """The dataset's own solutions as the samples: a check that the harness, the sandbox and the
    runtimes work on this machine (HumanEval's canonical solutions should all pass)."""

    ready_samples = True
    identity = "the data file's reference solutions"  # the run also records the file's hash

    def __init__(self, references: dict[str, str], name: str = "reference") -> None:
        self.name = name
        self._references = references

    def samples_per_task(self) -> dict[str, int]:
        return dict.fromkeys(self._references, 1)

    def complete(self, requests: list[GenerationRequest]) -> list[str]:
        return [self._references[request.task_id] for request in requests]


# OpenAI's API takes at most 4 stop strings; the rest are applied after generation anyway.
_MAX_STOP_STRINGS = 4
_RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIEndpoint:
    """An OpenAI-compatible server: /v1/completions for prompts, /v1/chat/completions for chat.

    Requests go out concurrently (servers batch them); each sample is its own request with its
    own seed, so a rerun asks for exactly the samples that are missing.
    """

    ready_samples = False

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 600.0,
        retries: int = 3,
    ) -> None:
        parsed = urllib.parse.urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise UserError(f"--openai-base-url {base_url!r} is not an http(s) URL")
        # Accept both "http://host:8000" and the OpenAI-style "http://host:8000/v1".
        self.base_url = base_url.rstrip("/") + ("/v1" if parsed.path.strip("/") == "" else "")
        self.name = model
        self.model = model
        self.identity = f"endpoint {self.base_url} model {model}"
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.concurrency = max(1, concurrency)
        self.timeout_s = timeout_s
        self.retries = retries

    def complete(self, requests: list[GenerationRequest]) -> list[str]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._complete_one, requests))

    def _complete_one(self, request: GenerationRequest) -> str:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_new_tokens,
            "temperature": request.temperature,
            "seed": request.seed,
        }
        if request.temperature > 0:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = list(request.stop[:_MAX_STOP_STRINGS])
        if request.prompt is not None:
            body["prompt"] = request.prompt
            choice = self._post("/completions", body)
            return str(choice.get("text") or "")
        body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages or ()]
        choice = self._post("/chat/completions", body)
        return str((choice.get("message") or {}).get("content") or "")

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.base_url + path
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode("utf-8")
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    payload = json.loads(response.read().decode("utf-8"))
                return _first_choice(payload, url)
            except urllib.error.HTTPError as error:
                message = _error_message(error)
                if error.code not in _RETRYABLE_STATUS or attempt == self.retries:
                    raise UserError(f"{url} answered {error.code}: {message}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                if attempt == self.retries:
                    reason = getattr(error, "reason", error)
                    raise UserError(f"cannot reach the endpoint {url}: {reason}") from None
            except json.JSONDecodeError:
                raise UserError(f"{url} did not answer with JSON") from None
            time.sleep(min(30.0, 2.0**attempt))  # back off before retrying
        raise AssertionError("unreachable")


def _first_choice(payload: Any, url: str) -> dict[str, Any]:
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not choices or not isinstance(choices[0], dict):
        raise UserError(f"{url} answered without choices: {str(payload)[:200]}")
    return choices[0]


def _error_message(error: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(error.read().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return error.reason or "no details"
    detail = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(detail, dict):
        detail = detail.get("message", detail)
    return str(detail)[:300]


class LocalModel:
    """A dscoder checkpoint, generating in this process with `dscoder.infer`'s batched engine.

    Small models have small contexts: new tokens are capped at half the context, and a prompt
    too long for the rest keeps BOS and its last tokens, as DeepSeek's scripts keep the end.
    """

    ready_samples = False

    def __init__(
        self,
        checkpoint: Path | str,
        name: str | None = None,
        max_batch_size: int = 8,
        max_seq_len: int = 4096,
    ) -> None:
        path = Path(checkpoint)
        if not (path / "config.json").is_file():
            raise UserError(f"{path} is not a checkpoint directory (it has no config.json)")
        from dscoder.infer import Engine  # torch and the model load only when a checkpoint is used

        self.name = name or path.resolve().name
        self.identity = _checkpoint_identity(path)
        self._engine = Engine.from_checkpoint(path, max_batch_size=max_batch_size, max_seq_len=max_seq_len)

    def complete(self, requests: list[GenerationRequest]) -> list[str]:
        from dscoder.infer import Request, SamplingParams, chat_prompt, completion_prompt

        tokenizer = self._engine.tokenizer
        batch = []
        for request in requests:
            if request.prompt is not None:
                prompt = completion_prompt(tokenizer, request.prompt)
            else:
                messages = [{"role": m.role, "content": m.content} for m in request.messages or ()]
                prompt = chat_prompt(tokenizer, messages)
            room = self._engine.max_seq_len
            max_new_tokens = max(1, min(request.max_new_tokens, room // 2))
            ids = prompt.ids
            if len(ids) > room - max_new_tokens:
                keep = room - max_new_tokens - 1
                ids = [ids[0], *ids[len(ids) - keep :]]  # BOS, then the prompt's end
            params = SamplingParams(
                max_new_tokens=max_new_tokens,
                temperature=request.temperature,
                top_p=request.top_p if request.temperature > 0 else 1.0,
                stop=request.stop,
                seed=request.seed,
            )
            batch.append(Request(ids, params, stop_token_ids=prompt.stop_token_ids))
        return [result.text for result in self._engine.generate(batch)]


def _checkpoint_identity(path: Path) -> str:
    """The checkpoint's files by name, size and modification time: cheap even for many GB, and
    it changes when a checkpoint is retrained in place."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        info = file.stat()
        digest.update(f"{file.name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return f"checkpoint {path.resolve()} files:{digest.hexdigest()[:16]}"

