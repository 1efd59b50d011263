"""grades.csv, summary.json, index.html and the table printed at the end of a run.

What a submission controls (its id, notes, messages) is neutralised where it is written
(:mod:`stgrade.neutral`): spreadsheet formulas in the CSV, links and markup in the HTML, control
sequences on the terminal; files are written so that no content can make writing fail.
"""

from __future__ import annotations

import csv
import json
from html import escape
from pathlib import Path

from . import neutral
from .grading import SubmissionResult

STATUSES = ("graded", "failed", "missing")


def counts(results: list[SubmissionResult]) -> dict[str, int]:
    """How many submissions have each status."""
    return {s: sum(r.status == s for r in results) for s in STATUSES}


def counts_line(results: list[SubmissionResult]) -> str:
    return ", ".join(f"{n} {s}" for s, n in counts(results).items())


def cell_columns(cell_ids: dict[str, list[str]]) -> dict[tuple[str, str], str]:
    """``{(lesson, grade_id): column name}``: the grade_id itself, or ``<lesson>:<grade_id>`` only
    for a grade_id that two lessons of the run share — so a column's name does not depend on which
    other lessons somebody handed in (one student's stray extra lesson renames nothing)."""
    seen: dict[str, int] = {}
    for ids in cell_ids.values():
        for gid in dict.fromkeys(ids):
            seen[gid] = seen.get(gid, 0) + 1
    return {(lesson, gid): (f"{lesson}:{gid}" if seen[gid] > 1 else gid)
            for lesson, ids in sorted(cell_ids.items()) for gid in ids}


def write_csv(results: list[SubmissionResult], cell_ids: dict[str, list[str]], path: Path) -> None:
    """One row per student and lesson; cell columns, total and max_total stay empty unless graded.
    Text cells that a spreadsheet would run as a formula start with an apostrophe."""
    names = cell_columns(cell_ids)
    cols = list(dict.fromkeys(names.values()))
    with path.open("w", newline="", encoding="utf-8", errors="replace") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", "lesson", "status", "reason", *cols, "total", "max_total"])
        for r in results:
            points = {names.get((r.lesson, c.grade_id)): c.points for c in r.cells}
            graded = r.status == "graded"
            writer.writerow([neutral.csv_cell(v) for v in (r.student, r.lesson, r.status, r.reason)]
                            + [(f"{points[c]:g}" if graded and c in points else "") for c in cols]
                            + [f"{r.total:g}" if graded else "", f"{r.max_total:g}"])


def write_json(results: list[SubmissionResult], warnings: list[str], meta: dict, path: Path) -> None:
    """The run as JSON (ASCII escapes: any content can be written); the graded answer sources stay
    in the per-submission results and feedback pages."""
    subs = []
    for r in results:
        data = r.to_json()
        data.pop("answers", None)
        subs.append(data)
    path.write_text(json.dumps({**meta, "counts": counts(results), "warnings": [neutral.text(w) for w in warnings],
                                "submissions": subs}, indent=2), encoding="utf-8")


def table(results: list[SubmissionResult]) -> str:
    """The run's results for the terminal: one row per graded or failed submission, and one line
    per student for what they did not hand in. Control characters are shown as escapes."""
    rows = [("student", "lesson", "status", "score", "note")]
    missing: dict[str, list[str]] = {}
    for r in results:
        if r.status == "missing":
            missing.setdefault(r.student, []).append(r.lesson or "—")
            continue
        score = f"{r.total:g} / {r.max_total:g}" if r.status == "graded" else "—"
        note = r.reason or ("; ".join(r.notes) if r.notes else "")
        note = neutral.terminal(note[:70]) + ("…" if len(note) > 70 else "")
        rows.append((neutral.terminal(r.student), r.lesson or "—", r.status, score, note))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4])
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 4)
    if missing:
        lines.append("")
        lines += [f"not handed in: {neutral.terminal(student)}: {', '.join(lessons)}"
                  for student, lessons in missing.items()]
    return "\n".join(lines)


def write_index(results: list[SubmissionResult], folders: dict[str, str], path: Path) -> None:
    """An HTML overview for the instructor: one row per submission, linked to its feedback page
    (a link made of the student's safe folder name, quoted: it cannot leave OUT), with the static
    scan's findings flagged for a look."""
    rows = []
    for r in results:
        score = f"{r.total:g} / {r.max_total:g}" if r.status == "graded" else "—"
        note = r.reason or "; ".join(r.notes)
        folder = folders.get(r.student) or neutral.folder_name(r.student)
        link = escape(neutral.href("feedback", folder, f"{r.lesson or '_'}.html"))
        name = f"<a href='{link}'>{escape(r.student)}</a>"
        failed = "".join(f"<li>{escape(c.grade_id)}: {escape((c.message.splitlines() or [''])[0])}</li>"
                         for c in r.cells if c.points < c.max_points)
        flag = ("<p class='flag'>⚑ to look at: " + escape("; ".join(r.flags)) + "</p>") if r.flags else ""
        rows.append(f"<tr class='{escape(r.status)}'><td>{name}</td><td>{escape(r.lesson)}</td><td>{escape(r.status)}</td>"
                    f"<td>{score}</td><td>{flag}{escape(note)}<ul>{failed}</ul></td></tr>")
    path.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Grades</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}"
        "td,th{border-bottom:1px solid #ddd;padding:.4rem .6rem;text-align:left;vertical-align:top}"
        "tr.failed td{background:#ffebe9}tr.missing td{color:#888}ul{margin:.2rem 0;padding-left:1.2rem}"
        ".flag{background:#fff8c5;margin:0 0 .3rem;padding:.2rem .4rem}"
        f"</style></head><body><h1>Grades</h1><p>{len(results)} submissions: {counts_line(results)}. "
        "Machine-readable: <a href='grades.csv'>grades.csv</a>, <a href='summary.json'>summary.json</a>.</p>"
        "<table><tr><th>student</th><th>lesson</th><th>status</th><th>score</th><th>notes and lost points</th></tr>"
        + "".join(rows) + "</table></body></html>", encoding="utf-8", errors="xmlcharrefreplace")
