"""Bad requests get OpenAI-style JSON errors with 4xx codes, and the server keeps serving."""

from __future__ import annotations

import httpx
import openai
import pytest

from dscoder.serve import BackgroundServer
from serve_support import CONTEXT, MODEL_NAME

GOOD_COMPLETION = {"model": MODEL_NAME, "prompt": "def f():", "max_tokens": 3}
GOOD_CHAT = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
LONG_PROMPT = "x = 1\n" * CONTEXT  # well over CONTEXT tokens


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return error


def assert_still_serving(server: BackgroundServer) -> None:
    response = httpx.post(server.url + "/v1/completions", json=GOOD_COMPLETION, timeout=30)
    assert response.status_code == 200 and response.json()["choices"][0]["finish_reason"]


@pytest.mark.parametrize("path, body", [("/v1/completions", GOOD_COMPLETION),
                                        ("/v1/chat/completions", GOOD_CHAT)])
def test_an_unknown_model_is_not_found(client: openai.OpenAI, server: BackgroundServer, path: str, body: dict):
    error = error_of(httpx.post(server.url + path, json={**body, "model": "gpt-4"}), 404)
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", "model", "model_not_found")
    assert "gpt-4" in error["message"] and MODEL_NAME in error["message"]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


def test_the_official_client_sees_the_error_fields(client: openai.OpenAI):
    with pytest.raises(openai.BadRequestError) as raised:
        client.completions.create(model=MODEL_NAME, prompt=LONG_PROMPT, max_tokens=4)
    assert raised.value.status_code == 400
    assert raised.value.code == "context_length_exceeded" and raised.value.param == "prompt"
    assert str(CONTEXT) in raised.value.message


@pytest.mark.parametrize("content", [b"{\"prompt\": ", b"not json", b"{'prompt': 'single quotes'}", b"\xff\xfe"])
def test_malformed_json_is_a_bad_request(server: BackgroundServer, content: bytes):
    response = httpx.post(server.url + "/v1/completions", content=content,
                          headers={"content-type": "application/json"})
    error = error_of(response, 400)
    assert error["code"] == "invalid_json" and "not valid JSON" in error["message"]


@pytest.mark.parametrize("content", [b"", b"[1, 2]", b"\"a prompt\""])
def test_a_body_that_is_not_a_json_object_is_a_bad_request(server: BackgroundServer, content: bytes):
    error_of(httpx.post(server.url + "/v1/chat/completions", content=content), 400)


def test_json_sent_without_a_json_content_type_is_still_read(server: BackgroundServer):
    # `curl -d` labels its body as a form; the body is JSON all the same.
    import json

    response = httpx.post(server.url + "/v1/completions", content=json.dumps(GOOD_COMPLETION),
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200


@pytest.mark.parametrize("path, body, param", [
    ("/v1/completions", {**GOOD_COMPLETION, "prompt": LONG_PROMPT}, "prompt"),
    ("/v1/completions", {**GOOD_COMPLETION, "prompt": ["ok", LONG_PROMPT]}, "prompt"),
    ("/v1/completions", {**GOOD_COMPLETION, "suffix": LONG_PROMPT}, "prompt"),
    ("/v1/completions", {**GOOD_COMPLETION, "max_tokens": CONTEXT}, "max_tokens"),
    ("/v1/chat/completions", {**GOOD_CHAT, "messages": [{"role": "user", "content": LONG_PROMPT}]}, "messages"),
    ("/v1/chat/completions", {**GOOD_CHAT, "max_completion_tokens": CONTEXT}, "max_completion_tokens"),
])
def test_a_request_longer_than_the_context_is_refused(server: BackgroundServer, path: str, body: dict, param: str):
    error = error_of(httpx.post(server.url + path, json=body), 400)
    assert (error["code"], error["param"]) == ("context_length_exceeded", param)
    assert f"maximum context length is {CONTEXT} tokens" in error["message"]


@pytest.mark.parametrize("change, param", [
    ({"temperature": 2.5}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": "many"}, "max_tokens"),
    ({"n": 0}, "n"),
    ({"n": 17}, "n"),
    ({"prompt": ["a"] * 5, "n": 4}, "n"),  # 20 choices
    ({"stop": [""]}, None),
    ({"stop": ["s"] * 17}, "stop"),
    ({"stop": 7}, "stop"),
    ({"prompt": 42}, "prompt"),
    ({"prompt": []}, "prompt"),
    ({"prompt": None}, "prompt"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"logit_bias": {"50": 10}}, "logit_bias"),
    ({"logprobs": 2}, "logprobs"),
    ({"echo": True}, "echo"),
    ({"best_of": 3}, "best_of"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"top_k": -5}, "top_k"),
    ({"repetition_penalty": 0}, "repetition_penalty"),
])
def test_invalid_completion_parameters_are_bad_requests(server: BackgroundServer, change: dict, param: str | None):
    error = error_of(httpx.post(server.url + "/v1/completions", json={**GOOD_COMPLETION, **change}), 400)
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


@pytest.mark.parametrize("change, param", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
    ({"messages": [{"role": "user"}, {"role": "assistant", "content": "ok"}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages.0.content.0.type"),
    ({"messages": "hi"}, "messages"),
    ({"logprobs": True}, "logprobs"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"temperature": -1}, "temperature"),
])
def test_invalid_chat_parameters_are_bad_requests(server: BackgroundServer, change: dict, param: str):
    error = error_of(httpx.post(server.url + "/v1/chat/completions", json={**GOOD_CHAT, **change}), 400)
    assert error["param"] == param


def test_unknown_paths_and_methods_answer_in_the_same_shape(server: BackgroundServer):
    assert error_of(httpx.get(server.url + "/v1/engines"), 404)["message"] == "Not Found: GET /v1/engines"
    assert "GET /v1/completions" in error_of(httpx.get(server.url + "/v1/completions"), 405)["message"]


def test_the_server_keeps_serving_after_bad_requests(server: BackgroundServer):
    for content in (b"{", b"[]", b'{"prompt": 1}', b'{"model": "x", "prompt": "a"}'):
        assert httpx.post(server.url + "/v1/completions", content=content).status_code in (400, 404)
    assert_still_serving(server)
    chat = httpx.post(server.url + "/v1/chat/completions", json=GOOD_CHAT, timeout=30)
    assert chat.status_code == 200
