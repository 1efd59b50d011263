"""``stgrade validate``: a student sees what the grader will give, and what it treats differently."""

from __future__ import annotations

import nbformat
import pytest

from stgrade.cli import main
from stgrade.cohorts import lesson_sources
from stgrade.course import REPO_ROOT, load_lesson
from stgrade.sandbox import Limits
from stgrade.validate import render, validate

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("grading")]

LESSON = "04_gradient_clipping"


def test_validate_grades_added_cells_and_warns_about_what_the_grader_does_differently(tmp_path):
    src = lesson_sources(LESSON, REPO_ROOT)
    nb = src.with_answers({"clip_grad_value": src.solutions["clip_grad_value"]})
    at = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "clip_grad_norm")
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(src.solutions["clip_grad_norm"]))  # answer below the stub
    helper = nbformat.v4.new_code_cell("def my_unit_norm(t):\n    return t.norm()", metadata={"tags": ["experiment"]})
    nb.cells.insert(at + 2, helper)  # tagged experiment: skipped by the grader
    test = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "clip_grad_value_visible")
    test.source = "pass  # the test, edited away"
    path = tmp_path / "my_copy.ipynb"
    nbformat.write(nb, path)
    v = validate(path, limits=Limits(cell_seconds=10, notebook_seconds=120))
    lesson = load_lesson(LESSON)
    answered = sum(c.points for c in lesson.test_cells  # the two exercises answered, one of them in an added cell
                   if c.grade_id.rsplit("_", 1)[0] in ("clip_grad_value", "clip_grad_norm"))
    assert 0 < answered < lesson.max_points
    assert v.lesson == LESSON and v.result.status == "graded" and v.result.total == answered
    text = render(v)
    for expected in ("differs from the original", "tagged 'experiment'", f"name it {LESSON}.ipynb",
                     f"total: {answered:g} / {lesson.max_points:g}", "you added"):
        assert expected in text, text


def test_validate_on_the_command_line(tmp_path, capsys):
    src = lesson_sources(LESSON, REPO_ROOT)
    path = tmp_path / f"{LESSON}.ipynb"
    path.write_text(nbformat.writes(src.release)[:500])  # cut off: not a notebook
    assert main(["validate", str(path), "--cell-timeout", "5"]) == 2
    assert "is not a readable notebook" in capsys.readouterr().err
