"""How the data pipeline driver's memory grows with corpus size.

The driver keeps, per sample, a MinHash signature, a content hash and its size, then runs LSH
deduplication over all of them; sample texts stay on disk. This bench builds N synthetic items
(random signatures, 1% planted near-copies) and reports the peak resident memory of
`deduplicate` per item, for a few N, so the growth rate can be read off.

    PYTHONPATH=src .venv/bin/python bench/bench_dedup_memory.py --sizes 100000 300000 1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def measure(count: int) -> dict:
    import numpy as np

    from dscoder.data.dedup import DedupConfig, DedupItem, deduplicate

    config = DedupConfig()
    rng = np.random.default_rng(0)
    signatures = rng.integers(0, 2**32, size=(count, config.num_perm), dtype=np.uint32)
    picked = rng.choice(count, size=2 * (count // 200), replace=False)
    originals, copies = picked[::2], picked[1::2]
    # Each copy agrees with its original on ~90% of the positions: estimated Jaccard ~0.9.
    noise = (rng.random((len(copies), config.num_perm)) < 0.1).astype(np.uint32)
    signatures[copies] = signatures[originals] ^ noise
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    items = [DedupItem(f"s{i:09d}", f"{i:032x}", signatures[i], 1000 + i % 977) for i in range(count)]
    started = time.perf_counter()
    removed = deduplicate(items, config)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"items": count, "removed": len(removed), "seconds": round(seconds, 2),
            "signature_mb": round(signatures.nbytes / 1e6, 1),
            "peak_growth_mb": round((peak - before) / 1024, 1),
            "bytes_per_item": round((peak - before) * 1024 / count + signatures.nbytes / count)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    print(f"{'items':>10} {'removed':>8} {'dedup s':>8} {'signatures MB':>14} {'peak growth MB':>15} {'bytes/item':>11}")
    for size in args.sizes:  # one process per size: ru_maxrss only grows
        out = subprocess.run([sys.executable, __file__, "--one", str(size)], capture_output=True, text=True, check=True)
        row = json.loads(out.stdout)
        print(f"{row['items']:>10} {row['removed']:>8} {row['seconds']:>8} {row['signature_mb']:>14} "
              f"{row['peak_growth_mb']:>15} {row['bytes_per_item']:>11}")


if __name__ == "__main__":
    main()
