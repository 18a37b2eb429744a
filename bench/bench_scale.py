"""Throughput on the 24 permuted sum4 hypotheses: casc vs the naive reference vs a hand-fused floor.

    python bench/bench_scale.py [--samples 10000,1000000,10000000] [--naive-samples 2000]

For each sample count it scrubs all 24 hypotheses (every order of x0..x3 in
``hypotheses/sum4/true.yaml``) three ways, in one process, and prints scrubbed
samples per second, the ratios casc/naive and casc/floor, and peak memory:

(a) casc: the engine through its library API (``engine.scrub`` on prepared
    hypotheses: every figure casc reports, random baseline included once per
    comparison as ``casc compare`` does);
(b) naive: the per-sample reference implementation kept in the tests, run on
    ``--naive-samples`` samples per hypothesis (it is far too slow for more;
    throughput is per sample, so the ratio is still like for like);
(c) floor: a hand-fused numpy kernel written for exactly this case: the
    structure of each hypothesis (which slot each digit reads, which class
    table each conditional draw uses) is taken from casc's compiled plan once,
    then each block is a handful of gathers, one sum and the squared error,
    with no parsing, no formula interpretation and no diagnostics.

Peak memory is the process's peak resident set size after each row (it only
grows), from ``resource.getrusage``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from naive import NaiveRunner  # noqa: E402

from casc_cli import engine  # noqa: E402
from casc_cli.api import Session  # noqa: E402
from casc_cli.spec.loader import load_hypothesis  # noqa: E402
from casc_cli.spec.transform import permutations  # noqa: E402

FLOOR_BLOCK = 1 << 16


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Floor:
    """Hand-fused scrubbing of one sum4 hypothesis: gathers, a sum, a squared error."""

    def __init__(self, prepared: engine.Prepared):
        plan = prepared.hypothesis.plan
        data = prepared.dataset.inputs
        self.n_rows = prepared.dataset.size
        self.labels = prepared.labels.astype(np.int64)
        self.digits = [data[f"x{i}"].astype(np.int64) for i in range(4)]
        self.reads = [plan.path_slots[p] for p in sorted(plan.path_slots)]  # x0..x3 order
        self.draws = []  # (slot, parent slot, row -> class start, row -> class size, order)
        for i, slot in enumerate(plan.slots):
            if slot.kind == "node":
                table = prepared.classes[slot.node]
                self.draws.append((i, slot.parent, table.starts[table.labels],
                                   table.counts[table.labels], table.order))
            elif i:
                self.draws.append((i, None, None, None, None))
        self.n_slots = len(plan.slots)

    def run(self, samples: int, seed: int) -> tuple[float, float]:
        rng = np.random.default_rng(seed)
        total = total_sq = 0.0
        for start in range(0, samples, FLOOR_BLOCK):
            size = min(FLOOR_BLOCK, samples - start)
            rows = [None] * self.n_slots
            rows[0] = rng.integers(0, self.n_rows, size)
            for i, parent, starts, counts, order in self.draws:
                if parent is None:
                    rows[i] = rng.integers(0, self.n_rows, size)
                else:
                    p = rows[parent]
                    rows[i] = order[starts[p] + (rng.random(size) * counts[p]).astype(np.int64)]
            d = self.digits
            out = d[0][rows[self.reads[0]]] + d[1][rows[self.reads[1]]] \
                + d[2][rows[self.reads[2]]] + d[3][rows[self.reads[3]]]
            err = out - self.labels[rows[0]]
            sq = err * err
            total += float(sq.sum())
            total_sq += float((sq * sq).sum())
        mean = total / samples
        return mean, np.sqrt(max(total_sq / samples - mean * mean, 0) / samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", default="10000,1000000,10000000")
    parser.add_argument("--naive-samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    session = Session()
    base = load_hypothesis(ROOT / "hypotheses/sum4/true.yaml")
    compiled = [session.compile_loaded(v.loaded)
                for v in permutations(base, ["x0", "x1", "x2", "x3"])]
    prepared = [session.prepare(h) for h in compiled]
    floors = [Floor(p) for p in prepared]
    dataset = session.dataset(compiled[0].loaded.task)

    start = time.perf_counter()
    for h in compiled:
        NaiveRunner(h, dataset).scrub(args.naive_samples, np.random.default_rng(args.seed))
    naive_rate = len(compiled) * args.naive_samples / (time.perf_counter() - start)

    print(f"24 permuted sum4 hypotheses; naive measured on {args.naive_samples} samples each: "
          f"{naive_rate:,.0f} samples/s")
    print(f"{'samples/hyp':>12} {'casc/s':>14} {'naive/s':>10} {'floor/s':>14} "
          f"{'casc/naive':>11} {'casc/floor':>11} {'peak MiB':>9}")
    for samples in (int(s) for s in args.samples.split(",")):
        start = time.perf_counter()
        engine.scrub_many(prepared, samples, args.seed)
        casc_rate = len(prepared) * samples / (time.perf_counter() - start)
        start = time.perf_counter()
        for floor in floors:
            floor.run(samples, args.seed)
        floor_rate = len(floors) * samples / (time.perf_counter() - start)
        print(f"{samples:>12,} {casc_rate:>14,.0f} {naive_rate:>10,.0f} {floor_rate:>14,.0f} "
              f"{casc_rate / naive_rate:>10,.0f}x {casc_rate / floor_rate:>10.2f}x "
              f"{peak_mib():>9.0f}")


if __name__ == "__main__":
    main()
