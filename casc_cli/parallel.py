"""Spread a sweep over local processes or a Dask cluster, with results identical to one process.

Work is cut into *units*: a batch of hypotheses and a range of blocks, sized
to about :data:`TARGET_UNIT_SAMPLES` resamples (a tenth of a second or more
of work, so scheduling costs stay small). A unit carries no compiled code:
the task file's text, each hypothesis's spec (its formulas as text) and the
run settings; a worker parses and compiles them once and caches the result.
Each unit returns one accumulator per block; the caller merges them in block
order, so a figure is the same to the bit whatever the number of processes,
the unit size or the order in which units finish.
"""

from __future__ import annotations

from collections import OrderedDict
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
import multiprocessing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from . import engine
from .errors import UsageError
from .graph import CompiledHypothesis
from .metrics import Moments, ScrubResult

TARGET_UNIT_SAMPLES = 2_000_000
MAX_PENDING_PER_WORKER = 4


@dataclass(frozen=True)
class HypothesisRef:
    """What a worker needs to rebuild one hypothesis: its spec, never compiled closures."""

    index: int
    path: str
    spec: dict[str, Any]
    policy: str
    ablation: str


@dataclass(frozen=True)
class Unit:
    task_path: str
    task_text: str
    hypotheses: tuple[HypothesisRef, ...]
    seed: int
    chunk: tuple[tuple[int, int], ...]  # the blocks this unit scrubs
    chunk_size: int
    inherited: bool = False  # local forked workers already hold the prepared hypotheses


def plan_units(compiled: Sequence[CompiledHypothesis], samples: int, seed: int,
               chunk_size: int = engine.DEFAULT_CHUNK_SIZE,
               target: int = TARGET_UNIT_SAMPLES) -> list[Unit]:
    """Batches of hypotheses x block ranges of about ``target`` resamples each."""
    if not compiled:
        return []
    first = compiled[0].task.loaded.path
    task_text = Path(first).read_text(encoding="utf-8-sig")
    refs = [HypothesisRef(i, str(h.loaded.path), h.loaded.spec.model_dump(by_alias=True),
                          h.policy, h.ablation) for i, h in enumerate(compiled)]
    all_blocks = engine.blocks(samples)
    blocks_per_unit = max(1, target // engine.BLOCK_SIZE)
    ranges = [tuple(all_blocks[i:i + blocks_per_unit])
              for i in range(0, len(all_blocks), blocks_per_unit)]
    per_batch = max(1, target // max(1, samples))  # small runs: several hypotheses per unit
    return [Unit(str(first), task_text, tuple(refs[i:i + per_batch]), seed, block_range,
                 chunk_size)
            for i in range(0, len(refs), per_batch) for block_range in ranges]


_tasks: dict[tuple[str, str], Any] = {}
_inherited: Sequence[engine.Prepared] | None = None  # set before forking local workers
_prepared: OrderedDict[tuple, engine.Prepared] = OrderedDict()
PREPARED_KEPT = 256  # a hypothesis spans several units only in long runs: keep the recent ones


def run_unit(unit: Unit) -> list[tuple[int, list[engine.Accumulator]]]:
    """Scrub one unit (in a worker): per hypothesis, one accumulator per block."""
    from .spec.loader import LoadedHypothesis, SourceMap, load_task
    from .spec.models import HypothesisSpec

    per_chunk = max(1, unit.chunk_size // engine.BLOCK_SIZE)
    chunks = [list(unit.chunk[i:i + per_chunk]) for i in range(0, len(unit.chunk), per_chunk)]
    task_key = (unit.task_path, unit.task_text)
    if task_key not in _tasks:  # parse the task once per worker
        _tasks[task_key] = load_task(Path(unit.task_path), unit.task_text)
    task = _tasks[task_key]
    session = _session()
    out = []
    for ref in unit.hypotheses:
        if unit.inherited and _inherited is not None:
            accumulators = []
            for chunk in chunks:
                accumulators.extend(engine.scrub_chunk(_inherited[ref.index], unit.seed, chunk))
            out.append((ref.index, accumulators))
            continue
        key = (task_key, ref.path, repr(ref.spec), ref.policy, ref.ablation)
        prepared = _prepared.get(key)
        if prepared is None:
            spec = HypothesisSpec.model_validate(ref.spec)
            loaded = LoadedHypothesis(spec, Path(ref.path), SourceMap(ref.path, None), task)
            prepared = session.prepare(session.compile_loaded(loaded, ref.policy,
                                                              ablation=ref.ablation))
            _prepared[key] = prepared
            while len(_prepared) > PREPARED_KEPT:
                _prepared.popitem(last=False)
        accumulators = []
        for chunk in chunks:
            accumulators.extend(engine.scrub_chunk(prepared, unit.seed, chunk))
        out.append((ref.index, accumulators))
    return out


_session_singleton = None


def _session():
    global _session_singleton
    if _session_singleton is None:
        from .api import Session

        _session_singleton = Session()
    return _session_singleton


def _reduce(units: list[Unit], outputs: list[list[tuple[int, list[engine.Accumulator]]]],
            n: int) -> list[engine.Accumulator]:
    """Merge every hypothesis's per-block accumulators in block order."""
    per_block: list[dict[int, engine.Accumulator]] = [dict() for _ in range(n)]
    for unit, output in zip(units, outputs):
        for index, accumulators in output:
            for (block, _), acc in zip(unit.chunk, accumulators):
                per_block[index][block] = acc
    return [engine.merged([blocks[b] for b in sorted(blocks)]) for blocks in per_block]


def scrub_parallel(prepared: Sequence[engine.Prepared], samples: int, seed: int, *,
                   jobs: int = 1, scheduler: str | None = None,
                   chunk_size: int = engine.DEFAULT_CHUNK_SIZE,
                   on_progress: Callable[[int, int], None] | None = None) -> list[ScrubResult]:
    """Scrub ``prepared`` over ``jobs`` local processes or the Dask ``scheduler``.

    The random baseline is computed here, once per task and model; everything
    else is shipped as units. ``on_progress(done, total)`` is called as units finish.
    """
    compiled = [p.hypothesis for p in prepared]
    units = plan_units(compiled, samples, seed, chunk_size)
    if scheduler is not None:
        outputs = _run_dask(units, scheduler, on_progress)
    else:
        outputs = _run_local(units, jobs, on_progress, prepared)
    accumulators = _reduce(units, outputs, len(prepared))
    baselines: dict[tuple, Moments] = {}
    results = []
    for p, acc in zip(prepared, accumulators):
        key = engine.baseline_key(p)
        if key not in baselines:
            baselines[key] = engine.random_baseline(p, samples, seed, chunk_size)
        results.append(engine.summarise(p, acc, baselines[key], seed))
    return results


def _run_local(units: list[Unit], jobs: int,
               on_progress: Callable[[int, int], None] | None,
               prepared: Sequence[engine.Prepared] = ()) -> list[Any]:
    """Run units in this process (jobs=1) or a pool. Where processes fork (Linux), workers
    inherit the hypotheses already prepared here instead of rebuilding them from specs."""
    global _inherited
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    context = None
    if jobs > 1 and prepared and "fork" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("fork")
        _inherited = prepared
        units = [replace(unit, inherited=True) for unit in units]
    try:
        return _pool(units, jobs, on_progress, context)
    finally:
        _inherited = None


def _pool(units: list[Unit], jobs: int, on_progress: Callable[[int, int], None] | None,
          context: Any) -> list[Any]:
    outputs: list[Any] = [None] * len(units)
    if jobs == 1:
        for i, unit in enumerate(units):
            outputs[i] = run_unit(unit)
            if on_progress:
                on_progress(i + 1, len(units))
        return outputs
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        pending: dict[Future, int] = {}
        queue = iter(enumerate(units))
        done_count = 0

        def submit_some() -> None:
            for i, unit in queue:
                pending[pool.submit(run_unit, unit)] = i
                if len(pending) >= jobs * MAX_PENDING_PER_WORKER:
                    return

        submit_some()
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                outputs[pending.pop(future)] = future.result()
                done_count += 1
                if on_progress:
                    on_progress(done_count, len(units))
            submit_some()
    return outputs


def _run_dask(units: list[Unit], scheduler: str,
              on_progress: Callable[[int, int], None] | None) -> list[Any]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise UsageError("--scheduler needs Dask: pip install 'casc[dask]'") from None
    try:
        client = Client(scheduler, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    outputs: list[Any] = [None] * len(units)
    try:
        batch = max(1, 4 * sum(client.nthreads().values()))
        done_count = 0
        for start in range(0, len(units), batch):  # submit in batches, not all at once
            futures = client.map(run_unit, units[start:start + batch], pure=False)
            index = {f.key: start + i for i, f in enumerate(futures)}
            for future in as_completed(futures):
                outputs[index[future.key]] = future.result()
                done_count += 1
                if on_progress:
                    on_progress(done_count, len(units))
    finally:
        client.close()
    return outputs
