"""grades.csv, summary.json and the table printed at the end of a run."""

from __future__ import annotations

import csv
import json
from html import escape
from pathlib import Path

from .grading import SubmissionResult

STATUSES = ("graded", "failed", "missing")


def counts(results: list[SubmissionResult]) -> dict[str, int]:
    """How many submissions have each status."""
    return {s: sum(r.status == s for r in results) for s in STATUSES}


def counts_line(results: list[SubmissionResult]) -> str:
    return ", ".join(f"{n} {s}" for s, n in counts(results).items())


def write_csv(results: list[SubmissionResult], cell_ids: dict[str, list[str]], path: Path) -> None:
    """One row per student and lesson; cell columns, total and max_total stay empty unless graded.

    With several lessons in one run, cell columns are named ``<lesson>:<grade_id>``.
    """
    lessons = sorted({r.lesson for r in results if r.lesson})
    many = len(lessons) > 1
    cols = [f"{lesson}:{gid}" if many else gid for lesson in lessons for gid in cell_ids.get(lesson, [])]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", "lesson", "status", "reason", *cols, "total", "max_total"])
        for r in results:
            points = {(f"{r.lesson}:{c.grade_id}" if many else c.grade_id): c.points for c in r.cells}
            graded = r.status == "graded"
            writer.writerow([r.student, r.lesson, r.status, r.reason,
                             *[(f"{points[c]:g}" if graded and c in points else "") for c in cols],
                             f"{r.total:g}" if graded else "", f"{r.max_total:g}"])


def write_json(results: list[SubmissionResult], warnings: list[str], meta: dict, path: Path) -> None:
    path.write_text(json.dumps({**meta, "counts": counts(results), "warnings": warnings,
                                "submissions": [r.to_json() for r in results]}, indent=2), encoding="utf-8")


def table(results: list[SubmissionResult]) -> str:
    rows = [("student", "lesson", "status", "score", "note")]
    for r in results:
        score = f"{r.total:g} / {r.max_total:g}" if r.status == "graded" else "—"
        note = r.reason or ("; ".join(r.notes) if r.notes else "")
        rows.append((r.student, r.lesson or "—", r.status, score, note[:70] + ("…" if len(note) > 70 else "")))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4])
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 4)
    return "\n".join(lines)


def write_index(results: list[SubmissionResult], path: Path) -> None:
    """An HTML overview for the instructor: one row per submission, linked to its feedback page."""
    rows = []
    for r in results:
        score = f"{r.total:g} / {r.max_total:g}" if r.status == "graded" else "—"
        note = r.reason or "; ".join(r.notes)
        link = f"feedback/{escape(r.student)}/{escape(r.lesson)}.html" if r.lesson else ""
        name = f"<a href='{link}'>{escape(r.student)}</a>" if link else escape(r.student)
        failed = "".join(f"<li>{escape(c.grade_id)}: {escape(c.message.splitlines()[0])}</li>"
                         for c in r.cells if c.points < c.max_points)
        rows.append(f"<tr class='{r.status}'><td>{name}</td><td>{escape(r.lesson)}</td><td>{r.status}</td>"
                    f"<td>{score}</td><td>{escape(note)}<ul>{failed}</ul></td></tr>")
    path.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Grades</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}"
        "td,th{border-bottom:1px solid #ddd;padding:.4rem .6rem;text-align:left;vertical-align:top}"
        "tr.failed td{background:#ffebe9}tr.missing td{color:#888}ul{margin:.2rem 0;padding-left:1.2rem}"
        f"</style></head><body><h1>Grades</h1><p>{len(results)} submissions: {counts_line(results)}. "
        "Machine-readable: <a href='grades.csv'>grades.csv</a>, <a href='summary.json'>summary.json</a>.</p>"
        "<table><tr><th>student</th><th>lesson</th><th>status</th><th>score</th><th>notes and lost points</th></tr>"
        + "".join(rows) + "</table></body></html>", encoding="utf-8")
