"""A naive, per-sample reference implementation of causal scrubbing.

This is deliberately slow and simple: one resample at a time, one datum at a
time, recursion over the interpretation tree and over the treeified model.
It shares nothing with the engine's recipe (``compiled.plan``, slots, steps)
or with ``graph._assign_paths``: it only reuses the parsed objects
(``compiled.model``, ``compiled.nodes``, ``compiled.root``, ``compiled.task``),
the dataset, and ``Formula.evaluate`` on batches of size 1.

The algorithm for one resample (the contract summarised in the README, "How casc scrubs"):

1. r = a uniform random row of D; d(root) = r.
2. Walking the interpretation tree from the root, each child k of n gets
   d(k) = a uniform random row among all rows j of D whose value at k equals
   k's value on d(n) (exact equality; vectors compare whole).
3. Each input-to-output path p of the model reads the datum of the node found
   by walking down from the root: at node n (whose claim sits at position i of
   p), go to the child whose claim occurs in p strictly before i, latest; when
   there is none, a leaf's path reads d(n) and a non-leaf's path is
   unimportant and reads an "other inputs" datum drawn uniformly from D
   (``per_node``: one per node per resample; ``shared``: one per resample;
   ``independent``: one per path).
4. The treeified model is evaluated on those inputs and scored against r.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Path_ = tuple[str, ...]


def _key(value: np.ndarray) -> tuple[Any, ...]:
    """A hashable key with exact (Python/numpy ``==``) equality semantics; vectors whole."""
    value = np.asarray(value)
    return (value.shape, tuple(value.ravel().tolist()))


class NaiveRunner:
    """Per-datum, per-sample causal scrubbing for one compiled hypothesis over one dataset."""

    def __init__(self, compiled: Any, dataset: Any) -> None:
        self.compiled = compiled
        self.model = compiled.model
        self.nodes = compiled.nodes
        self.root = compiled.root
        self.task = compiled.task
        self.dataset = dataset
        self.n = int(dataset.size)
        self.input_names = tuple(self.model.inputs)
        # one datum's inputs, as arrays of length 1
        self._row_inputs = [
            {name: dataset.inputs[name][j:j + 1] for name in dataset.inputs}
            for j in range(self.n)
        ]
        self._labels = [self.task.label.evaluate(self._row_inputs[j], 1) for j in range(self.n)]
        self._node_keys: dict[str, list[tuple[Any, ...]]] = {}
        self._class_memo: dict[tuple[str, tuple[Any, ...]], list[int]] = {}
        self._model_out: list[np.ndarray] | None = None
        self._model_metric: np.ndarray | None = None
        self._paths = self._enumerate_paths()
        self._owner = {p: self._assign(p) for p in self._paths}

    # ------------------------------------------------------------------ values on one datum

    def _interp_value(self, name: str, row: int, memo: dict[str, np.ndarray]) -> np.ndarray:
        """Value of interpretation node ``name`` on datum ``row`` (children on the same datum)."""
        if name in memo:
            return memo[name]
        node = self.nodes[name]
        env = dict(self._row_inputs[row])
        for kid in node.children:
            env[kid] = self._interp_value(kid, row, memo)
        value = node.formula.evaluate(env, 1)
        memo[name] = value
        return value

    def _keys(self, name: str) -> list[tuple[Any, ...]]:
        """The value of node ``name`` on every row of D (as exact-equality keys)."""
        if name not in self._node_keys:
            keys = []
            for j in range(self.n):
                value = self._interp_value(name, j, {})
                keys.append(_key(value[0]))
            self._node_keys[name] = keys
        return self._node_keys[name]

    def _equivalent_rows(self, name: str, row: int) -> list[int]:
        """Every row j of D with value_name(j) == value_name(row), by scanning D."""
        keys = self._keys(name)
        target = keys[row]
        memo_key = (name, target)
        if memo_key not in self._class_memo:
            self._class_memo[memo_key] = [j for j in range(self.n) if keys[j] == target]
        return self._class_memo[memo_key]

    def _model_value(self, node: str, row: int, memo: dict[str, np.ndarray]) -> np.ndarray:
        """The (untreeified) model node ``node`` on datum ``row``."""
        if node in self.input_names:
            return self._row_inputs[row][node]
        if node not in memo:
            env = {p: self._model_value(p, row, memo) for p in self.model.reads[node]}
            memo[node] = self.model.formulas[node].evaluate(env, 1)
        return memo[node]

    def model_outputs(self) -> list[np.ndarray]:
        if self._model_out is None:
            self._model_out = [self._model_value(self.model.output, j, {}) for j in range(self.n)]
        return self._model_out

    # ------------------------------------------------------------------ metric

    def metric(self, out: np.ndarray, reference: int) -> float:
        """f(out, reference row); ``out`` is a batch of one."""
        metric = self.task.metric
        label = self._labels[reference]
        if metric.formula is not None:
            env = dict(self._row_inputs[reference])
            env["out"] = out
            env["label"] = label
            value = np.asarray(metric.formula.evaluate(env, 1), dtype=np.float64)
            return float(np.mean(value[0]))
        o = np.asarray(out[0])
        lab = np.asarray(label[0])
        if metric.name == "zero_one":
            return float(bool(np.any(o != lab)))
        diff = np.asarray(o, dtype=np.float64) - np.asarray(lab, dtype=np.float64)
        if metric.name == "mae":
            per = np.abs(diff)
        elif metric.name == "mse":
            per = diff * diff
        else:  # pragma: no cover
            raise ValueError(f"unknown metric {metric.name}")
        return float(np.mean(per)) if per.ndim else float(per)

    # ------------------------------------------------------------------ treeification

    def _enumerate_paths(self) -> list[Path_]:
        paths: list[Path_] = []

        def walk(node: str, suffix: Path_) -> None:
            if node in self.input_names:
                paths.append((node, *suffix))
                return
            for parent in self.model.reads[node]:
                walk(parent, (node, *suffix))

        walk(self.model.output, ())
        return paths

    def _assign(self, path: Path_) -> tuple[str, bool]:
        """(interpretation node, unimportant) for one treeified input path."""
        current = self.root
        position = len(path) - 1  # the root claims the output, the last element of the path
        assert path[position] == self.nodes[current].claims
        while True:
            best, best_at = None, -1
            for kid in self.nodes[current].children:
                claim = self.nodes[kid].claims
                for at in range(position):  # strictly before the parent's position
                    if path[at] == claim and at > best_at:
                        best, best_at = kid, at
            if best is None:
                return current, not self.nodes[current].is_leaf
            current, position = best, best_at

    # ------------------------------------------------------------------ one resample

    def _preorder(self) -> list[str]:
        order: list[str] = []

        def walk(name: str) -> None:
            order.append(name)
            for kid in self.nodes[name].children:
                walk(kid)

        walk(self.root)
        return order

    def resample(self, rng: np.random.Generator, policy: str) -> tuple[int, np.ndarray]:
        """One resample: the reference row and the scrubbed output (a batch of one)."""
        n = self.n
        r = int(rng.integers(n))
        datum = {self.root: r}
        for name in self._preorder():
            for kid in self.nodes[name].children:
                rows = self._equivalent_rows(kid, datum[name])
                datum[kid] = rows[int(rng.integers(len(rows)))]

        other: dict[Any, int] = {}

        def other_datum(key: Any) -> int:
            if key not in other:
                other[key] = int(rng.integers(n))
            return other[key]

        path_datum: dict[Path_, int] = {}
        for path in self._paths:
            owner, unimportant = self._owner[path]
            if not unimportant:
                path_datum[path] = datum[owner]
            elif policy == "per_node":
                path_datum[path] = other_datum(("node", owner))
            elif policy == "shared":
                path_datum[path] = other_datum("shared")
            elif policy == "independent":
                path_datum[path] = other_datum(("path", path))
            else:
                raise ValueError(f"unknown policy {policy!r}")

        def value(node: str, suffix: Path_) -> np.ndarray:
            if node in self.input_names:
                return self._row_inputs[path_datum[(node, *suffix)]][node]
            env = {p: value(p, (node, *suffix)) for p in self.model.reads[node]}
            return self.model.formulas[node].evaluate(env, 1)

        return r, value(self.model.output, ())

    # ------------------------------------------------------------------ the three figures

    def scrub(self, samples: int, rng: np.random.Generator, policy: str | None = None
              ) -> np.ndarray:
        policy = policy or self.compiled.policy
        values = np.empty(samples, dtype=np.float64)
        for s in range(samples):
            r, out = self.resample(rng, policy)
            values[s] = self.metric(out, r)
        return values

    def model_metric(self) -> np.ndarray:
        if self._model_metric is None:
            outs = self.model_outputs()
            self._model_metric = np.array([self.metric(outs[j], j) for j in range(self.n)],
                                          dtype=np.float64)
        return self._model_metric

    def model_loss(self) -> float:
        return float(np.mean(self.model_metric()))

    def random(self, samples: int, rng: np.random.Generator) -> np.ndarray:
        outs = self.model_outputs()
        values = np.empty(samples, dtype=np.float64)
        for s in range(samples):
            i = int(rng.integers(self.n))
            j = int(rng.integers(self.n))
            values[s] = self.metric(outs[i], j)
        return values


def naive_scrub(compiled: Any, dataset: Any, samples: int, rng: np.random.Generator,
                policy: str | None = None) -> np.ndarray:
    """Per-sample scrubbed metric values."""
    return NaiveRunner(compiled, dataset).scrub(samples, rng, policy)


def naive_model_loss(compiled: Any, dataset: Any) -> float:
    """Mean over D of f(G(x), x)."""
    return NaiveRunner(compiled, dataset).model_loss()


def naive_random(compiled: Any, dataset: Any, samples: int, rng: np.random.Generator
                 ) -> np.ndarray:
    """Per-sample random-baseline values: G on a random row against an independent reference."""
    return NaiveRunner(compiled, dataset).random(samples, rng)


def mean_se(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    mean = float(np.mean(values))
    se = float(np.std(values, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return mean, se


__all__: list[str] = ["NaiveRunner", "naive_scrub", "naive_model_loss", "naive_random", "mean_se"]
