"""Peak memory of `dscoder.model.load_model` against the size of the checkpoint it loads.

Writes a random checkpoint (fp32 ~370 MB and its bf16 copy by default), then loads it in fresh
subprocesses and reports, per case, the growth of the process's peak resident set
(getrusage ru_maxrss, which counts memory-mapped file pages once touched) over its resident set
just before loading, divided by the checkpoint's weight bytes. Target: under 1.3x.

ru_maxrss survives exec (a child starts with its parent's peak), so the parent here never imports
torch and both writing and loading happen in subprocesses; each child resets its peak through
/proc/self/clear_refs just before loading.

    PYTHONPATH=src python bench/bench_model_load.py [--hidden 768 --layers 6] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET_RATIO = 1.3


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def _reset_peak_rss() -> None:
    # Linux >= 4.0: forget the peak so far (imports, warm-up), so the peak read next is the load's.
    Path("/proc/self/clear_refs").write_text("5")


def measure(directory: str, dtype_name: str, run_forward: bool) -> dict[str, int]:
    """In this (fresh) process: load the checkpoint and report resident-set figures."""
    import torch

    from dscoder.model import PRESETS, Transformer, load_model

    dtype = None if dtype_name == "stored" else getattr(torch, dtype_name)
    # First use of torch's kernels and of its meta device imports and pages in ~150 MB of
    # library code and Python modules, whatever the model's size; do that before the baseline
    # so that the growth measured is the weights' alone.
    warm_config = PRESETS["test"].replace(vocab_size=512)
    with torch.device("meta"):
        Transformer(warm_config)
    with torch.no_grad():
        for warm_dtype in (torch.float32, torch.bfloat16):
            Transformer(warm_config).to(warm_dtype)(torch.zeros(1, 8, dtype=torch.long))
    _reset_peak_rss()
    before = _rss_bytes()
    model = load_model(directory, dtype=dtype)
    figures = {"before": before, "peak_load": _peak_rss_bytes(), "after_load": _rss_bytes()}
    if run_forward:
        # A forward pass, then a read of every weight (a forward reads only a few embedding
        # rows), so that every mapped page is resident: the most the loaded model can occupy.
        with torch.no_grad():
            model(torch.zeros(1, 8, dtype=torch.long))
            for parameter in model.parameters():
                parameter.sum()
        figures["peak_forward"] = _peak_rss_bytes()
    return figures


def write_checkpoints(directory: Path, hidden: int, layers: int) -> None:
    """A random fp32 checkpoint in directory/fp32 and its bf16 copy in directory/bf16."""
    import torch

    from dscoder.model import PRESETS, Transformer, save_model

    config = PRESETS["small"].replace(hidden_size=hidden, intermediate_size=hidden * 8 // 3 // 64 * 64,
                                      num_layers=layers, num_heads=hidden // 64, num_kv_heads=hidden // 64)
    with torch.device("meta"):
        model = Transformer(config)
    model.to_empty(device="cpu")
    model.init_weights()
    save_model(model, directory / "fp32")
    save_model(model, directory / "bf16", dtype=torch.bfloat16)


def _weight_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("*.safetensors"))


def _run_case(directory: Path, dtype_name: str, run_forward: bool) -> dict[str, int]:
    command = [sys.executable, __file__, "--measure", str(directory), dtype_name]
    if run_forward:
        command.append("--forward")
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--keep", type=Path, help="write the checkpoints here and keep them")
    parser.add_argument("--write", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--measure", nargs=2, metavar=("DIR", "DTYPE"), help=argparse.SUPPRESS)
    parser.add_argument("--forward", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        write_checkpoints(args.write, args.hidden, args.layers)
        return
    if args.measure:
        print(json.dumps(measure(*args.measure, run_forward=args.forward)))
        return

    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        subprocess.run([sys.executable, __file__, "--write", str(root), "--hidden", str(args.hidden),
                        "--layers", str(args.layers)], check=True)
        fp32_dir, bf16_dir = root / "fp32", root / "bf16"
        cases = [
            ("fp32 file, stored dtype", fp32_dir, "stored", True),
            ("bf16 file, stored dtype", bf16_dir, "stored", True),
            ("bf16 file -> float32", bf16_dir, "float32", False),
        ]
        print(f"{'case':26} {'file MB':>8} {'load peak MB':>13} {'ratio':>6} {'all read MB':>13} {'ratio':>6}")
        worst = 0.0
        for label, directory, dtype_name, forward in cases:
            size = _weight_bytes(directory)
            figures = _run_case(directory, dtype_name, forward)
            load_growth = figures["peak_load"] - figures["before"]
            line = f"{label:26} {size / 2**20:8.1f} {load_growth / 2**20:13.1f} {load_growth / size:6.2f}"
            if forward:
                forward_growth = figures["peak_forward"] - figures["before"]
                line += f" {forward_growth / 2**20:13.1f} {forward_growth / size:6.2f}"
                worst = max(worst, load_growth / size, forward_growth / size)
            print(line)
        print(f"worst same-dtype ratio {worst:.2f} (target < {TARGET_RATIO})")


if __name__ == "__main__":
    main()
