"""``stgrade validate NOTEBOOK``: what the grader will make of a student's notebook, before handing in.

It grades the notebook exactly as ``stgrade grade`` does — the same assembly (the instructor's
test cells, the student's answers and added cells), the same kernel limits and the same trusted
comparison — with the visible checks and the hidden-style checks a student can run themselves
(``check(fn, name, level="hidden")``, with the public session seed; the grader's hidden cases are
of the same kinds, with other random inputs). Then it warns about everything the grader treats
differently from the student's own session: cells it skips (tagged ``experiment``), test cells it
replaces with the originals, answer cells it cannot find, names defined only in skipped cells,
cells run out of order, code the static scan flags for the instructor (a warning: it costs
no points by itself).
"""

from __future__ import annotations

import ast
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from stabletrain.exercises.check import SESSION_SEEDS

from .assemble import (SubmissionUnreadable, as_dict, cell_text, grade_id_of, instructor_code_cells, normalized,
                       read_submission)
from .course import Lesson, lesson_ids, load_lesson
from .grading import SubmissionResult, grade_submission
from .sandbox import Limits

#: the seed validate uses for every level: the one a student's own hidden self-check uses
VALIDATE_SEED = SESSION_SEEDS["hidden"]


@dataclass
class Validation:
    lesson: str
    result: SubmissionResult
    warnings: list[str] = field(default_factory=list)


def guess_lesson(path: Path, nb) -> str:
    """The lesson a notebook belongs to: by file name, else by the answer cells' ids."""
    lessons = lesson_ids()
    for lesson in lessons:
        if lesson in path.stem:
            return lesson
    ids = {grade_id_of(c) for c in nb.cells} - {None}
    best = max(lessons, key=lambda lsn: len(ids & {c.grade_id for c in load_lesson(lsn).cells}), default=None)
    if best is None or not ids & {c.grade_id for c in load_lesson(best).cells}:
        raise ValueError(f"{path.name}: no lesson of this course has these cells; name the lesson with --lesson")
    return best


def _experiment_names(nb) -> set[str]:
    names: set[str] = set()
    for cell in nb.cells:
        tags = as_dict(cell.get("metadata")).get("tags")
        if cell.get("cell_type") == "code" and isinstance(tags, list) and "experiment" in tags:
            try:
                tree = ast.parse(cell_text(cell.get("source", "")))
            except (SyntaxError, ValueError, RecursionError, SubmissionUnreadable):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    names.add(node.name)
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    names.add(node.id)
    return names


def differences(lesson: Lesson, nb) -> list[str]:
    """What the grader treats differently from the student's session, in words."""
    warnings: list[str] = []
    specs = {c.grade_id: c for c in lesson.cells if c.grade_id}
    release_tests: dict[str, str] = {}
    if lesson.release_path.exists():
        import nbformat

        release = nbformat.read(lesson.release_path, as_version=4)
        release_tests = {grade_id_of(c): c.source for c in release.cells
                         if grade_id_of(c) in specs and specs[grade_id_of(c)].role == "test"}
    own = instructor_code_cells(lesson)
    seen: set[str] = set()
    counts: list[int] = []
    for i, cell in enumerate(nb.cells, 1):
        if cell.get("cell_type") != "code":
            continue
        gid = grade_id_of(cell)
        count = cell.get("execution_count")
        if isinstance(count, int):
            counts.append(count)
        source = cell_text(cell.get("source", ""))
        tags = as_dict(cell.get("metadata")).get("tags")
        if gid in specs and specs[gid].role == "test" and gid not in seen and gid in release_tests \
                and normalized(source) != normalized(release_tests[gid]):
            warnings.append(f"cell {i} (test '{gid}') differs from the original: the grader runs the original "
                            "test cell, with hidden tests")
        if gid in specs:
            seen.add(gid)
        if isinstance(tags, list) and "experiment" in tags and normalized(source) not in own and source.strip():
            warnings.append(f"cell {i} is tagged 'experiment' and is not the lesson's own: the grader skips it, so "
                            "what it defines does not exist while grading — remove the tag if your answers need it")
    for gid, spec in specs.items():
        if spec.role == "test" and gid not in seen:
            warnings.append(f"test cell '{gid}' is missing: the grader puts the original back")
    if counts and counts != sorted(counts):
        warnings.append("cells were run out of order: the grader runs the notebook once, top to bottom, "
                        "in a fresh kernel (use Restart & Run All to see what it sees)")
    return warnings


def validate(path: Path, lesson: str | None = None, limits: Limits | None = None) -> Validation:
    path = Path(path)
    nb = read_submission(path)
    lesson = lesson or guess_lesson(path, nb)
    spec = load_lesson(lesson)
    warnings = differences(spec, nb)
    with tempfile.TemporaryDirectory(prefix="stgrade-validate-") as tmp:
        result = grade_submission("you", lesson, path, Path(tmp), limits or Limits(), VALIDATE_SEED)
    skipped = _experiment_names(nb)
    for cell in result.cells:
        m = re.search(r"NameError: name '(\w+)' is not defined", cell.message)
        if m and m.group(1) in skipped:
            warnings.append(f"{cell.grade_id}: '{m.group(1)}' is defined only in a cell tagged 'experiment', which "
                            "the grader skips")
    if lesson not in path.stem:
        warnings.append(f"the file is called {path.name}: name it {lesson}.ipynb, so the grader picks it when "
                        "there are several notebooks")
    flags = [f"{flag}: the grader shows this to your instructor to look at; it costs no points by itself (an "
             "exercise earns nothing only when an answer key runs while it is checked)" for flag in result.flags]
    return Validation(lesson, result, warnings + [n for n in result.notes if "added" not in n] + flags)


def render(v: Validation) -> str:
    r = v.result
    lines = [f"{v.lesson}: what the grader will give this notebook (visible checks, and hidden-style checks "
             "with the public seed; the grader's hidden cases have other random inputs of the same kinds)", ""]
    if r.status != "graded":
        lines.append(f"NOT GRADABLE: {r.reason}")
    else:
        width = max((len(c.grade_id) for c in r.cells), default=10)
        for c in r.cells:
            mark = "✓" if c.status == "passed" else ("~" if c.status == "partly passed" else "✗")
            lines.append(f"  {mark} {c.grade_id:<{width}}  {c.points:g} / {c.max_points:g}")
            if c.status != "passed":
                lines += ["      " + line for line in c.message.splitlines()]
        lines += ["", f"  total: {r.total:g} / {r.max_total:g}"]
    added = [n for n in r.notes if "added" in n]
    if added:
        lines += ["", *[f"note: {n}" for n in added]]
    if v.warnings:
        lines += ["", "The grader will treat these differently from your session:"]
        lines += [f"  ! {w}" for w in v.warnings]
    else:
        lines += ["", "Nothing in this notebook is treated differently by the grader."]
    return "\n".join(lines)
