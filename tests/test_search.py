"""The adversary's search (casc_cli.search) on the catalogue, and its printed refinements."""

from __future__ import annotations

import numpy as np
import pytest

from casc_cli.api import Session
from casc_cli.errors import UsageError
from casc_cli.search import _Candidate, _family, _refine, search

SAMPLES, SEED = 10_000, 0


@pytest.fixture(scope="module")
def session():
    return Session()


@pytest.fixture(scope="module")
def second_bit(session):
    return search("hypotheses/xor/second_bit.yaml", samples=SAMPLES, seed=SEED, session=session)


def test_xor_second_bit_is_broken_by_splitting_a_class_by_the_first_bit(second_bit):
    r = second_bit
    assert r.significant and r.best.node == "bit" and r.best.feature == "x[0]"
    # one class keeps the first bit: those references score the model's own metric
    # (0 where x[1] = 0, 1 where x[1] = 1), the other half stays at 0.5: 0.25 or 0.75
    expected = {"0": 0.25, "1": 0.75}
    assert {x.value for x in r.ranking} == {"0", "1"}
    for x in r.ranking:
        assert abs(x.result.scrubbed_loss - expected[x.value]) < 4 * x.result.scrubbed_loss_se
        assert x.z > r.threshold_z
    assert not r.baseline_significant  # plain scrubbing keeps 0.5: cancellation
    assert r.tried == r.family_size == 2  # splitting a class of x[1] by x[1] changes nothing


def test_printed_refinement_reproduces_the_reported_loss(second_bit, tmp_path):
    out = tmp_path / "refined.yaml"
    out.write_text(second_bit.refinement_yaml(output=out))
    ran = Session().run(out, samples=SAMPLES, seed=SEED)
    best = second_bit.best.result
    assert (ran.scrubbed_loss, ran.scrubbed_loss_se, ran.mean_gap, ran.mean_gap_se) == \
        (best.scrubbed_loss, best.scrubbed_loss_se, best.mean_gap, best.mean_gap_se)
    text = out.read_text()
    assert text.startswith("# casc adversary") and "pair(x[1], where(x[1] == " in text


@pytest.mark.parametrize("name", ["xor/first_bit", "sum_offset/all", "sum4/true",
                                  "reciprocal/exact", "reciprocal/greater"])
def test_true_hypotheses_have_no_significant_refinement(session, name):
    r = search(f"hypotheses/{name}.yaml", samples=4000, seed=SEED, session=session)
    assert not r.significant and not r.baseline_significant
    assert all(x.z == 0 for x in r.ranking)  # no refinement changes a single output
    assert r.tried > 0 or r.unmovable_classes > 0


def test_sum_offset_first_three_cannot_be_moved_on_average(session):
    # the error 2 + x3' - x3 is linear in the resampled x3', and x3' is distributed as D
    # under every refinement: no join moves the average (only the worst case does). Here
    # every class is unmovable: its only freedom is the unimportant path of x3.
    r = search("hypotheses/sum_offset/first_three.yaml", samples=4000, seed=SEED,
               session=session)
    assert not r.significant and not r.baseline_significant
    assert r.family_size == 0 and r.unmovable_classes == 30


@pytest.mark.parametrize("name, node, value, feature", [
    ("sum_offset/first_three", "x0", 3, "x3"), ("sum_offset/first_three", "x2", 0, "x1"),
    ("sum4/true", "x1", 6, "x0"), ("reciprocal/exact", "r0", 0.25, "x1")])
def test_splitting_an_unmovable_class_changes_nothing(session, name, node, value, feature):
    # why the search skips them: the same outputs, sample for sample
    compiled = session.compile(f"hypotheses/{name}.yaml")
    candidate = _Candidate(node, np.asarray(value), feature, feature, 0)
    spec, _ = _refine(compiled, candidate)
    from dataclasses import replace

    refined = session.compile_loaded(replace(compiled.loaded, spec=spec))
    a = session.scrub(compiled, 3000, 2, with_specificity=False)
    b = session.scrub(refined, 3000, 2, with_specificity=False)
    assert (a.scrubbed_loss, a.per_sample_gap) == (b.scrubbed_loss, b.per_sample_gap)


def test_refinement_with_a_renamed_node_runs_as_printed(session, tmp_path):
    # splitting a class of `a` by x0 needs the input x0, so the leaf `x0` is renamed
    r = search("hypotheses/sum4/true.yaml", samples=2000, seed=3, session=session,
               max_candidates=12)
    renamed = next(x for x in r.ranking if x.feature == "x0" and x.node == "a")
    out = tmp_path / "r.yaml"
    out.write_text(r.refinement_yaml(renamed, out))
    text = out.read_text()
    assert "x0_node: {value: x0, claims: x0}" in text and "a[0] + x2" in text
    ran = Session().run(out, samples=2000, seed=3)
    assert ran.scrubbed_loss == renamed.result.scrubbed_loss
    assert not ran.warnings


@pytest.mark.parametrize("name", ["sum4/true", "xor/second_bit"])
def test_ranked_figures_are_what_casc_run_reports(session, name):
    r = search(f"hypotheses/{name}.yaml", samples=1000, seed=4, session=session,
               max_candidates=40)
    assert r.ranking
    for x in r.ranking:
        from dataclasses import replace

        h = session.compile_loaded(replace(r.loaded, spec=x.spec))
        again = session.scrub(h, 1000, 4, with_specificity=False)
        assert (again.scrubbed_loss, again.mean_gap, again.mean_gap_se) == \
            (x.result.scrubbed_loss, x.result.mean_gap, x.result.mean_gap_se)


def test_the_parent_reads_the_first_half(session):
    # every node but the split one keeps its value over D
    compiled = session.compile("hypotheses/sum4/true.yaml")
    prepared = session.prepare(compiled)
    family, _, _ = _family(compiled, prepared)
    for candidate in family[:10]:
        from dataclasses import replace

        spec, _ = _refine(compiled, candidate)
        refined = session.prepare(session.compile_loaded(replace(compiled.loaded, spec=spec)))
        for node, values in prepared.node_values.items():
            if node in refined.node_values and node != candidate.node:
                np.testing.assert_array_equal(refined.node_values[node], values)


def test_already_rejected_hypothesis_is_reported(session):
    r = search("hypotheses/dropout/m2_unimportant.yaml", samples=2000, seed=SEED,
               session=session)
    assert r.baseline_significant


def test_bounds_and_options(session):
    r = search("hypotheses/sum4/true.yaml", samples=500, seed=SEED, session=session,
               max_candidates=3)
    assert r.tried == 3 and r.truncated and r.family_size > 3
    with pytest.raises(UsageError):
        search("hypotheses/xor/second_bit.yaml", alpha=1.5, session=session)
    with pytest.raises(UsageError):
        search("hypotheses/xor/second_bit.yaml", samples=1, session=session)
    with pytest.raises(UsageError):
        search("hypotheses/xor/second_bit.yaml", max_candidates=0, session=session)
