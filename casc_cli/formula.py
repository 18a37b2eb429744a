"""Safe, vectorised formulas.

A formula such as ``x0 + x1``, ``1/x0 < 1/x1``, ``x[0]`` or
``where(m2 == 0, m3, m1 + m2)`` is parsed once with :mod:`ast`, checked
against a strict whitelist and compiled into a tree of small numpy closures.
Nothing is ever passed to ``eval``/``exec``: a formula can only read the
variables it is given, apply numpy operators and call the functions in
:data:`FUNCTIONS`. Attribute access, imports, arbitrary calls, strings,
containers and the like are rejected at compile time with a
:class:`~casc_cli.errors.FormulaError` that carries the 0-based column of the
offending part of the text.

Values are batched: axis 0 of every array in the environment is the batch
axis. A scalar per example has shape ``(batch,)``, a vector per example
``(batch, *shape)``. Indices and reductions act on the per-example axes only.
"""

from __future__ import annotations

import ast
import functools
import keyword
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from casc_cli.errors import EvaluationError, FormulaError

__all__ = ["FUNCTIONS", "MAX_DEPTH", "MAX_LENGTH", "Formula", "compile_formula"]

MAX_LENGTH = 10_000
"""Longest formula text accepted, in characters."""

MAX_DEPTH = 200
"""Deepest syntax tree accepted (guards the compiler's and numpy's recursion)."""

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

Value = Any  # a numpy array, a numpy scalar or a Python scalar (literals stay weakly typed)
_Fn = Callable[[Mapping[str, np.ndarray]], Value]


# --------------------------------------------------------------------------- helpers


def _align(*values: Value) -> tuple[Value, ...]:
    """Make per-example values broadcast against each other.

    numpy aligns trailing axes, but our leading axis is the batch axis: a
    ``(batch,)`` array combined with a ``(batch, k)`` array must become
    ``(batch, 1)``. Every operand with at least one axis but fewer axes than
    the largest one gets trailing singleton axes. Constants (ndim 0) are left
    alone; they broadcast naturally.
    """
    ndims = [np.ndim(v) for v in values]
    top = max(ndims)
    return tuple(
        np.reshape(v, np.shape(v) + (1,) * (top - nd)) if 1 <= nd < top else v
        for v, nd in zip(values, ndims)
    )


def _example_axes(value: Value) -> tuple[int, ...]:
    """The per-example axes of a batched value (every axis but the first)."""
    return tuple(range(1, np.ndim(value)))


def _is_int(value: Value) -> bool:
    return np.asarray(value).dtype.kind in "iu"


def _power(a: Value, b: Value) -> Value:
    """``a ** b``: integer power when both are integers and ``b >= 0``, else float power."""
    a, b = _align(a, b)
    if _is_int(a) and _is_int(b) and not np.any(np.asarray(b) < 0):
        return np.power(a, b)
    return np.float_power(a, b)


def _binary(ufunc: Callable[[Value, Value], Value]) -> Callable[[Value, Value], Value]:
    def apply(a: Value, b: Value) -> Value:
        return ufunc(*_align(a, b))

    return apply


def _integer_division(ufunc: Callable[[Value, Value], Value], symbol: str
                      ) -> Callable[[Value, Value], Value]:
    """``//`` and ``%``: numpy silently gives 0 for an integer division by zero; refuse it
    (a float division by zero gives inf or NaN, which the engine reports)."""

    def apply(a: Value, b: Value) -> Value:
        a, b = _align(a, b)
        if _is_int(a) and _is_int(b) and np.any(np.asarray(b) == 0):
            error = EvaluationError(f"integer division by zero (`{symbol}` by 0)")
            zeros = np.argwhere(np.asarray(b) == 0)
            error.index = int(zeros[0][0]) if np.ndim(b) else 0  # the example, for the caller
            raise error
        return ufunc(a, b)

    return apply


def _fold(ufunc: Callable[[Value, Value], Value], values: list[Value]) -> Value:
    result = values[0]
    for value in values[1:]:
        result = ufunc(*_align(result, value))
    return result


def _reducer(reduce: Callable[..., Value], as_bool: bool = False) -> Callable[[Value], Value]:
    """Reduce over the per-example axes; a scalar per example is returned unchanged."""

    def apply(value: Value) -> Value:
        if np.ndim(value) <= 1:
            return np.asarray(value).astype(bool) if as_bool else value
        return reduce(value, axis=_example_axes(value))

    return apply


def _min_max(
    reduce: Callable[..., Value], ufunc: Callable[[Value, Value], Value]
) -> Callable[..., Value]:
    """``min``/``max``: one argument reduces per example, several fold element-wise."""
    single = _reducer(reduce)

    def apply(*values: Value) -> Value:
        if len(values) == 1:
            return single(values[0])
        return _fold(ufunc, list(values))

    return apply


def _where(cond: Value, a: Value, b: Value) -> Value:
    return np.where(*_align(cond, a, b))


def _clip(x: Value, lo: Value, hi: Value) -> Value:
    x, lo, hi = _align(x, lo, hi)
    return np.minimum(np.maximum(x, lo), hi)


def _round(x: Value, decimals: int = 0) -> Value:
    return np.round(x, decimals)


def _pair(a: Value, b: Value) -> Value:
    """``pair(a, b)``: both values flattened per example and concatenated into one vector.

    Two scalars per example give shape ``(batch, 2)``; a ``k``-vector and an
    ``l``-vector give ``(batch, k + l)``. A constant counts as a scalar per
    example. The halves are promoted to a common dtype (bool < int < float).
    Two data have equal pairs exactly when they agree on both values: the value
    of a joined interpretation node (causal scrubbing appendix, section 8).
    """
    a, b = np.asarray(a), np.asarray(b)
    batch = max(v.shape[0] if v.ndim else 1 for v in (a, b))

    def flat(v: np.ndarray) -> np.ndarray:
        v = v.reshape(1, 1) if v.ndim == 0 else v.reshape(v.shape[0], -1)
        return np.broadcast_to(v, (batch, v.shape[1]))

    return np.concatenate([flat(a), flat(b)], axis=1)


# name -> (fewest arguments, most arguments or None for unbounded, implementation)
_FUNCTION_TABLE: dict[str, tuple[int, int | None, Callable[..., Value]]] = {
    "abs": (1, 1, np.abs),
    "min": (1, None, _min_max(np.min, np.minimum)),
    "max": (1, None, _min_max(np.max, np.maximum)),
    "sum": (1, 1, _reducer(np.sum)),
    "mean": (1, 1, _reducer(np.mean)),
    "where": (3, 3, _where),
    "clip": (3, 3, _clip),
    "exp": (1, 1, np.exp),
    "log": (1, 1, np.log),
    "sqrt": (1, 1, np.sqrt),
    "floor": (1, 1, np.floor),
    "round": (1, 2, _round),
    "sign": (1, 1, np.sign),
    "any": (1, 1, _reducer(np.any, as_bool=True)),
    "all": (1, 1, _reducer(np.all, as_bool=True)),
    "pair": (2, 2, _pair),
}

FUNCTIONS: frozenset[str] = frozenset(_FUNCTION_TABLE)
"""The names a formula may call."""

_BINARY_OPS: dict[type[ast.operator], Callable[[Value, Value], Value]] = {
    ast.Add: _binary(np.add),
    ast.Sub: _binary(np.subtract),
    ast.Mult: _binary(np.multiply),
    ast.Div: _binary(np.true_divide),
    ast.FloorDiv: _integer_division(np.floor_divide, "//"),
    ast.Mod: _integer_division(np.remainder, "%"),
    ast.Pow: _power,
    ast.BitAnd: _binary(np.bitwise_and),
    ast.BitOr: _binary(np.bitwise_or),
    ast.BitXor: _binary(np.bitwise_xor),
    ast.LShift: _binary(np.left_shift),
    ast.RShift: _binary(np.right_shift),
}

_UNARY_OPS: dict[type[ast.unaryop], Callable[[Value], Value]] = {
    ast.USub: np.negative,
    ast.UAdd: np.positive,
    ast.Invert: np.invert,
    ast.Not: np.logical_not,
}

_COMPARE_OPS: dict[type[ast.cmpop], Callable[[Value, Value], Value]] = {
    ast.Lt: _binary(np.less),
    ast.LtE: _binary(np.less_equal),
    ast.Gt: _binary(np.greater),
    ast.GtE: _binary(np.greater_equal),
    ast.Eq: _binary(np.equal),
    ast.NotEq: _binary(np.not_equal),
}

_FORBIDDEN_COMPARE = {
    ast.Is: "`is`",
    ast.IsNot: "`is not`",
    ast.In: "`in`",
    ast.NotIn: "`not in`",
}

_FORBIDDEN_NODES: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access is",
    ast.Lambda: "lambda functions are",
    ast.ListComp: "list comprehensions are",
    ast.SetComp: "set comprehensions are",
    ast.DictComp: "dict comprehensions are",
    ast.GeneratorExp: "generator expressions are",
    ast.List: "lists (`[...]`) are",
    ast.Tuple: "tuples are",
    ast.Set: "sets (`{...}`) are",
    ast.Dict: "dicts (`{...: ...}`) are",
    ast.Starred: "starred expressions (`*...`) are",
    ast.NamedExpr: "assignment expressions (`:=`) are",
    ast.Await: "`await` is",
    ast.Yield: "`yield` is",
    ast.YieldFrom: "`yield from` is",
    ast.JoinedStr: "f-strings are",
    ast.FormattedValue: "f-strings are",
    ast.Slice: "slices outside of an index are",
}


# --------------------------------------------------------------------------- positions


class _Positions:
    """Turn ast (line, UTF-8 byte column) positions into 0-based offsets in the text."""

    def __init__(self, text: str, shift: int, parsed: str):
        self.text = text
        self.shift = shift  # characters stripped from the front before parsing
        # Python ends lines at \r\n, \r or \n (and nothing else, unlike str.splitlines)
        pieces = re.split(r"(\r\n|\r|\n)", parsed)
        self.lines: list[str] = pieces[::2]
        self.starts: list[int] = []
        start = 0
        for line, end in zip(self.lines, pieces[1::2] + [""]):
            self.starts.append(start)
            start += len(line) + len(end)

    def chars(self, lineno: int | None, char_col: int) -> int:
        """Offset of a 1-based line and 0-based character column."""
        line = (lineno or 1) - 1
        line = min(max(line, 0), len(self.starts) - 1)
        return min(self.shift + self.starts[line] + max(char_col, 0), len(self.text))

    def of(self, node: ast.AST) -> int:
        """Offset of an ast node (whose ``col_offset`` counts UTF-8 bytes)."""
        lineno = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0)
        idx = min(max(lineno - 1, 0), len(self.lines) - 1)
        char_col = len(self.lines[idx].encode("utf-8")[:col].decode("utf-8", errors="ignore"))
        return self.chars(lineno, char_col)


# --------------------------------------------------------------------------- compiler


def _source(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except Exception:  # pragma: no cover - unparse of a parsed tree should not fail
        return type(node).__name__


class _Compiler:
    """Walks a checked expression tree once and returns a closure per node."""

    def __init__(self, positions: _Positions):
        self.positions = positions
        self.names: set[str] = set()

    def error(self, message: str, node: ast.AST) -> FormulaError:
        return FormulaError(message, self.positions.of(node))

    def compile(self, node: ast.AST) -> _Fn:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            if isinstance(node, ast.Attribute):
                what = f"attribute access (`.{node.attr}`) is"
            else:
                what = _FORBIDDEN_NODES.get(
                    type(node), f"`{_source(node)}` ({type(node).__name__}) is"
                )
            raise self.error(f"{what} not allowed in formulas", node)
        return method(node)

    # -- leaves

    def visit_Constant(self, node: ast.Constant) -> _Fn:
        value = node.value
        if not isinstance(value, (bool, int, float)):
            what = {str: "strings", bytes: "bytes", complex: "complex numbers"}.get(
                type(value), f"`{value!r}`"
            )
            raise self.error(
                f"{what} cannot be used in formulas; only numbers and True/False", node
            )
        if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
            raise self.error(f"the integer {value} does not fit in 64 bits", node)
        return lambda env: value

    def visit_Name(self, node: ast.Name) -> _Fn:
        name = node.id
        if name.startswith("_"):
            raise self.error(
                f"names starting with `_` (`{name}`) are not allowed in formulas", node
            )
        self.names.add(name)
        return lambda env: np.asarray(env[name])

    # -- operators

    def visit_BinOp(self, node: ast.BinOp) -> _Fn:
        op = _BINARY_OPS.get(type(node.op))
        if op is None:
            if isinstance(node.op, ast.MatMult):
                what = "matrix multiplication (`@`)"
            else:  # pragma: no cover - every other binary operator is in the table
                what = f"the operator {type(node.op).__name__}"
            raise self.error(f"{what} is not allowed in formulas", node)
        left, right = self.compile(node.left), self.compile(node.right)
        return lambda env: op(left(env), right(env))

    def visit_UnaryOp(self, node: ast.UnaryOp) -> _Fn:
        op = _UNARY_OPS[type(node.op)]
        operand = self.compile(node.operand)
        return lambda env: op(operand(env))

    def visit_BoolOp(self, node: ast.BoolOp) -> _Fn:
        ufunc = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        operands = [self.compile(v) for v in node.values]
        return lambda env: _fold(ufunc, [f(env) for f in operands])

    def visit_Compare(self, node: ast.Compare) -> _Fn:
        ops = []
        for op in node.ops:
            forbidden = _FORBIDDEN_COMPARE.get(type(op))
            if forbidden is not None:
                raise self.error(
                    f"{forbidden} comparisons are not allowed in formulas; "
                    "use ==, !=, <, <=, > or >=",
                    node,
                )
            ops.append(_COMPARE_OPS[type(op)])
        operands = [self.compile(node.left)] + [self.compile(c) for c in node.comparators]

        def compare(env: Mapping[str, np.ndarray]) -> Value:
            values = [f(env) for f in operands]
            results = [op(a, b) for op, a, b in zip(ops, values, values[1:])]
            return _fold(np.logical_and, results)

        return compare

    def visit_IfExp(self, node: ast.IfExp) -> _Fn:
        cond, body, orelse = (self.compile(n) for n in (node.test, node.body, node.orelse))
        return lambda env: _where(cond(env), body(env), orelse(env))

    # -- indexing

    def _int_constant(self, node: ast.AST | None, what: str = "indices") -> int | None:
        """An integer literal, possibly negated; ``None`` when ``node`` is ``None``."""
        if node is None:
            return None
        sign = 1
        inner = node
        if isinstance(inner, ast.UnaryOp) and isinstance(inner.op, (ast.USub, ast.UAdd)):
            sign = -1 if isinstance(inner.op, ast.USub) else 1
            inner = inner.operand
        if (
            isinstance(inner, ast.Constant)
            and isinstance(inner.value, int)
            and not isinstance(inner.value, bool)
        ):
            return sign * inner.value
        if what == "indices":
            what = "indices must be integer constants such as `x[0]`, `x[-1]` or `x[1:3]`"
        raise self.error(f"{what}; `{_source(node)}` is not one", node)

    def _index_part(self, node: ast.AST) -> int | slice:
        if isinstance(node, ast.Slice):
            step = self._int_constant(node.step)
            if step == 0:
                raise self.error("a slice step cannot be zero", node.step or node)
            return slice(self._int_constant(node.lower), self._int_constant(node.upper), step)
        return self._int_constant(node)

    def visit_Subscript(self, node: ast.Subscript) -> _Fn:
        value = self.compile(node.value)
        index = node.slice
        parts = index.elts if isinstance(index, ast.Tuple) else [index]
        key = (slice(None),) + tuple(self._index_part(p) for p in parts)
        source = _source(node)

        def subscript(env: Mapping[str, np.ndarray]) -> Value:
            array = np.asarray(value(env))
            try:
                return array[key]
            except IndexError as exc:
                raise EvaluationError(
                    f"`{source}`: cannot index a value of per-example shape "
                    f"{array.shape[1:]}: {exc}"
                ) from None

        return subscript

    # -- calls

    def visit_Call(self, node: ast.Call) -> _Fn:
        allowed = ", ".join(sorted(FUNCTIONS))
        if not isinstance(node.func, ast.Name):
            raise self.error(
                f"only the functions {allowed} can be called; "
                f"calling `{_source(node.func)}` is not allowed",
                node.func,
            )
        name = node.func.id
        if name not in FUNCTIONS:
            raise self.error(
                f"`{name}` is not a function formulas may call; allowed functions are {allowed}",
                node.func,
            )
        if node.keywords:
            kw = node.keywords[0]
            if kw.arg is None:
                label = "`**` unpacking is"
            else:
                label = f"keyword arguments (`{kw.arg}=`) are"
            raise self.error(
                f"{label} not allowed in formulas; `{name}` takes positional arguments only",
                kw,
            )
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.error(
                    f"starred arguments (`{_source(arg)}`) are not allowed in formulas", arg
                )
        low, high, impl = _FUNCTION_TABLE[name]
        count = len(node.args)
        if count < low or (high is not None and count > high):
            if high is None:
                expected = f"at least {low} argument{'s' if low != 1 else ''}"
            elif low == high:
                expected = f"exactly {low} argument{'s' if low != 1 else ''}"
            else:
                expected = f"{low} to {high} arguments"
            raise self.error(f"`{name}` takes {expected}, got {count}", node)
        if name == "round" and count == 2:
            decimals = self._int_constant(
                node.args[1], "the digits of `round(x, digits)` must be an integer constant"
            )
            arg = self.compile(node.args[0])
            return lambda env: _round(arg(env), decimals)
        args = [self.compile(a) for a in node.args]
        return lambda env: impl(*(f(env) for f in args))


def _depth(tree: ast.AST) -> int:
    """Depth of a syntax tree, computed without recursion."""
    deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _parse(text: str) -> tuple[ast.Expression, _Positions]:
    """Parse formula text (validated for type, size and depth) into an expression tree."""
    if not isinstance(text, str):
        raise FormulaError(f"a formula must be text, not {type(text).__name__}", 0)
    if not text.strip():
        raise FormulaError("the formula is empty", 0)
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"the formula is longer than {MAX_LENGTH} characters", MAX_LENGTH)
    if "\0" in text:
        raise FormulaError("the formula contains a null character", text.index("\0"))
    # ``ast.parse`` rejects leading indentation; columns are shifted back below.
    parsed = text.lstrip()
    positions = _Positions(text, len(text) - len(parsed), parsed)
    try:
        tree = ast.parse(parsed, mode="eval")
    except SyntaxError as exc:
        if exc.offset is None or exc.offset < 1:
            col = len(text.rstrip())  # no position: usually an unexpected end of the text
        else:
            col = positions.chars(exc.lineno, exc.offset - 1)
        raise FormulaError(f"syntax error: {exc.msg}", col) from None
    except (RecursionError, MemoryError):
        raise FormulaError("the formula is nested too deeply", 0) from None
    except ValueError as exc:
        raise FormulaError(f"the formula cannot be parsed: {exc}", 0) from None
    if _depth(tree) > MAX_DEPTH:
        raise FormulaError(
            f"the formula is nested too deeply (more than {MAX_DEPTH} levels; "
            "each operator in a chain like `a + b + c` adds a level)",
            0,
        )
    return tree, positions


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class Formula:
    """A compiled formula. Build one with :func:`compile_formula`."""

    text: str
    names: frozenset[str]
    _fn: _Fn = field(repr=False, compare=False)

    def evaluate(self, env: Mapping[str, np.ndarray], batch: int) -> np.ndarray:
        """Evaluate on a batch; the result always has leading axis ``batch``.

        Raises ``KeyError`` for a name missing from ``env`` and
        :class:`EvaluationError` when numpy rejects the operation (bad dtype
        for a bitwise operator, index out of range, mismatched shapes, ...).
        Non-finite results are returned as they are.
        """
        try:
            with np.errstate(all="ignore"):
                result = np.asarray(self._fn(env))
        except (TypeError, ValueError, IndexError, OverflowError, ZeroDivisionError) as exc:
            raise EvaluationError(f"formula `{self.text}` could not be evaluated: {exc}") from None
        if result.ndim == 0:
            return np.full(batch, result)
        if result.shape[0] == 1 != batch:  # a constant vector, e.g. ``pair(1, 2)``
            result = np.broadcast_to(result, (batch, *result.shape[1:]))
        if result.shape[0] != batch:
            raise EvaluationError(
                f"formula `{self.text}` produced {result.shape[0]} rows for a batch of {batch}"
            )
        owned = result.flags.owndata and result.flags.c_contiguous and result.flags.writeable
        if not owned or any(result is v for v in env.values()):
            result = np.array(result, order="C", copy=True)
        return result

    def rename(self, mapping: Mapping[str, str]) -> Formula:
        """Substitute variable names simultaneously (``{x0: x1, x1: x0}`` swaps).

        Function names in call position are never renamed. Returns ``self``
        when no variable of the formula is renamed; otherwise the text is
        rebuilt with :func:`ast.unparse` and compiled again.
        """
        changes = {old: new for old, new in mapping.items() if old in self.names and new != old}
        if not changes:
            return self
        for old, new in changes.items():
            if not isinstance(new, str) or not new.isidentifier() or keyword.iskeyword(new):
                raise FormulaError(f"cannot rename `{old}` to {new!r}: not a valid name", None)
        tree, _ = _parse(self.text)
        callees = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and id(node) not in callees and node.id in changes:
                node.id = changes[node.id]
        return compile_formula(ast.unparse(tree))

    def __reduce__(self) -> tuple[Any, ...]:
        # closures do not pickle; recompiling from the text is cheap and exact
        return (compile_formula, (self.text,))


def compile_formula(text: str) -> Formula:
    """Parse, check and compile ``text``; raises :class:`FormulaError` on any problem.

    Formulas are immutable, so each distinct text is compiled once per process
    (a permutation sweep compiles the same few formulas thousands of times).
    """
    if not isinstance(text, str):
        return _compile_uncached(text)
    return _compile_cached(text)


def _compile_uncached(text: str) -> Formula:
    tree, positions = _parse(text)
    compiler = _Compiler(positions)
    try:
        fn = compiler.compile(tree.body)
    except RecursionError:  # pragma: no cover - the depth limit keeps us well clear
        raise FormulaError("the formula is nested too deeply", 0) from None
    return Formula(text=text, names=frozenset(compiler.names), _fn=fn)


_compile_cached = functools.lru_cache(maxsize=1 << 16)(_compile_uncached)
