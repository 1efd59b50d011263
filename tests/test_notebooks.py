"""Every lesson runs top to bottom: the instructor version and the untouched student version, both
without errors (an unanswered exercise's check prints one line and lets Run All continue).

Each notebook runs once per test session, in a fresh kernel, for its deck (tests/deck_support.py):
these tests read the notebook as it ran there, every output as the kernel sent it, and the browser
tests open the deck made from the same run."""

from __future__ import annotations

import re

import pytest

from deck_support import ran, session_decks  # noqa: F401 (fixtures)
from stgrade.course import cell_role, lesson_ids

pytestmark = pytest.mark.slow


def _errors(nb):
    return [(i, o["ename"], o["evalue"]) for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for o in c.outputs if o.output_type == "error"]


@pytest.mark.parametrize("lesson", lesson_ids())
def test_instructor_notebook_runs_top_to_bottom(lesson, ran):
    nb, seconds = ran(lesson, "instructor")
    assert _errors(nb) == []
    print(f"{lesson}: {seconds:.1f} s")
    images = sum(1 for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    assert images >= 3, "the lesson's plots did not render"
    checks = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert checks.count("✓") >= 3, "the visible self-checks did not report success"
    echoed = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and cell_role(c) == "test"
              for o in c.outputs if o.output_type == "execute_result"]
    assert echoed == [], f"test cells {echoed} show an Out[n] under their check's one line"


@pytest.mark.parametrize("lesson", lesson_ids())
def test_student_notebook_runs_top_to_bottom_and_says_not_answered_yet(lesson, ran):
    """Run All on the untouched student notebook: no error anywhere (every experiment and explorer
    runs), and each exercise's visible check says, in one line, that it is not answered yet."""
    nb, _ = ran(lesson, "student")
    assert _errors(nb) == []
    checked = [(i, name) for i, c in enumerate(nb.cells) if c.cell_type == "code" and cell_role(c) == "test"
               for name in re.findall(r"""check\(\s*\w+\s*,\s*["']([^"']+)["']\s*\)""", c.source)]
    assert checked, "no visible check(fn, name) found in the test cells"
    for index, name in checked:
        text = "".join(o.get("text", "") for o in nb.cells[index].outputs)
        assert f"{name}: not answered yet" in text, (index, name, text)
        # that line only, on stdout; under load the kernel may send it in two stream messages
        outputs = [(o.output_type, o.get("name")) for o in nb.cells[index].outputs]
        assert set(outputs) == {("stream", "stdout")} and text.strip().count("\n") == 0, (index, name, outputs, text)
