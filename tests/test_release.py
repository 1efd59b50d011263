"""course/ is what `make release` makes from solutions/, and every notebook is committed clean."""

from __future__ import annotations

import json
from pathlib import Path

import jupytext
import nbformat
import pytest

from stgrade.course import REPO_ROOT, lesson_ids, load_lesson
from stgrade.release import generate, notebook_from_text

LESSONS = lesson_ids()


def _comparable(path: Path) -> list[tuple]:
    nb = nbformat.read(path, as_version=4)
    return [(c.cell_type, c.source, json.dumps(c.metadata, sort_keys=True)) for c in nb.cells]


def test_there_is_at_least_one_lesson():
    assert "04_gradient_clipping" in LESSONS


@pytest.mark.parametrize("lesson", LESSONS)
def test_source_notebook_matches_its_jupytext_twin(lesson):
    folder = REPO_ROOT / "solutions" / lesson
    from_text = notebook_from_text(folder / f"{lesson}.py")
    committed = nbformat.read(folder / f"{lesson}.ipynb", as_version=4)
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in from_text.cells], (
        f"solutions/{lesson}/{lesson}.ipynb is out of date with its .py: run `make release`")
    # byte for byte, cell ids included: otherwise every build rewrites it and leaves the checkout dirty
    assert (folder / f"{lesson}.ipynb").read_text() == jupytext.writes(from_text, fmt="ipynb"), (
        f"solutions/{lesson}/{lesson}.ipynb differs from what `make release` writes (ids, metadata, format): "
        "run `make release` rather than editing it or syncing it with jupytext")


@pytest.mark.xdist_group("release")
@pytest.mark.parametrize("lesson", LESSONS)
def test_student_notebook_is_not_stale(lesson, tmp_path):
    fresh = generate(lesson, tmp_path)
    committed = REPO_ROOT / "course" / lesson / f"{lesson}.ipynb"
    assert committed.exists(), f"course/{lesson} is missing: run `make release`"
    assert _comparable(committed) == _comparable(fresh), f"course/{lesson} is stale: run `make release`"


@pytest.mark.parametrize("lesson", LESSONS)
def test_student_notebook_has_stubs_and_no_hidden_tests(lesson):
    text = (REPO_ROOT / "course" / lesson / f"{lesson}.ipynb").read_text()
    assert "BEGIN HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text
    assert "raise NotImplementedError()" in text


@pytest.mark.parametrize("folder", ["solutions", "course"])
def test_committed_notebooks_have_no_outputs(folder):
    for path in (REPO_ROOT / folder).rglob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
        assert not dirty, f"{path} has outputs in cells {dirty}"


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_structure(lesson):
    """Learning goals, slides, checks after each exercise, recap: what every lesson has."""
    spec = load_lesson(lesson)
    nb = nbformat.read(spec.source_path, as_version=4)
    assert all("slideshow" in c.metadata for c in nb.cells), "every cell needs slide metadata"
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown").lower()
    for heading in ("learning goals", "recap", "common mistakes"):
        assert heading in prose, f"{lesson} has no '{heading}' section"
    solutions = [c for c in spec.cells if c.role == "solution"]
    tests = spec.test_cells
    assert solutions and all(t.checks for t in tests)
    levels = {(c.exercise, c.level) for t in tests for c in t.checks}
    for exercise in {c.exercise for t in tests for c in t.checks}:
        assert {(exercise, "visible"), (exercise, "hidden")} <= levels
    assert len({c.grade_id for c in spec.cells if c.grade_id}) == len([c for c in spec.cells if c.grade_id])
    assert any(c.role == "experiment" for c in spec.cells)
    assert jupytext.read(REPO_ROOT / "solutions" / lesson / f"{lesson}.py").metadata["jupytext"]["formats"]


@pytest.mark.parametrize("lesson", LESSONS)
def test_instructor_notes_stay_out_of_the_student_notebook(lesson):
    from stgrade.release import INSTRUCTOR_TAG

    student = nbformat.read(REPO_ROOT / "course" / lesson / f"{lesson}.ipynb", as_version=4)
    assert not [c for c in student.cells if INSTRUCTOR_TAG in c.metadata.get("tags", [])]


@pytest.mark.parametrize("lesson", LESSONS)
def test_test_cells_call_check_first(lesson):
    """docs/LESSON_STANDARD.md: a test cell's first statement is check(...), so a failure names the
    misconception; no hand-written asserts before (or instead of) it."""
    import ast

    for cell in load_lesson(lesson).test_cells:
        body = ast.parse(cell.source).body
        assert body, f"{lesson}: an empty test cell"
        first = body[0]
        assert isinstance(first, ast.Expr) and isinstance(first.value, ast.Call) and \
            getattr(first.value.func, "id", None) == "check", f"{lesson}: a test cell starts with {ast.dump(first)[:80]}"
        assert not any(isinstance(node, ast.Assert) for node in ast.walk(ast.Module(body=body, type_ignores=[])))


@pytest.mark.parametrize("lesson", LESSONS)
def test_claims_are_tested(lesson):
    """docs/LESSON_STANDARD.md: every quantitative sentence is checked in tests/test_claims_<id>.py."""
    assert (REPO_ROOT / "tests" / f"test_claims_{lesson}.py").exists()
