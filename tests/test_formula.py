"""Tests for the safe formula compiler (casc_cli.formula)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from casc_cli.errors import EvaluationError, FormulaError
from casc_cli.formula import FUNCTIONS, Formula, compile_formula

B = 4


@pytest.fixture
def env() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x0": np.array([1.0, -2.0, 3.5, 0.25]),
        "x1": np.array([2.0, 2.0, -1.0, 4.0]),
        "i": np.array([1, 2, 3, 4]),
        "j": np.array([3, 0, 3, 1]),
        "b": np.array([True, False, True, False]),
        "v": rng.normal(size=(B, 5)),
        "m": rng.normal(size=(B, 2, 3)),
        "iv": np.arange(B * 3).reshape(B, 3),
    }


def ev(text: str, env: dict[str, np.ndarray], batch: int = B) -> np.ndarray:
    return compile_formula(text).evaluate(env, batch)


# --------------------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(
    "text, expected",
    [
        ("x0 + x1", lambda e: e["x0"] + e["x1"]),
        ("x0 - x1 * 2", lambda e: e["x0"] - e["x1"] * 2),
        ("x0 / x1", lambda e: e["x0"] / e["x1"]),
        ("i // j", lambda e: np.floor_divide(e["i"], np.where(e["j"] == 0, 1, e["j"]))),
        ("i % 3", lambda e: e["i"] % 3),
        ("-x0 + +x1", lambda e: -e["x0"] + e["x1"]),
        ("i & j | 8 ^ i", lambda e: (e["i"] & e["j"]) | (8 ^ e["i"])),
        ("i << 2 >> 1", lambda e: (e["i"] << 2) >> 1),
        ("~i", lambda e: ~e["i"]),
        ("x0 ** 2", lambda e: e["x0"] ** 2),
        ("(x0 + x1) * (x0 - x1)", lambda e: (e["x0"] + e["x1"]) * (e["x0"] - e["x1"])),
        ("1 / x0 < 1 / x1", lambda e: 1 / e["x0"] < 1 / e["x1"]),
    ],
)
def test_arithmetic_matches_numpy(text, expected, env):
    if text == "i // j":
        env = {**env, "j": np.where(env["j"] == 0, 1, env["j"])}
    np.testing.assert_allclose(ev(text, env), expected(env))


def test_integer_power_stays_integer(env):
    out = ev("i ** 2", env)
    assert out.dtype.kind == "i"
    np.testing.assert_array_equal(out, env["i"] ** 2)


def test_power_with_negative_int_exponent_gives_floats(env):
    out = ev("i ** -1", env)
    assert out.dtype.kind == "f"
    np.testing.assert_allclose(out, 1.0 / env["i"])
    out = ev("2 ** (j - 2)", env)
    assert out.dtype.kind == "f"
    np.testing.assert_allclose(out, 2.0 ** (env["j"] - 2))


def test_division_by_zero_gives_inf_without_raising(env, recwarn):
    z = {"x": np.array([1.0, -1.0, 0.0, 2.0]), "y": np.zeros(4)}
    out = ev("x / y", z)
    assert out[0] == np.inf and out[1] == -np.inf and np.isnan(out[2])
    assert ev("1 / 0", z).tolist() == [np.inf] * 4
    np.testing.assert_array_equal(ev("log(y)", z), np.full(4, -np.inf))
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_literal_keeps_array_dtype():
    out = ev("x * 2", {"x": np.ones(3, dtype=np.float32)}, batch=3)
    assert out.dtype == np.float32


# --------------------------------------------------------------------------- logic


def test_chained_comparison(env):
    out = ev("0 <= j < 3", env)
    np.testing.assert_array_equal(out, (0 <= env["j"]) & (env["j"] < 3))
    out = ev("x1 == 2 != x0", env)
    np.testing.assert_array_equal(out, (env["x1"] == 2) & (env["x0"] != 2))


def test_chained_comparison_evaluates_each_operand_once():
    calls = []

    class Env(dict):
        def __getitem__(self, key):
            calls.append(key)
            return super().__getitem__(key)

    e = Env(a=np.arange(3), b=np.ones(3), c=np.full(3, 2))
    np.testing.assert_array_equal(ev("a < b < c", e, 3), [True, False, False])
    assert sorted(calls) == ["a", "b", "c"]


def test_and_or_not_elementwise(env):
    np.testing.assert_array_equal(ev("b and x0 > 0", env), env["b"] & (env["x0"] > 0))
    np.testing.assert_array_equal(ev("b or x1 < 0", env), env["b"] | (env["x1"] < 0))
    np.testing.assert_array_equal(ev("not b", env), ~env["b"])
    np.testing.assert_array_equal(
        ev("b and i > 1 and j > 0", env), env["b"] & (env["i"] > 1) & (env["j"] > 0)
    )


def test_ternary(env):
    out = ev("x0 if b else x1", env)
    np.testing.assert_array_equal(out, np.where(env["b"], env["x0"], env["x1"]))
    out = ev("1 if x0 > 0 else -1", env)
    np.testing.assert_array_equal(out, np.where(env["x0"] > 0, 1, -1))


# --------------------------------------------------------------------------- indexing


@pytest.mark.parametrize(
    "text, index",
    [
        ("v[0]", (slice(None), 0)),
        ("v[-1]", (slice(None), -1)),
        ("v[1:3]", (slice(None), slice(1, 3))),
        ("v[::2]", (slice(None), slice(None, None, 2))),
        ("v[-3:-1]", (slice(None), slice(-3, -1))),
        ("v[::-1]", (slice(None), slice(None, None, -1))),
        ("m[0, 1]", (slice(None), 0, 1)),
        ("m[:, 0]", (slice(None), slice(None), 0)),
        ("m[-1, -2:]", (slice(None), -1, slice(-2, None))),
    ],
)
def test_indexing_is_per_example(text, index, env):
    name = text[0]
    np.testing.assert_array_equal(ev(text, env), env[name][index])


def test_subscript_of_expression(env):
    np.testing.assert_allclose(ev("(v + v)[2]", env), 2 * env["v"][:, 2])


def test_index_out_of_range_is_evaluation_error(env):
    with pytest.raises(EvaluationError):
        ev("v[7]", env)
    with pytest.raises(EvaluationError):
        ev("x0[0]", env)


# --------------------------------------------------------------------------- functions


@pytest.mark.parametrize(
    "text, expected",
    [
        ("abs(x0)", lambda e: np.abs(e["x0"])),
        ("exp(x0)", lambda e: np.exp(e["x0"])),
        ("log(abs(x0))", lambda e: np.log(np.abs(e["x0"]))),
        ("sqrt(abs(x1))", lambda e: np.sqrt(np.abs(e["x1"]))),
        ("floor(x0)", lambda e: np.floor(e["x0"])),
        ("round(x0)", lambda e: np.round(e["x0"])),
        ("round(v, 2)", lambda e: np.round(e["v"], 2)),
        ("sign(x1)", lambda e: np.sign(e["x1"])),
        ("where(b, x0, x1)", lambda e: np.where(e["b"], e["x0"], e["x1"])),
        ("clip(x0, -1, 1)", lambda e: np.clip(e["x0"], -1, 1)),
        ("clip(v, x0, x1 + 5)", lambda e: np.clip(e["v"], e["x0"][:, None], e["x1"][:, None] + 5)),
        ("sum(v)", lambda e: e["v"].sum(axis=1)),
        ("sum(m)", lambda e: e["m"].sum(axis=(1, 2))),
        ("sum(x0)", lambda e: e["x0"]),
        ("mean(m)", lambda e: e["m"].mean(axis=(1, 2))),
        ("mean(x0)", lambda e: e["x0"]),
        ("any(v > 1)", lambda e: (e["v"] > 1).any(axis=1)),
        ("all(v > -1)", lambda e: (e["v"] > -1).all(axis=1)),
        ("any(x0)", lambda e: e["x0"].astype(bool)),
        ("all(i - 1)", lambda e: (e["i"] - 1).astype(bool)),
        ("min(v)", lambda e: e["v"].min(axis=1)),
        ("max(m)", lambda e: e["m"].max(axis=(1, 2))),
        ("min(x0)", lambda e: e["x0"]),
        ("min(x0, x1)", lambda e: np.minimum(e["x0"], e["x1"])),
        ("max(x0, x1, 0)", lambda e: np.maximum(np.maximum(e["x0"], e["x1"]), 0)),
        ("max(v, x0)", lambda e: np.maximum(e["v"], e["x0"][:, None])),
    ],
)
def test_functions(text, expected, env):
    out = ev(text, env)
    want = expected(env)
    assert out.shape == want.shape
    np.testing.assert_allclose(out, want)


def test_every_function_is_covered():
    assert FUNCTIONS == {
        "abs", "min", "max", "sum", "mean", "where", "clip",
        "exp", "log", "sqrt", "floor", "round", "sign", "any", "all", "pair",
    }  # fmt: skip


# --------------------------------------------------------------------------- pair


def test_pair_of_scalars_is_a_two_vector(env):
    out = ev("pair(x0, i)", env)
    assert out.shape == (B, 2)
    np.testing.assert_array_equal(out, np.stack([env["x0"], env["i"]], axis=1))
    assert out.dtype == np.float64  # promoted to a common dtype
    assert ev("pair(b, b)", env).dtype == bool
    assert ev("pair(i, j)", env).dtype.kind == "i"


def test_pair_flattens_vectors_per_example(env):
    out = ev("pair(m, x1)", env)
    assert out.shape == (B, 7)
    np.testing.assert_array_equal(out[:, :6], env["m"].reshape(B, 6))
    np.testing.assert_array_equal(out[:, 6], env["x1"])
    np.testing.assert_array_equal(ev("pair(v, iv)", env),
                                  np.concatenate([env["v"], env["iv"]], axis=1))


def test_pair_halves_read_back_by_index(env):
    np.testing.assert_array_equal(ev("pair(i, j)[0]", env), env["i"])
    np.testing.assert_array_equal(ev("pair(i, j)[1]", env), env["j"])
    np.testing.assert_array_equal(ev("pair(v, x0)[0:5]", env), env["v"])
    np.testing.assert_array_equal(ev("pair(x0, v)[1:6]", env), env["v"])
    nested = ev("pair(pair(i, j), x0)", env)
    assert nested.shape == (B, 3)


def test_pair_constants_count_as_per_example_scalars(env):
    np.testing.assert_array_equal(ev("pair(i, 0)", env), np.stack([env["i"], np.zeros(B)], 1))
    out = ev("pair(1, 2)", {}, batch=3)
    assert out.shape == (3, 2) and (out == [1, 2]).all()
    assert out.flags.writeable and out.flags.c_contiguous
    np.testing.assert_array_equal(ev("pair(1, 2)[1] + i", env), env["i"] + 2)


def test_pair_equal_exactly_when_both_halves_equal():
    env = {"a": np.array([0, 0, 1, 1, 0]), "b": np.array([0, 1, 0, 1, 0])}
    out = ev("pair(a, b)", env, batch=5)
    _, labels = np.unique(out, axis=0, return_inverse=True)
    assert len(set(labels.ravel().tolist())) == 4 and labels.ravel()[0] == labels.ravel()[4]


@pytest.mark.parametrize("text", ["pair(x0)", "pair(x0, x1, i)"])
def test_pair_takes_two_arguments(text):
    with pytest.raises(FormulaError, match="exactly 2 arguments"):
        compile_formula(text)


def test_any_all_return_bool(env):
    assert ev("any(x0)", env).dtype == bool
    assert ev("all(v)", env).dtype == bool


# --------------------------------------------------------------------------- broadcasting


def test_scalar_per_example_broadcasts_against_vector(env):
    np.testing.assert_allclose(ev("v + x0", env), env["v"] + env["x0"][:, None])
    np.testing.assert_allclose(ev("x0 * m", env), env["x0"][:, None, None] * env["m"])
    np.testing.assert_array_equal(ev("v > x1", env), env["v"] > env["x1"][:, None])
    np.testing.assert_allclose(
        ev("where(b, v, x0)", env), np.where(env["b"][:, None], env["v"], env["x0"][:, None])
    )
    np.testing.assert_allclose(ev("x0 if b else v", env).shape, (B, 5))


@pytest.mark.parametrize("text, value", [("3", 3), ("2.5", 2.5), ("True", True), ("1 + 2 * 3", 7)])
def test_constant_formula_returns_batch_shape(text, value):
    out = ev(text, {}, batch=6)
    assert out.shape == (6,)
    assert (out == value).all()
    assert out.flags.writeable and out.flags.c_contiguous


def test_result_is_writeable_and_does_not_alias_input(env):
    out = ev("x0", env)
    out[:] = 99
    assert env["x0"][0] == 1.0
    out = ev("v[0]", env)
    assert out.flags.c_contiguous and out.flags.writeable
    out[:] = 99
    assert not (env["v"][:, 0] == 99).any()


def test_wrong_batch_is_evaluation_error(env):
    with pytest.raises(EvaluationError):
        ev("x0 + 1", env, batch=3)


def test_bitwise_on_floats_is_evaluation_error(env):
    with pytest.raises(EvaluationError):
        ev("x0 & x1", env)


def test_unknown_name_is_key_error(env):
    with pytest.raises(KeyError):
        ev("nope + 1", env)


# --------------------------------------------------------------------------- names and rename


def test_names_exclude_function_names():
    f = compile_formula("where(m2 == 0, m3, m1 + m2) + max(v) + sum")
    assert f.names == {"m1", "m2", "m3", "v", "sum"}
    assert compile_formula("3").names == frozenset()


def test_rename_swaps_simultaneously_and_recompiles():
    f = compile_formula("x0 - x1 * 2 + sum(x1)")
    g = f.rename({"x0": "x1", "x1": "x0"})
    assert isinstance(g, Formula)
    assert g.text == "x1 - x0 * 2 + sum(x0)"
    assert g.names == {"x0", "x1"}
    e = {"x0": np.array([1.0, 2.0]), "x1": np.array([10.0, 20.0])}
    np.testing.assert_allclose(g.evaluate(e, 2), [10 - 2 + 1, 20 - 4 + 2])


def test_rename_does_not_touch_called_functions():
    f = compile_formula("max(max, x)")
    g = f.rename({"max": "a", "x": "b"})
    assert g.text == "max(a, b)"
    assert g.names == {"a", "b"}


def test_rename_unrelated_returns_same_formula():
    f = compile_formula("x  +  1")
    assert f.rename({"y": "z"}) is f


def test_rename_rejects_bad_targets():
    f = compile_formula("x + 1")
    for bad in ["__import__('os')", "a b", "lambda", "_hidden"]:
        with pytest.raises(FormulaError):
            f.rename({"x": bad})


def test_formula_pickles_by_recompiling(env):
    f = compile_formula("x0 + sum(v)")
    g = pickle.loads(pickle.dumps(f))
    assert g == f
    np.testing.assert_allclose(g.evaluate(env, B), f.evaluate(env, B))


def test_leading_whitespace_and_multiline():
    f = compile_formula("  (x +\n   1)")
    assert f.evaluate({"x": np.arange(2)}, 2).tolist() == [1, 2]
    with pytest.raises(FormulaError) as info:
        compile_formula("  x + y.z")
    assert info.value.col == 6


# --------------------------------------------------------------------------- rejection


FORBIDDEN = [
    "__import__('os')",
    "__import__('os').system('ls')",
    "x.__class__",
    "(lambda: 1)()",
    "lambda: 1",
    "[i for i in x]",
    "(i for i in x)",
    "{i: 1 for i in x}",
    "open('/etc/passwd')",
    "eval('1')",
    "exec('x = 1')",
    "getattr(x, 'a')",
    "x.real",
    "().__class__.__bases__",
    "{'a': 1}",
    "{1, 2}",
    "[1, 2]",
    "(1, 2)",
    '"s"',
    "b'bytes'",
    'f"{x}"',
    "None",
    "...",
    "1j",
    "(y := 1)",
    "x in y",
    "x not in y",
    "x is y",
    "x is not y",
    "sum(x, start=1)",
    "sum(**x)",
    "max(*x)",
    "_x",
    "__builtins__",
    "x + __builtins__",
    "x @ y",
    "x[y]",
    "x[0.5]",
    "x[True]",
    "x[1:y]",
    "x[::0]",
    "x[(0, 1), 2]",
    "abs()",
    "abs(x, y)",
    "where(x, y)",
    "clip(x)",
    "round(x, y)",
    "x[0](1)",
    "sum.__call__(x)",
    "x +",
    "x ++",
    "",
    "   ",
    "x\0",
    "2 ** 99999999999999999999999",
    "(" * 500 + "x" + ")" * 500,
    "-" * 5000 + "x",
    "abs(" * 250 + "x" + ")" * 250,
    "x" + " + x" * 3000,
    "x" * 10_001,
    "x if y",
    "await x",
    "yield x",
]


@pytest.mark.parametrize("text", FORBIDDEN, ids=lambda t: repr(t[:30]))
def test_forbidden_is_rejected_with_column(text):
    with pytest.raises(FormulaError) as info:
        compile_formula(text)
    assert info.value.col is not None
    assert 0 <= info.value.col <= len(text)
    assert info.value.message


@pytest.mark.parametrize(
    "text, col, words",
    [
        ("x + y.z", 4, "attribute access (`.z`)"),
        ("x.__class__", 0, "attribute access (`.__class__`)"),
        ("x + __import__('os')", 4, "`__import__`"),
        ("x + _y", 4, "`_y`"),
        ("sum(x, start=1)", 7, "keyword"),
        ("max(*x)", 4, "starred"),
        ("x[y]", 2, "integer constants"),
        ("1 + abs()", 4, "exactly 1 argument"),
        ("x +", 3, "syntax error"),
        ("x + 'a'", 4, "strings"),
        ("é + ab.c", 4, "attribute"),
        ("(x +\n y.q)", 6, "attribute"),
    ],
)
def test_error_columns(text, col, words):
    with pytest.raises(FormulaError) as info:
        compile_formula(text)
    assert info.value.col == col
    assert words in info.value.message


def test_function_names_as_variables_are_allowed():
    f = compile_formula("sum + max * 2")
    out = f.evaluate({"sum": np.array([1, 2]), "max": np.array([3, 4])}, 2)
    assert out.tolist() == [7, 10]


def test_moderate_nesting_is_fine():
    text = "(" * 50 + "x + 1" + ")" * 50
    assert compile_formula(text).evaluate({"x": np.zeros(2)}, 2).tolist() == [1, 1]
