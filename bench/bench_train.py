"""Training throughput on CPU: dscoder's training step against `transformers`' LlamaForCausalLM.

Both train the same configuration (a preset of dscoder.model, fp32) on the same random batch
(8 x 512 tokens by default) with AdamW (betas 0.9/0.95, weight decay 0.1) and gradient clipping
at 1.0:

- dscoder: Transformer + the chunked, fused output layer and cross-entropy (dscoder.train.loss)
  + fused AdamW, the step dscoder.train.loop runs;
- peer: LlamaForCausalLM(input_ids, labels=...) + torch.optim.AdamW with its defaults.

Steps alternate between the two (one of each per round, the order flipping every round) so
both see the same machine load. Prints, for each, the median tokens/s and model FLOP/s
(dscoder.train.metrics' accounting), and the speed-up both as the ratio of the medians and as
the median of each round's ratio.

    PYTHONPATH=src python bench/bench_train.py --preset tiny --rounds 8
    PYTHONPATH=src python bench/bench_train.py --preset small --rounds 4
    PYTHONPATH=src python bench/bench_train.py --preset tiny --threads 1   # on a shared machine
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dscoder.model import PRESETS, Transformer
from dscoder.train.loss import CausalLMLoss
from dscoder.train.metrics import flops_per_token

TARGETS = {"tiny": 1.3, "small": 1.1}


def hf_model(config):
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_config = LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_position_embeddings, rope_theta=config.rope_theta,
        rope_scaling={"type": "linear", "factor": config.rope_scaling_factor},
        rms_norm_eps=config.rms_norm_eps, tie_word_embeddings=False, attn_implementation="sdpa")
    return LlamaForCausalLM(hf_config).train()


def adamw_settings() -> dict:
    return dict(lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=("test", "tiny", "small"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=8, help="timed steps of each, after one warm-up step")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = PRESETS[args.preset]
    tokens = torch.randint(0, config.vocab_size, (args.batch, args.seq_len + 1),
                           generator=torch.Generator().manual_seed(0))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    count = targets.numel()

    torch.manual_seed(0)
    ours = CausalLMLoss(Transformer(config).train())
    ours_opt = torch.optim.AdamW(ours.parameters(), **adamw_settings(), fused=True)
    peer = hf_model(config)
    peer_opt = torch.optim.AdamW(peer.parameters(), **adamw_settings())

    def our_step() -> float:
        loss = ours(inputs, targets, 1.0 / count)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ours.parameters(), 1.0)
        ours_opt.step()
        ours_opt.zero_grad(set_to_none=True)
        return loss.item()

    def peer_step() -> float:
        # labels = inputs: transformers shifts them itself, as its training examples do.
        loss = peer(input_ids=inputs, labels=inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(peer.parameters(), 1.0)
        peer_opt.step()
        peer_opt.zero_grad(set_to_none=True)
        return loss.item()

    times: dict[str, list[float]] = {"dscoder": [], "transformers": []}
    steps = {"dscoder": our_step, "transformers": peer_step}
    for name, step in steps.items():
        print(f"warm-up {name}: loss {step():.3f}", flush=True)
    for round_ in range(args.rounds):
        for name, step in (steps.items() if round_ % 2 == 0 else reversed(steps.items())):
            started = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - started)

    step_tokens = args.batch * args.seq_len
    per_token = flops_per_token(config, args.seq_len)
    print(f"\npreset {args.preset}: hidden {config.hidden_size}, {config.num_layers} layers, vocab "
          f"{config.vocab_size}; batch {args.batch} x {args.seq_len}; {torch.get_num_threads()} threads; "
          f"{args.rounds} rounds")
    medians = {}
    for name, samples in times.items():
        medians[name] = statistics.median(samples)
        tps = step_tokens / medians[name]
        print(f"{name:>13}: {tps:8.0f} tokens/s  {tps * per_token / 1e9:7.1f} GFLOP/s (model FLOPs)  "
              f"step {medians[name]:.2f} s (min {min(samples):.2f}, max {max(samples):.2f})")
    ratio = medians["transformers"] / medians["dscoder"]
    # Each round's two steps ran back to back, under about the same load from other processes.
    paired = statistics.median(p / o for p, o in zip(times["transformers"], times["dscoder"]))
    target = TARGETS.get(args.preset)
    met = "met" if min(ratio, paired) >= (target or 0) else "NOT met"
    verdict = f" (target >= {target}x: {met})" if target else ""
    print(f"speed-up: {ratio:.2f}x (ratio of medians), {paired:.2f}x (median of per-round ratios){verdict}")


if __name__ == "__main__":
    main()
