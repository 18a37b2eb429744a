"""Engine against the naive per-sample reference, same hypotheses, same N, one run.

    python bench/bench_engine.py [--samples N] [--seed S]

Prints, per sum4 hypothesis, the wall time of casc's engine (through the
library API, after compilation and per-dataset preparation) and of the naive
implementation kept in the tests, with the ratio and each one's scrubbed loss
(they must agree within a few standard errors).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from naive import NaiveRunner, mean_se  # noqa: E402

from casc_cli import engine  # noqa: E402
from casc_cli.api import Session  # noqa: E402

HYPOTHESES = ["hypotheses/sum4/true.yaml", "hypotheses/sum4/swap_first_pair.yaml",
              "hypotheses/sum4/reversed.yaml"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    session = Session()
    print(f"{'hypothesis':38} {'engine s':>9} {'naive s':>9} {'naive/engine':>13} "
          f"{'engine loss':>18} {'naive loss':>18}")
    ratios = []
    for path in HYPOTHESES:
        compiled = session.compile(ROOT / path)
        prepared = session.prepare(compiled)
        start = time.perf_counter()
        result = engine.scrub(prepared, args.samples, args.seed)
        engine_s = time.perf_counter() - start
        runner = NaiveRunner(compiled, session.dataset(compiled.loaded.task))
        rng = np.random.default_rng(args.seed)
        start = time.perf_counter()
        values = runner.scrub(args.samples, rng)
        naive_s = time.perf_counter() - start
        naive_mean, naive_se = mean_se(values)
        ratios.append(naive_s / engine_s)
        print(f"{path:38} {engine_s:9.4f} {naive_s:9.3f} {ratios[-1]:12.0f}x "
              f"{result.scrubbed_loss:10.3f} ± {result.scrubbed_loss_se:5.3f} "
              f"{naive_mean:10.3f} ± {naive_se:5.3f}")
    print(f"\n{args.samples} samples per hypothesis; engine is {min(ratios):.0f}x to "
          f"{max(ratios):.0f}x faster than the naive reference")


if __name__ == "__main__":
    main()
