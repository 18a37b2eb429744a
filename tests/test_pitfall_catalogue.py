"""Hand-derived figures of the appendix-pitfall catalogue entries.

- ``dropout``: zero/mean ablation of M2 looks harmless, resampling does not
  (causal scrubbing appendix, section 3);
- ``polysemantic``: resampling the interference term reproduces the loss of a
  superposed neuron, but splitting it in two halves sampled independently
  underestimates it (appendix 6 and 6.1);
- ``hash_game``: a false hypothesis that sneaks in the label scores far better
  than the model (appendix 7).

The derivations are in the comments at the end of each hypothesis file. Monte
Carlo figures are asserted within 4 standard errors with fixed seeds; figures
that are exact over D are asserted exactly.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import numpy as np
import pytest

from casc_cli.api import Session
from casc_cli.spec.loader import load_any

ROOT = Path(__file__).resolve().parents[1]
N = 10_000
SEED = 0

DROPOUT = ROOT / "hypotheses/dropout/m2_unimportant.yaml"
INTERFERENCE = ROOT / "hypotheses/polysemantic/interference_unimportant.yaml"
SPLIT = ROOT / "hypotheses/polysemantic/split_interference.yaml"
CHEATING = ROOT / "hypotheses/hash_game/cheating.yaml"
FILES = [ROOT / "tasks/dropout.yaml", ROOT / "tasks/polysemantic.yaml",
         ROOT / "tasks/hash_game.yaml", DROPOUT, INTERFERENCE, SPLIT, CHEATING]

HAS_ABLATION = "ablation" in inspect.signature(Session.run).parameters
needs_ablation = pytest.mark.skipif(not HAS_ABLATION,
                                    reason="Session.run has no `ablation` parameter yet")

# The polysemantic model: c = d = 0.935, e = 0.25, a = b = 1.
C = 0.935
E = 0.25
A = 1 - C * C


def within(value: float, expected: float, se: float, k: float = 4.0) -> bool:
    return abs(value - expected) <= k * se


@pytest.fixture(scope="module")
def session():
    return Session()


def run(session, path, **options):
    return session.run(path, samples=options.pop("samples", N), seed=options.pop("seed", SEED),
                       **options)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_files_validate_without_warnings(session, path):
    validated = session.validate(path)
    assert validated.warnings == ()


# --- dropout (appendix 3) ---------------------------------------------------------------


def test_dropout_resampling_shows_m2_matters(session):
    r = run(session, DROPOUT)
    assert r.model_loss == 0  # out = u + v on every datum
    # 1/4 of the time the resampled M2 is dropped (error 0), else error (v' - v)^2,
    # mean 2 Var(v) = 10: 3/4 * 10 = 7.5. Random: 2 Var(u) + 2 Var(v) = 12.
    assert within(r.scrubbed_loss, 7.5, r.scrubbed_loss_se)
    assert within(r.random_loss, 12.0, r.random_loss_se)
    assert r.recovered_pct < 60
    assert within(r.recovered_pct, 37.5, r.recovered_pct_se)


@needs_ablation
@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_dropout_zero_and_mean_ablation_vindicate_m2(session, ablation):
    # M2's mean over the enumerated D is exactly 0, so both ablations set it to 0 and
    # the model falls back to M3: out = u + v, a perfect score.
    r = run(session, DROPOUT, ablation=ablation)
    assert r.model_loss == 0
    assert r.scrubbed_loss == 0
    assert r.recovered_pct == 100


@needs_ablation
def test_dropout_resample_ablation_is_the_default(session):
    default = run(session, DROPOUT)
    explicit = run(session, DROPOUT, ablation="resample")
    assert explicit.scrubbed_loss == default.scrubbed_loss


# --- polysemantic (appendix 6, 6.1) -----------------------------------------------------


@pytest.fixture(scope="module")
def poly_moments(session):
    """Hand-derived figures from the empirical moments of D (20 000 rows)."""
    data = session.dataset(load_any(ROOT / "tasks/polysemantic.yaml")).inputs
    x1, x2 = data["x1"], data["x2"]
    q = A * x1**2 + A * x2**2 - E  # the error of the monosemantic terms
    i = 2 * C * C * x1 * x2  # the interference term
    mean = lambda v: float(np.mean(v))  # noqa: E731
    return {
        "model": mean((q - i) ** 2),
        # per_node: the interference from one other datum, independent of the reference
        "per_node": mean(q**2) + mean(i**2) - 2 * mean(q) * mean(i),
        # independent on the split model: each half c d x1 x2 from two other data
        "independent": (mean(q**2) + 2 * C**4 * mean(x1**2) * mean(x2**2)
                        + 2 * (C**2 * mean(x1) * mean(x2)) ** 2
                        - 2 * mean(q) * 2 * C**2 * mean(x1) * mean(x2)),
    }


def test_polysemantic_population_figures():
    # The population figures of the comments: K = E[x^4] = 3 / (1 - p) = 15.
    k = 15
    q2 = (k - 1) * 2 * A**2 + (2 * A - E) ** 2
    assert math.isclose(q2 + 4 * C**4, 3.500, abs_tol=5e-4)  # model and per_node
    assert math.isclose(q2 + 2 * C**4, 1.971, abs_tol=5e-4)  # independent, split


def test_polysemantic_model_loss_is_exact_over_d(session, poly_moments):
    for path in (INTERFERENCE, SPLIT):
        r = run(session, path)
        assert math.isclose(r.model_loss, poly_moments["model"], rel_tol=1e-9)


@pytest.mark.parametrize("policy", ["per_node", "shared", "independent"])
def test_polysemantic_interference_unimportant_reproduces_the_loss(session, poly_moments,
                                                                    policy):
    # x1 and x2 are independent in D, so even under `independent` the interference
    # term keeps its distribution.
    r = run(session, INTERFERENCE, policy=policy)
    assert within(r.scrubbed_loss, r.model_loss, r.scrubbed_loss_se)
    assert within(r.scrubbed_loss, poly_moments["per_node"], r.scrubbed_loss_se)
    assert within(r.recovered_pct, 100, r.recovered_pct_se)


@pytest.mark.parametrize("policy", ["per_node", "shared"])
def test_polysemantic_split_sampled_together_reproduces_the_loss(session, poly_moments,
                                                                 policy):
    r = run(session, SPLIT, policy=policy)
    assert within(r.scrubbed_loss, r.model_loss, r.scrubbed_loss_se)
    assert within(r.scrubbed_loss, poly_moments["per_node"], r.scrubbed_loss_se)
    # both halves read one datum: the same run as the unsplit interference term
    assert r.scrubbed_loss == run(session, INTERFERENCE, policy=policy).scrubbed_loss


def test_polysemantic_split_sampled_independently_underestimates_the_loss(session,
                                                                          poly_moments):
    r = run(session, SPLIT, policy="independent")
    # the two halves are independent: the interference's variance halves
    assert r.model_loss - r.scrubbed_loss > 4 * r.scrubbed_loss_se
    assert within(r.scrubbed_loss, poly_moments["independent"], r.scrubbed_loss_se)
    assert r.recovered_pct > 100 + 4 * r.recovered_pct_se


# --- hash game (appendix 7) -------------------------------------------------------------


def test_hash_game_cheating_hypothesis_scores_far_above_the_model(session):
    r = run(session, CHEATING)
    # the parity guess agrees with the hash on 4999 of the 10 000 n: 2 * 4999 - 5001 = 4997
    assert math.isclose(r.model_loss, 4997 / 20_000, rel_tol=1e-12)
    hard = 10 * (4949 * 5000 / 9949 + 5051 * 5000 / 10051) / 10_000  # 4.99987
    easy = (5000 / 10051 * (3 * 2525 - 5000) + 5000 / 9949 * (3 * 2474 - 5000)) / 10_000
    assert within(r.scrubbed_loss, (hard + easy) / 2, r.scrubbed_loss_se)  # 2.6248
    assert within(r.random_loss, -1.125, r.random_loss_se)
    assert r.scrubbed_loss > 10 * r.model_loss
    assert r.scrubbed_loss - r.model_loss > 20 * r.scrubbed_loss_se
    assert r.recovered_pct > 200
