"""Build the finite dataset D of a task: sampled, enumerated, or loaded from a file."""

from __future__ import annotations

import csv
import itertools
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError, Location
from .spec.loader import LoadedTask, display_path, resolve_reference
from .spec.models import InputSpec

MAX_DATASET_SIZE = int(os.environ.get("CASC_MAX_DATASET_SIZE", 10_000_000))
MAX_DATASET_VALUES = int(os.environ.get("CASC_MAX_DATASET_VALUES", 100_000_000))


@dataclass(frozen=True)
class Dataset:
    """The rows of D: one array per input, axis 0 indexing the data."""

    inputs: dict[str, np.ndarray]
    size: int


def build_dataset(task: LoadedTask) -> Dataset:
    spec = task.spec
    mode = spec.dataset.mode
    where = task.source.location(("dataset",))
    if mode == "file":
        inputs = _load_file(task)
    else:
        missing = [n for n, s in spec.inputs.items() if not s.has_distribution]
        if missing:
            raise DataError(
                f"input `{missing[0]}` has no distribution (int, choice or normal); "
                "only inputs of a dataset loaded from a file may omit it",
                task.source.location(("inputs", missing[0])),
            )
        if mode == "enumerate":
            inputs = _enumerate(spec.inputs, where)
        else:
            size = spec.dataset.size or 0
            _check_size(size, where)
            values = size * sum(math.prod(s.shape_tuple) for s in spec.inputs.values())
            if values > MAX_DATASET_VALUES:
                raise DataError(
                    f"the dataset would hold {values} numbers, over the limit of "
                    f"{MAX_DATASET_VALUES} (raise it with CASC_MAX_DATASET_VALUES)", where)
            inputs = {
                name: _sample(s, size, spec.dataset.seed, name) for name, s in spec.inputs.items()
            }
    size = len(next(iter(inputs.values())))
    for name, values in inputs.items():
        values.setflags(write=False)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            row = int(np.argwhere(~np.isfinite(values).reshape(size, -1).all(axis=1))[0][0])
            raise DataError(f"input `{name}` is NaN or infinite in row {row}", where)
    return Dataset(inputs, size)


def _check_size(size: int, where: Location) -> None:
    if size > MAX_DATASET_SIZE:
        raise DataError(
            f"a dataset of {size} rows is over the limit of {MAX_DATASET_SIZE} "
            "(raise it with CASC_MAX_DATASET_SIZE)",
            where,
        )


def _stream(seed: int, name: str) -> np.random.Generator:
    """Each input has its own stream, fixed by the dataset seed and the input's name."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode())]))


def _sample(spec: InputSpec, size: int, seed: int, name: str) -> np.ndarray:
    rng = _stream(seed, name)
    shape = (size, *spec.shape_tuple)
    if spec.int_range is not None:
        low, high = spec.int_range
        values = rng.integers(low, high, size=shape, endpoint=True, dtype=np.int64)
    elif spec.choice is not None:
        options = np.asarray(spec.choice)
        p = None if spec.p is None else np.asarray(spec.p, dtype=float) / sum(spec.p)
        values = options[rng.choice(len(options), size=shape, p=p)]
    else:
        assert spec.normal is not None
        mean, std = spec.normal
        values = rng.normal(mean, std, size=shape)
    if spec.p_zero:
        values = np.where(rng.random(shape) < spec.p_zero, 0, values)
    return values


def _enumerate(inputs: dict[str, InputSpec], where: Location) -> dict[str, np.ndarray]:
    """Every combination of every element of every input, each once (row-major)."""
    axes: list[tuple[str, int, list[int | float]]] = []
    total = 1
    for name, spec in inputs.items():
        if spec.support_size is None:
            raise DataError(
                f"`enumerate: true` needs finite inputs, but `{name}` is normal", where
            )
        total *= spec.support_size ** math.prod(spec.shape_tuple)
        _check_size(total, where)  # before anything is built
    for name, spec in inputs.items():
        support = spec.finite_values or []
        for element in range(math.prod(spec.shape_tuple)):
            axes.append((name, element, support))
    total = math.prod(len(s) for _, _, s in axes)
    _check_size(total, where)
    grid = np.array(list(itertools.product(*(s for _, _, s in axes))))
    grid = grid.reshape(total, len(axes))
    result: dict[str, np.ndarray] = {}
    column = 0
    for name, spec in inputs.items():
        width = math.prod(spec.shape_tuple)
        block = grid[:, column:column + width]
        column += width
        result[name] = np.ascontiguousarray(block.reshape(total, *spec.shape_tuple))
    return result


def _load_file(task: LoadedTask) -> dict[str, np.ndarray]:
    spec = task.spec
    assert spec.dataset.file is not None
    path = resolve_reference(task.path, spec.dataset.file, task.source, ("dataset", "file"))
    where = task.source.location(("dataset", "file"))
    if not _is_file(path):
        raise DataError(f"data file {display_path(path)} does not exist", where)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        arrays = _read_npz(path, where)
    elif suffix == ".csv":
        arrays = _read_csv(path, where)
    else:
        raise DataError(f"data files are .npz or .csv, not {suffix or 'no suffix'}", where)
    result: dict[str, np.ndarray] = {}
    size = None
    for name, input_spec in spec.inputs.items():
        if name not in arrays:
            raise DataError(f"data file has no array or column for input `{name}`", where)
        values = arrays[name]
        shape = input_spec.shape_tuple
        if values.shape[1:] != shape:
            raise DataError(
                f"input `{name}` has per-row shape {values.shape[1:]} in the file, "
                f"but the task declares {shape or 'a scalar'}",
                task.source.location(("inputs", name)),
            )
        if size is not None and len(values) != size:
            raise DataError(f"input `{name}` has {len(values)} rows, others have {size}", where)
        size = len(values)
        result[name] = values
    if not size:
        raise DataError("the data file has no rows", where)
    _check_size(size, where)
    return result


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _read_npz(path: Path, where: Location) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: np.asarray(archive[k]) for k in archive.files}
    except Exception as exc:  # numpy raises several kinds for corrupt archives
        raise DataError(f"cannot read {display_path(path)}: {exc}", where) from None
    for name, values in arrays.items():
        if values.ndim == 0 or values.dtype.kind not in "biuf":
            raise DataError(f"array `{name}` in the data file is not a numeric array", where)
    return arrays


def _read_csv(path: Path, where: Location) -> dict[str, np.ndarray]:
    """Columns named after scalar inputs, or ``x[0]``, ``x[1]``... for a vector input ``x``."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {display_path(path)}: {exc}", where) from None
    if len(rows) < 2:
        raise DataError("the CSV file needs a header row and at least one data row", where)
    header = [h.strip() for h in rows[0]]
    try:
        table = np.array([[float(v) for v in row] for row in rows[1:]], dtype=float)
    except ValueError as exc:
        raise DataError(f"non-numeric value in the CSV file: {exc}", where) from None
    if table.ndim != 2 or table.shape[1] != len(header):
        raise DataError("every CSV row must have one value per header column", where)
    if np.all(table == np.round(table)) and np.all(np.abs(table) < 2**53):
        table = table.astype(np.int64)
    columns: dict[str, list[tuple[int, int]]] = {}
    for position, column in enumerate(header):
        if column.endswith("]") and "[" in column:
            name, index = column[:-1].split("[", 1)
            try:
                columns.setdefault(name, []).append((int(index), position))
            except ValueError:
                raise DataError(f"bad CSV column name {column!r}", where) from None
        else:
            columns.setdefault(column, []).append((-1, position))
    arrays: dict[str, np.ndarray] = {}
    for name, parts in columns.items():
        if parts == [(-1, parts[0][1])]:
            arrays[name] = table[:, parts[0][1]]
        else:
            parts.sort()
            if [i for i, _ in parts] != list(range(len(parts))):
                raise DataError(f"columns of vector input `{name}` must be {name}[0], {name}[1], ...", where)
            arrays[name] = table[:, [p for _, p in parts]]
    return arrays
