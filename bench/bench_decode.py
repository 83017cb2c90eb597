"""Decode speed of dscoder's engine against transformers' `generate`, same checkpoint, one run.

For each preset: writes a random checkpoint with `save_model`, loads it as our CLI and server
do (`load_for_inference`) and with `LlamaForCausalLM.from_pretrained` (the peer), and decodes
the same prompt greedily, batch 1, fp32 (or all in bf16: --dtype bfloat16), the peer with its
default (dynamic) cache. Decode speed excludes the prompt: each run notes when each of its N new
tokens came (transformers through its streamer, ours after each engine step), and the rate is
(N - 1) / (time of the last - time of the first). Each round runs every contender once; rates
are medians over rounds and speed-ups are medians of the ratios within a round, because the
machine is shared and noisy.

Bandwidth limit: a decode step must read every weight it multiplies by (all linear layers, the
norms, one embedding row) and the keys and values cached so far. The machine's read bandwidth
is measured in every round, with the same thread count, over a 1 GiB fp32 tensor (32x the L3
cache) by two readers, and the faster one counts: `torch.sum`, and our native kernel's
matrix-vector product by a [262144, 1024] matrix (`PanelLinear`; each the median of 5 passes;
where the kernel is faster than torch.sum, taking its rate keeps the share from being
overstated). limit = bandwidth / bytes read per token, and the share reported is the median
over rounds of rate / limit.

"dscoder" is our engine as the CLI and server load it (fp32 on CPU: the native kernel of
dscoder.infer.cpu_decode, where a C compiler builds it); "dscoder pytorch" the same engine with
the kernel turned off. The time to the first token, the prompt's prefill, is reported
too. --int8 adds our engine with int8 weight-only quantization, and reports
how often its greedy choice agrees with the fp32 model's, teacher-forced along the fp32 greedy
output (the share of positions whose next-token argmax is the same), and how long the
free-running outputs agree.

    PYTHONPATH=src python bench/bench_decode.py                      # tiny and small, fp32
    PYTHONPATH=src python bench/bench_decode.py --presets small --int8 --compile
    PYTHONPATH=src python bench/bench_decode.py --presets tiny --prompt-tokens 2000  # long context, long prefill
    PYTHONPATH=src python bench/bench_decode.py --dtype bfloat16   # as the released checkpoints are stored
"""

from __future__ import annotations

import argparse
import statistics
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from dscoder.infer import Engine, Request, SamplingParams, cpu_decode
from dscoder.infer.engine import load_for_inference
from dscoder.model import PRESETS, Transformer, save_model
from dscoder.tokenizer import Tokenizer, train_tokenizer



class BandwidthProbe:
    """Read bandwidth over 1 GiB of fp32 (32x the L3 cache): the faster of torch.sum and, where
    it can be built, our kernel's matrix-vector product."""

    def __init__(self) -> None:
        self.data = torch.ones(1 << 28)
        self.readers = {"torch.sum": self.data.sum}
        if cpu_decode.available():
            matrix, vector = cpu_decode.PanelLinear(self.data.view(-1, 1024)), torch.ones(1, 1024)
            self.readers["kernel"] = lambda: matrix(vector)
        for read in self.readers.values():
            read()

    def measure(self, repeats: int = 5) -> dict[str, float]:
        """Bytes per second of each reader with the current thread count, the median of
        `repeats` passes each."""
        rates = {}
        for name, read in self.readers.items():
            passes = []
            for _ in range(repeats):
                start = time.perf_counter()
                read()
                passes.append(self.data.numel() * 4 / (time.perf_counter() - start))
            rates[name] = statistics.median(passes)
        return rates


def bytes_per_token(model: Transformer, cached_positions: int) -> int:
    """Bytes one decode step reads: weights (embedding: one row) and the cached keys/values."""
    total = 0
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if name.startswith("embed_tokens"):
            total += tensor[0].numel() * tensor.element_size()
        elif not name.startswith("rope_") and ".kv_cache." not in name:
            total += tensor.numel() * tensor.element_size()
    config = model.config
    cache_bytes = model.cache.k.element_size() if model.cache is not None else 4
    total += 2 * config.num_layers * config.num_kv_heads * config.head_dim * cached_positions * cache_bytes
    return total


def bench_tokenizer() -> Tokenizer:
    # The engine detokenizes every token, so it needs a tokenizer; a small one is enough (ids
    # beyond its vocabulary decode to nothing, which the peer never pays for anyway).
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return train_tokenizer([(stdlib / "argparse.py").read_text(encoding="utf-8")], vocab_size=1000)


class TokenClock:
    """When each new token of a run was produced, from the run's start."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.times: list[float] = []

    def tick(self) -> None:
        self.times.append(time.perf_counter() - self.start)


class HfStreamer:
    """transformers calls put() with the prompt first, then with each new token."""

    def __init__(self, clock: TokenClock) -> None:
        self.clock, self.prompt_seen = clock, False

    def put(self, value: torch.Tensor) -> None:
        if self.prompt_seen:
            self.clock.tick()
        self.prompt_seen = True

    def end(self) -> None:
        pass


Run = Callable[[int], tuple[list[int], list[float]]]  # n -> (new tokens, when each came)


def hf_generate(model, prompt: list[int]) -> Run:
    input_ids = torch.tensor([prompt])
    mask = torch.ones_like(input_ids)

    def run(n: int) -> tuple[list[int], list[float]]:
        clock = TokenClock()
        with torch.inference_mode():
            out = model.generate(input_ids, attention_mask=mask, max_new_tokens=n, do_sample=False,
                                 streamer=HfStreamer(clock))
        return out[0, len(prompt):].tolist(), clock.times

    return run


def our_generate(engine: Engine, prompt: list[int]) -> Run:
    def run(n: int) -> tuple[list[int], list[float]]:
        clock = TokenClock()
        engine.add(Request(prompt, SamplingParams(max_new_tokens=n), ignore_eos=True))
        result = None
        while engine.has_work():
            for output in engine.step():  # one token a step (ignore_eos)
                clock.tick()
                result = output.result or result
        assert result is not None
        return result.token_ids, clock.times

    return run


def decode_rates(contenders: dict[str, Run], n: int, repeats: int, probe: BandwidthProbe
                 ) -> tuple[dict[str, list[float]], dict[str, list[float]], list[dict[str, float]]]:
    """Decode tokens/s (tokens 2..n over the time from the first to the last) and seconds to
    the first token (the prompt's prefill) of each contender, and each reader's read
    bandwidth, once per round."""
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    firsts: dict[str, list[float]] = {name: [] for name in contenders}
    bandwidths = []
    for _ in range(repeats):
        bandwidths.append(probe.measure())
        for name, run in contenders.items():
            tokens, times = run(n)
            if len(tokens) != n or len(times) != n:
                raise RuntimeError(f"{name} produced {len(tokens)} tokens ({len(times)} timed), not {n}")
            rates[name].append((n - 1) / (times[-1] - times[0]))
            firsts[name].append(times[0])
    return rates, firsts, bandwidths


def teacher_forced_agreement(reference: Transformer, quantized: Transformer, prompt: list[int],
                             continuation: list[int]) -> float:
    ids = torch.tensor([prompt + continuation[:-1]])
    with torch.inference_mode():
        a = reference(ids)[0, len(prompt) - 1:].argmax(-1)
        b = quantized(ids)[0, len(prompt) - 1:].argmax(-1)
    return float((a == b).float().mean())


def agreement_with(continuation: list[int], choices: list[int]) -> float:
    return sum(a == b for a, b in zip(continuation, choices, strict=True)) / len(continuation)


def kernel_choices(model: Transformer, prompt: list[int], continuation: list[int]) -> list[int]:
    """The kernel's greedy choice at each position of `continuation`, fed it token by token after
    the prompt (teacher-forced), on `model`'s cache row 0."""
    decoder = cpu_decode.CpuDecoder(model)
    with torch.inference_mode():
        hidden = model.forward_hidden(torch.tensor([prompt]), torch.arange(len(prompt))[None])
        choices = [int(model.output(hidden[0, -1]).argmax())]
        for i, token in enumerate(continuation[:-1]):
            choices.append(int(decoder([token], [len(prompt) + i], [0])[0].argmax()))
    return choices


def peer_choices(peer, prompt: list[int], continuation: list[int]) -> list[int]:
    with torch.inference_mode():
        logits = peer(torch.tensor([prompt + continuation[:-1]])).logits[0, len(prompt) - 1:]
    return logits.argmax(-1).tolist()


def common_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def bench_preset(preset: str, args: argparse.Namespace, tokenizer: Tokenizer, probe: BandwidthProbe) -> None:
    from transformers import LlamaForCausalLM

    config = PRESETS[preset]
    torch.manual_seed(0)
    prompt = torch.randint(0, tokenizer.bpe_vocab_size, (args.prompt_tokens,)).tolist()
    max_seq_len = args.prompt_tokens + args.tokens
    with tempfile.TemporaryDirectory(prefix="bench-decode-") as directory:
        save_model(Transformer(config), directory)
        # Ours as `dscoder complete` and `dscoder serve` load it (fp32: decoded by the native
        # kernel where it can be built), and as it decodes on PyTorch alone. Each engine gets
        # its own copy of the model: an engine owns its model's cache.
        dtype = getattr(torch, args.dtype)
        ours = load_for_inference(directory, dtype=dtype)
        on_pytorch = load_for_inference(directory, dtype=dtype, cpu_kernel=False)
        compiled = load_for_inference(directory, dtype=dtype, cpu_kernel=False) if args.compile else None
        quantized = load_for_inference(directory, dtype=dtype, int8=True) if args.int8 else None
        peer = LlamaForCausalLM.from_pretrained(directory, dtype=dtype).eval()
        # In bf16 the contenders round differently (ours keeps fp32 activations): both are
        # compared with the fp32 model's greedy output instead of with each other.
        fp32_model = load_for_inference(directory) if dtype != torch.float32 else None
    peer.generation_config.eos_token_id = None  # decode exactly N tokens, as ours does
    peer.generation_config.pad_token_id = 0

    def engine(model: Transformer, **options) -> Engine:
        return Engine(model, tokenizer, max_batch_size=1, max_seq_len=max_seq_len, **options)

    contenders = {
        "transformers": hf_generate(peer, prompt),
        "dscoder": our_generate(engine(ours), prompt),
        "dscoder pytorch": our_generate(engine(on_pytorch, cpu_kernel=False), prompt),
    }
    if compiled is not None:
        compiled_engine = engine(compiled, compile=True)
        start = time.perf_counter()
        for n in (2, 3, 4):  # compiles for the first cache lengths, then dynamic ones
            compiled_engine.generate([Request(prompt, SamplingParams(max_new_tokens=n), ignore_eos=True)])
        print(f"  torch.compile warm-up: {time.perf_counter() - start:.1f} s")
        contenders["dscoder compile"] = our_generate(compiled_engine, prompt)
    if quantized is not None:
        contenders["dscoder int8"] = our_generate(engine(quantized), prompt)

    outputs = {name: run(args.tokens)[0] for name, run in contenders.items()}
    rounds, firsts, bandwidths = decode_rates(contenders, args.tokens, args.repeats, probe)
    # Each round compares runs seconds apart, under the same load from other work: speed-ups
    # and shares of the bandwidth limit are medians of per-round values.
    limits = [max(readers.values()) for readers in bandwidths]
    per_round = {name: list(zip(values, rounds["transformers"], limits, strict=True))
                 for name, values in rounds.items()}
    cached = args.prompt_tokens + args.tokens // 2
    read_bytes = {name: bytes_per_token(quantized if name == "dscoder int8" else ours, cached)
                  for name in rounds if name != "transformers"}
    print(f"{preset} ({args.dtype}): {config.num_parameters() / 1e6:.1f} M parameters, {args.tokens} new tokens after "
          f"{args.prompt_tokens}, {torch.get_num_threads()} threads, {args.repeats} rounds; read bandwidth over "
          f"1 GiB fp32, medians of rounds: " + ", ".join(
              f"{name} {statistics.median(r[name] for r in bandwidths) / 1e9:.1f} GB/s" for name in bandwidths[0])
          + "; the faster per round counts")
    for name, values in per_round.items():
        rate = statistics.median(v[0] for v in values)
        speedup = statistics.median(v[0] / v[1] for v in values)
        agree = common_prefix(outputs[name], outputs["transformers"])
        line = (f"  {name:16s} {rate:8.1f} tok/s  {speedup:5.2f}x transformers  "
                f"same greedy tokens as transformers: {agree:3d}/{args.tokens}")
        if name in read_bytes:
            share = statistics.median(v[0] * read_bytes[name] / v[2] for v in values)
            line += f"  {share:5.1%} of the bandwidth limit ({read_bytes[name] / 1e6:.0f} MB read/token)"
        print(line)
    print(f"  first token after the {args.prompt_tokens}-token prompt (its prefill), medians of rounds: " + ", ".join(
        f"{name} {statistics.median(times) * 1000:.1f} ms"
        f" ({statistics.median(t / p for t, p in zip(times, firsts['transformers'], strict=True)):.2f}x the time)"
        for name, times in firsts.items() if name != "transformers")
        + f", transformers {statistics.median(firsts['transformers']) * 1000:.1f} ms")
    if fp32_model is not None:
        (fp32_result,) = engine(fp32_model).generate([Request(prompt, SamplingParams(max_new_tokens=args.tokens),
                                                             ignore_eos=True)])
        fp32_output = fp32_result.token_ids
        shares = {"dscoder": agreement_with(fp32_output, kernel_choices(ours, prompt, fp32_output))
                  if cpu_decode.available() else None,
                  "transformers": agreement_with(fp32_output, peer_choices(peer, prompt, fp32_output))}
        print(f"  {args.dtype} greedy choices equal to the fp32 model's, teacher-forced along its output: "
              + ", ".join(f"{name} {share:.1%}" for name, share in shares.items() if share is not None))
    if quantized is not None:
        forced = teacher_forced_agreement(ours, quantized, prompt, outputs["dscoder"])
        free = common_prefix(outputs["dscoder int8"], outputs["dscoder"])
        print(f"  int8 vs fp32 greedy: same next token at {forced:.1%} of positions (teacher-forced), "
              f"free-running outputs agree for the first {free}/{args.tokens} tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"], choices=sorted(PRESETS))
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per timed run")
    parser.add_argument("--prompt-tokens", type=int, default=64,
                        help="prompt length: the cache each new token attends over starts this long")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="weights and activations of every contender (default float32)")
    parser.add_argument("--int8", action="store_true", help="add int8 weight-only quantization")
    parser.add_argument("--compile", action="store_true", help="add torch.compile'd decoding")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    probe = BandwidthProbe()
    tokenizer = bench_tokenizer()
    for preset in args.presets:
        bench_preset(preset, args, tokenizer, probe)


if __name__ == "__main__":
    main()
