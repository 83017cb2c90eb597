"""The server through the official `openai` client: completions, infilling, chat, streaming.

Expected texts come from a second engine on the same weights, driven directly with the prompt
the server should have built; decoding is greedy unless a test is about sampling.
"""

from __future__ import annotations

import httpx
import openai

from dscoder.infer import Engine, Request, SamplingParams, chat_prompt, infill_prompt
from dscoder.infer.prompts import Prompt
from dscoder.serve import BackgroundServer
from dscoder.serve.translate import completion_prompt
from dscoder.tokenizer import Tokenizer
from dscoder.tokenizer.special import BOS, FIM_BEGIN, FIM_END, FIM_HOLE
from serve_support import CONTEXT, MODEL_NAME

PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\nprint(add(1, 2))\n"
IGNORE_EOS = {"ignore_eos": True}  # random weights may pick EOS early; length tests need tokens


def expected(reference: Engine, prompt: Prompt, max_tokens: int, **sampling):
    (result,) = reference.generate([Request(prompt.ids, SamplingParams(max_new_tokens=max_tokens, **sampling),
                                            prompt.stop_token_ids)])
    return result


def test_completion_is_the_engines_greedy_continuation(client: openai.OpenAI, reference: Engine,
                                                        tokenizer: Tokenizer):
    response = client.completions.create(model=MODEL_NAME, prompt=PREFIX, max_tokens=12, temperature=0)
    want = expected(reference, completion_prompt(tokenizer, PREFIX, None), 12)
    (choice,) = response.choices
    assert (choice.text, choice.finish_reason) == (want.text, want.finish_reason)
    assert response.model == MODEL_NAME and response.object == "text_completion"
    usage = response.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (want.prompt_tokens, want.completion_tokens)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_a_suffix_turns_the_completion_into_fill_in_the_middle(client: openai.OpenAI, reference: Engine,
                                                               tokenizer: Tokenizer):
    response = client.completions.create(model=MODEL_NAME, prompt=PREFIX, suffix=SUFFIX, max_tokens=10,
                                         temperature=0)
    want = expected(reference, infill_prompt(tokenizer, PREFIX, SUFFIX), 10)
    assert response.choices[0].text == want.text
    assert response.usage.prompt_tokens == want.prompt_tokens


def test_a_prompt_written_in_the_fim_format_works_as_written(client: openai.OpenAI, tokenizer: Tokenizer):
    """What Continue sends: the template in the prompt, no suffix. It must become the same
    tokens as the server's own template, not the FIM token strings spelled out as text."""
    templated = client.completions.create(model=MODEL_NAME, prompt=PREFIX, suffix=SUFFIX, max_tokens=10,
                                          temperature=0)
    for written in (f"{FIM_BEGIN}{PREFIX}{FIM_HOLE}{SUFFIX}{FIM_END}",
                    f"{BOS}{FIM_BEGIN}{PREFIX}{FIM_HOLE}{SUFFIX}{FIM_END}"):
        response = client.completions.create(model=MODEL_NAME, prompt=written, max_tokens=10, temperature=0)
        assert response.choices[0].text == templated.choices[0].text
        assert response.usage.prompt_tokens == templated.usage.prompt_tokens


def test_chat_uses_the_chat_template(client: openai.OpenAI, reference: Engine, tokenizer: Tokenizer):
    messages = [{"role": "system", "content": "Answer in Python."},
                {"role": "user", "content": "Reverse a string."}]
    response = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=12,
                                              temperature=0)
    want = expected(reference, chat_prompt(tokenizer, messages), 12)
    (choice,) = response.choices
    assert choice.message.role == "assistant"
    assert (choice.message.content, choice.finish_reason) == (want.text, want.finish_reason)
    assert response.usage.prompt_tokens == want.prompt_tokens
    assert response.object == "chat.completion"


def test_a_streamed_completion_arrives_in_pieces_that_join_to_the_whole(client: openai.OpenAI):
    whole = client.completions.create(model=MODEL_NAME, prompt=PREFIX, max_tokens=20, temperature=0,
                                      extra_body=IGNORE_EOS)
    chunks = list(client.completions.create(model=MODEL_NAME, prompt=PREFIX, max_tokens=20, temperature=0,
                                            stream=True, stream_options={"include_usage": True},
                                            extra_body=IGNORE_EOS))
    *content, last = chunks
    assert len(content) > 1
    assert "".join(c.choices[0].text for c in content) == whole.choices[0].text
    # The finish reason rides on the last content chunk, and only there.
    assert [c.choices[0].finish_reason for c in content] == [None] * (len(content) - 1) + ["length"]
    assert last.choices == [] and last.usage == whole.usage
    assert all(c.usage is None for c in content)


def test_a_streamed_chat_opens_with_the_role_and_joins_to_the_whole(client: openai.OpenAI):
    messages = [{"role": "user", "content": "Write hello world."}]
    whole = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=15, temperature=0,
                                           extra_body=IGNORE_EOS)
    stream = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=15, temperature=0,
                                            stream=True, stream_options={"include_usage": True},
                                            extra_body=IGNORE_EOS)
    first, *content, last = list(stream)
    assert first.choices[0].delta.role == "assistant" and first.object == "chat.completion.chunk"
    assert "".join(c.choices[0].delta.content or "" for c in content) == whole.choices[0].message.content
    assert content[-1].choices[0].finish_reason == "length"
    assert all(c.choices[0].finish_reason is None for c in content[:-1])
    assert last.usage == whole.usage


def test_a_stream_without_usage_has_no_usage_chunk(client: openai.OpenAI):
    chunks = list(client.completions.create(model=MODEL_NAME, prompt=PREFIX, max_tokens=5, temperature=0,
                                            stream=True, extra_body=IGNORE_EOS))
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in chunks)


def test_stop_strings_end_the_text_before_them(client: openai.OpenAI):
    free = client.completions.create(model=MODEL_NAME, prompt=PREFIX, max_tokens=30, temperature=0,
                                     extra_body=IGNORE_EOS).choices[0].text
    stop = free[10:13]
    assert stop.strip(), f"the free text is too uniform to pick a stop string from: {free!r}"
    for stream in (False, True):
        response = client.completions.create(model=MODEL_NAME, prompt=PREFIX, max_tokens=30, temperature=0,
                                             stop=[stop, "never appears"], stream=stream, extra_body=IGNORE_EOS)
        chunks = list(response) if stream else [response]
        assert "".join(c.choices[0].text for c in chunks) == free[: free.index(stop)]
        assert chunks[-1].choices[0].finish_reason == "stop"


def test_seeded_choices_differ_from_each_other_and_repeat(client: openai.OpenAI):
    def sample(n: int):
        response = client.completions.create(model=MODEL_NAME, prompt=PREFIX, max_tokens=8, temperature=1.0,
                                             n=n, seed=1234, extra_body=IGNORE_EOS)
        return response, [c.text for c in sorted(response.choices, key=lambda c: c.index)]

    response, texts = sample(3)
    assert [c.index for c in sorted(response.choices, key=lambda c: c.index)] == [0, 1, 2]
    assert len(set(texts)) == 3
    assert sample(3)[1] == texts
    single, (alone,) = sample(1)
    assert alone == texts[0]  # choice j draws with seed + j, alone or not
    assert response.usage.prompt_tokens == single.usage.prompt_tokens  # the prompt counts once
    assert response.usage.completion_tokens == 3 * 8


def test_any_integer_is_a_seed(client: openai.OpenAI):
    for seed in (-1, 2**70):
        response = client.completions.create(model=MODEL_NAME, prompt=PREFIX, max_tokens=3, temperature=1.0,
                                             seed=seed)
        assert response.choices[0].finish_reason in ("stop", "length")


def test_several_prompts_get_choices_in_openai_order(client: openai.OpenAI):
    prompts = [PREFIX, "import os\n"]
    response = client.completions.create(model=MODEL_NAME, prompt=prompts, max_tokens=6, temperature=0, n=2)
    by_index = {c.index: c.text for c in response.choices}
    singles = [client.completions.create(model=MODEL_NAME, prompt=p, max_tokens=6, temperature=0)
               for p in prompts]
    assert by_index == {0: singles[0].choices[0].text, 1: singles[0].choices[0].text,
                        2: singles[1].choices[0].text, 3: singles[1].choices[0].text}
    assert response.usage.prompt_tokens == sum(s.usage.prompt_tokens for s in singles)


def test_max_tokens_defaults_to_sixteen_for_completions(client: openai.OpenAI):
    response = client.completions.create(model=MODEL_NAME, prompt=PREFIX, temperature=0, extra_body=IGNORE_EOS)
    assert (response.usage.completion_tokens, response.choices[0].finish_reason) == (16, "length")


def test_a_chat_without_max_tokens_may_fill_the_context(client: openai.OpenAI):
    response = client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "go"}],
                                              temperature=0, extra_body=IGNORE_EOS)
    assert response.usage.total_tokens == CONTEXT
    assert response.choices[0].finish_reason == "length"


def test_the_model_is_listed_and_the_server_reports_health(client: openai.OpenAI, server: BackgroundServer):
    (card,) = client.models.list().data
    assert (card.id, card.object) == (MODEL_NAME, "model")
    assert client.models.retrieve(MODEL_NAME).id == MODEL_NAME
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and {"running", "waiting"} <= health.keys()


def test_the_web_page_and_its_files_are_served(server: BackgroundServer):
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for path in ("/static/app.js", "/static/style.css"):
        assert path in page.text
        assert httpx.get(server.url + path).status_code == 200
