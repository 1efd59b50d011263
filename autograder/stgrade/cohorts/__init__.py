"""Sample cohorts: for every lesson, students with known, documented outcomes.

Each module of this package is one lesson's cohort and defines ``LESSON`` (the lesson id),
``EXPECTED`` (student -> :class:`Expected`) and ``build(sources) -> {student: submission}``, where a
submission is a notebook, raw text (a corrupt file) or None (handed in nothing). ``make demo``
grades the union of all cohorts and checks every outcome; a new lesson only adds its module.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import nbformat


@dataclass(frozen=True)
class Expected:
    status: str
    total: float | None
    why: str


@dataclass
class LessonSources:
    """What a cohort is made from: the student notebook and the instructor's answers."""

    lesson: str
    release: nbformat.NotebookNode
    solutions: dict[str, str]  # grade_id -> the solution code, without the BEGIN/END markers

    def with_answers(self, answers: dict[str, str]) -> nbformat.NotebookNode:
        """The student notebook with the answer cells named in ``answers`` filled in."""
        nb = nbformat.from_dict(self.release)
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if gid in answers:
                cell.source = answers[gid]
        return nb


def lesson_sources(lesson: str, root: Path) -> LessonSources:
    release = nbformat.read(root / "course" / lesson / f"{lesson}.ipynb", as_version=4)
    nb = nbformat.read(root / "solutions" / lesson / f"{lesson}.ipynb", as_version=4)
    solutions = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            solutions[meta["grade_id"]] = re.sub(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*(\n|$)", "", cell.source,
                                                 flags=re.M)
    return LessonSources(lesson, release, solutions)


def inject_first_line(source: str, function: str, line: str) -> str:
    """Insert ``line`` as the first statement of ``function``'s body (after its docstring)."""
    lines = source.splitlines()
    start = next(i for i, text in enumerate(lines) if text.startswith(f"def {function}("))
    i = start + 1
    while not lines[i - 1].rstrip().endswith(":"):
        i += 1
    if lines[i].strip().startswith(('"""', "'''")):
        quote = lines[i].strip()[:3]
        if not (lines[i].strip().endswith(quote) and len(lines[i].strip()) > 3):
            i += 1
            while quote not in lines[i]:
                i += 1
        i += 1
    indent = re.match(r"\s*", lines[i]).group(0) or "    "
    return "\n".join(lines[:i] + [indent + line] + lines[i:])


@functools.cache
def cohorts() -> dict[str, ModuleType]:
    """lesson id -> its cohort module."""
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        found[module.LESSON] = module
    return found
