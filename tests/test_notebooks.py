"""Every lesson runs top to bottom: the instructor version without errors, the student version
with errors only where the exercises are still unanswered."""

from __future__ import annotations

import time

import nbformat
import pytest
from nbclient import NotebookClient

from stgrade.course import REPO_ROOT, cell_role, lesson_ids

pytestmark = pytest.mark.slow


def _execute(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                   extra_arguments=["--IPKernelApp.log_level=ERROR"],
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb, time.perf_counter() - started


def _errors(nb):
    return [(i, o["ename"], o["evalue"]) for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for o in c.outputs if o.output_type == "error"]


@pytest.mark.parametrize("lesson", lesson_ids())
def test_instructor_notebook_runs_top_to_bottom(lesson, tmp_path):
    nb, seconds = _execute(REPO_ROOT / "solutions" / lesson / f"{lesson}.ipynb", tmp_path)
    assert _errors(nb) == []
    print(f"{lesson}: {seconds:.1f} s")
    images = sum(1 for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    assert images >= 3, "the lesson's plots did not render"
    checks = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert checks.count("✓") >= 3, "the visible self-checks did not report success"


@pytest.mark.parametrize("lesson", lesson_ids())
def test_student_notebook_fails_only_in_unanswered_exercises(lesson, tmp_path):
    nb, _ = _execute(REPO_ROOT / "course" / lesson / f"{lesson}.ipynb", tmp_path)
    errors = _errors(nb)
    unanswered = sum(o.get("text", "").count("not answered yet") for c in nb.cells for o in c.get("outputs", []))
    assert errors or unanswered, "the student notebook should fail or flag its checks before the exercises are done"
    for index, ename, evalue in errors:
        cell = nb.cells[index]
        assert cell_role(cell) == "test", f"cell {index} ({cell_role(cell)}) failed: {ename}: {evalue}"
        assert ename in ("NotImplementedError", "ExerciseCheckFailed"), (ename, evalue)
