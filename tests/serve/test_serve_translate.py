"""Request bodies -> engine requests: prompt formats, seeds, limits."""

from __future__ import annotations

import pytest

from dscoder.infer import chat_prompt, infill_prompt
from dscoder.serve.errors import ApiError
from dscoder.serve.schemas import ChatCompletionRequest, CompletionRequest
from dscoder.serve.translate import chat_jobs, completion_jobs, completion_prompt
from dscoder.tokenizer import Tokenizer
from dscoder.tokenizer.special import BOS, EOT, FIM_BEGIN, FIM_END, FIM_HOLE

CONTEXT = 128


def jobs_for(tokenizer: Tokenizer, **body):
    return completion_jobs(CompletionRequest(**body), tokenizer, CONTEXT)


def test_fim_tokens_written_in_a_prompt_are_the_templates_tokens(tokenizer: Tokenizer):
    written = completion_prompt(tokenizer, f"{FIM_BEGIN}def f():\n{FIM_HOLE}\nf()\n{FIM_END}", None)
    assert written.ids == infill_prompt(tokenizer, "def f():\n", "\nf()\n").ids


def test_a_prompt_that_starts_with_bos_gets_no_second_one(tokenizer: Tokenizer):
    ids = completion_prompt(tokenizer, f"{BOS}x = 1", None).ids
    assert ids == completion_prompt(tokenizer, "x = 1", None).ids
    assert ids.count(tokenizer.bos_id) == 1


def test_with_a_suffix_token_strings_in_the_code_stay_text(tokenizer: Tokenizer):
    (job,) = jobs_for(tokenizer, prompt=f"s = '{EOT}'\n", suffix="\nprint(s)\n")
    assert tokenizer.eot_id not in job.request.prompt_ids
    assert job.request.prompt_ids == infill_prompt(tokenizer, f"s = '{EOT}'\n", "\nprint(s)\n").ids


def test_an_empty_suffix_is_a_plain_completion(tokenizer: Tokenizer):
    (job,) = jobs_for(tokenizer, prompt="x = ", suffix="")
    assert job.request.prompt_ids == completion_prompt(tokenizer, "x = ", None).ids
    assert tokenizer.fim_begin_id not in job.request.prompt_ids


def test_choices_are_numbered_by_prompt_then_n_and_seeded_apart(tokenizer: Tokenizer):
    jobs = jobs_for(tokenizer, prompt=["a", "b"], n=2, seed=10, temperature=0.7)
    assert [(j.choice, j.prompt_index, j.request.params.seed) for j in jobs] == [
        (0, 0, 10), (1, 0, 11), (2, 1, 10), (3, 1, 11)]
    assert all(j.request.params.temperature == 0.7 for j in jobs)


def test_any_integer_seed_is_folded_into_torchs_range(tokenizer: Tokenizer):
    jobs = jobs_for(tokenizer, prompt="a", n=2, seed=2**63 - 1, temperature=0.5)
    assert [j.request.params.seed for j in jobs] == [2**63 - 1, 0]
    (job,) = jobs_for(tokenizer, prompt="a", seed=-1, temperature=0.5)
    assert job.request.params.seed == 2**63 - 1


def test_defaults_follow_openai_and_top_p_zero_is_greedy(tokenizer: Tokenizer):
    (job,) = jobs_for(tokenizer, prompt="a")
    assert (job.request.params.max_new_tokens, job.request.params.temperature) == (16, 1.0)
    (job,) = jobs_for(tokenizer, prompt="a", top_p=0, temperature=0.8)
    assert job.request.params.greedy


def test_the_extensions_reach_the_engine(tokenizer: Tokenizer):
    (job,) = jobs_for(tokenizer, prompt="a", top_k=-1, repetition_penalty=1.2, ignore_eos=True, stop="\n")
    params = job.request.params
    assert (params.top_k, params.repetition_penalty, params.stop, job.request.ignore_eos) == (0, 1.2, ("\n",), True)


def test_chat_maps_the_developer_role_to_system_and_joins_text_parts(tokenizer: Tokenizer):
    body = ChatCompletionRequest(messages=[
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Sort "}, {"type": "text", "text": "a list."}]},
    ])
    (job,) = chat_jobs(body, tokenizer, 512)
    want = chat_prompt(tokenizer, [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "Sort a list."}])
    assert list(job.request.prompt_ids) == want.ids
    assert tuple(job.request.stop_token_ids) == want.stop_token_ids
    # With no max_tokens, a chat reply may use the rest of the context.
    assert job.request.params.max_new_tokens == 512 - len(want.ids)


def test_prompt_and_completion_must_fit_the_context(tokenizer: Tokenizer):
    prompt_tokens = len(completion_prompt(tokenizer, "x", None).ids)
    (job,) = jobs_for(tokenizer, prompt="x", max_tokens=CONTEXT - prompt_tokens)
    assert job.request.params.max_new_tokens == CONTEXT - prompt_tokens
    with pytest.raises(ApiError) as raised:
        jobs_for(tokenizer, prompt="x", max_tokens=CONTEXT - prompt_tokens + 1)
    error = raised.value
    assert (error.status, error.param, error.code) == (400, "max_tokens", "context_length_exceeded")
