"""Honest students are never voided, and feedback is no oracle (issue 21).

- A static finding alone never voids: the README's own ``check(fn, "name", level="hidden")`` in an
  added cell, ``import gc; gc.collect()`` in every answer cell, and lesson 03's ``init_model_``
  skipping norm layers with ``isinstance(m, nn.LayerNorm)`` and initialising with
  ``nn.init.kaiming_normal_`` keep every point, in every lesson, while the scan's findings still
  reach the instructor (``result.flags``). Voiding needs run-time evidence: calling torch's
  ``clip_grad_norm_`` still earns nothing.
- Feedback on hidden cases names the kind of input and the misconception, never the expected
  value; hidden inputs change with every submitted version of a notebook and stay the same for a
  regrade of the same bytes.

Each test fails when its protection is removed (static voiding restored: 0 points; the old
message: the expected value appears; the old seed: the same inputs for a changed file).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from stabletrain.exercises import get_exercise, plain
from stabletrain.exercises.base import describe_value
from stabletrain.exercises.check import run_cases
from stgrade.cohorts import lesson_sources
from stgrade.course import REPO_ROOT, lesson_ids, load_lesson
from stgrade.grading import _verify_checks, grade_submission, grading_seed
from stgrade.pipeline import RunOptions, grade_folder
from stgrade.sandbox import Limits

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("grading")]

LIMITS = Limits(cell_seconds=30, notebook_seconds=240)

INIT_MODEL_WITH_TORCH = '''\
def init_model_(model, nonlinearity):
    """Torch's initialisers, as the exercise welcomes; norm layers keep their ones and zeros."""
    for module in model.modules():
        if isinstance(module, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d)):
            continue
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(module.weight, a=0.01 if nonlinearity == "leaky_relu" else 0, mode="fan_in",
                                    nonlinearity="linear" if nonlinearity == "selu" else nonlinearity)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model
'''


def _honest(lesson: str) -> nbformat.NotebookNode:
    """The instructor's answers, each starting with ``import gc; gc.collect()``, and below the
    first answer an added cell running the README's own hidden self-check."""
    src = lesson_sources(lesson, REPO_ROOT)
    answers = {gid: "import gc; gc.collect()\n" + code for gid, code in src.solutions.items()}
    if "init_model" in answers:
        answers["init_model"] = "import gc; gc.collect()\n" + INIT_MODEL_WITH_TORCH
    nb = src.with_answers(answers)
    spec = load_lesson(lesson)
    first_test = spec.test_cells[0]
    check = first_test.checks[0]
    at = next(i for i, c in enumerate(nb.cells)
              if c.metadata.get("nbgrader", {}).get("grade_id") == spec.cells[first_test.index - 1].grade_id) + 1
    nb.cells.insert(at, nbformat.v4.new_code_cell(f'check({check.function}, "{check.exercise}", level="hidden")'))
    return nb


@pytest.mark.parametrize("lesson", lesson_ids())
def test_honest_code_the_scan_flags_keeps_every_point(lesson, tmp_path):
    path = tmp_path / f"{lesson}.ipynb"
    nbformat.write(_honest(lesson), path)
    r = grade_submission("honest", lesson, path, tmp_path / "out", LIMITS, seed=12345)
    assert r.status == "graded", r.reason
    lost = [(c.grade_id, c.message) for c in r.cells if c.points < c.max_points]
    assert r.total == load_lesson(lesson).max_points, lost
    assert r.flags and any("gc" in f for f in r.flags), r.flags  # the instructor still sees what the scan saw


def test_run_time_evidence_still_voids(tmp_path):
    src = lesson_sources("04_gradient_clipping", REPO_ROOT)
    cheat = ("def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):\n"
             "    return torch.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite)\n")
    path = tmp_path / "cheat.ipynb"
    nbformat.write(src.with_answers({**src.solutions, "clip_grad_norm": cheat}), path)
    r = grade_submission("cheat", "04_gradient_clipping", path, tmp_path / "out", LIMITS, seed=7)
    cells = {c.grade_id: c for c in r.cells}
    assert cells["clip_grad_norm_visible"].points == 0 and cells["clip_grad_norm_hidden"].points == 0
    assert "answer key" in cells["clip_grad_norm_visible"].message


# -- feedback is no oracle -------------------------------------------------------------------------
def _wrong_norm(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    return -1.0


def test_hidden_feedback_names_the_kind_of_input_not_the_expected_values():
    lesson = load_lesson("04_gradient_clipping")
    exercise = get_exercise("clip_grad_norm_")
    seed = 4242
    cases = exercise.cases("hidden", seed)
    outputs = run_cases(_wrong_norm, "clip_grad_norm_", "hidden", seed)
    message = plain.dumps({"exercise": "clip_grad_norm_", "level": "hidden", "outputs": outputs})
    _, problem = _verify_checks(lesson.cell("clip_grad_norm_hidden"), [message], seed)
    assert problem and "hidden check failed" in problem, problem
    assert not re.search(r"expected\s*[-\d\[(]|got\s*[-\d\[(]", problem), problem
    assert not re.findall(r"\d+\.\d{2,}", problem), problem  # no computed value, expected or returned
    shown = [describe_value(exercise.known_outputs("reference", case)["returned"]["value"]) for case in cases
             if isinstance(exercise.known_outputs("reference", case).get("returned"), dict)]
    assert shown and not [v for v in shown if len(v) > 3 and v in problem], (shown, problem)
    _, visible = _verify_checks(lesson.cell("clip_grad_norm_visible"), [plain.dumps(
        {"exercise": "clip_grad_norm_", "level": "visible",
         "outputs": run_cases(_wrong_norm, "clip_grad_norm_", "visible", seed)})], seed)
    assert "expected" in visible  # the visible cases are public: they still show both values


def test_the_seed_follows_the_submitted_bytes():
    a, b = b'{"cells": []}', b'{"cells": [] }'
    assert grading_seed("s" * 20, "ann", "04", a) == grading_seed("s" * 20, "ann", "04", a)
    assert grading_seed("s" * 20, "ann", "04", a) != grading_seed("s" * 20, "ann", "04", b)


_SPY = '''\
def clip_grad_value_(parameters, clip_value):
    params = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
    print("SEEN", [round(float(p.grad.sum()), 6) for p in params if p.grad is not None])
    for p in params:
        if p.grad is not None:
            p.grad.clamp_(-clip_value, clip_value)
'''


def _seen(out: Path) -> list[str]:
    nb = json.loads((out / "autograded" / "spy" / "04_gradient_clipping" / "04_gradient_clipping.ipynb").read_text())
    cell = next(c for c in nb["cells"]
                if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "clip_grad_value_hidden")
    return [line for o in cell.get("outputs", []) for line in "".join(o.get("text", "")).splitlines()
            if line.startswith("SEEN")]


def test_a_resubmission_gets_new_hidden_inputs_and_a_regrade_the_same(tmp_path):
    src = lesson_sources("04_gradient_clipping", REPO_ROOT)
    submitted = tmp_path / "submitted"
    path = submitted / "spy" / "04_gradient_clipping" / "04_gradient_clipping.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(src.with_answers({"clip_grad_value": _SPY}), path)
    options = dict(jobs=1, limits=LIMITS, quiet=True, secret="oracle-test-secret-0123456789")
    grade_folder(submitted, tmp_path / "first", RunOptions(**options))
    grade_folder(submitted, tmp_path / "again", RunOptions(**options))
    path.write_text(path.read_text() + "\n")  # resubmitted: one byte more
    grade_folder(submitted, tmp_path / "resubmitted", RunOptions(**options))
    first, again, resubmitted = (_seen(tmp_path / name) for name in ("first", "again", "resubmitted"))
    assert first and first == again
    assert resubmitted and resubmitted != first


def test_what_the_scan_flags_is_a_warning_in_validate_and_a_flag_in_the_overview(tmp_path):
    from stgrade import report
    from stgrade.validate import render, validate

    path = tmp_path / "04_gradient_clipping.ipynb"
    nbformat.write(_honest("04_gradient_clipping"), path)
    v = validate(path, limits=LIMITS)
    assert v.result.total == load_lesson("04_gradient_clipping").max_points
    text = render(v)
    assert "costs no points by itself" in text and "imports gc" in text, text
    report.write_index([v.result], {"you": "you"}, tmp_path / "index.html")
    assert "⚑ to look at" in (tmp_path / "index.html").read_text(encoding="utf-8")
