"""One HTML feedback page per student and lesson.

It shows each graded cell's score and explanatory message, the student's own answers — the cells
that were graded (answer cells and the cells the student added, in the order they ran), never a
decoy cell that a later one replaced — and any notes about the submission; never the source of
hidden tests, and no tracebacks. Everything from the submission goes through :func:`html.escape`,
and the page is written with every character encodable (:func:`stgrade.neutral.text`).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from . import neutral
from .grading import SubmissionResult

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem} .score{font-size:1.2rem;margin:.5rem 0 1.5rem}
table{border-collapse:collapse;width:100%} th,td{border-bottom:1px solid #ddd;padding:.5rem;text-align:left;vertical-align:top}
td.pts{white-space:nowrap;font-weight:600} tr.passed td.pts{color:#1a7f37} tr.failed td.pts,tr.notrun td.pts{color:#cf222e}
pre{background:#f6f8fa;padding:.75rem;overflow:auto;white-space:pre-wrap;margin:0}
.note{background:#fff8c5;padding:.5rem .75rem;margin:.5rem 0}
"""


def render(result: SubmissionResult) -> str:
    title = f"{escape(result.lesson)} — feedback for {escape(result.student)}"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{_STYLE}</style>"
             f"</head><body><h1>{title}</h1>"]
    if result.status != "graded":
        parts.append(f"<p class='score'>Not graded: {escape(result.reason or result.status)}</p>")
    else:
        parts.append(f"<p class='score'>Score: <b>{result.total:g}</b> / {result.max_total:g}</p>")
    for note in result.notes:
        parts.append(f"<p class='note'>{escape(note)}</p>")
    if result.cells:
        parts.append("<table><tr><th>Exercise check</th><th>Points</th><th>Feedback</th></tr>")
        for cell in result.cells:
            css = cell.status.replace(" ", "")
            parts.append(f"<tr class='{css}'><td>{escape(cell.grade_id)}</td>"
                         f"<td class='pts'>{cell.points:g} / {cell.max_points:g}</td>"
                         f"<td><pre>{escape(cell.message)}</pre></td></tr>")
        parts.append("</table>")
    if result.answers:
        parts.append("<h2>Your answers, as graded</h2>")
        for label, source in result.answers:
            parts.append(f"<h3>{escape(label)}</h3><pre>{escape(source)}</pre>")
    parts.append("</body></html>")
    return "".join(parts)


def write(result: SubmissionResult, folder: Path) -> Path:
    """Write the page into ``folder`` (the student's own feedback folder, a safe name)."""
    target = folder / f"{result.lesson or '_'}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(neutral.text(render(result)), encoding="utf-8")
    return target
