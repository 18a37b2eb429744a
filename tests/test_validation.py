"""Invalid files are rejected with exit code 2 and a ``file:line:col`` message.

Each ``tests/invalid/*.yaml`` file starts with a directive comment::

    # expect: <line>[:<col>] <distinctive part of the message>

and may carry further directive comments (at the end of the file, so that they
do not shift the positions under test):

    # run-expect: <line>[:<col>] <text>   what ``casc run`` reports instead
                                          (task files: "this is a task file")
    # xfail: <what casc prints today>     a known wrong or unhelpful message or
                                          position; the expectation above is what
                                          casc *should* report

Valid task files that only serve the invalid hypotheses live in
``tests/invalid/tasks_ok/``.

The commands run in a copy of the catalogue and of ``tests/invalid`` (same
relative layout), so that "nothing was written" can be checked without being
disturbed by concurrent edits of the checkout.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cli_runner import invoke

REPO = Path(__file__).resolve().parent.parent
INVALID = REPO / "tests" / "invalid"
INVALID_FILES = sorted(INVALID.glob("*.yaml"))
CATALOGUE = sorted((REPO / "tasks").glob("*.yaml")) + sorted((REPO / "hypotheses").glob("*/*.yaml"))

_POSITION = r"(?P<line>\d+)(?::(?P<col>\d+))?\s+(?P<text>.+?)\s*$"
_EXPECT = re.compile(r"^# expect:\s*" + _POSITION)
_RUN_EXPECT = re.compile(r"^# run-expect:\s*" + _POSITION)
_XFAIL = re.compile(r"^# xfail:\s*(?P<reason>.+?)\s*$")


@dataclass(frozen=True)
class Expect:
    line: int
    col: int | None
    text: str

    def position(self, file: str) -> str:
        return f"{file}:{self.line}" + (f":{self.col}" if self.col is not None else "")


@dataclass(frozen=True)
class Case:
    path: Path
    validate: Expect
    run: Expect
    xfail: str | None

    @property
    def rel(self) -> str:
        return self.path.relative_to(REPO).as_posix()


def _expect(match: re.Match[str]) -> Expect:
    col = match["col"]
    return Expect(int(match["line"]), int(col) if col else None, match["text"])


def _parse(path: Path) -> Case:
    lines = path.read_text(encoding="utf-8").splitlines()
    first = _EXPECT.match(lines[0]) if lines else None
    assert first, f"{path.name}: the first line must be `# expect: <line>[:<col>] <text>`"
    validate = _expect(first)
    run, xfail = validate, None
    for line in lines[1:]:
        if m := _RUN_EXPECT.match(line):
            run = _expect(m)
        elif m := _XFAIL.match(line):
            xfail = m["reason"]
    return Case(path, validate, run, xfail)


CASES = [_parse(p) for p in INVALID_FILES]


def _ids(case: Case) -> str:
    return case.path.stem


def _with_xfail(cases: list[Case]) -> list:
    return [
        pytest.param(c, id=_ids(c),
                     marks=[pytest.mark.xfail(reason=c.xfail, strict=True)] if c.xfail else [])
        for c in cases
    ]


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of tasks/, hypotheses/ and tests/invalid/ with the checkout's layout."""
    root = tmp_path_factory.mktemp("checkout")
    for folder in ("tasks", "hypotheses", "tests/invalid"):
        shutil.copytree(REPO / folder, root / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture
def in_workdir(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(workdir)
    return workdir


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
    }


def assert_user_error(result, *, where: str | None = None, text: str | None = None) -> None:
    """Exit 2, the message on stderr (nothing on stdout), no traceback."""
    everything = result.stdout + result.stderr
    assert result.exit_code == 2, everything
    assert "Traceback" not in everything, everything
    assert result.stdout == "", f"an error belongs on stderr, stdout had: {result.stdout!r}"
    assert "error:" in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    if where is not None:
        # the first problem reported is the expected one; the position is followed
        # by ": " so that 5:1 does not match 5:16
        assert any(line.startswith(f"error: {where}: ") for line in errors[:1]), \
            f"expected {where}, got:\n{result.stderr}"
    if text is not None:
        assert text in (errors[0] if where is not None else result.stderr), \
            f"expected {text!r}, got:\n{result.stderr}"


# --------------------------------------------------------------------------- invalid files


def test_invalid_folder_is_populated() -> None:
    assert len(CASES) >= 40
    for ok in sorted((INVALID / "tasks_ok").glob("*.yaml")):
        assert not ok.read_text(encoding="utf-8").startswith("# expect:"), ok


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_invalid_file_is_rejected(case: Case, in_workdir: Path) -> None:
    """Both commands exit 2 without a traceback and write nothing."""
    before = _snapshot(in_workdir)
    for command in ("validate", "run"):
        assert_user_error(invoke(command, case.rel))
    assert _snapshot(in_workdir) == before, "casc wrote into the working tree"


@pytest.mark.parametrize("case", _with_xfail(CASES))
def test_invalid_file_is_reported_at_its_position(case: Case, in_workdir: Path) -> None:
    assert_user_error(invoke("validate", case.rel),
                      where=case.validate.position(case.rel), text=case.validate.text)
    assert_user_error(invoke("run", "--samples", "2", case.rel),
                      where=case.run.position(case.rel), text=case.run.text)


def test_errors_of_several_files_are_all_reported(in_workdir: Path) -> None:
    a, b = CASES[0], CASES[-1]
    result = invoke("validate", a.rel, "hypotheses/sum4/true.yaml", b.rel)
    assert result.exit_code == 2
    assert f"{a.rel}:" in result.stderr and f"{b.rel}:" in result.stderr
    assert "ok: hypotheses/sum4/true.yaml" in result.stdout


# --------------------------------------------------------------------------- generated files


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _both_reject(file: str, where: str, text: str) -> None:
    for command in ("validate", "run"):
        assert_user_error(invoke(command, file), where=where, text=text)


def test_empty_file(scratch: Path) -> None:
    (scratch / "empty.yaml").write_bytes(b"")
    _both_reject("empty.yaml", "empty.yaml:1:1", "the file is empty")


def test_blank_file(scratch: Path) -> None:
    (scratch / "blank.yaml").write_text("\n   \n\t\n", encoding="utf-8")
    _both_reject("blank.yaml", "blank.yaml:1:1", "the file is empty")


def test_binary_file(scratch: Path) -> None:
    (scratch / "binary.yaml").write_bytes(b"hypothesis: x\n\x00\x01\x02\xff\n")
    _both_reject("binary.yaml", "binary.yaml", "binary file")


def test_non_utf8_file(scratch: Path) -> None:
    (scratch / "latin1.yaml").write_bytes("hypothesis: caf\u00e9\n".encode("latin-1"))
    _both_reject("latin1.yaml", "latin1.yaml", "not UTF-8")


def test_utf8_bom_is_accepted(scratch: Path) -> None:
    text = (REPO / "tasks" / "sum4.yaml").read_text(encoding="utf-8")
    (scratch / "bom.yaml").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert invoke("validate", "bom.yaml").exit_code == 0


def test_file_that_does_not_exist(scratch: Path) -> None:
    _both_reject("nope.yaml", "nope.yaml", "no such file")


def test_folder_instead_of_file(scratch: Path) -> None:
    (scratch / "folder.yaml").mkdir()
    _both_reject("folder.yaml", "folder.yaml", "is a folder")


def test_task_file_given_to_run() -> None:
    """A task is not a hypothesis: ``casc validate`` accepts it, ``casc run`` does not."""
    assert invoke("validate", str(REPO / "tasks" / "sum4.yaml")).exit_code == 0
    result = invoke("run", "--samples", "2", str(REPO / "tasks" / "sum4.yaml"))
    assert_user_error(result, text="this is a task file")
    assert "sum4.yaml:1:1: " in result.stderr


NPZ_TASK = """\
task: from_file
inputs:
  x0: {}
  x1: {}
dataset:
  file: data.npz
label: x0 + x1
metric: mae
models:
  m:
    nodes: {out: x0 + x1}
    output: out
"""

NPZ_HYPOTHESIS = """\
hypothesis: the model adds
task: task.yaml
nodes:
  out: {value: x0 + x1}
  x0: {value: x0}
  x1: {value: x1}
"""


def test_npz_dataset_missing_an_input(scratch: Path) -> None:
    np.savez(scratch / "data.npz", x0=np.arange(10))
    (scratch / "task.yaml").write_text(NPZ_TASK, encoding="utf-8")
    (scratch / "hyp.yaml").write_text(NPZ_HYPOTHESIS, encoding="utf-8")
    result = invoke("run", "--samples", "2", "hyp.yaml")
    assert_user_error(result, where="task.yaml:6:9", text="no array or column for input `x1`")


def test_npz_dataset_complete_runs(scratch: Path) -> None:
    np.savez(scratch / "data.npz", x0=np.arange(10), x1=np.arange(10) % 3)
    (scratch / "task.yaml").write_text(NPZ_TASK, encoding="utf-8")
    (scratch / "hyp.yaml").write_text(NPZ_HYPOTHESIS, encoding="utf-8")
    assert invoke("run", "--samples", "20", "hyp.yaml").exit_code == 0


ANCHORED_TASK = """\
task: anchors
inputs:
  x0: &digit {int: [0, 9]}
  x1: *digit
dataset: {size: 100}
label: x0 + x1
metric: mae
models:
  m:
    nodes: {out: x0 + x1}
    output: out
"""


def test_anchor_reused_in_one_mapping_is_valid(scratch: Path) -> None:
    (scratch / "anchors.yaml").write_text(ANCHORED_TASK, encoding="utf-8")
    result = invoke("validate", "anchors.yaml")
    assert result.exit_code == 0, result.stderr


# --------------------------------------------------------------------------- valid files


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(REPO)
    return REPO


@pytest.mark.parametrize("path", CATALOGUE, ids=lambda p: p.relative_to(REPO).as_posix())
def test_catalogue_file_is_valid(path: Path, in_repo: Path) -> None:
    rel = path.relative_to(REPO).as_posix()
    result = invoke("validate", rel)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert f"ok: {rel}" in result.stdout
    assert "error" not in result.stdout + result.stderr


def test_tasks_ok_are_valid(in_repo: Path) -> None:
    files = [p.relative_to(REPO).as_posix() for p in sorted((INVALID / "tasks_ok").glob("*.yaml"))]
    assert files
    result = invoke("validate", *files)
    assert result.exit_code == 0, result.stderr


def test_vacuous_claims_warn_but_validate(in_repo: Path) -> None:
    result = invoke("validate", "hypotheses/sum4/reversed.yaml")
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    warnings = [l for l in (result.stdout + result.stderr).splitlines() if l.startswith("warning:")]
    assert warnings
    assert all("vacuous" in w for w in warnings)
    assert all("hypotheses/sum4/reversed.yaml:" in w for w in warnings)


def test_vacuous_claims_are_errors_under_strict(in_repo: Path) -> None:
    result = invoke("run", "--strict", "--samples", "2", "hypotheses/sum4/reversed.yaml")
    assert_user_error(result, text="vacuous")
    assert "hypotheses/sum4/reversed.yaml:" in result.stderr
