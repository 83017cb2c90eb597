"""Choosing tokens: greedy, the filters, the penalty, and seeds that reproduce draws."""

from __future__ import annotations

import math

import pytest
import torch

from dscoder.errors import UserError
from dscoder.infer.sampling import (
    Sampler,
    SamplingParams,
    apply_repetition_penalty,
    choose_tokens,
    sample,
)

VOCAB = 50


def draws(params: SamplingParams, logits: torch.Tensor, n: int = 40) -> list[int]:
    sampler = Sampler(params, logits.shape[-1], prompt_ids=[])
    return [sampler.choose(logits) for _ in range(n)]


@pytest.mark.parametrize("bad", [
    {"max_new_tokens": 0}, {"temperature": -0.1}, {"temperature": math.inf}, {"top_k": -1},
    {"top_p": 0.0}, {"top_p": 1.5}, {"repetition_penalty": 0.0}, {"stop": ("",)},
])
def test_bad_parameters_are_user_errors(bad):
    with pytest.raises(UserError):
        SamplingParams(**bad)


def test_a_single_stop_string_is_not_split_into_characters():
    assert SamplingParams(stop="\ndef").stop == ("\ndef",)


def test_greedy_is_argmax():
    logits = torch.randn(VOCAB, generator=torch.Generator().manual_seed(0))
    assert draws(SamplingParams(), logits, n=3) == [int(logits.argmax())] * 3


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    logits = torch.tensor([2.0, -2.0, 1.0, -1.0])
    seen = torch.tensor([True, True, False, False])
    assert apply_repetition_penalty(logits, seen, 2.0).tolist() == [1.0, -4.0, 1.0, -1.0]


def test_repetition_penalty_covers_the_prompt_and_the_output():
    logits = torch.tensor([3.0, 2.5, 1.0])
    sampler = Sampler(SamplingParams(repetition_penalty=2.0), 3, prompt_ids=[0])
    assert sampler.choose(logits) == 1  # token 0 (3.0 -> 1.5) was in the prompt
    sampler.observe(1)  # 2.5 -> 1.25
    assert sampler.choose(logits) == 0


def test_top_k_keeps_only_the_k_most_likely():
    logits = torch.linspace(0, 1, VOCAB)  # nearly uniform, so every token could be drawn
    picked = set(draws(SamplingParams(temperature=1.0, top_k=3, seed=0), logits, n=200))
    assert picked <= {VOCAB - 1, VOCAB - 2, VOCAB - 3} and len(picked) > 1


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])
    picked = set(draws(SamplingParams(temperature=1.0, top_p=0.7, seed=0), probs.log(), n=200))
    assert picked == {1, 3}
    # A tiny top_p still keeps the most likely token.
    assert set(draws(SamplingParams(temperature=1.0, top_p=1e-6, seed=0), probs.log())) == {1}


def test_temperature_sharpens_and_flattens():
    logits = torch.tensor([1.0, 0.0])
    generator = torch.Generator().manual_seed(0)
    cold = [sample(logits, 0.05, 0, 1.0, generator) for _ in range(200)]
    hot = [sample(logits, 5.0, 0, 1.0, generator) for _ in range(200)]
    assert cold.count(0) == 200
    assert 60 < hot.count(0) < 140


def test_a_seed_reproduces_the_draws_and_another_seed_does_not():
    logits = torch.zeros(VOCAB)
    first = draws(SamplingParams(temperature=1.0, seed=7), logits)
    assert draws(SamplingParams(temperature=1.0, seed=7), logits) == first
    assert draws(SamplingParams(temperature=1.0, seed=8), logits) != first


def test_batched_choice_matches_row_by_row_choice():
    logits = torch.randn(4, VOCAB, generator=torch.Generator().manual_seed(1))
    params = [SamplingParams(), SamplingParams(temperature=0.9, top_k=10, seed=3),
              SamplingParams(repetition_penalty=1.3), SamplingParams(temperature=1.2, top_p=0.8, seed=4)]
    batched = choose_tokens(logits, [Sampler(p, VOCAB, [5, 6]) for p in params])
    alone = [Sampler(p, VOCAB, [5, 6]).choose(logits[i]) for i, p in enumerate(params)]
    assert batched == alone
    assert batched[0] == int(logits[0].argmax())


def test_greedy_rows_of_a_batch_take_each_rows_first_largest_logit():
    logits = torch.randn(6, 32256, generator=torch.Generator().manual_seed(2))
    logits[2, 100] = logits[2, 7] = logits[2].max() + 1  # a tie: the first index wins
    tokens = choose_tokens(logits, [Sampler(SamplingParams(), 32256, []) for _ in range(6)])
    assert tokens == logits.argmax(-1).tolist() and tokens[2] == 7
