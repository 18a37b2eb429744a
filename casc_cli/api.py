"""The library API: what the CLI calls, and what a notebook can call.

>>> from casc_cli import api
>>> result = api.run("hypotheses/sum4/true.yaml", samples=10_000, seed=0)
>>> result.scrubbed_loss, result.scrubbed_loss_se
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from . import engine
from .data import Dataset, build_dataset
from .errors import GraphError, UsageError
from .graph import (ABLATIONS, POLICIES, Ablation, CompiledHypothesis, CompiledTask, Policy,
                    compile_hypothesis, compile_task)
from .metrics import ScrubResult
from .spec.loader import LoadedHypothesis, LoadedTask, load_any, load_hypothesis

DEFAULT_SAMPLES = 10_000
MAX_SAMPLES = 10**10
MAX_CHUNK_SIZE = 1 << 24


@dataclass(frozen=True)
class Validated:
    """A file that passed validation, with what compiling it found."""

    path: str
    kind: str  # "task" or "hypothesis"
    warnings: tuple[str, ...]


class Session:
    """Caches compiled tasks and datasets, so many hypotheses of one task share them."""

    def __init__(self) -> None:
        self._tasks: dict[Path, CompiledTask] = {}
        self._data: dict[Path, Dataset] = {}
        self._prepared = engine.PrepareCache()

    def task(self, loaded: LoadedTask) -> CompiledTask:
        key = loaded.path.resolve()
        if key not in self._tasks:
            self._tasks[key] = compile_task(loaded)
        return self._tasks[key]

    def dataset(self, loaded: LoadedTask) -> Dataset:
        key = loaded.path.resolve()
        if key not in self._data:
            self._data[key] = build_dataset(loaded)
        return self._data[key]

    def compile(self, path: str | Path, policy: Policy = "per_node",
                strict: bool = False, ablation: Ablation = "resample") -> CompiledHypothesis:
        loaded = load_hypothesis(Path(path))
        return self.compile_loaded(loaded, policy, strict, ablation)

    def compile_loaded(self, loaded: LoadedHypothesis, policy: Policy = "per_node",
                       strict: bool = False, ablation: Ablation = "resample"
                       ) -> CompiledHypothesis:
        if policy not in POLICIES:
            raise UsageError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
        if ablation not in ABLATIONS:
            raise UsageError(f"unknown ablation {ablation!r}; choose one of {', '.join(ABLATIONS)}")
        compiled = compile_hypothesis(loaded, policy, self.task(loaded.task), ablation)
        vacuous = [w for w in compiled.warnings if w.kind == "vacuous"]
        if strict and vacuous:
            first = vacuous[0]
            raise GraphError(first.message + " (an error under --strict)", first.location)
        return compiled

    def prepare(self, compiled: CompiledHypothesis) -> engine.Prepared:
        return engine.prepare(compiled, self.dataset(compiled.loaded.task), self._prepared)

    def run(self, path: str | Path, *, samples: int = DEFAULT_SAMPLES, seed: int = 0,
            policy: Policy = "per_node", strict: bool = False,
            ablation: Ablation = "resample") -> ScrubResult:
        check_run_options(samples, seed)
        compiled = self.compile(path, policy, strict, ablation)
        return self.scrub(compiled, samples, seed, given=str(path))

    def scrub(self, compiled: CompiledHypothesis, samples: int, seed: int,
              given: str | None = None, with_specificity: bool = True,
              chunk_size: int = engine.DEFAULT_CHUNK_SIZE, adversary: bool = False
              ) -> ScrubResult:
        """Scrub a compiled hypothesis; add the specificity report unless told not to, and
        the worst case an adversary finds with ``adversary``."""
        check_chunk_size(chunk_size)
        prepared = self.prepare(compiled)
        result = engine.scrub(prepared, samples, seed, chunk_size)
        if given is not None:
            result = replace(result, hypothesis=given)
        if adversary:
            result = self.with_worst_case(result, compiled, samples, seed)
        return with_specificity_report(result, prepared) if with_specificity else result

    def with_worst_case(self, result: ScrubResult, compiled: CompiledHypothesis, samples: int,
                        seed: int) -> ScrubResult:
        """Add worst-case scrubbing's figure (:mod:`casc_cli.adversary`) to a result."""
        from .adversary import worst_case

        worst = worst_case(self.prepare(compiled), samples, seed)
        return replace(result, worst_case_loss=worst.worst_loss,
                       worst_case_loss_se=worst.worst_loss_se, worst_case_exact=worst.exact)

    def scrub_sweep(self, compiled: list[CompiledHypothesis], samples: int, seed: int, *,
                    jobs: int = 1, scheduler: str | None = None,
                    chunk_size: int = engine.DEFAULT_CHUNK_SIZE,
                    on_progress: Callable[[int, int], None] | None = None) -> list[ScrubResult]:
        """Scrub many hypotheses: in this process, over ``jobs`` processes, or on a Dask
        ``scheduler``; the figures are the same to the bit in every case."""
        check_run_options(samples, seed)
        check_chunk_size(chunk_size)
        if jobs < 1:
            raise UsageError("--jobs must be at least 1")
        prepared = [self.prepare(h) for h in compiled]
        if jobs == 1 and scheduler is None:
            done = iter(range(1, len(prepared) + 1))
            return engine.scrub_many(
                prepared, samples, seed, chunk_size,
                on_done=(lambda: on_progress(next(done), len(prepared))) if on_progress else None)
        from .parallel import scrub_parallel

        return scrub_parallel(prepared, samples, seed, jobs=jobs, scheduler=scheduler,
                              chunk_size=chunk_size, on_progress=on_progress)

    def validate(self, path: str | Path) -> Validated:
        loaded = load_any(Path(path))
        if isinstance(loaded, LoadedTask):
            self.task(loaded)
            return Validated(str(path), "task", ())
        compiled = self.compile_loaded(loaded)
        return Validated(str(path), "hypothesis", tuple(str(w) for w in compiled.warnings))


    def check(self, paths: list[str], *, samples: int = DEFAULT_SAMPLES, seed: int = 0,
              k: float = 3.0, baseline: str | None = None) -> tuple[list, list[ScrubResult]]:
        """Judge the ``expect:`` blocks under ``paths`` and, optionally, a saved baseline.

        Returns the checks (see :mod:`casc_cli.check`) and the results they judged.
        """
        from .check import (expectations, hypothesis_files, judge, judge_baseline,
                            load_baseline, rerun_baseline)

        check_run_options(samples, seed)
        if not k > 0:
            raise UsageError("-k must be positive")
        if not paths and baseline is None:
            raise UsageError("give hypothesis files or folders, or --baseline FILE")
        planned = []
        for file in hypothesis_files(paths):
            loaded, expect = expectations(file)
            if expect is not None:
                planned.append((file, self.compile_loaded(loaded), expect))
        old_results = load_baseline(baseline) if baseline is not None else []
        checks, results = [], []
        for file, compiled, expect in planned:
            result = self.scrub(compiled, samples, seed, given=file, with_specificity=False,
                                adversary=expect.worst_case_loss is not None)
            results.append(result)
            checks.extend(judge(result, expect, compiled.loaded, file, k))
        for old in old_results:
            result = rerun_baseline(old, self.run)
            results.append(result)
            checks.extend(judge_baseline(old, result, k, baseline))
        return checks, results


def with_specificity_report(result: ScrubResult, prepared: engine.Prepared) -> ScrubResult:
    """Add the per-node report and the entropy of the scrubbed inputs (docs/diagnostics.md)."""
    from .specificity import node_reports, specificity

    spec = specificity(prepared)
    nodes = [dict(name=n.name, claims=n.claims, stands_for=n.stands_for, classes=n.classes,
                  relation=n.relation) for n in node_reports(prepared)]
    return replace(result, entropy_bits=spec.entropy_bits, max_entropy_bits=spec.max_entropy_bits,
                   claimed_bits=spec.claimed_bits, nodes=nodes)


def check_chunk_size(chunk_size: int) -> None:
    if chunk_size < 1:
        raise UsageError("--chunk-size must be positive")
    if chunk_size > MAX_CHUNK_SIZE:
        raise UsageError(f"--chunk-size {chunk_size} is over the limit of {MAX_CHUNK_SIZE} "
                         "(memory grows with the chunk)")


def check_run_options(samples: int, seed: int) -> None:
    if samples < 2:
        raise UsageError("--samples must be at least 2 (a standard error needs two samples)")
    if samples > MAX_SAMPLES:
        raise UsageError(f"--samples {samples} is over the limit of {MAX_SAMPLES}")
    if seed < 0:
        raise UsageError("--seed must be a non-negative integer")


def run(path: str | Path, *, samples: int = DEFAULT_SAMPLES, seed: int = 0,
        policy: Policy = "per_node", strict: bool = False,
        ablation: Ablation = "resample") -> ScrubResult:
    """Scrub one hypothesis file and return its figures."""
    return Session().run(path, samples=samples, seed=seed, policy=policy, strict=strict,
                         ablation=ablation)


def validate(path: str | Path) -> Validated:
    """Check a task or hypothesis file without running it."""
    return Session().validate(path)
