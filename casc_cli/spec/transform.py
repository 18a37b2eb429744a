"""Hypotheses made from other hypotheses: permutations of symbols."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Iterator, Sequence

from ..errors import UsageError
from ..formula import compile_formula
from .loader import LoadedHypothesis, SourceMap
from .models import HypothesisSpec, NodeSpec

MAX_PERMUTED_SYMBOLS = 10


class RenamedSourceMap(SourceMap):
    """Positions in the original file for a hypothesis whose node names were renamed."""

    def __init__(self, base: SourceMap, mapping: dict[str, str]):
        super().__init__(base.file, base.root)
        self._inverse = {new: old for old, new in mapping.items()}

    def _walk(self, loc):
        if len(loc) >= 2 and loc[0] == "nodes":
            loc = (loc[0], self._inverse.get(loc[1], loc[1]), *loc[2:])
        return super()._walk(loc)


@dataclass(frozen=True)
class Variant:
    """A hypothesis generated from a file, with a readable label."""

    label: str
    loaded: LoadedHypothesis


def rename_hypothesis(loaded: LoadedHypothesis, mapping: dict[str, str]) -> LoadedHypothesis:
    """Substitute names simultaneously in node names, formulas and claims."""
    spec = loaded.spec
    nodes: dict[str, NodeSpec] = {}
    for name, node in spec.nodes.items():
        value = compile_formula(node.value).rename(mapping).text
        claims = None if node.claims is None else mapping.get(node.claims, node.claims)
        nodes[mapping.get(name, name)] = node.model_copy(update={"value": value, "claims": claims})
    new_spec = HypothesisSpec.model_validate({**spec.model_dump(by_alias=True), "nodes": {
        k: v.model_dump(by_alias=True) for k, v in nodes.items()}})
    return replace(loaded, spec=new_spec, source=RenamedSourceMap(loaded.source, mapping))


def symbols_of(spec: HypothesisSpec) -> set[str]:
    """Every name a hypothesis mentions: node names, names read by formulas, claims."""
    names = set(spec.nodes)
    for node in spec.nodes.values():
        names |= compile_formula(node.value).names
        if node.claims:
            names.add(node.claims)
    return names


def permutations(loaded: LoadedHypothesis, symbols: Sequence[str]) -> Iterator[Variant]:
    """One hypothesis per ordering of ``symbols`` (the identity first), labelled by the order."""
    symbols = list(symbols)
    if len(set(symbols)) != len(symbols):
        raise UsageError(f"--permute names a symbol twice: {', '.join(symbols)}")
    if len(symbols) < 2:
        raise UsageError("--permute needs at least two symbols, e.g. --permute x0,x1,x2,x3")
    if len(symbols) > MAX_PERMUTED_SYMBOLS:
        raise UsageError(
            f"--permute over {len(symbols)} symbols makes {math.factorial(len(symbols))} "
            f"hypotheses; the limit is {MAX_PERMUTED_SYMBOLS} symbols"
        )
    known = symbols_of(loaded.spec)
    missing = [s for s in symbols if s not in known]
    if missing:
        raise UsageError(
            f"--permute: {', '.join(missing)} does not appear in {loaded.source.file} "
            f"(it mentions {', '.join(sorted(known))})"
        )
    for order in itertools.permutations(symbols):
        mapping = {old: new for old, new in zip(symbols, order) if old != new}
        yield Variant(" ".join(order), rename_hypothesis(loaded, mapping) if mapping else loaded)
