"""The generation engine: a key/value cache allocated once, batches that change every step.

The engine owns one model with a cache of `max_batch_size` rows x `max_seq_len` positions.
Each sequence holds one row while it runs. Rows are independent: every token is written at its
own position of its own row, so sequences of different lengths, at different stages, share one
batch, and new sequences join a running batch between steps (continuous batching).

Step-level API, for a scheduler such as the HTTP server's:

    engine = Engine.from_checkpoint("ckpt/", max_batch_size=8, max_seq_len=4096)
    seq_id = engine.add(Request(prompt_ids, SamplingParams(max_new_tokens=64)))
    while engine.has_work():
        for out in engine.step():       # one new token for every running sequence
            send(out.seq_id, out.text)  # text completed by that token (may be "")
            if out.finished:            # out.finish_reason: "stop" | "length"
                done(out.seq_id, out.result)
    engine.cancel(seq_id)               # any time: frees the row of a sequence nobody waits for

A step decodes one token for every running sequence in one batched forward pass, then prefills
the prompts of requests that hold a row (their first token comes from the prefill); requests
beyond the free rows wait in arrival order. While other sequences decode, a step computes at
most `max_prefill_tokens` prompt positions (padding included), and a longer prompt continues in
the next steps: a long prompt joining a running batch delays the others' next tokens by one
such chunk at a time rather than by its whole length. With nothing else decoding, prompts are
prefilled whole.

`load_for_inference` loads a checkpoint in the form that decodes fastest (int8 weights, or on
CPU the linear layers of `dscoder.infer.layout`); `Engine.from_checkpoint` uses it. fp32 and
bf16 models on CPU decode through `dscoder.infer.cpu_decode`'s native kernel when it can be
built.

On top of it: `generate(requests) -> list[Result]` runs a batch to completion and
`stream(request)` yields one request's text as it is produced. The engine is not thread-safe:
drive it from one thread.

A sequence ends with finish_reason "stop" at one of its stop tokens (not part of the text) or
stop strings (cut from the text, with everything after them), and "length" after
max_new_tokens or when its cache row is full. Token counts: prompt tokens, and completion
tokens the model produced (a stop token included).
"""

from __future__ import annotations

import heapq
import logging
import os
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from dscoder.errors import UserError
from dscoder.infer import cpu_decode
from dscoder.infer.detok import IncrementalDetokenizer
from dscoder.infer.layout import use_cpu_linears
from dscoder.infer.quant import quantize_int8
from dscoder.infer.sampling import Sampler, SamplingParams, choose_tokens
from dscoder.infer.stops import StopStringMatcher
from dscoder.model import Transformer, check_tokenizer_fits, load_model
from dscoder.tokenizer import Tokenizer

# Prompts are prefilled in chunks of this many positions, which bounds the attention scores'
# memory (chunk x context per head) for long prompts.
PREFILL_CHUNK = 512
# Rows (new tokens and prompt positions) of one call of the CPU kernel: its scratch memory grows
# with them, about 30k floats a row for a 1.3B model.
KERNEL_STEP_ROWS = 256
# Prompt positions a step may compute while other sequences decode (Engine.max_prefill_tokens).
DEFAULT_MAX_PREFILL_TOKENS = 512
DEFAULT_MAX_SEQ_LEN = 4096
DEFAULT_MAX_BATCH_SIZE = 8

log = logging.getLogger(__name__)


def load_for_inference(path: str | os.PathLike[str], dtype: torch.dtype | None = None,
                       device: str = "cpu", int8: bool = False, max_rows: int = 1,
                       cpu_kernel: bool = True) -> Transformer:
    """`load_model`, then the weights in the form that decodes fastest: q/k/v and gate/up
    projections merged, then int8 weight-only quantization when asked, otherwise (on CPU) the
    linear layers of `dscoder.infer.layout`, set up for products of up to `max_rows` rows (the
    engine's batch size: above 1 they also keep a oneDNN copy of each weight). fp32 or bf16 on
    CPU, where `cpu_decode`'s kernel can be built (and `cpu_kernel`), the linear layers are that
    kernel's instead (int8, or as stored): one copy of each weight, which serves prompts and
    decoding alike."""
    model = load_model(path, dtype=dtype, device=device)
    model.fuse_projections()
    weight = model.embed_tokens.weight
    on_kernel = weight.dtype in cpu_decode.KERNEL_DTYPES and cpu_kernel and cpu_decode.available()
    if weight.device.type == "cpu" and on_kernel:
        cpu_decode.use_panels(model, int8=int8)
    elif int8:
        quantize_int8(model)
    elif weight.device.type == "cpu":
        use_cpu_linears(model, max_rows)
    return model


@dataclass
class Request:
    """A prompt (token ids) and how to decode it.

    stop_token_ids None means the tokenizer's EOS; the checkpoint's own EOS (config.json) always
    stops too, unless ignore_eos (for benchmarks that need a fixed number of tokens).
    """

    prompt_ids: Sequence[int]
    params: SamplingParams = field(default_factory=SamplingParams)
    stop_token_ids: Sequence[int] | None = None
    ignore_eos: bool = False


@dataclass(frozen=True)
class Result:
    text: str
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int
    token_ids: list[int]  # generated tokens, without a stop token


@dataclass(frozen=True)
class StepOutput:
    seq_id: int
    text: str  # new text since the last step
    finished: bool
    finish_reason: str | None = None
    result: Result | None = None  # set when finished


@dataclass(eq=False)
class _Sequence:
    seq_id: int
    request: Request
    stop_ids: frozenset[int]
    sampler: Sampler
    detokenizer: IncrementalDetokenizer
    stops: StopStringMatcher
    row: int = -1
    position: int = 0  # tokens in the cache row (prompt tokens while prefilling); the next is written here
    last_token: int = -1  # sampled, not yet in the cache
    token_ids: list[int] = field(default_factory=list)
    produced: int = 0
    pieces: list[str] = field(default_factory=list)


class Engine:
    """Batched generation on one model. The engine owns the model's key/value cache (it calls
    `setup_cache` once, here), so one model serves one engine at a time."""

    def __init__(self, model: Transformer, tokenizer: Tokenizer, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
                 max_seq_len: int = DEFAULT_MAX_SEQ_LEN, compile: bool = False, cpu_kernel: bool = True,
                 max_prefill_tokens: int = DEFAULT_MAX_PREFILL_TOKENS) -> None:
        config = model.config
        check_tokenizer_fits(config, tokenizer.vocab_size)
        if max_batch_size < 1:
            raise UserError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_prefill_tokens < 1:
            raise UserError(f"max_prefill_tokens must be at least 1, got {max_prefill_tokens}")
        self.max_prefill_tokens = max_prefill_tokens
        self.model = model.eval()
        self.tokenizer = tokenizer
        # The detokenizer's table of token bytes, built now rather than in the first request.
        tokenizer.token_bytes(skip_special_tokens=True)
        self.max_batch_size = max_batch_size
        self.max_seq_len = min(max_seq_len, config.max_position_embeddings)
        # The embedding's dtype is the activations' (quantized layers hold int8 weights).
        embedding = model.embed_tokens.weight
        self.device = embedding.device
        model.setup_cache(max_batch_size, self.max_seq_len, dtype=embedding.dtype, device=self.device)
        self._checkpoint_eos = frozenset({config.eos_token_id} - {-1})
        self._free_rows = list(range(max_batch_size))  # a heap: the lowest rows are reused first
        self._waiting: deque[_Sequence] = deque()
        # Sequences holding a row: still prefilling their prompt (in arrival order), or decoding.
        self._prefilling: dict[int, _Sequence] = {}
        self._running: dict[int, _Sequence] = {}
        self._next_id = 0
        # Decoding runs the same small shapes step after step, where compiling pays off;
        # prefill shapes change with every prompt, so it stays eager.
        self._decode_logits = torch.compile(self._last_logits) if compile else self._last_logits
        # fp32 and bf16 models on CPU run each step (decoding and prompts) as native calls, where
        # the kernel can run them (dscoder.infer.cpu_decode).
        self._cpu_decoder: cpu_decode.CpuDecoder | None = None
        if cpu_kernel and not compile and self.device.type == "cpu":
            reason = cpu_decode.unsupported_reason(model)
            if reason is None:
                self._cpu_decoder = cpu_decode.CpuDecoder(model)
            else:
                log.debug("decoding runs on PyTorch: %s", reason)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], dtype: torch.dtype | None = None,
                        device: str = "cpu", int8: bool = False, **engine_args) -> Engine:
        """Load a checkpoint directory (tokenizer, and weights by `load_for_inference`). Other
        keyword arguments go to the constructor."""
        tokenizer = Tokenizer.from_dir(path)
        # A compiled decode step stays on the plain layers (the oneDNN copies are opaque to it).
        compiled = engine_args.get("compile", False)
        max_rows = 1 if compiled else engine_args.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE)
        model = load_for_inference(path, dtype, device, int8, max_rows=max_rows,
                                   cpu_kernel=engine_args.get("cpu_kernel", True) and not compiled)
        return cls(model, tokenizer, **engine_args)

    # ---- the step-level API -------------------------------------------------------------

    def add(self, request: Request) -> int:
        """Queue a request; it starts at the next step with a free row. Returns its id."""
        prompt = list(request.prompt_ids)
        if not prompt:
            raise UserError("the prompt is empty")
        if len(prompt) > self.max_seq_len:
            raise UserError(f"the prompt has {len(prompt)} tokens; this engine holds at most "
                            f"{self.max_seq_len} per sequence")
        vocab = self.model.config.vocab_size
        if min(prompt) < 0 or max(prompt) >= vocab:
            raise UserError(f"prompt token ids must lie in [0, {vocab})")
        stop_ids: frozenset[int] = frozenset()
        if not request.ignore_eos:
            asked = (self.tokenizer.eos_id,) if request.stop_token_ids is None else request.stop_token_ids
            stop_ids = frozenset(asked) | self._checkpoint_eos
        seq = _Sequence(
            seq_id=self._next_id,
            request=request,
            stop_ids=stop_ids,
            sampler=Sampler(request.params, vocab, prompt, self.device),
            detokenizer=IncrementalDetokenizer(self.tokenizer, prompt),
            stops=StopStringMatcher(request.params.stop),
        )
        self._next_id += 1
        self._waiting.append(seq)
        return seq.seq_id

    def cancel(self, seq_id: int) -> None:
        """Forget a sequence, waiting, prefilling or decoding; unknown or finished ids are ignored."""
        seq = self._running.pop(seq_id, None) or self._prefilling.pop(seq_id, None)
        if seq is not None:
            heapq.heappush(self._free_rows, seq.row)
            return
        self._waiting = deque(s for s in self._waiting if s.seq_id != seq_id)

    @property
    def on_cpu_kernel(self) -> bool:
        """Whether steps run on `cpu_decode`'s native kernel (else on PyTorch)."""
        return self._cpu_decoder is not None

    def has_work(self) -> bool:
        return bool(self._waiting or self._prefilling or self._running)

    @property
    def num_running(self) -> int:
        """Sequences holding a cache row (decoding, or prefilling their prompt)."""
        return len(self._running) + len(self._prefilling)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @torch.inference_mode()
    def step(self) -> list[StepOutput]:
        """Produce one token for every decoding sequence, and prefill prompts: each one whose
        prompt is complete produces its first token."""
        decoding = sorted(self._running.values(), key=lambda s: s.row)
        while self._waiting and self._free_rows:
            seq = self._waiting.popleft()
            seq.row = heapq.heappop(self._free_rows)
            self._prefilling[seq.seq_id] = seq
        spans = self._plan_prefill(self.max_prefill_tokens if decoding else None)
        if self._cpu_decoder is not None:
            return self._step_on_kernel(decoding, spans)
        outputs = self._decode(decoding) if decoding else []
        if spans:
            outputs += self._prefill(spans)
        return outputs

    # ---- conveniences on top of it ------------------------------------------------------

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        """Run requests to completion, as many at a time as there are rows; results in order."""
        self._require_idle()
        ids = [self.add(request) for request in requests]
        results: dict[int, Result] = {}
        try:
            while self.has_work():
                for out in self.step():
                    if out.result is not None:
                        results[out.seq_id] = out.result
        finally:
            for seq_id in ids:
                if seq_id not in results:
                    self.cancel(seq_id)
        return [results[seq_id] for seq_id in ids]

    def stream(self, request: Request) -> Iterator[str]:
        """Yield the request's text as it is produced; the pieces join to `Result.text`."""
        self._require_idle()
        seq_id = self.add(request)
        try:
            while self.has_work():
                for out in self.step():
                    if out.seq_id == seq_id and out.text:
                        yield out.text
        finally:
            self.cancel(seq_id)  # a consumer that stops early frees the row

    def _require_idle(self) -> None:
        if self.has_work():
            raise RuntimeError("generate/stream drive the engine themselves; it already has "
                               "sequences from add(), so drive those with step()")

    # ---- the forward passes -------------------------------------------------------------

    def _last_logits(self, tokens: Tensor, input_pos: Tensor, rows: Tensor | None) -> Tensor:
        hidden = self.model.forward_hidden(tokens, input_pos, rows)
        return self.model.output(hidden[:, -1]).float()

    def _rows(self, seqs: Sequence[_Sequence]) -> Tensor | None:
        rows = [s.row for s in seqs]
        # Rows 0..B-1 in order let the cache hand out views instead of gathering copies.
        if rows == list(range(len(rows))):
            return None
        return torch.tensor(rows, device=self.device)

    def _step_on_kernel(self, decoding: list[_Sequence], spans: list[tuple[_Sequence, int]]) -> list[StepOutput]:
        """The step as rows of kernel calls: the decoding sequences' newest tokens, then the
        prompt positions to feed, each row seeing its sequence's earlier positions. Weights are
        read once for all of them (KERNEL_STEP_ROWS rows a call), with no padding, and logits
        computed only for the rows that produce a token."""
        assert self._cpu_decoder is not None
        rows = [(s.last_token, s.position, s.row) for s in decoding]  # (token, position, cache row)
        outputs = list(range(len(rows)))
        completing = []
        for seq, end in spans:
            prompt = seq.request.prompt_ids
            rows += [(prompt[position], position, seq.row) for position in range(seq.position, end)]
            if end == len(prompt):
                outputs.append(len(rows) - 1)
                completing.append(seq)
        if not rows:
            return []
        logits = []
        for first in range(0, len(rows), KERNEL_STEP_ROWS):
            tokens, positions, cache_rows = zip(*rows[first:first + KERNEL_STEP_ROWS], strict=True)
            wanted = [i - first for i in outputs if first <= i < first + KERNEL_STEP_ROWS]
            logits.append(self._cpu_decoder(tokens, positions, cache_rows, wanted))
        # Positions move only once every call succeeded: a step that raised can be run again
        # (rewriting the same cache slots).
        for s in decoding:
            s.position += 1
        for seq, end in spans:
            seq.position = end
        for seq in completing:
            self._running[seq.seq_id] = self._prefilling.pop(seq.seq_id)
        # No torch.cat for one call: a parallel copy leaves torch's OpenMP threads spinning
        # through the next step, on the cores the kernel's helpers run on (decoding steps took
        # 1.5x as long).
        return self._advance(decoding + completing, logits[0] if len(logits) == 1 else torch.cat(logits))

    def _decode(self, seqs: list[_Sequence]) -> list[StepOutput]:
        tokens = torch.tensor([[s.last_token] for s in seqs], device=self.device)
        input_pos = torch.tensor([[s.position] for s in seqs], device=self.device)
        logits = self._decode_logits(tokens, input_pos, self._rows(seqs))
        for s in seqs:
            s.position += 1
        return self._advance(seqs, logits)

    def _plan_prefill(self, budget: int | None) -> list[tuple[_Sequence, int]]:
        """Which prompt positions this step feeds: (sequence, position to feed up to) for the
        prefilling sequences in arrival order, at most `budget` positions computed (None: no
        limit). On the kernel a position costs one row. On PyTorch, prompts fed from their start
        go together right-padded to the longest, so that batch costs rows x its longest span;
        a prompt that continues from an earlier step goes alone and costs what it feeds."""
        spans: list[tuple[_Sequence, int]] = []
        padded = self._cpu_decoder is None
        left = budget
        fresh_rows = fresh_length = 0
        for seq in self._prefilling.values():
            take = len(seq.request.prompt_ids) - seq.position
            if left is not None:
                if seq.position > 0 or not padded:
                    take = cost = min(take, left)
                else:
                    length = max(fresh_length, take)
                    cost = (fresh_rows + 1) * length - fresh_rows * fresh_length
                    if cost > left:
                        if fresh_rows:
                            break
                        take = cost = length = left  # the first of the batch: as much as fits
                    fresh_rows, fresh_length = fresh_rows + 1, length
                left -= cost
            if take <= 0:
                break
            spans.append((seq, seq.position + take))
        return spans

    def _prefill(self, spans: list[tuple[_Sequence, int]]) -> list[StepOutput]:
        """Feed the planned prompt positions on PyTorch; sequences whose prompt is then complete
        sample their first token and start decoding."""
        fresh = [(seq, end) for seq, end in spans if seq.position == 0]
        groups = ([fresh] if fresh else []) + [[(seq, end)] for seq, end in spans if seq.position > 0]
        complete: list[tuple[_Sequence, Tensor]] = []
        for group in groups:
            seqs, ends = [seq for seq, _ in group], [end for _, end in group]
            hidden_states = self._feed_prompts(seqs, seqs[0].position, ends)
            for seq, end, hidden in zip(seqs, ends, hidden_states, strict=True):
                seq.position = end
                if end == len(seq.request.prompt_ids):
                    complete.append((seq, hidden))
        if not complete:
            return []
        for seq, _ in complete:
            self._running[seq.seq_id] = self._prefilling.pop(seq.seq_id)
        logits = self.model.output(torch.stack([hidden for _, hidden in complete])).float()
        return self._advance([seq for seq, _ in complete], logits)

    def _feed_prompts(self, seqs: list[_Sequence], start: int, ends: list[int]) -> list[Tensor]:
        """Write prompt positions [start, ends[i]) of each sequence into its cache row, as one
        batch right-padded to the longest, in chunks of PREFILL_CHUNK; returns each one's final
        hidden state at position ends[i] - 1.

        Padding writes keys and values past a sequence's span; those slots are overwritten by
        its own tokens before any query can attend to them.
        """
        length = max(ends) - start
        tokens = torch.zeros(len(seqs), length, dtype=torch.long)
        for i, (seq, end) in enumerate(zip(seqs, ends, strict=True)):
            tokens[i, : end - start] = torch.tensor(seq.request.prompt_ids[start:end])
        tokens = tokens.to(self.device)
        positions = torch.arange(start, start + length, device=self.device).expand(len(seqs), length)
        rows = self._rows(seqs)
        last = [end - 1 - start for end in ends]
        final: list[Tensor | None] = [None] * len(seqs)
        for chunk in range(0, length, PREFILL_CHUNK):
            stop = min(chunk + PREFILL_CHUNK, length)
            hidden = self.model.forward_hidden(tokens[:, chunk:stop], positions[:, chunk:stop], rows)
            for i, index in enumerate(last):
                if chunk <= index < stop:
                    final[i] = hidden[i, index - chunk]
        return final  # type: ignore[return-value]

    # ---- tokens to text -----------------------------------------------------------------

    def _advance(self, seqs: list[_Sequence], logits: Tensor) -> list[StepOutput]:
        tokens = choose_tokens(logits, [s.sampler for s in seqs])
        return [self._accept(s, token) for s, token in zip(seqs, tokens, strict=True)]

    def _accept(self, seq: _Sequence, token: int) -> StepOutput:
        seq.produced += 1
        if token in seq.stop_ids:
            return self._finish(seq, "stop", "")
        seq.token_ids.append(token)
        seq.last_token = token
        seq.sampler.observe(token)
        text, stopped = seq.stops.push(seq.detokenizer.push(token))
        if stopped:
            return self._finish(seq, "stop", text)
        if seq.produced >= seq.request.params.max_new_tokens or seq.position >= self.max_seq_len:
            return self._finish(seq, "length", text)
        seq.pieces.append(text)
        return StepOutput(seq.seq_id, text, finished=False)

    def _finish(self, seq: _Sequence, reason: str, text: str) -> StepOutput:
        if not seq.stops.stopped:
            # Release what was held back: an unfinished character, a possible stop prefix.
            tail, stopped = seq.stops.push(seq.detokenizer.flush())
            text += tail
            if stopped:
                reason = "stop"
            else:
                text += seq.stops.flush()
        seq.pieces.append(text)
        del self._running[seq.seq_id]
        heapq.heappush(self._free_rows, seq.row)
        result = Result("".join(seq.pieces), reason, len(seq.request.prompt_ids), seq.produced,
                        seq.token_ids)
        return StepOutput(seq.seq_id, text, finished=True, finish_reason=reason, result=result)
