"""ML-BOM build time for a model layer of N files (default 1,000), from pack's facts
alone (no file is read). Target (issue 4): < 100 ms for 1,000 files.

    .venv/bin/python benchmarks/mlbom.py [--files 1000] [--rounds 10]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time

from kitaudit import kitfile
from kitaudit.mlbom import FileFacts, LayerFacts, build_mlbom


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    kit = kitfile.loads("manifestVersion: 1.0.0\npackage: {name: big}\n"
                        "model: {name: big, path: weights}\n")
    files = [FileFacts(f"weights/shard-{i:05d}.bin", _sha(str(i)), i)
             for i in range(args.files)]
    layers = [LayerFacts("model", "weights", "application/vnd.kitops.modelkit.model.v1.tar",
                         "sha256:" + _sha("layer"), "sha256:" + _sha("diff"), 10, files)]
    digest = "sha256:" + _sha("manifest")
    t0 = time.perf_counter()
    build_mlbom(kit, manifest_digest=digest, layers=layers)
    first = time.perf_counter() - t0
    timings = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        build_mlbom(kit, manifest_digest=digest, layers=layers, reference="localhost/big:v1")
        timings.append(time.perf_counter() - t0)
    median = statistics.median(timings) * 1000
    print(f"first build (imports included): {first * 1000:7.1f} ms")
    print(f"build, {args.files} files: median {median:6.1f} ms, best "
          f"{min(timings) * 1000:6.1f} ms over {args.rounds} rounds")
    if args.files == 1000:
        print(f"{'PASS' if median < 100 else 'MISS'}  < 100 ms for 1,000 files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
