"""Choosing the next token from logits: greedy, temperature, top-k, top-p, repetition penalty.

Every sequence carries its own `SamplingParams` and its own random generator, so a seeded
request draws the same tokens whether it runs alone or shares a batch with others.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from dscoder.errors import UserError


@dataclass(frozen=True)
class SamplingParams:
    """How one request is decoded. The defaults decode greedily.

    temperature 0 means greedy (argmax); top_k 0 and top_p 1 switch those filters off;
    repetition_penalty 1 switches it off (CTRL-style: logits of tokens already in the prompt or
    the output are divided by it when positive, multiplied when negative). `stop` strings end
    the output and are cut from it; `seed` makes sampling reproducible.
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = field(default=())
    seed: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):  # a lone string would otherwise become its characters
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))
        if self.max_new_tokens < 1:
            raise UserError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise UserError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise UserError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p must be in (0, 1], got {self.top_p}")
        if not (self.repetition_penalty > 0 and math.isfinite(self.repetition_penalty)):
            raise UserError(f"repetition_penalty must be a finite number > 0, got {self.repetition_penalty}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise UserError("stop strings must be non-empty strings")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class Sampler:
    """One sequence's sampling state: its parameters, random generator and seen tokens."""

    def __init__(self, params: SamplingParams, vocab_size: int, prompt_ids: Sequence[int],
                 device: torch.device | str = "cpu") -> None:
        self.params = params
        self.generator: torch.Generator | None = None
        if not params.greedy:
            seed = params.seed if params.seed is not None else secrets.randbits(63)
            self.generator = torch.Generator(device=device).manual_seed(seed)
        # Only the penalty needs to know which tokens appeared; keep it off the common path.
        self.seen: Tensor | None = None
        if params.repetition_penalty != 1.0:
            self.seen = torch.zeros(vocab_size, dtype=torch.bool, device=device)
            if prompt_ids:
                self.seen[torch.tensor(list(prompt_ids), device=device)] = True

    @property
    def plain_greedy(self) -> bool:
        """Argmax of the raw logits: such rows of a batch are decided together."""
        return self.params.greedy and self.seen is None

    def observe(self, token: int) -> None:
        if self.seen is not None:
            self.seen[token] = True

    def choose(self, logits: Tensor) -> int:
        """The next token for logits [vocab] (fp32)."""
        params = self.params
        if self.seen is not None:
            logits = apply_repetition_penalty(logits, self.seen, params.repetition_penalty)
        if params.greedy:
            return int(logits.argmax())
        return sample(logits, params.temperature, params.top_k, params.top_p, self.generator)


def apply_repetition_penalty(logits: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """Make tokens in `seen` less likely (penalty > 1) or more likely (< 1)."""
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def sample(logits: Tensor, temperature: float, top_k: int, top_p: float,
           generator: torch.Generator | None) -> int:
    """Draw one token from softmax(logits / temperature) restricted by top-k, then top-p."""
    if top_k and top_k < logits.shape[-1]:
        values, indices = torch.topk(logits, top_k)
    else:
        # Sorting serves top-p; without it the full distribution is sampled as is.
        values, indices = (torch.sort(logits, descending=True) if top_p < 1.0
                           else (logits, None))
    probs = torch.softmax(values / temperature, dim=-1)
    if top_p < 1.0:
        probs = _keep_top_p(probs, top_p)
    choice = torch.multinomial(probs, 1, generator=generator)
    return int(choice if indices is None else indices[choice])


def _keep_top_p(sorted_probs: Tensor, top_p: float) -> Tensor:
    """Zero all but the smallest prefix of descending probabilities whose mass reaches top_p
    (the most likely token always stays)."""
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    return torch.where(mass_before < top_p, sorted_probs, torch.zeros_like(sorted_probs))


def choose_tokens(logits: Tensor, samplers: Sequence[Sampler]) -> list[int]:
    """The next token of each row of logits [batch, vocab]; rows decoded greedily without a
    penalty share one argmax, the rest are sampled one by one with their own generators."""
    tokens: list[int | None] = [None] * len(samplers)
    simple = [i for i, s in enumerate(samplers) if s.plain_greedy]
    if simple:
        rows = logits if len(simple) == len(samplers) else logits[simple]
        for i, token in zip(simple, _argmax_rows(rows), strict=True):
            tokens[i] = token
    for i, sampler in enumerate(samplers):
        if tokens[i] is None:
            tokens[i] = sampler.choose(logits[i])
    return tokens  # type: ignore[return-value]


def _argmax_rows(rows: Tensor) -> list[int]:
    """Each row's first largest index. On CPU through numpy, whose argmax is vectorized: 18 us
    for 8 x 32256 fp32 against torch's 330 us (one thread), a tenth of a decoding step."""
    if rows.device.type == "cpu" and rows.dtype in (torch.float32, torch.float64):
        return rows.numpy().argmax(-1).tolist()
    return rows.argmax(dim=-1).tolist()
