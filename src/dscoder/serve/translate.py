"""OpenAI request bodies -> engine requests: prompts, stop tokens, sampling, limits.

Prompts follow the released models' formats (`dscoder.infer.prompts`):

- `/v1/completions` without `suffix`: BOS + prompt, where the tokenizer's control-token
  strings written in the prompt are honoured. Editor plugins such as Continue write the FIM
  template themselves (`<｜fim▁begin｜>prefix<｜fim▁hole｜>suffix<｜fim▁end｜>`); that prompt
  becomes the same tokens as the server's own template. A prompt that already starts with BOS
  gets no second one.
- `/v1/completions` with a non-empty `suffix` (OpenAI's insertion field, what Tabby sends):
  the server writes the FIM template around prompt and suffix, which stay plain text. An empty
  suffix means nothing follows the cursor, so it is a plain completion.
- `/v1/chat/completions`: the tokenizer's chat template, ending at `<|EOT|>`.

A request with several prompts and/or `n` > 1 becomes one job per choice; choice
`prompt_index * n + j` answers prompt `prompt_index`, as OpenAI numbers them. A seeded request
gives choice j the seed `seed + j` (modulo 2**63), so its choices differ yet repeat from run
to run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dscoder.errors import UserError
from dscoder.infer import Prompt, Request, SamplingParams, chat_prompt, infill_prompt
from dscoder.infer.prompts import base_stop_ids
from dscoder.serve.errors import bad_request
from dscoder.serve.schemas import (
    MAX_CHOICES,
    MAX_STOP_STRINGS,
    ChatCompletionRequest,
    CompletionRequest,
    SamplingFields,
)
from dscoder.tokenizer import Tokenizer

# OpenAI's defaults: 16 tokens for a completion; a chat reply may fill the context.
DEFAULT_COMPLETION_TOKENS = 16
DEFAULT_TEMPERATURE = 1.0
# torch seeds are 64-bit; any integer a client sends is folded into range.
SEED_RANGE = 2**63


@dataclass(frozen=True)
class Job:
    choice: int  # the choice's index in the response
    prompt_index: int  # which prompt it answers; usage counts each prompt once
    request: Request


def completion_jobs(body: CompletionRequest, tokenizer: Tokenizer, context: int) -> list[Job]:
    _check_common(body)
    if body.echo:
        raise bad_request("echo is not supported by this server", "echo")
    if body.logprobs is not None:
        raise bad_request("logprobs are not supported by this server", "logprobs")
    n = body.n or 1
    if body.best_of is not None and body.best_of != n:
        raise bad_request("best_of other than n is not supported by this server", "best_of")
    texts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if not texts:
        raise bad_request("prompt must not be an empty list", "prompt")
    _check_choices(len(texts) * n)
    prompts = [completion_prompt(tokenizer, text, body.suffix) for text in texts]
    max_tokens = body.max_tokens or DEFAULT_COMPLETION_TOKENS
    for prompt in prompts:
        check_fits(len(prompt.ids), max_tokens, context, "prompt")
    return _jobs(prompts, body, n, [max_tokens] * len(prompts))


def chat_jobs(body: ChatCompletionRequest, tokenizer: Tokenizer, context: int) -> list[Job]:
    _check_common(body)
    if body.logprobs:
        raise bad_request("logprobs are not supported by this server", "logprobs")
    if body.tools:
        raise bad_request("tools are not supported by this server", "tools")
    if body.response_format and body.response_format.get("type", "text") != "text":
        raise bad_request("only the text response format is supported by this server",
                          "response_format")
    n = body.n or 1
    _check_choices(n)
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                for m in body.messages]
    try:
        prompt = chat_prompt(tokenizer, messages)
    except UserError as error:
        raise bad_request(str(error), "messages") from None
    asked = body.max_completion_tokens or body.max_tokens
    param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
    if asked is None:
        check_fits(len(prompt.ids), 1, context, "messages")
        max_tokens = context - len(prompt.ids)
    else:
        check_fits(len(prompt.ids), asked, context, "messages", param)
        max_tokens = asked
    return _jobs([prompt], body, n, [max_tokens])


def completion_prompt(tokenizer: Tokenizer, text: str, suffix: str | None) -> Prompt:
    if suffix:
        return infill_prompt(tokenizer, text, suffix)
    ids = tokenizer.encode(text, allow_special=True)
    if not ids or ids[0] != tokenizer.bos_id:
        ids.insert(0, tokenizer.bos_id)
    return Prompt(ids, base_stop_ids(tokenizer))


def check_fits(prompt_tokens: int, max_tokens: int, context: int, prompt_param: str,
               tokens_param: str = "max_tokens") -> None:
    """Refuse a request whose prompt and completion cannot both fit one sequence."""
    if prompt_tokens >= context:
        raise bad_request(f"This model's maximum context length is {context} tokens, but the "
                          f"prompt has {prompt_tokens} tokens. Shorten the prompt.",
                          prompt_param, "context_length_exceeded")
    if prompt_tokens + max_tokens > context:
        raise bad_request(f"This model's maximum context length is {context} tokens, but "
                          f"{prompt_tokens + max_tokens} were requested ({prompt_tokens} in the "
                          f"prompt, {max_tokens} for the completion). Shorten the prompt or "
                          f"lower {tokens_param}.", tokens_param, "context_length_exceeded")


def _check_common(body: SamplingFields) -> None:
    if body.stream_options is not None and not body.stream:
        raise bad_request("stream_options is only allowed when stream is true", "stream_options")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(body, name):
            raise bad_request(f"{name} is not supported by this server; use "
                              f"repetition_penalty instead", name)
    if body.logit_bias:
        raise bad_request("logit_bias is not supported by this server", "logit_bias")
    if len(body.stop_strings()) > MAX_STOP_STRINGS:
        raise bad_request(f"at most {MAX_STOP_STRINGS} stop strings are allowed", "stop")


def _check_choices(count: int) -> None:
    if count > MAX_CHOICES:
        raise bad_request(f"this request asks for {count} choices (prompts x n); at most "
                          f"{MAX_CHOICES} are allowed", "n")


def _sampling(body: SamplingFields, max_tokens: int, choice: int) -> SamplingParams:
    temperature = DEFAULT_TEMPERATURE if body.temperature is None else body.temperature
    top_p = 1.0 if body.top_p is None else body.top_p
    if top_p == 0:
        # Only the most likely token survives a nucleus of mass 0: that is greedy decoding.
        temperature, top_p = 0.0, 1.0
    try:
        return SamplingParams(
            max_new_tokens=max_tokens,
            temperature=temperature,
            top_k=max(body.top_k or 0, 0),
            top_p=top_p,
            repetition_penalty=1.0 if body.repetition_penalty is None else body.repetition_penalty,
            stop=body.stop_strings(),
            seed=None if body.seed is None else (body.seed + choice) % SEED_RANGE,
        )
    except UserError as error:
        raise bad_request(str(error)) from None


def _jobs(prompts: Sequence[Prompt], body: SamplingFields, n: int,
          max_tokens: Sequence[int]) -> list[Job]:
    jobs = []
    for prompt_index, (prompt, limit) in enumerate(zip(prompts, max_tokens, strict=True)):
        for j in range(n):
            params = _sampling(body, limit, j)
            request = Request(prompt.ids, params, prompt.stop_token_ids,
                              ignore_eos=bool(body.ignore_eos))
            jobs.append(Job(prompt_index * n + j, prompt_index, request))
    return jobs

