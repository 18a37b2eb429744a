"""Chunking, local processes and Dask give the same figures, to the bit, as one process."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from casc_cli import engine
from casc_cli.api import Session
from casc_cli.cli import app
from casc_cli.parallel import plan_units
from casc_cli.spec.loader import load_hypothesis
from casc_cli.spec.transform import permutations

SAMPLES = 3 * engine.BLOCK_SIZE + 1234  # several blocks, the last one partial


@pytest.fixture(scope="module")
def sweep():
    session = Session()
    variants = permutations(load_hypothesis(Path("hypotheses/sum4/true.yaml")),
                            ["x0", "x1", "x2"])
    compiled = [session.compile_loaded(v.loaded) for v in variants]
    compiled.append(session.compile("hypotheses/sum4/reversed.yaml", "independent"))
    return session, compiled


@pytest.mark.parametrize("chunk_size", [1, engine.BLOCK_SIZE, 2 * engine.BLOCK_SIZE, 1 << 24])
def test_chunk_size_never_changes_a_figure(sweep, chunk_size):
    session, compiled = sweep
    prepared = session.prepare(compiled[-1])
    reference = engine.scrub(prepared, SAMPLES, seed=4)
    assert engine.scrub(prepared, SAMPLES, 4, chunk_size=chunk_size) == reference


def test_processes_equal_one_process(sweep):
    session, compiled = sweep
    one = session.scrub_sweep(compiled, SAMPLES, 9)
    two = session.scrub_sweep(compiled, SAMPLES, 9, jobs=2)
    assert one == two


def test_units_cover_every_block_once(sweep):
    _, compiled = sweep
    units = plan_units(compiled, SAMPLES, 1, target=engine.BLOCK_SIZE)
    seen = {}
    for unit in units:
        for ref in unit.hypotheses:
            for block, size in unit.chunk:
                key = (ref.index, block)
                assert key not in seen
                seen[key] = size
    assert len(seen) == len(compiled) * len(engine.blocks(SAMPLES))
    assert sum(seen.values()) == len(compiled) * SAMPLES
    # small runs batch several hypotheses into one unit
    assert len(plan_units(compiled, 1000, 1)) == 1


def test_dask_local_cluster_equals_one_process(sweep):
    distributed = pytest.importorskip("distributed")
    session, compiled = sweep
    one = session.scrub_sweep(compiled[:3], SAMPLES, 2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        on_dask = session.scrub_sweep(compiled[:3], SAMPLES, 2, scheduler=cluster.scheduler_address)
    assert on_dask == one


def test_compare_jobs_flag_gives_identical_json():
    runner = CliRunner()
    args = ["compare", "hypotheses/sum4/true.yaml", "--permute", "x0,x1,x2", "--json",
            "-n", "20000"]
    one = runner.invoke(app, args)
    two = runner.invoke(app, args + ["--jobs", "2"])
    assert one.exit_code == two.exit_code == 0
    assert one.stdout == two.stdout


def test_unreachable_scheduler_is_a_clean_error():
    pytest.importorskip("distributed")
    result = CliRunner().invoke(app, ["compare", "hypotheses/xor/first_bit.yaml",
                                      "--scheduler", "tcp://127.0.0.1:9", "-n", "100"])
    assert result.exit_code == 2
    assert "Dask scheduler" in result.output


@pytest.mark.parametrize("args", [["--jobs", "0"], ["--chunk-size", "0"]])
def test_bad_parallel_options(args):
    result = CliRunner().invoke(app, ["compare", "hypotheses/xor/first_bit.yaml", *args])
    assert result.exit_code == 2
