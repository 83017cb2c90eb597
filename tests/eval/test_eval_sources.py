"""Completion sources: a samples file, and an OpenAI-compatible endpoint (a fake one started
here on 127.0.0.1), down to a full `dscoder eval --openai-base-url` run."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from eval_support import BENCHMARKS, require, run_eval_cli

from dscoder.errors import UserError
from dscoder.eval.jsonl import read_jsonl
from dscoder.eval.sources import (
    ChatMessage,
    GenerationRequest,
    OpenAIEndpoint,
    SamplesFile,
)

HUMANEVAL = BENCHMARKS / "humaneval" / "HumanEval.jsonl.gz"


@cache
def canonical() -> dict[str, dict]:
    return {row["prompt"].strip(): row for row in read_jsonl(require(HUMANEVAL))}


class FakeOpenAI(BaseHTTPRequestHandler):
    """Answers HumanEval prompts with their canonical solution, as a perfect model would.

    Completions continue the prompt; chat answers with the whole function in a code block.
    """

    calls: ClassVar[list[tuple[str, dict, dict]]] = []
    fail_next: ClassVar[list[int]] = []  # HTTP statuses to answer with before succeeding

    def do_POST(self) -> None:  # http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOpenAI.calls.append((self.path, body, dict(self.headers)))
        if FakeOpenAI.fail_next:
            self._send(FakeOpenAI.fail_next.pop(0), {"error": {"message": "model overloaded"}})
        elif body.get("model") != "fake-coder":
            self._send(404, {"error": {"message": f"The model `{body.get('model')}` does not exist."}})
        elif self.path == "/v1/completions":
            row = canonical().get(body["prompt"])
            text = "\n" + row["canonical_solution"] + "\n\ndef unrelated():\n    pass\n" if row else "?"
            self._send(200, {"choices": [{"index": 0, "text": text, "finish_reason": "stop"}]})
        elif self.path == "/v1/chat/completions":
            content = body["messages"][-1]["content"]
            code = content.split("```python\n", 1)[1].rsplit("\n```", 1)[0]
            row = canonical()[code]
            answer = f"Here it is:\n```python\n{row['prompt']}{row['canonical_solution']}```\n"
            self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]})
        else:
            self._send(404, {"error": {"message": "no such route"}})

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    FakeOpenAI.calls, FakeOpenAI.fail_next = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def first_prompt() -> str:
    return next(iter(canonical()))


def test_completion_request_body(server: str) -> None:
    endpoint = OpenAIEndpoint(server, "fake-coder", api_key="secret")
    request = GenerationRequest("HumanEval/0", 0, prompt=first_prompt(), max_new_tokens=500,
                                stop=("\ndef", "\nclass", "\nif", "\n#", "\nprint"), seed=7)
    [text] = endpoint.complete([request])
    assert text.startswith("\n    for idx, elem in enumerate(numbers):")
    path, body, headers = FakeOpenAI.calls[0]
    assert path == "/v1/completions"
    assert body == {"model": "fake-coder", "max_tokens": 500, "temperature": 0.0, "seed": 7,
                    "stop": ["\ndef", "\nclass", "\nif", "\n#"], "prompt": first_prompt()}
    assert headers["Authorization"] == "Bearer secret"


def test_chat_request_goes_to_chat_completions(server: str) -> None:
    endpoint = OpenAIEndpoint(server.removesuffix("/v1"), "fake-coder")  # "/v1" is added
    content = f"Complete:\n```python\n{first_prompt()}\n```"
    request = GenerationRequest("HumanEval/0", 0, messages=(ChatMessage("user", content),),
                                temperature=0.5, top_p=0.9)
    [text] = endpoint.complete([request])
    assert "```python\nfrom typing import List" in text
    path, body, _ = FakeOpenAI.calls[0]
    assert path == "/v1/chat/completions"
    assert body["messages"] == [{"role": "user", "content": content}]
    assert body["top_p"] == 0.9 and "stop" not in body


def test_errors_become_user_errors(server: str) -> None:
    request = GenerationRequest("t", 0, prompt="x")
    with pytest.raises(UserError, match="404: The model `nope` does not exist"):
        OpenAIEndpoint(server, "nope").complete([request])
    with pytest.raises(UserError, match="cannot reach"):
        OpenAIEndpoint("http://127.0.0.1:9/v1", "fake-coder", retries=0).complete([request])
    with pytest.raises(UserError, match="not an http"):
        OpenAIEndpoint("localhost:8000", "fake-coder")


def test_overloaded_server_is_retried(server: str) -> None:
    FakeOpenAI.fail_next = [503]
    [text] = OpenAIEndpoint(server, "fake-coder", retries=1).complete(
        [GenerationRequest("HumanEval/0", 0, prompt=first_prompt())])
    assert text.startswith("\n    for idx")
    assert len(FakeOpenAI.calls) == 2


@pytest.mark.parametrize("style", ["base", "instruct"])
def test_cli_scores_an_endpoint(server: str, tmp_path: Path, style: str) -> None:
    out = tmp_path / "out"
    assert run_eval_cli(["--benchmark", "humaneval", "--data", str(HUMANEVAL), "--output", str(out),
                         "--openai-base-url", server, "--model", "fake-coder", "--style", style,
                         "--limit", "5"]) == 0
    score = json.loads((out / "summary.json").read_text())["benchmarks"]["humaneval-python"]
    assert score["statuses"]["passed"] == 5 and score["partial"] is True
    assert len(FakeOpenAI.calls) == 5
    row = json.loads((out / "samples.jsonl").read_text().splitlines()[0])
    assert "unrelated" not in row["completion"]  # the stop sequences cut the base output
    assert "on the first problems only (--limit)" in (out / "results.md").read_text()


def test_samples_file_rows_and_lookup(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"task_id": "A", "completion": "1"}\n\n{"task_id": "A", "completion": "2"}\n'
                    '{"task_id": 7, "completion": "x"}\n')
    samples = SamplesFile(path)
    assert samples.name == "s"
    assert samples.samples_per_task() == {"A": 2, "7": 1}
    texts = samples.complete([GenerationRequest("A", 1, prompt=""), GenerationRequest("7", 0, prompt="")])
    assert texts == ["2", "x"]
    with pytest.raises(UserError, match="no sample 1 for task '7'"):
        samples.complete([GenerationRequest("7", 1, prompt="")])


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"task_id": "A", "completion": "1"}\n{"task_id": "B", "compl', "line 2 is not valid JSON"),
        ('{"task_id": "A"}\n', "row 1 needs a string `task_id` and a string `completion`"),
        ('["A", "1"]\n', "line 1 is not a JSON object"),
        ("", "has no rows"),
    ],
)
def test_malformed_samples_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        SamplesFile(path)


def test_missing_samples_file() -> None:
    with pytest.raises(UserError, match="does not exist"):
        SamplesFile("/nonexistent/samples.jsonl")
