"""The vectorized engine against a naive per-sample implementation (tests/naive.py).

Both estimate the same quantities by Monte Carlo, with independent random
numbers, so their means are compared within 4 combined standard errors.
Under the null hypothesis both draw from one distribution, so each side's
standard error is floored at the other side's per-sample spread scaled to its
own sample count (``_agree``): otherwise a rare event that one side never
happens to draw (an observed SE of exactly 0) would make the check fail
spuriously. When both sides see no spread at all, they must agree exactly.
The model loss is exact on D and must match exactly.
"""

from __future__ import annotations

import glob
import itertools
import math
import os
import random
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from naive import NaiveRunner, mean_se  # noqa: E402

from casc_cli.api import Session  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ("per_node", "shared", "independent")
CATALOGUE = sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(str(ROOT / "hypotheses" / "**" / "*.yaml"),
                                                  recursive=True)
)
ENGINE_SAMPLES = 20_000
ENGINE_SEED = 11
NAIVE_SAMPLES_CATALOGUE = 3000
NAIVE_SAMPLES_RANDOM = 1500
N_CASES = 30


def _agree(m_e: float, se_e: float, n_e: int, m_n: float, se_n: float, n_n: int,
           what: str) -> None:
    if se_e == 0 and se_n == 0:
        assert m_e == m_n, f"{what}: engine {m_e} != naive {m_n} (both without spread)"
        return
    sd_e, sd_n = se_e * math.sqrt(n_e), se_n * math.sqrt(n_n)
    se_e = max(se_e, sd_n / math.sqrt(n_e))
    se_n = max(se_n, sd_e / math.sqrt(n_n))
    bound = 4 * math.sqrt(se_e**2 + se_n**2)
    assert abs(m_e - m_n) <= bound, (
        f"{what}: engine {m_e:.6g} ± {se_e:.3g} vs naive {m_n:.6g} ± {se_n:.3g} "
        f"(|diff| {abs(m_e - m_n):.3g} > 4 combined SE {bound:.3g})"
    )


def _seed(*parts: object) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


def _compare(path: str, policy: str, runner: NaiveRunner, naive_samples: int) -> None:
    result = Session().run(path, samples=ENGINE_SAMPLES, seed=ENGINE_SEED, policy=policy)
    assert result.samples == ENGINE_SAMPLES
    rng = np.random.default_rng(_seed(path, policy, "scrub"))
    scrubbed = runner.scrub(naive_samples, rng, policy)
    m_n, se_n = mean_se(scrubbed)
    _agree(result.scrubbed_loss, result.scrubbed_loss_se, ENGINE_SAMPLES, m_n, se_n,
           naive_samples, f"{path} [{policy}] scrubbed loss")

    rng = np.random.default_rng(_seed(path, policy, "random"))
    baseline = runner.random(naive_samples, rng)
    m_n, se_n = mean_se(baseline)
    _agree(result.random_loss, result.random_loss_se, ENGINE_SAMPLES, m_n, se_n,
           naive_samples, f"{path} [{policy}] random baseline")

    assert result.model_loss == runner.model_loss(), f"{path}: model loss differs"


# --------------------------------------------------------------------------- the catalogue

_catalogue_runners: dict[str, NaiveRunner] = {}


def _catalogue_runner(path: str) -> NaiveRunner:
    if path not in _catalogue_runners:
        session = Session()
        compiled = session.compile(ROOT / path, "per_node")
        _catalogue_runners[path] = NaiveRunner(compiled, session.dataset(compiled.loaded.task))
    return _catalogue_runners[path]


def test_catalogue_is_found() -> None:
    assert len(CATALOGUE) >= 5


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("path", CATALOGUE)
def test_catalogue_engine_matches_naive(path: str, policy: str) -> None:
    _compare(str(ROOT / path), policy, _catalogue_runner(path), NAIVE_SAMPLES_CATALOGUE)


# --------------------------------------------------------------------------- random cases

Tree = object  # a name (str) or (op, left, right)
BINARY = ("+", "-", "*", "max", "min", "<", "==", ">=")


def _render(tree: Tree, sub: dict[str, str]) -> str:
    if isinstance(tree, str):
        return sub.get(tree, tree)
    op, left, right = tree
    a, b = _render(left, sub), _render(right, sub)
    if op in ("max", "min"):
        return f"{op}({a}, {b})"
    if op in ("<", "==", ">="):
        return f"1 * ({a} {op} {b})"
    return f"({a} {op} {b})"


def _names(tree: Tree) -> set[str]:
    if isinstance(tree, str):
        return {tree}
    return _names(tree[1]) | _names(tree[2])


@dataclass
class Case:
    index: int
    task: dict
    hypothesis: dict
    features: set[str] = field(default_factory=set)


def generate_case(index: int) -> Case:
    """A random task (inputs, dataset, model DAG, label, metric) and hypothesis."""
    rnd = random.Random(1000 + index)
    features: set[str] = set()
    k = rnd.randint(2, 4)
    inputs = [f"x{i}" for i in range(k)]
    ranges = {x: rnd.choice([[0, 1], [0, 2], [0, 2], [0, 3], [-1, 1]]) for x in inputs}
    total = math.prod(hi - lo + 1 for lo, hi in ranges.values())
    if total <= 200 and rnd.random() < 0.6:
        dataset: dict = {"enumerate": True}
    else:
        dataset = {"size": rnd.randint(60, 200), "seed": rnd.randint(0, 99)}

    # Model DAG: m nodes, the last is the output `out`; every node feeds the output.
    m = rnd.randint(2, 5)
    names = [f"n{i}" for i in range(m - 1)] + ["out"]
    trees: dict[str, Tree] = {}
    for i, name in enumerate(names):
        pool = inputs + names[:i]
        a = rnd.choice(pool if rnd.random() < 0.4 or i == 0 else names[:i])
        b = rnd.choice([p for p in pool if p != a])
        op = rnd.choice(BINARY)
        tree: Tree = (op, a, b)
        if rnd.random() < 0.3:
            c = rnd.choice(pool)
            tree = (rnd.choice(("+", "-", "max")), tree, c)
        trees[name] = tree

    def ancestors_of(name: str) -> set[str]:
        if name in inputs:
            return set()
        result: set[str] = set()
        for p in _names(trees[name]):
            result |= {p} | ancestors_of(p)
        return result

    for name in names[:-1]:
        if name not in ancestors_of("out"):
            trees["out"] = ("+", trees["out"], name)
    readers = {n: sum(n in _names(trees[o]) for o in names) for n in names}
    if any(c >= 2 for c in readers.values()):
        features.add("shared_node")

    def n_paths(name: str) -> int:
        if name in inputs:
            return 1
        return sum(n_paths(p) for p in sorted(_names(trees[name])))

    def expand(name: str, sub: dict[str, str]) -> str:
        """The model node as a formula over the inputs and the names in ``sub``."""
        if name in sub:
            return sub[name]
        if name in inputs:
            return name
        inner = {p: expand(p, sub) for p in _names(trees[name])}
        return _render(trees[name], inner)

    descendants = {n: {o for o in names if n in ancestors_of(o)} for n in inputs + names}

    # Interpretation tree.
    nodes: dict[str, dict] = {}
    counter = itertools.count()

    def make(claim: str, depth: int) -> str:
        name = f"h{next(counter)}"
        nodes[name] = {}  # keep preorder in the YAML (the root first)
        up = sorted(ancestors_of(claim))
        vacuous = sorted(set(inputs + names) - {claim} - ancestors_of(claim)
                         - descendants[claim])
        if claim in inputs or depth >= 3 or not up:
            n_kids = 0
        elif depth == 0:
            n_kids = rnd.randint(1, 3)
        else:
            n_kids = rnd.choice([0, 1, 2, 2, 3])
        kids: dict[str, str] = {}  # claim -> child name
        for _ in range(n_kids):
            options = [c for c in (vacuous if vacuous and rnd.random() < 0.15 else up)
                       if c not in kids]
            if not options:
                continue
            kid_claim = rnd.choice(options)
            if kid_claim in vacuous:
                features.add("vacuous")
            kids[kid_claim] = make(kid_claim, depth + 1)
        if not kids:
            features.add("leaf_on_node" if claim in names else "leaf_on_input")
        if rnd.random() < 0.6:  # the claimed node's own formula, reading the children
            features.add("formula_from_model")
            text = expand(claim, kids)
            missing = [kid for kid in kids.values() if kid not in text.replace("(", " ")
                       .replace(")", " ").replace(",", " ").split()]
            for kid in missing:
                text = f"({text} + {rnd.choice(['0 * ', ''])}{kid})"
        else:  # any formula over the children and inputs
            features.add("formula_arbitrary")
            terms = list(kids.values())
            if not terms or rnd.random() < 0.4:
                x = rnd.choice(inputs)
                terms.append(rnd.choice([x, f"{x} % 2", f"1 * ({x} > 0)"]))
            text = terms[0]
            for term in terms[1:]:
                op = rnd.choice(["+", "-", "max", "min", "*"])
                text = f"{op}({text}, {term})" if op in ("max", "min") else f"({text} {op} {term})"
        nodes[name] = {"value": text, "claims": claim}
        return name

    make("out", 0)

    label_kind = rnd.choice(["sum", "model", "model_plus"])
    if label_kind == "sum":
        label = " + ".join(inputs)
    elif label_kind == "model":
        label = expand("out", {})
    else:
        label = f"{expand('out', {})} + {inputs[0]} % 2"
    # mostly mae and mse; now and then zero_one or a formula over out, label and the reference
    metric = rnd.choice(["mae", "mse"] * 4 + ["zero_one", "abs(out - label) * (1 + x0 % 2)"])
    task = {
        "task": f"random{index}",
        "description": "generated by tests/test_engine_vs_naive.py",
        "inputs": {x: {"int": r} for x, r in ranges.items()},
        "dataset": dataset,
        "label": label,
        "metric": metric,
        "models": {"g": {"nodes": {n: _render(trees[n], {}) for n in names}, "output": "out"}},
    }
    hypothesis = {
        "hypothesis": f"random hypothesis {index}",
        "description": "generated",
        "task": "task.yaml",
        "nodes": nodes,
    }
    case = Case(index, task, hypothesis, features)
    case.features.add(f"paths={n_paths('out')}")
    return case


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[str, NaiveRunner, Case]]:
    cases: dict[int, tuple[str, NaiveRunner, Case]] = {}
    for index in range(N_CASES):
        case = generate_case(index)
        folder = tmp_path_factory.mktemp(f"case{index}")
        (folder / "task.yaml").write_text(yaml.safe_dump(case.task, sort_keys=False))
        path = folder / "hypothesis.yaml"
        path.write_text(yaml.safe_dump(case.hypothesis, sort_keys=False))
        session = Session()
        compiled = session.compile(path, "per_node")
        runner = NaiveRunner(compiled, session.dataset(compiled.loaded.task))
        if any(w.kind == "vacuous" for w in compiled.warnings):
            case.features.add("engine_vacuous_warning")
        owners = runner._owner.values()
        if any(unimportant for _, unimportant in owners):
            case.features.add("unimportant_paths")
        per_node = {}
        for owner, unimportant in owners:
            if unimportant:
                per_node[owner] = per_node.get(owner, 0) + 1
        if any(count >= 2 for count in per_node.values()):
            case.features.add("shared_other_inputs")
        if len({owner for owner, unimportant in owners if unimportant}) >= 2:
            case.features.add("several_unimportant_nodes")
        cases[index] = (str(path), runner, case)
    return cases


def test_generated_cases_cover_the_interesting_shapes(generated) -> None:
    seen = set().union(*(case.features for _, _, case in generated.values()))
    for feature in ("shared_node", "vacuous", "engine_vacuous_warning", "leaf_on_node",
                    "leaf_on_input", "formula_from_model", "formula_arbitrary",
                    "unimportant_paths", "shared_other_inputs", "several_unimportant_nodes"):
        assert feature in seen, f"no generated case has {feature}"


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("index", range(N_CASES))
def test_random_case_engine_matches_naive(generated, index: int, policy: str) -> None:
    path, runner, _ = generated[index]
    _compare(path, policy, runner, NAIVE_SAMPLES_RANDOM)
