"""The grading pipeline end to end on the sample cohort (the same one `make demo` grades)."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from stgrade.pipeline import RunOptions, grade_folder
from stgrade.cohorts.gradient_clipping import EXPECTED, LESSON
from stgrade.samples import build
from stgrade.sandbox import Limits

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("grading")]

LIMITS = Limits(cell_seconds=5, notebook_seconds=120)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    submitted = build(root, only=[LESSON])
    out = root / "out"
    results = grade_folder(submitted, out, RunOptions(jobs=2, limits=LIMITS, quiet=True))
    return submitted, out, {r.student: r for r in results}


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_each_sample_student_gets_the_expected_result(graded, student):
    _, _, results = graded
    want, got = EXPECTED[student], results[student]
    assert (got.status, got.total) == (want.status, want.total), (got.reason, [(c.grade_id, c.message) for c in got.cells])


def test_failures_and_missing_say_why_and_are_not_zero(graded):
    _, out, results = graded
    assert "not a readable notebook" in results["corrupt"].reason
    rows = {r["student_id"]: r for r in csv.DictReader((out / "grades.csv").open())}
    for student in ("corrupt", "absent"):
        assert rows[student]["total"] == "" and rows[student][f"{'clip_grad_norm'}_visible"] == ""
    assert rows["absent"]["status"] == "missing" and rows["corrupt"]["status"] == "failed"


def test_grades_csv_has_one_column_per_graded_cell(graded):
    _, out, _ = graded
    header = next(csv.reader((out / "grades.csv").open()))
    cells = [f"{name}_{level}" for name in ("clip_grad_value", "clip_grad_norm", "adaptive_clip_grad", "train_step",
                                            "pick_max_norm")
             for level in ("visible", "hidden")]
    assert header[:4] == ["student_id", "lesson", "status", "reason"]
    assert sorted(header[4:-2]) == sorted(cells) and header[-2:] == ["total", "max_total"]


def test_messages_explain_the_misconception(graded):
    _, _, results = graded
    partial = {c.grade_id: c for c in results["partial"].cells}
    assert partial["clip_grad_norm_visible"].points == pytest.approx(0.75)  # the 1e-6 is now caught visibly
    assert "1e-6" in partial["clip_grad_norm_visible"].message and "1e-6" in partial["clip_grad_norm_hidden"].message
    cheater = {c.grade_id: c for c in results["cheater"].cells}
    assert "torch.nn.utils" in cheater["clip_grad_norm_visible"].message
    loop = {c.grade_id: c for c in results["infinite_loop"].cells}
    assert "time limit" in loop["clip_grad_norm_visible"].message
    crash = {c.grade_id: c for c in results["crasher"].cells}
    assert "died" in crash["adaptive_clip_grad_visible"].message
    silencer = {c.grade_id: c for c in results["silencer"].cells}
    assert "no results were recorded" in silencer["clip_grad_norm_hidden"].message
    blank = {c.grade_id: c for c in results["blank"].cells}
    assert all("not answered yet" in c.message for c in blank.values())


def test_feedback_hides_hidden_tests_and_tracebacks(graded):
    submitted, out, results = graded
    for student in EXPECTED:
        page = (out / "feedback" / student / f"{LESSON}.html").read_text()
        assert "BEGIN HIDDEN TESTS" not in page and 'level="hidden"' not in page
        assert "Traceback" not in page
        assert student in page
    assert f"Score: <b>{EXPECTED['partial'].total:g}</b> / 14" in (out / "feedback" / "partial" / f"{LESSON}.html").read_text()


def test_index_links_every_feedback_page(graded):
    _, out, _ = graded
    index = (out / "index.html").read_text()
    for student in EXPECTED:
        if student != "absent":
            assert f"feedback/{student}/{LESSON}.html" in index
    assert "10 graded, 1 failed, 1 missing" in index


def test_autograded_notebooks_keep_the_hidden_tests_for_the_instructor(graded):
    _, out, _ = graded
    nb = json.loads((out / "autograded" / "perfect" / LESSON / f"{LESSON}.ipynb").read_text())
    assert any("BEGIN HIDDEN TESTS" in "".join(c["source"]) for c in nb["cells"])


def test_summary_json_counts_and_reasons(graded):
    _, out, _ = graded
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"graded": 10, "failed": 1, "missing": 1}
    by = {s["student"]: s for s in summary["submissions"]}
    assert by["corrupt"]["reason"] and by["perfect"]["total"] == 14


def test_a_second_run_reuses_results_and_gives_the_same_grades(graded, tmp_path):
    submitted, out, results = graded
    again = grade_folder(submitted, out, RunOptions(jobs=2, limits=LIMITS, quiet=True))
    assert {r.student: (r.status, r.total) for r in again} == {s: (r.status, r.total) for s, r in results.items()}
    assert not list((out / "results").rglob("*.previous-*.json"))


def test_a_forced_regrade_gives_the_same_grades_and_keeps_the_earlier_result(graded, tmp_path):
    submitted, out, results = graded
    subset = tmp_path / "subset"
    for student in ("perfect", "partial"):
        shutil.copytree(submitted / student, subset / student)
    shutil.copytree(out / "results", tmp_path / "out" / "results")
    regraded = grade_folder(subset, tmp_path / "out", RunOptions(jobs=2, limits=LIMITS, quiet=True, force=True))
    assert {r.student: r.total for r in regraded} == {"perfect": 14, "partial": EXPECTED["partial"].total}
    assert (tmp_path / "out" / "results" / "perfect" / f"{LESSON}.previous-1.json").exists()


def test_lms_downloads_are_graded_like_the_nbgrader_layout(graded, tmp_path):
    import zipfile

    submitted, _, _ = graded
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(submitted / "perfect" / LESSON / f"{LESSON}.ipynb", inbox / f"s001_{LESSON}.ipynb")
    with zipfile.ZipFile(inbox / "s002.zip", "w") as zf:
        zf.write(submitted / "partial" / LESSON / f"{LESSON}.ipynb", f"s002/{LESSON}.ipynb")
    out = tmp_path / "out"
    results = {r.student: r for r in grade_folder(inbox, out, RunOptions(jobs=2, limits=LIMITS, quiet=True))}
    assert (results["s001"].total, results["s002"].total) == (14, EXPECTED["partial"].total)
    page = (out / "feedback" / "s002" / f"{LESSON}.html").read_text()
    assert "Your answers" in page and "def clip_grad_norm_(" in page  # answers read from the unzipped copy
