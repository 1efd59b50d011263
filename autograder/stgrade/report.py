"""grades.csv, summary.json and the table printed at the end of a run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .grading import SubmissionResult


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
    counts = {s: sum(r.status == s for r in results) for s in ("graded", "failed", "missing")}
    path.write_text(json.dumps({**meta, "counts": counts, "warnings": warnings,
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
