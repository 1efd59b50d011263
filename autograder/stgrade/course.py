"""The course as the grader sees it: lessons, their cells, and what each graded cell checks.

A lesson's instructor notebook (``solutions/<id>/<id>.ipynb``, nbgrader source) is the truth about
its cells. Cell roles come from nbgrader's metadata, plus one tag of ours:

- ``solution``: nbgrader ``solution: true`` — the student's answer is taken from the submission;
- ``test``: nbgrader ``grade: true`` with points — always the instructor's version (hidden tests
  included), whatever the submission did to it;
- ``experiment``: tagged ``experiment`` — plots and demonstrations, skipped while grading;
- ``setup``: every other code cell — the instructor's version is run;
- ``markdown``: prose;
- ``added``: a code cell the student added (see :mod:`stgrade.assemble`), run where they put it.

What a test cell checks is read from its ``check(fn, "exercise", level=...)`` calls.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Check:
    function: str  # the notebook variable holding the student's function
    exercise: str
    level: str


@dataclass
class CellSpec:
    index: int
    role: str  # solution | test | experiment | setup | markdown | raw | added (by the student)
    source: str
    grade_id: str | None = None
    points: float = 0.0
    checks: list[Check] = field(default_factory=list)
    defines: list[str] = field(default_factory=list)  # functions a solution cell defines


@dataclass
class Lesson:
    id: str
    source_path: Path
    release_path: Path
    cells: list[CellSpec]

    @property
    def test_cells(self) -> list[CellSpec]:
        return [c for c in self.cells if c.role == "test"]

    @property
    def max_points(self) -> float:
        return sum(c.points for c in self.test_cells)

    def cell(self, grade_id: str) -> CellSpec:
        for c in self.cells:
            if c.grade_id == grade_id:
                return c
        raise KeyError(f"lesson {self.id} has no cell {grade_id!r}")


def parse_checks(source: str) -> list[Check]:
    """The ``check(fn, "exercise", level=...)`` calls in a test cell, in order."""
    checks = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "check"):
            continue
        if len(node.args) < 2 or not isinstance(node.args[0], ast.Name) or not isinstance(node.args[1], ast.Constant):
            raise ValueError(f"check(...) must be called as check(function_name, 'exercise'): {ast.unparse(node)}")
        level = "visible"
        for kw in node.keywords:
            if kw.arg == "level" and isinstance(kw.value, ast.Constant):
                level = kw.value.value
        if len(node.args) > 2 and isinstance(node.args[2], ast.Constant):
            level = node.args[2].value
        checks.append(Check(node.args[0].id, node.args[1].value, level))
    return checks


def defined_functions(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # reported when the cell runs
        return []
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def cell_role(cell: nbformat.NotebookNode) -> str:
    if cell.cell_type != "code":
        return cell.cell_type
    meta = cell.metadata.get("nbgrader", {})
    if meta.get("grade") and not meta.get("solution"):
        return "test"
    if meta.get("solution"):
        return "solution"
    if "experiment" in cell.metadata.get("tags", []):
        return "experiment"
    return "setup"


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """The notebook at ``path`` (the instructor's or the released one), parsed and validated once
    per version of the file: a grader reads these for every submission. Shared by every caller:
    read it, and copy what you change."""
    stat = Path(path).stat()
    return _parsed(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _parsed(path: str, mtime_ns: int, size: int) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def load_lesson(lesson_id: str, root: Path = REPO_ROOT) -> Lesson:
    source_path = root / "solutions" / lesson_id / f"{lesson_id}.ipynb"
    release_path = root / "course" / lesson_id / f"{lesson_id}.ipynb"
    if not source_path.exists():
        raise FileNotFoundError(f"no instructor notebook for lesson {lesson_id!r} at {source_path}")
    nb = read_notebook(source_path)
    cells = []
    for i, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        role = cell_role(cell)
        spec = CellSpec(i, role, cell.source, grade_id=meta.get("grade_id"))
        if role == "test":
            spec.points = float(meta.get("points", 0))
            spec.checks = parse_checks(cell.source)
        if role == "solution":
            spec.defines = defined_functions(cell.source)
        cells.append(spec)
    return Lesson(lesson_id, source_path, release_path, cells)


def lesson_ids(root: Path = REPO_ROOT) -> list[str]:
    return sorted(p.parent.name for p in (root / "solutions").glob("*/*.ipynb") if p.stem == p.parent.name)
