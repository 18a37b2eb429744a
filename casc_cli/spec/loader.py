"""Read YAML files safely and validate them, reporting errors at ``file:line:col``.

The document is composed once with PyYAML's safe loader; the node tree is
kept as a :class:`SourceMap` so that pydantic's error locations and later
semantic errors (dangling names, bad correspondences) point into the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import Location, SpecError
from .models import HypothesisSpec, TaskSpec

MAX_FILE_BYTES = int(os.environ.get("CASC_MAX_FILE_BYTES", 10 * 1024 * 1024))
MAX_YAML_NODES = int(os.environ.get("CASC_MAX_YAML_NODES", 1_000_000))
MAX_ERRORS_SHOWN = 5

Key = Union[str, int]


class SourceMap:
    """Positions of the values and keys of a composed YAML document."""

    def __init__(self, file: str, root: yaml.Node | None):
        self.file = file
        self.root = root

    def _walk(self, loc: tuple[Key, ...]) -> tuple[yaml.Node | None, yaml.Node | None]:
        """The deepest (value node, key node) reached by following ``loc``."""
        node, key_node = self.root, None
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                        node, key_node = v, k
                        break
                else:
                    continue  # not a key here (e.g. a pydantic union tag): stay put
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if 0 <= part < len(node.value):
                    node, key_node = node.value[part], None
            # scalars: nothing deeper
        return node, key_node

    def location(self, loc: tuple[Key, ...] = (), *, key: bool = False) -> Location:
        """Where the value at ``loc`` starts (or its key, with ``key=True``)."""
        node, key_node = self._walk(loc)
        target = key_node if key and key_node is not None else node
        if target is None:
            return Location(self.file)
        mark = target.start_mark
        return Location(self.file, mark.line + 1, mark.column + 1)

    def formula_location(self, loc: tuple[Key, ...], col: int | None) -> Location:
        """Where column ``col`` of the formula stored at ``loc`` is in the file."""
        node, _ = self._walk(loc)
        base = self.location(loc)
        if col is None or not isinstance(node, yaml.ScalarNode) or base.line is None:
            return base
        if node.style in ("|", ">"):  # block scalars: the text starts on the next line
            return base
        offset = 1 if node.style in ("'", '"') else 0
        return Location(base.file, base.line, (base.col or 1) + offset + col)


@dataclass(frozen=True)
class LoadedTask:
    spec: TaskSpec
    path: Path
    source: SourceMap


@dataclass(frozen=True)
class LoadedHypothesis:
    spec: HypothesisSpec
    path: Path
    source: SourceMap
    task: LoadedTask

    @property
    def model_name(self) -> str:
        """The model graph this hypothesis is about (the task's only one by default)."""
        return self.spec.model or next(iter(self.task.spec.models))


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # e.g. a name too long for the file system
        return False


def display_path(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # other drive on Windows
        return str(path)
    return str(Path(path).absolute()) if relative.startswith("..") else relative


def read_yaml(path: Path) -> tuple[Any, SourceMap]:
    """Read one YAML document with the safe loader, guarding size and alias bombs."""
    shown = display_path(path)
    if not _exists(path):
        raise SpecError("no such file", Location(shown))
    if path.is_dir():
        raise SpecError("is a folder, not a YAML file", Location(shown))
    if not path.is_file():
        raise SpecError("is not a regular file (a device, pipe or socket?)", Location(shown))
    with path.open("rb") as handle:
        raw = handle.read(MAX_FILE_BYTES + 1)  # never more, whatever the file claims its size is
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(
            f"file is over the limit of {MAX_FILE_BYTES} bytes "
            "(raise it with CASC_MAX_FILE_BYTES)",
            Location(shown),
        )
    if b"\x00" in raw:
        raise SpecError("this is a binary file, not YAML text", Location(shown))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"not UTF-8 text (byte {exc.start} cannot be decoded); save the file as UTF-8",
            Location(shown),
        ) from None
    return parse_yaml(text, shown)


def parse_yaml(text: str, shown: str) -> tuple[Any, SourceMap]:
    """Parse YAML text (``shown`` names it in errors) with the same guards as a file."""
    if not text.strip():
        raise SpecError("the file is empty", Location(shown, 1, 1))
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:  # a character YAML does not allow, found when reading
        raise SpecError(f"malformed YAML: {exc}", Location(shown)) from None
    try:
        root = loader.get_single_node()
        if root is None:
            raise SpecError("the file holds no YAML document", Location(shown, 1, 1))
        _check_node_tree(root, shown)
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark is not None and "stream end" in (exc.problem or ""):
            mark = exc.context_mark  # an unclosed bracket: point at where it opened
        where = Location(shown, mark.line + 1, mark.column + 1) if mark else Location(shown)
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "malformed YAML"
        raise SpecError(f"malformed YAML: {problem}", where) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"malformed YAML: {exc}", Location(shown)) from None
    except RecursionError:
        raise SpecError("the YAML document is nested too deeply", Location(shown)) from None
    finally:
        loader.dispose()
    return data, SourceMap(shown, root)


def _check_node_tree(root: yaml.Node, file: str) -> None:
    """Reject duplicate keys, and documents whose aliases expand past the node limit.

    Each distinct node is visited once; ``expanded`` holds the size of its
    subtree with aliases expanded, so an alias bomb is caught in linear time.
    """
    expanded: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if isinstance(node, yaml.ScalarNode):
            expanded[id(node)] = 1
            continue
        if isinstance(node, yaml.MappingNode):
            children = [c for kv in node.value for c in kv]
        else:
            children = list(node.value)
        if not children_done:
            if id(node) in expanded:
                continue
            if id(node) in on_path:
                raise SpecError("recursive YAML alias", _mark(file, node))
            on_path.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in expanded)
            continue
        on_path.discard(id(node))
        total = 1 + sum(expanded.get(id(c), 1) for c in children)
        if total > MAX_YAML_NODES:
            raise SpecError(
                f"the document expands to more than {MAX_YAML_NODES} YAML nodes "
                "(an alias bomb?); raise the limit with CASC_MAX_YAML_NODES",
                _mark(file, node),
            )
        expanded[id(node)] = total
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, yaml.Node] = {}
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        first = seen[key.value].start_mark.line + 1
                        raise SpecError(
                            f"duplicate key `{key.value}` (first given on line {first})",
                            _mark(file, key),
                        )
                    seen[key.value] = key


def _mark(file: str, node: yaml.Node) -> Location:
    return Location(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _allowed_keys(model: type[BaseModel], loc: tuple[Key, ...]) -> list[str] | None:
    """The keys the model accepts at the mapping holding ``loc[-1]``."""
    current: Any = model
    for part in loc[:-1]:
        current = _step_type(current, part)
        if current is None:
            return None
    current = _unwrap_model(current)
    if current is None:
        return None
    return [f.alias or name for name, f in current.model_fields.items()]


def _unwrap_model(tp: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in get_args(tp):
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


def _step_type(tp: Any, part: Key) -> Any:
    model = _unwrap_model(tp) if get_origin(tp) not in (dict, list) else None
    if model is not None:
        for name, field in model.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
        return None
    origin, args = get_origin(tp), get_args(tp)
    if origin is dict:
        return args[1]
    if origin is list:
        return args[0]
    if origin is Union:
        for arg in args:
            step = _step_type(arg, part)
            if step is not None:
                return step
    return None


def _describe(error: dict[str, Any], allowed: list[str] | None) -> str:
    loc = error["loc"]
    field = ".".join(str(p) for p in loc if not _is_union_tag(p))
    kind = error["type"]
    if kind == "extra_forbidden":
        hint = f" (allowed here: {', '.join(allowed)})" if allowed else ""
        return f"unknown key `{loc[-1]}`{hint}"
    if kind == "missing":
        return f"missing required key `{loc[-1]}`"
    if "[key]" in loc:
        message = error["msg"].removeprefix("Value error, ").replace("this name", "the name")
        return f"`{field}`: {message}"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return f"`{field}`: {message}" if field else message


def _is_union_tag(part: Key) -> bool:
    return isinstance(part, str) and ("[" in part or part in ("int", "float", "str", "bool"))


def validate(model: type[BaseModel], data: Any, source: SourceMap) -> Any:
    """Validate ``data`` against ``model``; raise one SpecError listing what is wrong."""
    if not isinstance(data, dict):
        raise SpecError(
            f"expected a mapping with the keys of a {model.__name__.replace('Spec', '').lower()} "
            f"file, found {type(data).__name__}",
            source.location(),
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = _dedupe(exc.errors(include_url=False))
        lines = []
        first_location = None
        for error in errors[:MAX_ERRORS_SHOWN]:
            loc = tuple(p for p in error["loc"] if not _is_union_tag(p))
            extra = error["type"] == "extra_forbidden" or "[key]" in error["loc"]
            where = source.location(loc, key=extra)
            if error["type"] == "missing":
                where = source.location(loc[:-1])
            first_location = first_location or where
            lines.append((where, _describe(error, _allowed_keys(model, loc) if extra else None)))
        message = lines[0][1]
        for where, text in lines[1:]:
            message += f"\n{where}: {text}"
        if len(errors) > MAX_ERRORS_SHOWN:
            message += f"\n(and {len(errors) - MAX_ERRORS_SHOWN} more problems)"
        raise SpecError(message, first_location) from None


def _dedupe(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One error per location: a union reports each member's failure, keep the first."""
    seen: set[tuple[Key, ...]] = set()
    kept = []
    for error in errors:
        loc = tuple(p for p in error["loc"] if not _is_union_tag(p))
        if loc in seen:
            continue
        seen.add(loc)
        kept.append(error)
    return kept


def file_kind(data: Any) -> str | None:
    """``task`` or ``hypothesis``, from the document's identifying key."""
    if isinstance(data, dict):
        if "hypothesis" in data:
            return "hypothesis"
        if "task" in data and "models" in data:
            return "task"
        if "nodes" in data:
            return "hypothesis"
        if "task" in data or "models" in data or "inputs" in data:
            return "task"
    return None


def resolve_reference(base: Path, reference: str, source: SourceMap,
                      loc: tuple[Key, ...]) -> Path:
    """A path named in a file, relative to that file; bad names are errors at ``loc``."""
    if "\x00" in reference:
        raise SpecError("a file name cannot contain a NUL character", source.location(loc))
    try:
        return (base.parent / reference).resolve()
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot use {reference[:60]!r} as a file name: {exc}",
                        source.location(loc)) from None


def load_task(path: Path, text: str | None = None) -> LoadedTask:
    """Load a task file; with ``text``, parse that text as the file at ``path``
    (how work shipped to other processes rebuilds a task without reading it)."""
    data, source = read_yaml(path) if text is None else parse_yaml(text, display_path(path))
    if file_kind(data) == "hypothesis":
        raise SpecError("this is a hypothesis file, expected a task file", source.location())
    spec = validate(TaskSpec, data, source)
    return LoadedTask(spec, path, source)


def load_hypothesis(path: Path) -> LoadedHypothesis:
    data, source = read_yaml(path)
    kind = file_kind(data)
    if kind == "task":
        raise SpecError(
            "this is a task file; give a hypothesis file (one with `hypothesis:` and `nodes:`)",
            source.location(),
        )
    spec = validate(HypothesisSpec, data, source)
    task_path = resolve_reference(path, spec.task, source, ("task",))
    if task_path == path.resolve():
        raise SpecError("`task:` names this hypothesis file itself", source.location(("task",)))
    if not _exists(task_path):
        raise SpecError(
            f"task file {display_path(task_path)} does not exist (paths are relative to this file)",
            source.location(("task",)),
        )
    task_data, _ = read_yaml(task_path)
    if file_kind(task_data) != "task":
        raise SpecError(
            f"`task:` must name a task file, but {display_path(task_path)} is a hypothesis file",
            source.location(("task",)),
        )
    task = load_task(task_path)
    if spec.model is not None and spec.model not in task.spec.models:
        known = ", ".join(task.spec.models)
        raise SpecError(
            f"task {task.spec.task!r} has no model `{spec.model}` (it has: {known})",
            source.location(("model",)),
        )
    if spec.model is None and len(task.spec.models) > 1:
        known = ", ".join(task.spec.models)
        raise SpecError(
            f"task {task.spec.task!r} has several models ({known}); say which with `model:`",
            source.location(("task",)),
        )
    return LoadedHypothesis(spec, path, source, task)


def load_any(path: Path) -> LoadedTask | LoadedHypothesis:
    """Load a task or a hypothesis file, whichever it is."""
    data, _ = read_yaml(path)
    if file_kind(data) == "task":
        return load_task(path)
    return load_hypothesis(path)
