"""Pitfall diagnostics on the catalogue, and ablation modes against hand-derived figures."""

from __future__ import annotations

import numpy as np
import pytest

from casc_cli import api

N = 20_000


@pytest.fixture(scope="module")
def session():
    return api.Session()


def within(value, expected, se, k=4.0):
    return abs(value - expected) <= k * se


@pytest.mark.parametrize("path", ["hypotheses/xor/second_bit.yaml",
                                  "hypotheses/sum_offset/first_three.yaml"])
def test_false_hypotheses_that_recover_everything_are_flagged(session, path):
    r = session.run(path, samples=N, seed=1)
    assert r.cancellation and "cancellation" in r.flags
    assert r.cancelled_fraction > 0.9
    assert any(w.startswith("cancellation") for w in r.warnings)


@pytest.mark.parametrize("path", [
    "hypotheses/xor/first_bit.yaml", "hypotheses/sum_offset/all.yaml",
    "hypotheses/sum4/true.yaml", "hypotheses/sum4/swap_first_pair.yaml",
    "hypotheses/reciprocal/exact.yaml", "hypotheses/reciprocal/greater.yaml",
])
def test_true_hypotheses_are_not_flagged(session, path):
    r = session.run(path, samples=N, seed=1)
    assert r.flags == []
    assert r.per_sample_gap == 0 and r.output_divergence == 0


def test_wrong_but_not_cancelling_is_not_flagged(session):
    r = session.run("hypotheses/sum4/reversed.yaml", samples=N, seed=1)
    assert not r.cancellation
    assert r.mean_gap == pytest.approx(r.per_sample_gap)  # nothing cancels: the model loss is 0


def test_output_divergence_xor_second_bit_is_one_half(session):
    # the scrubbed output is the first bit of a datum that shares only the second
    # bit with r: it differs from the model's output (r's first bit) half the time
    r = session.run("hypotheses/xor/second_bit.yaml", samples=N, seed=2)
    assert within(r.output_divergence, 0.5, r.output_divergence_se)


def test_output_divergence_undefined_for_continuous_outputs(tmp_path, session):
    task = tmp_path / "t.yaml"
    task.write_text("task: t\ninputs: {x: {normal: [0, 1]}}\ndataset: {size: 50}\n"
                    "label: x\nmetric: mse\nmodels: {m: {nodes: {out: 2 * x}, output: out}}\n")
    hyp = tmp_path / "h.yaml"
    hyp.write_text("hypothesis: h\ntask: t.yaml\nnodes: {out: {value: x}}\n")
    assert session.run(hyp, samples=100).output_divergence is None


def _labels(session, path):
    compiled = session.compile(path)
    return session.prepare(compiled).labels.astype(float)


def test_zero_ablation_of_everything_outputs_zero(session):
    # sum4/reversed: every path is unimportant, so the whole output is ablated
    path = "hypotheses/sum4/reversed.yaml"
    r = session.run(path, samples=N, seed=3, ablation="zero")
    expected = float(np.mean(_labels(session, path) ** 2))  # MSE of predicting 0
    assert within(r.scrubbed_loss, expected, r.scrubbed_loss_se)
    assert r.ablation == "zero"


def test_mean_ablation_of_everything_outputs_the_mean(session):
    path = "hypotheses/sum4/reversed.yaml"
    labels = _labels(session, path)
    r = session.run(path, samples=N, seed=3, ablation="mean")
    expected = float(np.mean((labels - labels.mean()) ** 2))  # the model's mean = label mean
    assert within(r.scrubbed_loss, expected, r.scrubbed_loss_se)


def test_zero_ablation_of_one_input(session):
    # sum_offset/first_three with x3 := 0: |x0+x1+x2+2 - (x0+x1+x2+x3)| = |2 - x3|,
    # 1 or 3 with x3 = +1 or -1, so exactly 1 away from the model's 2 on every sample
    r = session.run("hypotheses/sum_offset/first_three.yaml", samples=N, seed=3,
                    ablation="zero")
    assert r.per_sample_gap == 1.0
    assert within(r.scrubbed_loss, 2.0, r.scrubbed_loss_se)


def test_ablation_leaves_claimed_paths_alone(session):
    for ablation in ("zero", "mean"):
        r = session.run("hypotheses/sum4/true.yaml", samples=2000, ablation=ablation)
        assert r.scrubbed_loss == 0
