"""Build the notebook that is graded from the instructor's notebook and a submission.

The instructor's notebook gives the structure. Solution cells are taken from the submission by
``grade_id``; everything else (tests with hidden tests, setup, prose) is the instructor's version,
so a deleted, edited or reordered test cell changes nothing. A solution cell missing from the
submission is replaced by the student-version stub (it scores what a blank answer scores), and each
such repair is reported as a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nbformat

from .course import Lesson

_RELEASE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


class SubmissionUnreadable(ValueError):
    """The submitted file is not a notebook that can be graded."""


@dataclass
class Assembled:
    notebook: nbformat.NotebookNode
    notes: list[str] = field(default_factory=list)


def read_submission(path) -> nbformat.NotebookNode:
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # nbformat raises many kinds for a corrupt file
        raise SubmissionUnreadable(f"{path.name} is not a readable notebook ({type(exc).__name__}: {exc})"[:400]) from exc
    if not isinstance(nb.get("cells"), list):
        raise SubmissionUnreadable(f"{path.name} has no list of cells")
    return nb


def _release_sources(lesson: Lesson) -> dict[str, str]:
    if not lesson.release_path.exists():
        return {}
    nb = nbformat.read(lesson.release_path, as_version=4)
    return {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade_id")}


def assemble(lesson: Lesson, submission: nbformat.NotebookNode) -> Assembled:
    source_nb = nbformat.read(lesson.source_path, as_version=4)
    answers: dict[str, list[str]] = {}
    for cell in submission.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id and cell.get("cell_type") == "code":
            answers.setdefault(grade_id, []).append(cell.get("source", ""))
    stubs = _release_sources(lesson)
    notes: list[str] = []
    for grade_id, sources in sorted(answers.items()):
        if len(sources) > 1:
            notes.append(f"cell '{grade_id}' appears {len(sources)} times in the submission; the first one was graded")
    out = nbformat.v4.new_notebook(metadata=source_nb.metadata)
    for spec, cell in zip(lesson.cells, source_nb.cells):
        new = nbformat.from_dict(dict(cell))
        if cell.cell_type == "code":
            new.outputs, new.execution_count = [], None
        if spec.role == "solution":
            if spec.grade_id in answers:
                new.source = answers[spec.grade_id][0]
            else:
                new.source = stubs.get(spec.grade_id, _RELEASE_STUB)
                notes.append(f"answer cell '{spec.grade_id}' is missing from the submission; it was graded as unanswered")
        out.cells.append(new)
    known = {s.grade_id for s in lesson.cells if s.grade_id}
    unknown = sorted(set(answers) - known)
    if unknown:
        notes.append(f"cells with unknown ids were ignored: {', '.join(unknown)}")
    return Assembled(out, notes)
