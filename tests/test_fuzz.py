"""Property-based fuzzing of casc against bad input (issue: hardening against bad input).

Random task and hypothesis documents (valid ones, valid ones with wild
formulas and extreme numbers, and valid ones broken by one known-invalid
mutation), random bytes, random YAML structures, random command-line options
and random formulas are thrown at ``casc validate`` / ``casc run`` (through
typer's ``CliRunner``) and at :func:`casc_cli.formula.compile_formula`. The
properties:

- a valid document validates (exit 0, ``ok:``) and runs (exit 0, a table or
  JSON that parses strictly); under ``--strict`` it fails exactly when
  ``validate`` warned about a vacuous claim;
- a document made invalid by one mutation exits 2 with ``error:`` on stderr;
  mutations that only the run can see (dataset too large, a division by zero
  on some datum, ...) validate and then fail the run with a clean error that
  names the culprit;
- whatever the input, nothing raises: every command exits 0 or 2, prints no
  traceback and writes no file; the formula compiler raises only
  ``FormulaError`` and evaluation only ``EvaluationError``.

Two tiers:

- the normal suite runs every property on a small, derandomized slice
  (``max_examples`` 8-80, ``derandomize=True``: CI is never flaky; about 30 s);
- the tests marked ``fuzz`` run ``CASC_FUZZ_EXAMPLES`` examples per property,
  randomized (default 4 examples, derandomized, when the variable is unset).
  The dedicated run (9 properties x 1200, plus the 13 distinct big graphs: 10 813
  generated cases, about 9 minutes on 2 cores)::

      CASC_FUZZ_EXAMPLES=1200 python -m pytest -m fuzz tests/test_fuzz.py \\
          --hypothesis-show-statistics

  (``--hypothesis-seed=N`` replays a given run.)

Known bugs (``KNOWN_BUGS``, empty today): an unhandled exception whose type, casc function
(anywhere on the traceback) and message match a known bug is counted (``event``) instead of
failing the property, so the suite stays green while the fuzzer keeps looking for new ones;
give each known bug a minimal reproduction at the end of this file, marked
``xfail(strict=True, raises=KnownBugHit)``: it starts failing (XPASS) once the bug is fixed;
then delete its entry and turn the reproduction into a ``test_regression_*``.
"""

from __future__ import annotations

import copy
import io
import json
import keyword
import math
import os
import re
import string
import tempfile
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from typer.testing import CliRunner

from casc_cli.cli import app
from casc_cli.errors import EvaluationError, FormulaError
from casc_cli.formula import FUNCTIONS, compile_formula

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# --------------------------------------------------------------------------- settings

_FUZZ_ENV = os.environ.get("CASC_FUZZ_EXAMPLES", "").strip()
FUZZ_EXAMPLES = int(_FUZZ_ENV) if _FUZZ_ENV else 4

# too_slow: every example runs the CLI (tens of milliseconds each);
# data_too_large: documents are drawn from many small choices.
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]


def _normal(examples: int) -> settings:
    """The normal-suite slice: few examples, a fixed seed, no example database."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=_SLOW_OK, print_blob=True)


# randomized only when a dedicated run asks for it, so a plain `pytest` is deterministic
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=not _FUZZ_ENV,
                database=None, suppress_health_check=_SLOW_OK, print_blob=True)

SAMPLES = 50

# --------------------------------------------------------------------------- known bugs


@dataclass(frozen=True)
class KnownBug:
    """An unhandled exception casc raises today; see the matching xfail test below."""

    key: str
    exception: str  # class name of the exception (or of one of its bases)
    function: str  # a casc_cli function on the traceback
    message: str  # regular expression searched in str(exception)


KNOWN_BUGS: tuple[KnownBug, ...] = ()  # all fixed; the regressions are tested below


def known_bug(exc: BaseException) -> KnownBug | None:
    names = {cls.__name__ for cls in type(exc).__mro__}
    frames = {f.name for f in traceback.extract_tb(exc.__traceback__)
              if "casc_cli" in f.filename.replace("\\", "/")}
    for bug in KNOWN_BUGS:
        if bug.exception in names and bug.function in frames and re.search(bug.message, str(exc)):
            return bug
    return None


class KnownBugHit(Exception):
    def __init__(self, bug: KnownBug):
        super().__init__(bug.key)
        self.bug = bug


@contextmanager
def tolerating_known_bugs() -> Iterator[None]:
    """Stop checking an example that ran into a known bug (counted as an event)."""
    try:
        yield
    except KnownBugHit as hit:
        event(f"known bug: {hit.bug.key}")


# --------------------------------------------------------------------------- CLI helpers


def invoke(*args: str):
    """Run casc in-process; an unhandled exception fails the test (or is a known bug)."""
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, list(args))
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        bug = known_bug(exc)
        if bug is not None:
            raise KnownBugHit(bug)
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        raise AssertionError(f"casc {' '.join(args)} raised {exc!r}\n{tb}")
    output = result.stdout + result.stderr
    assert result.exit_code in (0, 2), f"casc {' '.join(args)} exited {result.exit_code}\n{output}"
    assert "Traceback" not in output, output
    if result.exit_code == 2:
        assert "error" in result.stderr.lower(), f"exit 2 without an error message:\n{output}"
    return result


def assert_user_error(result, *, naming: str | None = None) -> None:
    """Exit 2, `error:` on stderr, nothing on stdout."""
    everything = result.stdout + result.stderr
    assert result.exit_code == 2, f"expected exit 2, got {result.exit_code}:\n{everything}"
    assert "error:" in result.stderr, everything
    assert result.stdout == "", f"an error belongs on stderr; stdout: {result.stdout!r}"
    if naming is not None:
        assert naming in result.stderr, f"expected the error to name {naming}:\n{result.stderr}"


def strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"JSON output holds {constant}; undefined figures must be null")

    return json.loads(text, parse_constant=refuse)


def snapshot(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*")}


# --------------------------------------------------------------------------- formulas

_OPERATORS = ["+", "-", "*", "/", "//", "%", "**", "&", "|", "^", "<<", ">>"]
_COMPARISONS = ["<", "<=", ">", ">=", "==", "!="]
_FORBIDDEN_COMPARISONS = ["in", "not in", "is", "is not"]
_OTHER_CALLEES = ["print", "eval", "exec", "open", "len", "pow", "range", "getattr",
                  "__import__", "np.add", "x.sum", "(lambda: 1)", "sum.__call__", "abs()"]
_ARITY = {"abs": (1, 1), "min": (1, 4), "max": (1, 4), "sum": (1, 1), "mean": (1, 1),
          "where": (3, 3), "clip": (3, 3), "exp": (1, 1), "log": (1, 1), "sqrt": (1, 1),
          "floor": (1, 1), "round": (1, 2), "sign": (1, 1), "any": (1, 1), "all": (1, 1),
          "pair": (2, 2)}
_SPECIAL_NUMBERS = [
    str(2**63 - 1), str(2**63), str(2**64), "-" + str(2**63), "1" + "0" * 30, "9" * 400,
    "1e308", "1e309", "-1e309", "1e-320", "5e-324", "-0.0", "0.0", "0", "1_000", "0x1F",
    "0o17", "0b101", "1j", "True", "False", "1.5", ".5", "5.", "1e3", "0.1",
]
_TOKENS = ["__", ".", "lambda", "import", "__import__", "os", "(", ")", "[", "]", ",", ":",
           "'", '"', "x0", "v", "1", " ", "+", "*", "**", "if", "else", "for", "in", "not",
           ":=", "#", "\\", "\n", "\r", "\t", "yield", "await", "f'", "{", "}", "...", ";",
           "=", "@", "!", "$", "?", "`", "\x00", "\u00e9", "\uff58", "\u2028", "[/dim]"]
_PATHOLOGICAL = [
    "(" * 300 + "x0" + ")" * 300, "-" * 3000 + "x0", "~" * 250 + "x0", "not " * 300 + "x0",
    " + ".join(["x0"] * 400), "x0" + "[0]" * 300, "x0" * 6000, "1" * 10_001, "x0 " + " " * 20_000,
    "f(" * 100 + ")" * 100, "[" * 500, "x0 if " * 200 + "x0", "\ufeffx0", "x0\n+ 1",
    "  x0 + 1", "x0 # [/dim] comment", "x0 +\\\n 1", "(x0\n+\n1)", "\x0cx0", "x0\r\n",
    "\t(x0)", "\u00e9t\u00e9 + 1", "\uff58\uff10 + 1", "x\u0300", "\U0001d431", "`x0`",
    "x0;x0", "x0 = 1", "del x0", "import os", "yield", "await x0", "*x0", "**x0",
]


def numbers() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(-10, 10).map(str),
        st.integers().map(str),
        st.sampled_from(_SPECIAL_NUMBERS),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
    )


def _index() -> st.SearchStrategy[str]:
    bound = st.one_of(st.just(""), st.integers(-4, 4).map(str), st.sampled_from(
        ["-0", str(2**63), "-" + str(2**70), "x0", "1.5", "None", "True", "--1", "+1"]))
    one = st.one_of(
        st.integers(-4, 4).map(str),
        st.tuples(bound, bound).map(":".join),
        st.tuples(bound, bound, bound).map(":".join),
        st.sampled_from(["...", "None", "x0", "1.5", "0, 1", "0, -1", "::0", "1:2, 0",
                         str(2**64), "-" + str(2**63 + 1), "[0]", "(0)", "0,", "'a'"]),
    )
    return st.lists(one, min_size=1, max_size=3).map(", ".join)


def grammar_formulas(names: list[str], max_leaves: int = 10) -> st.SearchStrategy[str]:
    """Formulas from the whitelist grammar, plus a few forbidden operators and calls."""
    leaves = st.one_of(st.sampled_from(names), numbers()) if names else numbers()

    def extend(sub: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        binop = st.tuples(sub, st.sampled_from(_OPERATORS * 4 + ["@"]), sub).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})")
        unary = st.tuples(st.sampled_from(["-", "+", "~", "not "]), sub).map(
            lambda t: f"({t[0]}{t[1]})")
        compare = st.tuples(sub, st.lists(st.tuples(
            st.sampled_from(_COMPARISONS * 6 + _FORBIDDEN_COMPARISONS), sub),
            min_size=1, max_size=3)).map(
            lambda t: "(" + t[0] + "".join(f" {op} {x}" for op, x in t[1]) + ")")
        boolop = st.tuples(st.sampled_from([" and ", " or "]),
                           st.lists(sub, min_size=2, max_size=3)).map(
            lambda t: "(" + t[0].join(t[1]) + ")")
        ternary = st.tuples(sub, sub, sub).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})")
        subscript = st.tuples(sub, _index()).map(lambda t: f"{t[0]}[{t[1]}]")

        @st.composite
        def call(draw: st.DrawFn) -> str:
            if draw(st.integers(0, 9)) == 0:
                callee = draw(st.sampled_from(_OTHER_CALLEES))
                low, high = 0, 3
            else:
                callee = draw(st.sampled_from(sorted(FUNCTIONS)))
                low, high = _ARITY.get(callee, (0, 3))  # a function added since: any arity
            if draw(st.integers(0, 4)) == 0:  # a wrong number of arguments
                count = draw(st.sampled_from([0, high + 1, high + 2]))
            else:
                count = draw(st.integers(low, high))
            args = draw(st.lists(sub, min_size=count, max_size=count))
            if callee == "round" and count == 2 and draw(st.booleans()):
                args[1] = draw(st.sampled_from(["2", "-1", "0", str(2**70), "1.5", "x0", "True"]))
            extra = draw(st.sampled_from([""] * 12 + ["axis=0", "*x0", "**x0", "key=1"]))
            if extra:
                args.append(extra)
            return f"{callee}({', '.join(args)})"

        return st.one_of(binop, binop, unary, compare, boolop, ternary, subscript, call(), call())

    formula = st.recursive(leaves, extend, max_leaves=max_leaves)
    comment = st.sampled_from([""] * 15 + ["  # a comment", " # [/dim]", " #"])
    return st.tuples(formula, comment).map("".join)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[str]) -> str:
    """A formula with a token inserted, a character deleted or a span replaced."""
    text = draw(base)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        how = draw(st.sampled_from(["insert", "delete", "replace"]))
        token = draw(st.sampled_from(_TOKENS))
        if how == "insert":
            text = text[:at] + token + text[at:]
        elif how == "delete":
            text = text[:at] + text[at + 1:]
        else:
            text = text[:at] + token + text[at + len(token):]
    return text


def garbage() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=40),
        st.text(alphabet=string.printable, max_size=60),
        st.lists(st.one_of(st.sampled_from(_TOKENS), st.characters(codec="ascii")),
                 max_size=25).map("".join),
        st.sampled_from(_PATHOLOGICAL),
    )


def formula_texts(names: list[str]) -> st.SearchStrategy[str]:
    """Anything that may end up where a formula goes: mostly grammar, some garbage."""
    grammar = grammar_formulas(names)
    return st.one_of(grammar, grammar, grammar, mutated(grammar), garbage())


# --------------------------------------------------------------------------- documents


def identifiers() -> st.SearchStrategy[str]:
    return st.from_regex(r"\A[A-Za-z][A-Za-z0-9_]{0,5}\Z").filter(
        lambda s: not keyword.iskeyword(s))


def free_texts() -> st.SearchStrategy[str]:
    """Names and descriptions: mostly plain words, sometimes any text."""
    return st.one_of(st.from_regex(r"\A[a-z][a-z0-9 _-]{0,15}\Z"), st.text(min_size=1, max_size=20))


@dataclass
class Scenario:
    """A task and a hypothesis (as Python data), the data files, and what they mean."""

    task: dict
    hyp: dict
    files: dict[str, bytes]
    task_path: str  # where the task file goes, relative to the folder
    hyp_path: str
    inputs: dict[str, tuple[int, ...]]  # name -> per-datum shape
    reads: dict[str, list[str]]  # the hypothesis' model: node -> what it reads
    output: str
    model: str
    claims: dict[str, str]  # interpretation node -> the model node or input it claims
    children: dict[str, list[str]]
    root: str
    mode: str  # sample | enumerate | file
    wild: bool = False
    notes: list[str] = field(default_factory=list)

    def parent(self, node: str) -> str | None:
        return next((p for p, kids in self.children.items() if node in kids), None)


def ancestors(reads: dict[str, list[str]]) -> dict[str, set[str]]:
    """Strictly upstream nodes and inputs of every model node."""
    result: dict[str, set[str]] = {}

    def up(node: str) -> set[str]:
        if node not in reads:
            return set()
        if node not in result:
            found: set[str] = set()
            for parent in reads[node]:
                found |= {parent} | up(parent)
            result[node] = found
        return result[node]

    for node in reads:
        up(node)
    return result


def _finite_support(spec: dict) -> int | None:
    if "int" in spec:
        lo, hi = spec["int"]
        return hi - lo + 1 + (1 if spec.get("p_zero") and not lo <= 0 <= hi else 0)
    if "choice" in spec:
        values = list(dict.fromkeys(spec["choice"]))
        return len(values) + (1 if spec.get("p_zero") and 0 not in values else 0)
    return None


@st.composite
def input_spec(draw: st.DrawFn, allow_normal: bool, wild: bool) -> dict:
    kind = draw(st.sampled_from(["int", "int", "choice", "choice_p"] +
                                (["normal"] if allow_normal else [])))
    spec: dict[str, Any] = {}
    if kind == "int":
        if wild and draw(st.booleans()):
            lo = draw(st.sampled_from([-(2**62), -(10**9), 0, 2**40]))
            spec["int"] = [lo, lo + draw(st.sampled_from([0, 1, 10**6, 2**61]))]
        else:
            lo = draw(st.integers(-20, 20))
            spec["int"] = [lo, lo + draw(st.integers(0, 4 if not allow_normal else 40))]
    elif kind in ("choice", "choice_p"):
        value = st.one_of(st.integers(-20, 20), st.integers(-80, 80).map(lambda i: i / 4))
        if wild:
            value = st.one_of(value, st.sampled_from([1e300, -1e300, 5e-324, 1e-300, 2**62,
                                                      -(2**62), 0.1, 1e150]))
        choice = draw(st.lists(value, min_size=1, max_size=4))
        spec["choice"] = choice
        if kind == "choice_p":
            weights = draw(st.lists(st.integers(0, 5), min_size=len(choice),
                                    max_size=len(choice)).map(lambda w: w if any(w) else [1] + w[1:]))
            spec["p"] = [w / sum(weights) for w in weights]
    else:
        mean = draw(st.integers(-10, 10))
        std = draw(st.sampled_from([0.5, 1, 2.5, 10]))
        if wild and draw(st.booleans()):
            mean, std = draw(st.sampled_from([(0, 1e100), (1e300, 1e300), (0, 1e-300),
                                              (1e200, 1)]))
        spec["normal"] = [mean, std]
    if draw(st.integers(0, 5)) == 0:
        spec["p_zero"] = draw(st.sampled_from([0, 0.0, 0.1, 0.5, 1, 1.0]))
    return spec


def _safe_combine(draw: st.DrawFn, terms: list[str]) -> str:
    """Terms combined without * / ** (values stay small, so formulas never overflow)."""
    if not terms:
        return str(draw(st.integers(-3, 3)))
    expr = terms[0]
    for term in terms[1:]:
        how = draw(st.sampled_from(["+", "+", "-", "max", "min", "where"]))
        if how in ("+", "-"):
            expr = f"{expr} {how} {term}"
        elif how == "where":
            expr = f"where({expr} > {term}, {expr}, {term})"
        else:
            expr = f"{how}({expr}, {term})"
    wrap = draw(st.sampled_from(["", "", "", "abs", "neg", "plus", "twice", "round"]))
    return {"": expr, "abs": f"abs({expr})", "neg": f"-({expr})", "plus": f"{expr} + 1",
            "twice": f"2 * ({expr})", "round": f"round({expr})"}[wrap]


def _term(draw: st.DrawFn, name: str, shape: tuple[int, ...]) -> str:
    """Read ``name`` as a scalar per datum."""
    if not shape:
        return name
    options = [f"sum({name})", f"mean({name})", f"max({name})", f"min({name})"]
    if len(shape) == 1:
        options += [f"{name}[0]", f"{name}[-1]", f"sum({name}[::2])"]
    else:
        options += [f"{name}[0, 0]", f"sum({name}[0])"]
    return draw(st.sampled_from(options))


@st.composite
def model_graph(draw: st.DrawFn, inputs: dict[str, tuple[int, ...]]
                ) -> tuple[dict[str, str], dict[str, list[str]], str]:
    n = draw(st.integers(1, 5))
    names = draw(st.lists(identifiers().filter(lambda s: s not in inputs),
                          min_size=n, max_size=n, unique=True))
    if draw(st.booleans()) and "out" not in inputs and "out" not in names:
        names[-1] = "out"
    formulas: dict[str, str] = {}
    reads: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        pool = list(inputs) + names[:i]
        chosen = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=min(3, len(pool)),
                               unique=True))
        if i and names[i - 1] not in chosen and draw(st.booleans()):
            chosen.append(names[i - 1])  # chains are the interesting case
        reads[name] = chosen
        formulas[name] = _safe_combine(draw, [_term(draw, r, inputs.get(r, ())) for r in chosen])
    order = draw(st.permutations(names))
    return {k: formulas[k] for k in order}, reads, names[-1]


@st.composite
def interpretation(draw: st.DrawFn, reads: dict[str, list[str]], output: str,
                   inputs: dict[str, tuple[int, ...]]
                   ) -> tuple[dict[str, Any], dict[str, str], dict[str, list[str]], str]:
    """A valid interpretation tree: every child claims something upstream of its parent's
    claim (or, sometimes, something unrelated: a vacuous claim), siblings claim distinct
    nodes."""
    up = ancestors(reads)
    claimable = list(reads) + list(inputs)
    claims: dict[str, str] = {}
    children: dict[str, list[str]] = {}

    def fresh(claim: str) -> str:
        if claim not in claims and draw(st.integers(0, 4)) > 0:
            return claim
        k = 2
        while f"{claim}_{k}" in claims or f"{claim}_{k}" in inputs:
            k += 1
        return f"{claim}_{k}"

    root = fresh(output)
    if draw(st.integers(0, 5)) == 0:
        root = draw(identifiers().filter(lambda s: s not in inputs))
    claims[root] = output
    children[root] = []
    stack = [(root, 0)]
    while stack:
        name, depth = stack.pop()
        claim = claims[name]
        if claim not in reads or depth >= 4 or len(claims) >= 12:
            continue
        candidates = sorted(up[claim])
        kid_claims = draw(st.lists(st.sampled_from(candidates), unique=True,
                                   max_size=min(3, len(candidates))))
        unrelated = [c for c in claimable if c != claim and c not in up[claim]
                     and claim not in up.get(c, set())]
        if unrelated and draw(st.integers(0, 7)) == 0:
            vacuous = draw(st.sampled_from(unrelated))
            if vacuous not in kid_claims:
                kid_claims.append(vacuous)
        for kid_claim in kid_claims:
            kid = fresh(kid_claim)
            claims[kid] = kid_claim
            children[kid] = []
            children[name].append(kid)
            stack.append((kid, depth + 1))

    vector: dict[str, bool] = {}
    nodes: dict[str, Any] = {}
    for name in _postorder(root, children):
        free = [i for i in inputs if i not in claims or i == name]
        kids = children[name]
        if kids:
            terms = [f"sum({k})" if vector[k] else k for k in kids]
            direct = [i for i in free if i != name]
            if direct and draw(st.integers(0, 5)) == 0:
                i = draw(st.sampled_from(direct))
                terms.append(_term(draw, i, inputs[i]))
            formula = _safe_combine(draw, terms)
            vector[name] = False
        elif claims[name] in inputs and claims[name] in free:
            i = claims[name]
            vector[name] = bool(inputs[i]) and draw(st.booleans())
            formula = i if vector[name] or not inputs[i] else _term(draw, i, inputs[i])
        else:
            picked = draw(st.lists(st.sampled_from(free), max_size=2, unique=True)) if free else []
            formula = _safe_combine(draw, [_term(draw, i, inputs[i]) for i in picked])
            vector[name] = False
        nodes[name] = _node_entry(draw, name, claims[name], formula)
    rest = draw(st.permutations([n for n in nodes if n != root]))
    ordered = {root: nodes[root], **{n: nodes[n] for n in rest}}
    return ordered, claims, children, root


def _postorder(root: str, children: dict[str, list[str]]) -> list[str]:
    order, stack = [], [(root, False)]
    while stack:
        name, done = stack.pop()
        if done:
            order.append(name)
        else:
            stack.append((name, True))
            stack.extend((k, False) for k in children[name])
    return order


def _node_entry(draw: st.DrawFn, name: str, claim: str, formula: str) -> Any:
    if claim == name and draw(st.booleans()):
        return formula  # the shorthand
    entry: dict[str, Any] = {"value": formula}
    if claim != name or draw(st.integers(0, 3)) == 0:
        entry["claims"] = claim
    if draw(st.integers(0, 5)) == 0:
        entry["description"] = draw(free_texts())
    return entry


def _data_files(draw: st.DrawFn, inputs: dict[str, tuple[int, ...]], wild: bool
                ) -> tuple[str, bytes]:
    rows = draw(st.integers(1, 40))
    csv_ok = all(len(s) <= 1 for s in inputs.values())
    suffix = draw(st.sampled_from(["npz", "csv"] if csv_ok else ["npz"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    arrays = {}
    dtypes = ["int64", "float64", "int32", "uint8", "float32"] + (["bool", "float16"] if wild else [])
    for name, shape in inputs.items():
        dtype = draw(st.sampled_from(dtypes))
        values = rng.integers(-9, 10, size=(rows, *shape))
        if dtype.startswith("float"):
            values = values + rng.choice([0, 0.25, 0.5], size=values.shape)
        arrays[name] = values.astype(dtype) if dtype != "uint8" else np.abs(values).astype(dtype)
    if suffix == "npz":
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return "data.npz", buffer.getvalue()
    header, columns = [], []
    for name, values in arrays.items():
        if values.ndim == 1:
            header.append(name)
            columns.append(values.astype(float))
        else:
            for k in range(values.shape[1]):
                header.append(f"{name}[{k}]")
                columns.append(values[:, k].astype(float))
    lines = [",".join(header)] + [",".join(repr(float(c[r])) for c in columns)
                                  for r in range(rows)]
    return "data.csv", ("\n".join(lines) + "\n").encode()


_SAFE_METRICS: list[Any] = ["mae", "mse", "zero_one", "abs(out - label)", "(out - label) ** 2",
                            "where(out == label, 0, 1)",
                            {"formula": "where(out == label, 1, 0)", "higher_is_better": True},
                            {"formula": "abs(out - label)"}, {"name": "mse"}]


@st.composite
def scenarios(draw: st.DrawFn, wild: bool = False) -> Scenario:
    """A valid task and hypothesis: small random DAGs, every dataset mode."""
    n_inputs = draw(st.integers(1, 4))
    names = draw(st.lists(identifiers().filter(lambda s: s not in ("out", "label")),
                          min_size=n_inputs, max_size=n_inputs, unique=True))
    mode = draw(st.sampled_from(["sample", "sample", "enumerate", "file"]))
    shapes = {n: draw(st.sampled_from([()] * 6 + [(1,), (2,), (3,), (2, 2)])) for n in names}
    specs: dict[str, dict] = {}
    files: dict[str, bytes] = {}
    for name in names:
        if mode == "file":
            specs[name] = {}
        else:
            specs[name] = draw(input_spec(allow_normal=mode == "sample", wild=wild))
        if shapes[name]:
            specs[name]["shape"] = list(shapes[name])
    if mode == "enumerate":
        total = math.prod(_finite_support(s) ** math.prod(shapes[n]) for n, s in specs.items())
        if total > 3000:
            mode = "sample"
    if mode == "file":
        file_name, payload = _data_files(draw, shapes, wild)
        files[file_name] = payload
        dataset: dict[str, Any] = {"file": file_name}
    elif mode == "enumerate":
        dataset = {"enumerate": True}
    else:
        dataset = {"size": draw(st.integers(1, 300))}
        if draw(st.booleans()):
            dataset["seed"] = draw(st.one_of(st.integers(0, 2**32), st.just(2**100)))
    models: dict[str, dict] = {}
    graphs = []
    for _ in range(draw(st.integers(1, 2))):
        nodes, reads, output = draw(model_graph(shapes))
        graphs.append((nodes, reads, output))
    model_names = draw(st.lists(st.one_of(identifiers(), free_texts()), min_size=len(graphs),
                                max_size=len(graphs), unique=True))
    for model_name, (nodes, _, output) in zip(model_names, graphs):
        models[model_name] = {"nodes": nodes, "output": output}
    chosen = draw(st.integers(0, len(graphs) - 1))
    model_name, (_, reads, output) = model_names[chosen], graphs[chosen]
    label_inputs = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
    label = _safe_combine(draw, [_term(draw, i, shapes[i]) for i in label_inputs])
    metric = copy.deepcopy(draw(st.sampled_from(_SAFE_METRICS)))
    task: dict[str, Any] = {"task": draw(free_texts())}
    if draw(st.booleans()):
        task["description"] = draw(free_texts())
    task.update(inputs=specs, dataset=dataset, label=label, metric=metric, models=models)
    task = {k: task[k] for k in draw(st.permutations(list(task)))}

    nodes, claims, children, root = draw(interpretation(reads, output, shapes))
    layout = draw(st.sampled_from([("task.yaml", "hyp.yaml", "task.yaml"),
                                   ("tasks/t.yaml", "hyp.yaml", "tasks/t.yaml"),
                                   ("task.yaml", "hyps/h.yaml", "../task.yaml")]))
    hyp: dict[str, Any] = {"hypothesis": draw(free_texts())}
    if draw(st.integers(0, 3)) == 0:
        hyp["description"] = draw(free_texts())
    hyp["task"] = layout[2]
    if len(models) > 1 or draw(st.booleans()):
        hyp["model"] = model_name
    hyp["nodes"] = nodes
    data_dir = str(Path(layout[0]).parent)
    files = {(f"{data_dir}/{k}" if data_dir != "." else k): v for k, v in files.items()}
    return Scenario(task, hyp, files, layout[0], layout[1], shapes, reads, output, model_name,
                    claims, children, root, mode, wild)


def dump(doc: Any, flow: bool | None = False) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=flow,
                          width=10_000)


@dataclass
class Written:
    folder: Path
    task: str
    hyp: str


def write(folder: Path, sc: Scenario, task_text: str | bytes | None = None,
          hyp_text: str | bytes | None = None) -> Written:
    for rel, payload in sc.files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(payload)
    for rel, doc, text in ((sc.task_path, sc.task, task_text), (sc.hyp_path, sc.hyp, hyp_text)):
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            text = dump(doc)
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    return Written(folder, str(folder / sc.task_path), str(folder / sc.hyp_path))


# --------------------------------------------------------------------------- properties: valid


def check_valid(sc: Scenario, data: st.DataObject) -> None:
    """A valid document validates and runs; --strict fails exactly on vacuous claims."""
    note(f"task:\n{dump(sc.task)}\nhypothesis:\n{dump(sc.hyp)}")
    style = data.draw(st.sampled_from(["block", "flow", "bom", "crlf"]), label="style")
    texts = {}
    for key, doc in (("task", sc.task), ("hyp", sc.hyp)):
        text = dump(doc, flow=None if style == "flow" else False)
        if style == "bom":
            text = "\ufeff" + text
        elif style == "crlf":
            text = text.replace("\n", "\r\n")
        texts[key] = text
    with tempfile.TemporaryDirectory() as tmp, tolerating_known_bugs():
        folder = Path(tmp)
        files = write(folder, sc, texts["task"], texts["hyp"])
        before = snapshot(folder)
        checked = invoke("validate", files.task, files.hyp)
        assert checked.exit_code == 0, checked.stdout + checked.stderr
        assert f"ok: {files.task} (task)" in checked.stdout
        assert f"ok: {files.hyp} (hypothesis)" in checked.stdout
        vacuous = "vacuous claim" in checked.stdout
        policy = data.draw(st.sampled_from(["per_node", "shared", "independent"]), label="policy")
        ablation = data.draw(st.sampled_from(["resample", "resample", "mean", "zero"]),
                             label="ablation")
        strict = data.draw(st.integers(0, 3), label="strict") == 0
        as_json = data.draw(st.booleans(), label="json")
        seed = data.draw(st.one_of(st.integers(0, 2**32), st.just(2**80)), label="seed")
        args = ["run", "--samples", str(SAMPLES), "--seed", str(seed), "--policy", policy,
                "--ablation", ablation]
        args += ["--strict"] * strict + ["--json"] * as_json + [files.hyp]
        result = invoke(*args)
        if strict and vacuous:
            assert_user_error(result, naming="vacuous")
        else:
            assert result.exit_code == 0, result.stdout + result.stderr
            if as_json:
                payload = strict_json(result.stdout)
                assert payload["schema_version"] == 1
                [figures] = payload["results"]
                assert figures["samples"] == SAMPLES and figures["seed"] == seed
                assert figures["policy"] == policy and figures["hypothesis"] == files.hyp
                assert isinstance(figures["warnings"], list)
            else:
                assert "causal scrubbing" in result.stdout
        assert snapshot(folder) == before, "casc wrote a file"


def check_wild(sc: Scenario, data: st.DataObject) -> None:
    """Random whitelist formulas and extreme numbers: validate and run exit 0 or 2, cleanly."""
    task, hyp = copy.deepcopy(sc.task), copy.deepcopy(sc.hyp)
    inputs = list(sc.inputs)
    model = task["models"][sc.model]
    nodes = list(model["nodes"])
    interp = list(hyp["nodes"])
    where = data.draw(st.lists(st.sampled_from(["label", "metric", "model", "interp"]),
                               min_size=1, max_size=4), label="where")
    for place in where:
        if place == "label":
            task["label"] = data.draw(formula_texts(inputs), label="label")
        elif place == "metric":
            task["metric"] = data.draw(formula_texts(inputs + ["out", "label"]), label="metric")
        elif place == "model":
            node = data.draw(st.sampled_from(nodes), label="model node")
            upstream = nodes[:nodes.index(node)] if data.draw(st.booleans()) else nodes
            model["nodes"][node] = data.draw(formula_texts(inputs + upstream), label="formula")
        else:
            node = data.draw(st.sampled_from(interp), label="interp node")
            names = inputs + sc.children.get(node, [])
            formula = data.draw(formula_texts(names), label="value")
            entry = hyp["nodes"][node]
            if isinstance(entry, dict):
                entry["value"] = formula
            else:
                hyp["nodes"][node] = formula
    sc = Scenario(**{**sc.__dict__, "task": task, "hyp": hyp})
    note(f"task:\n{dump(task)}\nhypothesis:\n{dump(hyp)}")
    with tempfile.TemporaryDirectory() as tmp, tolerating_known_bugs():
        folder = Path(tmp)
        files = write(folder, sc)
        before = snapshot(folder)
        checked = invoke("validate", files.hyp)
        as_json = data.draw(st.booleans(), label="json")
        result = invoke("run", "--samples", str(SAMPLES), *(["--json"] * as_json), files.hyp)
        if checked.exit_code == 2:
            assert_user_error(result)
        elif result.exit_code == 0 and as_json:
            strict_json(result.stdout)
        if checked.exit_code == 0 and data.draw(st.integers(0, 3), label="show") == 0:
            fmt = data.draw(st.sampled_from(["text", "dot", "mermaid"]), label="format")
            assert invoke("show", "--format", fmt, files.hyp).exit_code == 0
        assert snapshot(folder) == before, "casc wrote a file"


# --------------------------------------------------------------------------- properties: invalid


@dataclass
class Broken:
    """One mutation of a valid scenario and what casc must say about it."""

    what: str
    target: str  # "task" or "hyp": the file that is broken
    # "always": validate and run fail; "run": only the run fails; "any": validate passes and
    # the run exits 0 or 2; "never": the mutation did not apply, nothing to check
    when: str = "always"
    naming: str | None = None  # a text the error must contain
    task_text: str | bytes | None = None
    hyp_text: str | bytes | None = None


def _entry(hyp: dict, node: str) -> dict:
    """An interpretation node in its long form (converted in place)."""
    entry = hyp["nodes"][node]
    if not isinstance(entry, dict):
        entry = hyp["nodes"][node] = {"value": entry}
    return entry


def _value(hyp: dict, node: str) -> str:
    entry = hyp["nodes"][node]
    return entry["value"] if isinstance(entry, dict) else entry


_UNKNOWN_KEYS = ["notes", "Task", "modle", "claim", "values", "extra", "distribution",
                 "seeds", "p0", "size2", "x", "_", "123", "ünïcode", "[/dim]"]
_NOT_A_STRING = [3, 2.5, True, ["a"], {"a": 1}, None]
_FORBIDDEN_FORMULAS = [
    "x0.real", "(lambda: 1)()", "__import__('os')", "[i for i in x0]", "'text'", "f'{x0}'",
    "(y := 1)", "{1: 2}", "{1, 2}", "[1, 2]", "(1, 2)", "print(1)", "eval('1')", "open('f')",
    "1 if", "1 +", "2 @ 3", "1 in 2", "1 is 2", "1 not in 2", "sum(1, axis=0)", "sum(*1)",
    "round(1, 1.5)", "abs(1)[1.5]", "abs(1)[::0]", "abs(1)[None]", str(2**64), "min()",
    "where(1, 2)", "clip(1)", "...", "None", "b'x'", "1j", " ", "\t", "\x00", "_x + 1",
    "max(1, key=abs)", "exp(*[1])", "abs(1).real", "1 +* 2", "(((", "yield 1", "await 1",
    "x0; import os", "lambda x: x", "sum()", "abs(1, 2)", "getattr(1, 'real')",
]


def _mutations_hyp(draw: st.DrawFn, sc: Scenario) -> Broken:
    hyp, root = sc.hyp, sc.root
    interp = list(hyp["nodes"])
    non_root = [n for n in interp if n != root]
    inputs = set(sc.inputs)
    kinds = ["drop", "unknown_top", "unknown_node_key", "type_top", "type_node", "dangling_name",
             "dangling_claim", "dangling_model", "dangling_task", "read_twice", "orphan",
             "orphan_cycle", "root_claim", "bad_node_name", "forbidden_formula", "self_task",
             "task_is_folder", "hyp_as_task", "empty_nodes"]
    if non_root:
        kinds += ["claims_parent", "claims_downstream"]
    if any(len(k) >= 2 for k in sc.children.values()):
        kinds.append("siblings")
    kind = draw(st.sampled_from(kinds))
    if kind == "drop":
        key = draw(st.sampled_from(["hypothesis", "task", "nodes"]))
        del hyp[key]
        return Broken(f"drop `{key}`", "hyp", naming=f"`{key}`")
    if kind == "unknown_top":
        key = draw(st.sampled_from(_UNKNOWN_KEYS))
        hyp[key] = draw(st.sampled_from(_NOT_A_STRING[:3] + ["text"]))
        return Broken(f"unknown key {key!r}", "hyp")
    if kind == "unknown_node_key":
        node = draw(st.sampled_from(interp))
        key = draw(st.sampled_from(_UNKNOWN_KEYS))
        _entry(hyp, node)[key] = "x"
        return Broken(f"unknown node key {key!r}", "hyp")
    if kind == "type_top":
        key = draw(st.sampled_from(["hypothesis", "task", "model", "nodes", "description"]))
        bad = [v for v in _NOT_A_STRING if not (key == "model" and v is None)]
        if key == "nodes":
            bad = [["a", "b"], "out", 3, None, True]
        if key in ("hypothesis", "task"):
            bad = bad + [""]
        hyp[key] = draw(st.sampled_from(bad))
        return Broken(f"`{key}` of a wrong type", "hyp")
    if kind == "type_node":
        node = draw(st.sampled_from(interp))
        key = draw(st.sampled_from(["value", "claims", "description", "node"]))
        if key == "node":
            hyp["nodes"][node] = draw(st.sampled_from([True, None, ["x0"], {}]))
        elif key == "value":
            _entry(hyp, node)["value"] = draw(st.sampled_from([True, ["x0"], {"a": 1}, None, ""]))
        else:
            _entry(hyp, node)[key] = draw(st.sampled_from([3, True, ["a"], {"a": 1}]))
        return Broken(f"node `{node}`: `{key}` of a wrong type", "hyp")
    if kind == "dangling_name":
        node = draw(st.sampled_from(interp))
        _entry(hyp, node)["value"] = f"({_value(hyp, node)}) + zz_nowhere"
        return Broken("a formula reads an undefined name", "hyp", naming="zz_nowhere")
    if kind == "dangling_claim":
        node = draw(st.sampled_from(interp))
        _entry(hyp, node)["claims"] = draw(st.sampled_from(["zz_nothing", "", "zz_out_missing", "1"]))
        return Broken("claims a name the model lacks", "hyp")
    if kind == "dangling_model":
        hyp["model"] = sc.model + "_missing"
        return Broken("`model:` names a model the task lacks", "hyp")
    if kind == "dangling_task":
        hyp["task"] = draw(st.sampled_from(["missing.yaml", "nope/task.yaml", "../x/y.yaml",
                                            "task.yml"]))
        return Broken("`task:` names a missing file", "hyp", naming="does not exist")
    if kind == "self_task":
        hyp["task"] = Path(sc.hyp_path).name
        return Broken("`task:` names the hypothesis itself", "hyp")
    if kind == "task_is_folder":
        hyp["task"] = "."
        return Broken("`task:` names a folder", "hyp")
    if kind == "hyp_as_task":
        sc.files["other_hyp.yaml"] = dump(hyp).encode()
        hyp["task"] = os.path.relpath("other_hyp.yaml", str(Path(sc.hyp_path).parent))
        return Broken("`task:` names a hypothesis file", "hyp")
    if kind == "empty_nodes":
        hyp["nodes"] = {}
        return Broken("no nodes", "hyp")
    if kind == "read_twice":
        node = draw(st.sampled_from(interp))
        readers = [n for n in interp if n != node and node not in sc.children[n]]
        if not readers:  # a lone root: reading itself is reading an undefined name
            _entry(hyp, node)["value"] = f"({_value(hyp, node)}) + zz_self"
            return Broken("reads an undefined name", "hyp")
        reader = draw(st.sampled_from(readers))
        _entry(hyp, reader)["value"] = f"({_value(hyp, reader)}) + sum({node})"
        return Broken(f"`{reader}` also reads `{node}`: not a tree", "hyp")
    if kind == "orphan":
        name = draw(identifiers().filter(lambda s: s not in hyp["nodes"] and s not in inputs))
        claim = draw(st.sampled_from(sorted(inputs) + list(sc.reads)))
        hyp["nodes"][name] = {"value": "1", "claims": claim}
        return Broken("a node nobody reads", "hyp", naming=f"`{name}`")
    if kind == "orphan_cycle":
        claim = draw(st.sampled_from(sorted(inputs)))
        hyp["nodes"]["zz_cycle_a"] = {"value": "zz_cycle_b + 1", "claims": claim}
        hyp["nodes"]["zz_cycle_b"] = {"value": "zz_cycle_a + 1", "claims": claim}
        return Broken("two nodes read each other", "hyp", naming="cycle")
    if kind == "root_claim":
        other = [c for c in list(sc.reads) + sorted(inputs) if c != sc.output]
        _entry(hyp, root)["claims"] = draw(st.sampled_from(other))
        return Broken("the root does not claim the output", "hyp", naming="output")
    if kind == "bad_node_name":
        node = draw(st.sampled_from(interp))
        bad = draw(st.sampled_from(["1a", "a-b", "class", "_x", "a b", "", "\u00e9", "x.y",
                                    "None", "lambda", "a\u00e9"]))
        hyp["nodes"] = {(bad if k == node else k): v for k, v in hyp["nodes"].items()}
        return Broken(f"node named {bad!r}", "hyp")
    if kind == "forbidden_formula":
        node = draw(st.sampled_from(interp))
        _entry(hyp, node)["value"] = draw(st.sampled_from(_FORBIDDEN_FORMULAS))
        return Broken("a forbidden formula", "hyp")
    if kind == "claims_parent":
        node = draw(st.sampled_from(non_root))
        _entry(hyp, node)["claims"] = sc.claims[sc.parent(node)]
        return Broken("a child claims its parent's node", "hyp", naming=f"`{node}`")
    if kind == "claims_downstream":
        node = draw(st.sampled_from(non_root))
        parent_claim = sc.claims[sc.parent(node)]
        up = ancestors(sc.reads)
        downstream = [n for n in sc.reads if parent_claim in up[n]] or [parent_claim]
        _entry(hyp, node)["claims"] = draw(st.sampled_from(downstream))
        return Broken("a child claims a node downstream of its parent's", "hyp")
    assert kind == "siblings"
    parent = draw(st.sampled_from([p for p, k in sc.children.items() if len(k) >= 2]))
    first, second = draw(st.permutations(sc.children[parent]))[:2]
    _entry(hyp, second)["claims"] = sc.claims[first]
    return Broken("two siblings claim the same node", "hyp", naming="the same")


def _mutations_task(draw: st.DrawFn, sc: Scenario) -> Broken:
    task = sc.task
    inputs = list(sc.inputs)
    model = task["models"][sc.model]
    nodes = list(model["nodes"])
    kinds = ["drop", "drop_model_key", "unknown_top", "unknown_input_key", "unknown_dataset_key",
             "unknown_model_key", "type_top", "type_input", "type_dataset", "type_model",
             "dangling_label", "dangling_node", "dangling_metric", "metric_reads_node",
             "output_missing", "cycle", "node_named_input", "reserved_input", "bad_input_name",
             "bad_node_name", "distribution", "dataset_modes", "forbidden_formula",
             "size_limit", "enumerate_too_big"]
    if sc.mode != "file":
        kinds += ["enumerate_normal", "no_distribution", "huge_range"]
    else:
        kinds += ["data_file"]
    kind = draw(st.sampled_from(kinds))
    if kind == "drop":
        key = draw(st.sampled_from(["task", "inputs", "dataset", "label", "metric", "models"]))
        del task[key]
        return Broken(f"drop `{key}`", "task")
    if kind == "drop_model_key":
        key = draw(st.sampled_from(["nodes", "output"]))
        del model[key]
        return Broken(f"drop the model's `{key}`", "task", naming=f"`{key}`")
    if kind.startswith("unknown_"):
        key = draw(st.sampled_from(_UNKNOWN_KEYS))
        holder = {"unknown_top": task, "unknown_input_key": task["inputs"][inputs[0]],
                  "unknown_dataset_key": task["dataset"], "unknown_model_key": model}[kind]
        if key in holder:
            key += "_"
        holder[key] = 1
        return Broken(f"unknown key {key!r}", "task", naming="unknown key")
    if kind == "type_top":
        key = draw(st.sampled_from(["task", "description", "inputs", "dataset", "label",
                                    "metric", "models"]))
        bad: list[Any] = {"task": [3, True, ["a"], None, ""],
                          "description": [3, ["a"], {"a": 1}, None],
                          "inputs": [[], {}, "x0", 3, None],
                          "dataset": [[], "size", 100, None, {}],
                          "label": [True, ["x"], {"a": 1}, None, ""],
                          "metric": [3, True, ["mae"], None, {}, "", {"higher_is_better": True},
                                     {"name": "mae", "formula": "out"}, {"name": "rmse"}],
                          "models": [[], {}, "m", None]}[key]
        task[key] = draw(st.sampled_from(bad))
        return Broken(f"`{key}` of a wrong type", "task")
    if kind == "type_input":
        name = draw(st.sampled_from(inputs))
        bad_spec = draw(st.sampled_from([
            {"int": "abc"}, {"int": [1.5, 2]}, {"int": [1, 2, 3]}, {"int": [1]}, {"int": [True, 2]},
            {"choice": []}, {"choice": ["a"]}, {"choice": [True]}, {"normal": [0]},
            {"normal": [0, -1]}, {"normal": [0, 0]}, {"normal": [0, float("inf")]},
            {"int": [0, 1], "p_zero": 1.5}, {"int": [0, 1], "p_zero": -0.1},
            {"int": [0, 1], "shape": [0]}, {"int": [0, 1], "shape": [-1]},
            {"int": [0, 1], "shape": [1, 1, 1, 1, 1]}, {"int": [0, 1], "shape": [1.5]},
            {"int": [0, 1], "shape": []}, {"int": [0, 1], "shape": [1001, 1000]},
            {"int": [0, 1], "shape": "3"}, {"int": [0, 1], "shape": [10**30]},
            "int", 5, ["int", 0, 1], None]))
        task["inputs"][name] = bad_spec
        return Broken(f"input `{name}`: a bad spec", "task")
    if kind == "type_dataset":
        key, bad_value = draw(st.sampled_from([
            ("size", 0), ("size", -5), ("size", -(10**30)), ("size", 1.5), ("size", "10"),
            ("size", True), ("seed", -1), ("seed", 1.5), ("seed", "0"), ("enumerate", "yes"),
            ("enumerate", 1), ("file", ""), ("file", 3)]))
        task["dataset"] = {key: bad_value}
        return Broken(f"`dataset.{key}: {bad_value!r}`", "task")
    if kind == "type_model":
        key, bad_value = draw(st.sampled_from([
            ("nodes", {}), ("nodes", []), ("nodes", "x"), ("output", 3), ("output", ["out"]),
            ("output", None)]))
        model[key] = bad_value
        return Broken(f"the model's `{key}` of a wrong type", "task")
    if kind == "dangling_label":
        task["label"] = f"({task['label']}) + zz_nowhere"
        return Broken("the label reads an undefined name", "task", naming="zz_nowhere")
    if kind == "dangling_node":
        node = draw(st.sampled_from(nodes))
        model["nodes"][node] = f"({model['nodes'][node]}) + zz_nowhere"
        return Broken("a model node reads an undefined name", "task", naming="zz_nowhere")
    if kind == "dangling_metric":
        task["metric"] = "abs(out - label) + zz_nowhere"
        return Broken("the metric reads an undefined name", "task", naming="zz_nowhere")
    if kind == "metric_reads_node":
        readable = [n for n in nodes if n not in ("out", "label")]
        if not readable:
            return Broken("(no mutation: the metric may read `out` and `label`)", "task",
                          when="never")
        task["metric"] = {"formula": f"abs(out - label) + {draw(st.sampled_from(readable))} * 0"}
        return Broken("the metric reads a model node", "task")
    if kind == "output_missing":
        model["output"] = draw(st.sampled_from(inputs + ["zz_nowhere", ""]))
        return Broken("the output is not a node", "task")
    if kind == "cycle":
        node = draw(st.sampled_from(nodes))
        up = ancestors(sc.reads) if task["models"][sc.model] is model else {}
        downstream = [n for n in nodes if node in up.get(n, set())] or [node]
        other = draw(st.sampled_from(downstream))
        model["nodes"][node] = f"({model['nodes'][node]}) + {other}"
        return Broken(f"`{node}` reads `{other}`: a cycle", "task")
    if kind == "node_named_input":
        model["nodes"][draw(st.sampled_from(inputs))] = "1"
        return Broken("a model node named like an input", "task", naming="task input")
    if kind == "reserved_input":
        name = draw(st.sampled_from(inputs))
        reserved = draw(st.sampled_from(["out", "label"]))
        task["inputs"] = {(reserved if k == name else k): v for k, v in task["inputs"].items()}
        return Broken(f"an input named `{reserved}`", "task")
    if kind in ("bad_input_name", "bad_node_name"):
        bad = draw(st.sampled_from(["1a", "a-b", "class", "_x", "a b", "", "\u00e9", "x.y",
                                    "True", "def"]))
        holder = task["inputs"] if kind == "bad_input_name" else model["nodes"]
        victim = draw(st.sampled_from(list(holder)))
        renamed = {(bad if k == victim else k): v for k, v in holder.items()}
        if kind == "bad_input_name":
            task["inputs"] = renamed
        else:
            model["nodes"] = renamed
        return Broken(f"a name {bad!r}", "task")
    if kind == "distribution":
        name = draw(st.sampled_from(inputs))
        spec = task["inputs"][name]
        for key in ("int", "choice", "p", "normal"):
            spec.pop(key, None)
        spec.update(draw(st.sampled_from([
            {"int": [5, 1]}, {"int": [0, 1], "choice": [1]}, {"choice": [1], "normal": [0, 1]},
            {"p": [1.0]}, {"choice": [1, 2, 3], "p": [0.5, 0.5]}, {"choice": [1, 2], "p": [0.7, 0.7]},
            {"choice": [1, 2], "p": [1.5, -0.5]}, {"choice": [float("nan")]},
            {"choice": [float("inf"), 1]}, {"normal": [float("nan"), 1]}])))
        return Broken("a bad distribution", "task")
    if kind == "dataset_modes":
        task["dataset"] = draw(st.sampled_from([
            {"size": 10, "enumerate": True}, {"size": 10, "file": "d.npz"},
            {"enumerate": True, "file": "d.csv"}, {"seed": 3}, {"enumerate": False}]))
        return Broken("not exactly one dataset mode", "task")
    if kind == "forbidden_formula":
        formula = draw(st.sampled_from(_FORBIDDEN_FORMULAS))
        place = draw(st.sampled_from(["label", "metric", "node"]))
        if place == "node":
            model["nodes"][draw(st.sampled_from(nodes))] = formula
        elif place == "metric" and formula.strip() and formula not in ("\x00",):
            task["metric"] = {"formula": formula}
        else:
            task["label"] = formula
        return Broken("a forbidden formula", "task")
    if kind == "size_limit":
        task["dataset"] = {"size": draw(st.sampled_from([10_000_001, 10**12, 10**40]))}
        if sc.mode == "file":
            for spec in task["inputs"].values():
                spec["int"] = [0, 1]
        return Broken("a dataset over the size limit", "task", when="run", naming="limit")
    if kind == "enumerate_too_big":
        task["inputs"].update({f"zz_enum_{i}": {"int": [0, 1]} for i in range(30)})
        task["dataset"] = {"enumerate": True}
        if sc.mode == "file":
            for name in inputs:
                task["inputs"][name]["int"] = [0, 1]
        for name in inputs:
            task["inputs"][name].pop("normal", None)
            if not any(k in task["inputs"][name] for k in ("int", "choice")):
                task["inputs"][name]["int"] = [0, 1]
        return Broken("an enumeration over the size limit", "task", when="run", naming="limit")
    if kind == "enumerate_normal":
        name = draw(st.sampled_from(inputs))
        spec = task["inputs"][name]
        for key in ("int", "choice", "p"):
            spec.pop(key, None)
        spec["normal"] = [0, 1]
        task["dataset"] = {"enumerate": True}
        return Broken("enumerate a normal input", "task", when="run", naming="is normal")
    if kind == "no_distribution":
        name = draw(st.sampled_from(inputs))
        spec = task["inputs"][name]
        for key in ("int", "choice", "p", "normal", "p_zero"):
            spec.pop(key, None)
        return Broken("an input without distribution", "task", when="run", naming=f"`{name}`")
    if kind == "huge_range":
        name = draw(st.sampled_from(inputs))
        spec = task["inputs"][name]
        for key in ("int", "choice", "p", "normal"):
            spec.pop(key, None)
        spec[draw(st.sampled_from(["int", "choice"]))] = draw(st.sampled_from(
            [[0, 2**64], [-(2**70), 0], [2**63, 2**63 + 1], [1, 10**30]]))
        task["dataset"] = {"size": 20}
        # casc may support such values or refuse them (at validate or at run); it must not crash
        return Broken("values beyond 64 bits", "task", when="any")
    assert kind == "data_file"
    data_key = next(iter(sc.files))
    how = draw(st.sampled_from(["missing", "suffix", "corrupt", "missing_array", "shape",
                                "strings", "csv_text", "csv_ragged", "csv_header_only",
                                "empty_rows", "csv_bad_column", "nan"]))
    folder = str(Path(data_key).parent)
    rel = lambda name: name if folder == "." else f"{folder}/{name}"  # noqa: E731
    first = inputs[0]
    if how == "missing":
        task["dataset"] = {"file": "nope.npz"}
    elif how == "suffix":
        sc.files[rel("data.txt")] = b"1,2\n"
        task["dataset"] = {"file": "data.txt"}
    elif how == "corrupt":
        sc.files[rel("bad.npz")] = draw(st.binary(max_size=64))
        task["dataset"] = {"file": "bad.npz"}
    elif how in ("missing_array", "shape", "strings", "empty_rows", "nan"):
        arrays = {n: np.zeros((4, *s)) for n, s in sc.inputs.items()}
        if how == "missing_array":
            del arrays[first]
        elif how == "shape":
            arrays[first] = np.zeros((4, *sc.inputs[first], 2))
        elif how == "strings":
            arrays[first] = np.array(["a"] * 4)
        elif how == "nan":
            arrays[first] = np.full((4, *sc.inputs[first]), np.nan)
        else:
            arrays = {n: np.zeros((0, *s)) for n, s in sc.inputs.items()}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        sc.files[rel("d2.npz")] = buffer.getvalue()
        task["dataset"] = {"file": "d2.npz"}
    else:
        header = ",".join(f"{n}[{k}]" if s else n for n, s in sc.inputs.items()
                          for k in range(max(1, math.prod(s))))
        width = header.count(",") + 1
        body = {"csv_text": header + "\n" + ",".join(["a"] * width) + "\n",
                "csv_ragged": header + "\n" + ",".join(["1"] * (width + 1)) + "\n",
                "csv_header_only": header + "\n",
                "csv_bad_column": header.replace(first, f"{first}[x]", 1) + "\n"
                + ",".join(["1"] * width) + "\n"}[how]
        sc.files[rel("d2.csv")] = body.encode()
        task["dataset"] = {"file": "d2.csv"}
    return Broken(f"a bad data file ({how})", "task", when="run")


_ALIAS_BOMB = "\n".join(
    ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]) + "\n"


def _mutations_text(draw: st.DrawFn, sc: Scenario) -> Broken:
    target = draw(st.sampled_from(["task", "hyp"]))
    doc = sc.task if target == "task" else sc.hyp
    text = dump(doc)
    key = next(iter(doc))
    how = draw(st.sampled_from(["duplicate", "unclosed", "nul", "latin1", "empty", "blank",
                                "comment", "list", "scalar", "bomb", "python_tag",
                                "recursive", "unhashable_key", "tab", "only_bom", "deep"]))
    new: str | bytes = {
        "duplicate": text + f"{key}: again\n",
        "unclosed": text + "zz: [1, 2\n",
        "nul": text.encode() + b"\x00",
        "latin1": text.encode() + b"# caf\xe9\n",
        "empty": b"",
        "blank": " \n\t\n",
        "comment": "# nothing here\n",
        "list": "- " + key + "\n- 2\n",
        "scalar": "just text\n",
        "bomb": _ALIAS_BOMB,
        "python_tag": text + "zz: !!python/object/apply:os.system ['true']\n",
        "recursive": text + "zz: &r [*r]\n",
        "unhashable_key": text + "? [a, b]\n: 1\n",
        "tab": text + "zz:\n\t- 1\n",
        "only_bom": "\ufeff",
        "deep": text + "zz: " + "[" * 5000 + "]" * 5000 + "\n",
    }[how]
    if target == "task":
        return Broken(f"YAML: {how}", "task", task_text=new)
    return Broken(f"YAML: {how}", "hyp", hyp_text=new)


@st.composite
def broken_scenarios(draw: st.DrawFn) -> tuple[Scenario, Broken]:
    sc = draw(scenarios())
    sc = Scenario(**{**sc.__dict__, "task": copy.deepcopy(sc.task), "hyp": copy.deepcopy(sc.hyp),
                     "files": dict(sc.files)})
    family = draw(st.sampled_from(["hyp", "task", "text"]))
    mutate: Callable[[st.DrawFn, Scenario], Broken] = {
        "hyp": _mutations_hyp, "task": _mutations_task, "text": _mutations_text}[family]
    return sc, mutate(draw, sc)


def check_broken(sc: Scenario, broken: Broken) -> None:
    """A document broken by one mutation is rejected with exit 2 and an `error:` line."""
    note(f"mutation: {broken.what}")
    note(f"task:\n{broken.task_text if broken.task_text is not None else dump(sc.task)}")
    note(f"hypothesis:\n{broken.hyp_text if broken.hyp_text is not None else dump(sc.hyp)}")
    if broken.when == "never":
        return
    with tempfile.TemporaryDirectory() as tmp, tolerating_known_bugs():
        folder = Path(tmp)
        files = write(folder, sc, broken.task_text, broken.hyp_text)
        before = snapshot(folder)
        broken_file = files.task if broken.target == "task" else files.hyp
        checked = invoke("validate", broken_file)
        result = invoke("run", "--samples", "20", files.hyp)
        if broken.when == "always":
            assert_user_error(checked, naming=broken.naming)
            assert_user_error(result)
        elif broken.when == "any":
            if checked.exit_code == 2:
                assert_user_error(result)
        else:
            assert checked.exit_code == 0, checked.stdout + checked.stderr
            assert_user_error(result, naming=broken.naming)
        assert snapshot(folder) == before, "casc wrote a file"


# --------------------------------------------------------------------------- properties: run-time errors


@st.composite
def dividing_scenarios(draw: st.DrawFn) -> tuple[dict, dict, str, bool]:
    """A valid document whose formula divides by zero on some datum of D."""
    lo = draw(st.integers(-3, 0))
    hi = draw(st.integers(0, 3))
    zero_at = draw(st.integers(lo, hi))
    op = draw(st.sampled_from(["/", "/", "//", "%"]))
    numerator = draw(st.sampled_from(["x0", "x0 + 0.5", "1", "1.0", "x0 * 1.0"]))
    bad = f"({numerator}) {op} (x1 - {zero_at})"
    floaty = "." in numerator or op == "/"
    place = draw(st.sampled_from(["model", "label", "interp", "leaf", "metric"]))
    nodes = {"a": "x0 + x1", "out": "a * 2"}
    label, metric = "2 * (x0 + x1)", "mae"
    interp: dict[str, Any] = {"out": {"value": "a * 2"}, "a": {"value": "x0 + x1"},
                              "x0": "x0", "x1": "x1"}
    naming = {"model": "model node `d`", "label": "the label", "interp": "interpretation node `a`",
              "leaf": "interpretation node `x1`", "metric": "the metric"}[place]
    if place == "model":
        nodes = {"d": bad, "a": "x0 + x1 + d * 0", "out": "a * 2"}
    elif place == "label":
        label = bad
        metric = "zero_one"
    elif place == "interp":
        interp["a"] = {"value": f"x0 + x1 + ({bad}) * 0"}
    elif place == "leaf":
        interp["x1"] = f"1.0 {op} (x1 - {zero_at})"
        floaty = True
    else:
        metric = f"abs(out - label) + (({numerator.replace('x0', 'label')}) {op} (x1 - {zero_at}))"
    task = {"task": "divide", "inputs": {"x0": {"int": [lo, hi]}, "x1": {"int": [lo, hi]}},
            "dataset": {"enumerate": True}, "label": label, "metric": metric,
            "models": {"m": {"nodes": nodes, "output": "out"}}}
    hyp = {"hypothesis": "divides by zero somewhere", "task": "task.yaml", "nodes": interp}
    return task, hyp, naming, floaty


def check_division(task: dict, hyp: dict, naming: str, floaty: bool) -> None:
    """Division by zero on some datum: validate passes, run exits 2 naming the formula."""
    note(f"task:\n{dump(task)}\nhypothesis:\n{dump(hyp)}")
    with tempfile.TemporaryDirectory() as tmp, tolerating_known_bugs():
        folder = Path(tmp)
        (folder / "task.yaml").write_text(dump(task), encoding="utf-8")
        (folder / "hyp.yaml").write_text(dump(hyp), encoding="utf-8")
        assert invoke("validate", str(folder / "hyp.yaml")).exit_code == 0
        result = invoke("run", "--samples", "20", str(folder / "hyp.yaml"))
        assert_user_error(result, naming=naming)
        # docs/format.md: reported "with the node and the datum where they appeared"
        assert "row" in result.stderr, result.stderr


# --------------------------------------------------------------------------- properties: garbage


def check_bytes(payload: bytes, as_task: bool) -> None:
    """Random bytes as a hypothesis or as its task: exit 2, never a traceback."""
    with tempfile.TemporaryDirectory() as tmp, tolerating_known_bugs():
        folder = Path(tmp)
        junk = folder / "junk.yaml"
        junk.write_bytes(payload)
        target = junk
        if as_task:
            target = folder / "hyp.yaml"
            target.write_text("hypothesis: h\ntask: junk.yaml\nnodes:\n  out: {value: x0}\n",
                              encoding="utf-8")
        for command in (["validate"], ["run", "--samples", "5"]):
            result = invoke(*command, str(target))
            assert_user_error(result)


_VOCABULARY = ["task", "hypothesis", "nodes", "inputs", "dataset", "label", "metric", "models",
               "model", "output", "value", "claims", "description", "size", "seed", "enumerate",
               "file", "int", "choice", "p", "normal", "p_zero", "shape", "formula",
               "higher_is_better", "name", "out", "x0", "a"]


def yaml_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                        st.sampled_from(_VOCABULARY + ["task.yaml", "x0 + 1", "mae", "[/dim]"]),
                        st.text(max_size=10))
    keys = st.one_of(st.sampled_from(_VOCABULARY), st.text(max_size=6), st.integers(-3, 3))
    return st.recursive(scalars, lambda sub: st.one_of(
        st.lists(sub, max_size=4), st.dictionaries(keys, sub, max_size=5)), max_leaves=25)


def check_structure(doc: Any, task_doc: Any) -> None:
    """Random YAML structures as a hypothesis (and as its task): exit 0 or 2, cleanly."""
    with tempfile.TemporaryDirectory() as tmp, tolerating_known_bugs():
        folder = Path(tmp)
        (folder / "doc.yaml").write_text(dump(doc), encoding="utf-8")
        (folder / "task.yaml").write_text(dump(task_doc), encoding="utf-8")
        (folder / "hyp.yaml").write_text(
            "hypothesis: h\ntask: task.yaml\nnodes:\n  out: {value: x0}\n", encoding="utf-8")
        for target in ("doc.yaml", "hyp.yaml", "task.yaml"):
            invoke("validate", str(folder / target))
            invoke("run", "--samples", "5", str(folder / target))


# (lenient spellings such as "1.0", "+3" or "1_000" are left out: whether they count as
# integers is the command-line parser's business)
_OPTION_VALUES = {
    "--samples": ["2", "3", "50", "1", "0", "-1", "-" + str(2**70), str(10**10 + 1), str(10**40),
                  "abc", "1e3", "", "nan", "2.5", "0x10"],
    "--seed": ["0", "7", str(2**64), str(2**200), "-1", "-" + str(2**70), "x", "", "2.5"],
    "--policy": ["per_node", "shared", "independent", "PER_NODE", "none", ""],
    "--ablation": ["resample", "mean", "zero", "median", ""],
}


def _option_valid(option: str, value: str) -> bool:
    if option == "--policy":
        return value in ("per_node", "shared", "independent")
    if option == "--ablation":
        return value in ("resample", "mean", "zero")
    if not re.fullmatch(r"-?\d+", value):
        return False
    number = int(value)
    return 2 <= number <= 10**10 if option == "--samples" else number >= 0


def check_options(options: list[tuple[str, str]], command: str) -> None:
    """Random option values: exit 0 when all are valid, else exit 2 with an error."""
    with tempfile.TemporaryDirectory() as tmp, tolerating_known_bugs():
        folder = Path(tmp)
        (folder / "task.yaml").write_text(
            "task: t\ninputs:\n  x0: {int: [0, 3]}\n  x1: {int: [0, 3]}\ndataset: {size: 30}\n"
            "label: x0 + x1\nmetric: mae\nmodels:\n  m:\n    nodes: {a: x0 + x1, out: a}\n"
            "    output: out\n", encoding="utf-8")
        (folder / "hyp.yaml").write_text(
            "hypothesis: h\ntask: task.yaml\nnodes:\n  out: {value: a}\n  a: {value: x0 + x1}\n"
            "  x0: x0\n", encoding="utf-8")
        args = [command] + [part for pair in options for part in pair] + [str(folder / "hyp.yaml")]
        note(" ".join(args))
        result = invoke(*args)
        if all(_option_valid(o, v) for o, v in options):
            assert result.exit_code == 0, result.stdout + result.stderr
        else:
            assert result.exit_code == 2, result.stdout + result.stderr
            assert "error" in result.stderr.lower()


@st.composite
def big_graphs(draw: st.DrawFn) -> tuple[dict, dict, str]:
    """Long chains and stacked diamonds (path explosions) in the model graph."""
    shape = draw(st.sampled_from(["chain", "diamonds"]))
    nodes: dict[str, str] = {}
    if shape == "chain":
        length = draw(st.sampled_from([1, 2, 50, 400, 900, 1100, 2500]))
        previous = "x0"
        for i in range(length):
            nodes[f"n{i}"] = f"{previous} + 1"
            previous = f"n{i}"
        interp = {"out": {"value": "x0 + 0"}}
    else:
        layers = draw(st.sampled_from([1, 5, 12, 17, 18, 25]))
        previous = "x0"
        for i in range(layers):
            nodes[f"l{i}"] = f"{previous} + 1"
            nodes[f"r{i}"] = f"{previous} - 1"
            nodes[f"j{i}"] = f"l{i} + r{i}"
            previous = f"j{i}"
        interp = {"out": {"value": f"{previous} + 0"}, previous: "x0 * 2"}
        if previous == "x0":
            interp = {"out": {"value": "x0 + 0"}}
    nodes["out"] = f"{previous} + 0"
    task = {"task": "big", "inputs": {"x0": {"int": [0, 3]}}, "dataset": {"size": 20},
            "label": "x0", "metric": "mae", "models": {"m": {"nodes": nodes, "output": "out"}}}
    hyp = {"hypothesis": "big", "task": "task.yaml", "nodes": interp}
    return task, hyp, shape


def check_big_graph(task: dict, hyp: dict, shape: str) -> None:
    """Big but valid graphs: validate and run succeed, or fail with a clean limit error."""
    note(f"{shape}: {len(task['models']['m']['nodes'])} nodes")
    with tempfile.TemporaryDirectory() as tmp, tolerating_known_bugs():
        folder = Path(tmp)
        (folder / "task.yaml").write_text(dump(task), encoding="utf-8")
        (folder / "hyp.yaml").write_text(dump(hyp), encoding="utf-8")
        checked = invoke("validate", str(folder / "hyp.yaml"))
        result = invoke("run", "--samples", "10", str(folder / "hyp.yaml"))
        if checked.exit_code == 2:
            assert "paths" in checked.stderr or "deep" in checked.stderr, checked.stderr
            assert_user_error(result)


# --------------------------------------------------------------------------- properties: library


def _ints(dtype: str) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


@st.composite
def batched_arrays(draw: st.DrawFn, batch: int) -> np.ndarray:
    dtype = draw(st.sampled_from(["int64", "float64", "bool", "int64", "float64", "uint8",
                                  "int8", "float32", "float16", "int32", "uint64"]))
    per_example = draw(st.sampled_from([(), (), (), (1,), (3,), (2, 2), (0,)]))
    rows = batch if draw(st.integers(0, 19)) else batch + 1  # rarely a mismatched batch
    if dtype == "bool":
        elements: st.SearchStrategy[Any] = st.booleans()
    elif dtype.startswith("float"):
        width = int(dtype[5:])
        elements = st.one_of(st.floats(width=width),
                             st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 2.0]))
    else:
        lo, hi = _ints(dtype)
        elements = st.one_of(st.integers(lo, hi), st.sampled_from(
            [v for v in (0, 1, 2, -1, 3, 63, 64, lo, hi) if lo <= v <= hi]))
    return draw(hnp.arrays(dtype=dtype, shape=(rows, *per_example), elements=elements))


_LIBRARY_NAMES = ["x0", "x1", "v", "m", "b", "i"]


def check_formula(text: Any, data: st.DataObject) -> None:
    """compile_formula raises only FormulaError; evaluate only EvaluationError."""
    try:
        formula = compile_formula(text)
    except FormulaError as exc:
        assert exc.message, "an empty error message"
        if isinstance(text, str):
            assert exc.col is None or 0 <= exc.col <= len(text), (exc.col, len(text))
        return
    assert isinstance(text, str)
    batch = data.draw(st.integers(1, 5), label="batch")
    env = {name: data.draw(batched_arrays(batch), label=name) for name in sorted(formula.names)}
    try:
        result = formula.evaluate(env, batch)
    except EvaluationError as exc:
        assert exc.message, "an empty error message"
        return
    assert isinstance(result, np.ndarray)
    assert result.shape[:1] == (batch,), (result.shape, batch)


def formula_inputs() -> st.SearchStrategy[Any]:
    return st.one_of(formula_texts(_LIBRARY_NAMES), formula_texts(_LIBRARY_NAMES),
                     st.sampled_from([None, 3, 2.5, b"x0", ["x0"]]))


def _options() -> st.SearchStrategy[list[tuple[str, str]]]:
    return st.lists(st.sampled_from(sorted(_OPTION_VALUES)).flatmap(
        lambda o: st.tuples(st.just(o), st.sampled_from(_OPTION_VALUES[o]))),
        max_size=4, unique_by=lambda t: t[0])


# --------------------------------------------------------------------------- normal suite


@_normal(80)
@given(text=formula_inputs(), data=st.data())
def test_formula_library_raises_only_casc_errors(text: Any, data: st.DataObject) -> None:
    check_formula(text, data)


@_normal(40)
@given(sc=scenarios(), data=st.data())
def test_valid_documents_validate_and_run(sc: Scenario, data: st.DataObject) -> None:
    check_valid(sc, data)


@_normal(40)
@given(sc=scenarios(wild=True), data=st.data())
def test_wild_formulas_exit_cleanly(sc: Scenario, data: st.DataObject) -> None:
    check_wild(sc, data)


@_normal(60)
@given(case=broken_scenarios())
def test_mutated_documents_are_rejected(case: tuple[Scenario, Broken]) -> None:
    check_broken(*case)


@_normal(25)
@given(case=dividing_scenarios())
def test_division_by_zero_is_reported_with_its_place(case: tuple) -> None:
    check_division(*case)


@_normal(30)
@given(payload=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)),
       as_task=st.booleans())
def test_random_bytes_are_rejected(payload: bytes, as_task: bool) -> None:
    check_bytes(payload, as_task)


@_normal(25)
@given(doc=yaml_values(), task_doc=yaml_values())
def test_random_yaml_structures_exit_cleanly(doc: Any, task_doc: Any) -> None:
    check_structure(doc, task_doc)


@_normal(25)
@given(options=_options(), command=st.sampled_from(["run", "run", "compare"]))
def test_random_options(options: list[tuple[str, str]], command: str) -> None:
    check_options(options, command)


@_normal(8)
@given(case=big_graphs())
def test_big_graphs_exit_cleanly(case: tuple) -> None:
    check_big_graph(*case)


# --------------------------------------------------------------------------- dedicated fuzz run


@pytest.mark.fuzz
@FUZZ
@given(text=formula_inputs(), data=st.data())
def test_fuzz_formula_library(text: Any, data: st.DataObject) -> None:
    check_formula(text, data)


@pytest.mark.fuzz
@FUZZ
@given(text=formula_inputs(), data=st.data())
def test_fuzz_formula_library_more(text: Any, data: st.DataObject) -> None:
    """A second, independent formula stream (the library is cheap to fuzz)."""
    check_formula(text, data)


@pytest.mark.fuzz
@FUZZ
@given(sc=scenarios(), data=st.data())
def test_fuzz_valid_documents(sc: Scenario, data: st.DataObject) -> None:
    check_valid(sc, data)


@pytest.mark.fuzz
@FUZZ
@given(sc=scenarios(wild=True), data=st.data())
def test_fuzz_wild_formulas(sc: Scenario, data: st.DataObject) -> None:
    check_wild(sc, data)


@pytest.mark.fuzz
@FUZZ
@given(case=broken_scenarios())
def test_fuzz_mutated_documents(case: tuple[Scenario, Broken]) -> None:
    check_broken(*case)


@pytest.mark.fuzz
@FUZZ
@given(case=dividing_scenarios())
def test_fuzz_division_by_zero(case: tuple) -> None:
    check_division(*case)


@pytest.mark.fuzz
@FUZZ
@given(payload=st.one_of(st.binary(max_size=400), st.text(max_size=400).map(str.encode)),
       as_task=st.booleans())
def test_fuzz_random_bytes(payload: bytes, as_task: bool) -> None:
    check_bytes(payload, as_task)


@pytest.mark.fuzz
@FUZZ
@given(doc=yaml_values(), task_doc=yaml_values())
def test_fuzz_random_yaml_structures(doc: Any, task_doc: Any) -> None:
    check_structure(doc, task_doc)


@pytest.mark.fuzz
@FUZZ
@given(options=_options(), command=st.sampled_from(["run", "run", "compare"]))
def test_fuzz_random_options(options: list[tuple[str, str]], command: str) -> None:
    check_options(options, command)


@pytest.mark.fuzz
@settings(FUZZ, max_examples=max(1, FUZZ_EXAMPLES // 20))
@given(case=big_graphs())
def test_fuzz_big_graphs(case: tuple) -> None:
    check_big_graph(*case)


# --------------------------------------------------------------------------- known bugs, reproduced

_TASK = """\
task: t
inputs:
  x0: {{int: [0, 3]}}
  x1: {{int: [0, 3]}}
dataset: {dataset}
label: {label}
metric: {metric}
models:
  m:
    nodes: {nodes}
    output: out
"""
_HYP = "hypothesis: {name}\ntask: {task}\nnodes:\n{nodes}"


def _repro(task: dict[str, str] | str | bytes | None = None, hyp: dict[str, str] | bytes | None = None,
           command: tuple[str, ...] = ("run", "--samples", "20")):
    """Write a task and a hypothesis (the defaults are valid) and run casc on the hypothesis."""
    if not isinstance(task, (str, bytes)):
        fields = {"dataset": "{size: 20}", "label": "x0 + x1", "metric": "mae",
                  "nodes": "{a: x0 + x1, out: a}", **(task or {})}
        task = _TASK.format(**fields)
    if not isinstance(hyp, bytes):
        fields = {"name": "h", "task": "task.yaml", "nodes": "  out: {value: x0 + x1}\n",
                  **(hyp or {})}
        hyp = _HYP.format(**fields).encode("utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "task.yaml").write_bytes(task if isinstance(task, bytes) else task.encode())
        (folder / "hyp.yaml").write_bytes(hyp)
        return invoke(*command, str(folder / "hyp.yaml"))


def _xfail(reason: str):
    return pytest.mark.xfail(reason=reason, strict=True, raises=KnownBugHit)


def test_repro_harness_accepts_the_valid_defaults() -> None:
    assert _repro().exit_code == 0
    assert _repro(command=("validate",)).exit_code == 0


def test_regression_markup_in_hypothesis_name() -> None:
    assert _repro(hyp={"name": '"[/dim]"'}).exit_code == 0


def test_regression_markup_in_metric_formula() -> None:
    assert _repro(task={"metric": '"abs(out - label)  # [/x]"'}).exit_code == 0


def test_regression_non_printable_character() -> None:
    assert_user_error(_repro(hyp=b"\xc2\x80", command=("validate",)))


def test_regression_nul_in_task_path() -> None:
    assert_user_error(_repro(hyp={"task": '"a\\0b.yaml"'}, command=("validate",)))


def test_regression_long_task_path() -> None:
    assert_user_error(_repro(hyp={"task": "a" * 300}, command=("validate",)))


def test_regression_nul_in_data_file() -> None:
    assert_user_error(_repro(task={"dataset": '{file: "a\\0b.npz"}'}))


def test_regression_long_data_file() -> None:
    assert_user_error(_repro(task={"dataset": "{file: " + "a" * 300 + ".npz}"}))


def test_regression_deep_model_chain() -> None:
    chain = ", ".join([f"n{i}: n{i - 1} + 1" if i else "n0: x0 + 1" for i in range(1200)])
    result = _repro(task={"nodes": "{" + chain + ", out: n1199 + 0}"},
                    command=("validate",))
    assert result.exit_code in (0, 2)


def test_regression_enumerate_huge_range() -> None:
    task = _TASK.format(dataset="{enumerate: true}", label="x0", metric="mae",
                        nodes="{out: x0}").replace("{int: [0, 3]}", "{int: [0, 1000000000000000]}", 1)
    assert_user_error(_repro(task=task, hyp={"nodes": "  out: {value: x0}\n"}), naming="limit")


def test_regression_vacuous_claim_on_unused_node() -> None:
    result = _repro(task={"nodes": "{u: x0, out: x0 + 1}"},
                    hyp={"nodes": "  out: {value: u}\n  u: {value: x0}\n"})
    assert result.exit_code == 0


def test_regression_constant_model() -> None:
    result = _repro(task={"nodes": "{out: '1'}"}, hyp={"nodes": "  out: {value: x0}\n"})
    assert result.exit_code in (0, 2)


def test_regression_integer_division_by_zero_is_silent() -> None:
    result = _repro(task={"dataset": "{enumerate: true}", "nodes": "{d: x0 // (x1 - 1), out: d + 0}"})
    assert_user_error(result, naming="model node `d`")

