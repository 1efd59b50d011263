"""Build the notebook that is graded from the instructor's notebook and a submission.

The instructor's notebook gives the structure. Solution cells are taken from the submission by
``grade_id``; tests (with hidden tests), setup and prose are the instructor's version, so a
deleted, edited or reordered test cell changes nothing. A solution cell missing from the
submission is replaced by the student-version stub (it scores what a blank answer scores).

Cells the student added are graded too, as the student ran them: every code cell of the
submission that is not a copy of an instructor cell (a helper, a second try below the stub, a
copied answer cell) runs right after the instructor cell that precedes it in the submission. A
second copy of an answer cell counts as an added cell, so an answer written in a copy below the
stub replaces the stub, as it did in the student's session. Copies of test cells and cells tagged
``experiment`` are not run. The trusted comparison keeps added cells from changing what
``check()`` recorded: they can only define or change the student's own functions.

Every repair and every added cell is reported as a note. A file that is not a notebook, or whose
cells are not well-formed (a ``source`` that is not text, say), is :class:`SubmissionUnreadable`:
that student's failure, with the reason, never a crash of the batch. Malformed nbgrader metadata
on a cell makes that cell an ordinary (added) cell.

Reading is bounded in the grader's memory, whatever the file holds: its size, the number of JSON
values in it (counted from the separators before parsing), the size of each code cell and of all
code together (a 4.8 MB answer cell once cost the grader 2.4 GB of syntax trees) are capped, and
text that cannot be written as UTF-8 (a lone surrogate) is replaced as it is read.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from .course import CellSpec, Lesson, defined_functions, read_notebook

_RELEASE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
MAX_NOTEBOOK_BYTES = 50 * 1024**2
MAX_CELLS = 2000
#: JSON values a notebook may hold (bounds the parser's objects: about 100 bytes each)
MAX_JSON_VALUES = 1_000_000
#: characters of one code cell's source, and of all code cells together
MAX_CELL_CHARS = 200_000
MAX_CODE_CHARS = 2_000_000


class SubmissionUnreadable(ValueError):
    """The submitted file is not a notebook that can be graded."""


@dataclass
class Assembled:
    notebook: nbformat.NotebookNode
    notes: list[str] = field(default_factory=list)
    specs: list[CellSpec] = field(default_factory=list)  # one per cell of ``notebook``; role "added" for added cells


def cell_text(value: Any) -> str:
    """A cell's ``source`` as text; SubmissionUnreadable unless it is a string or a list of strings."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "".join(value)
    raise SubmissionUnreadable(f"a cell's source is {type(value).__name__}, not text")


def as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def grade_id_of(cell: Any) -> str | None:
    """The cell's nbgrader grade_id, or None when absent or malformed."""
    gid = as_dict(as_dict(as_dict(cell).get("metadata")).get("nbgrader")).get("grade_id")
    return gid if isinstance(gid, str) and gid else None


def read_bytes(path) -> bytes:
    """A submitted file's bytes (:func:`stgrade.discover.read_regular`: a regular file, no link
    followed, never waiting on a FIFO), refusing one over :data:`MAX_NOTEBOOK_BYTES`."""
    from .discover import IntakeProblem, read_regular

    try:
        return read_regular(Path(path), MAX_NOTEBOOK_BYTES)
    except IntakeProblem as exc:
        raise SubmissionUnreadable(str(exc)) from None


def _clean(value: Any) -> Any:
    """``value`` with every string encodable as UTF-8 (a lone surrogate becomes U+FFFD)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    return value


def read_submission(path, data: bytes | None = None) -> nbformat.NotebookNode:
    """Read and check the structure of a submitted notebook (bounded size, cells that are cells);
    ``data``: its bytes, read earlier (the grader's snapshot), instead of the file."""
    path = Path(path)
    raw = read_bytes(path) if data is None else data
    if len(raw) > MAX_NOTEBOOK_BYTES:
        raise SubmissionUnreadable(f"{path.name} is over the limit of {MAX_NOTEBOOK_BYTES // 1024**2} MB")
    values = raw.count(b",") + raw.count(b":") + raw.count(b"[") + raw.count(b"{")
    if values > MAX_JSON_VALUES:
        raise SubmissionUnreadable(f"{path.name} holds more than {MAX_JSON_VALUES} JSON values (a notebook holds "
                                   "far fewer): not read")
    try:
        data = json.loads(raw)
    except SubmissionUnreadable:
        raise
    except (ValueError, RecursionError) as exc:
        raise SubmissionUnreadable(f"{path.name} is not a readable notebook ({type(exc).__name__}: {exc})"[:400]) from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise SubmissionUnreadable(f"{path.name} has no list of cells")
    if len(data["cells"]) > MAX_CELLS:
        raise SubmissionUnreadable(f"{path.name} has {len(data['cells'])} cells, over the limit of {MAX_CELLS}")
    code = 0
    for i, cell in enumerate(data["cells"]):
        if not isinstance(cell, dict) or not isinstance(cell.get("cell_type"), str):
            raise SubmissionUnreadable(f"{path.name}: cell {i + 1} is not a notebook cell")
        try:
            source = cell_text(cell.get("source", ""))
        except SubmissionUnreadable as exc:
            raise SubmissionUnreadable(f"{path.name}: cell {i + 1}: {exc}") from None
        if cell["cell_type"] == "code":
            code += len(source)
            if len(source) > MAX_CELL_CHARS:
                raise SubmissionUnreadable(f"{path.name}: code cell {i + 1} has {len(source)} characters, over the "
                                           f"limit of {MAX_CELL_CHARS}")
    if code > MAX_CODE_CHARS:
        raise SubmissionUnreadable(f"{path.name}: its code cells hold {code} characters together, over the limit of "
                                   f"{MAX_CODE_CHARS}")
    try:
        return nbformat.from_dict(_clean(data))
    except Exception as exc:  # nbformat raises many kinds for odd input
        raise SubmissionUnreadable(f"{path.name} is not a readable notebook ({type(exc).__name__})") from None


def _release_sources(lesson: Lesson) -> dict[str, str]:
    if not lesson.release_path.exists():
        return {}
    nb = read_notebook(lesson.release_path)
    return {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade_id")}


def normalized(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def instructor_code_cells(lesson: Lesson) -> dict[str, int]:
    """Normalised source -> index, for the instructor's code cells without a grade_id (setup and
    experiments), in both the instructor's and the student's version of the notebook."""
    found = {normalized(spec.source): spec.index for spec in lesson.cells
             if spec.role in ("setup", "experiment") and not spec.grade_id}
    if lesson.release_path.exists():
        release = read_notebook(lesson.release_path)
        by_position = [spec for spec in lesson.cells if spec.role in ("setup", "experiment") and not spec.grade_id]
        theirs = [c for c in release.cells if c.cell_type == "code" and not grade_id_of(c)]
        if len(theirs) == len(by_position):  # released notebooks keep the instructor's order
            for spec, cell in zip(by_position, theirs):
                found.setdefault(normalized(cell.source), spec.index)
    return found


def assemble(lesson: Lesson, submission: nbformat.NotebookNode) -> Assembled:
    source_nb = read_notebook(lesson.source_path)
    roles = {spec.grade_id: spec for spec in lesson.cells if spec.grade_id}
    known_code = instructor_code_cells(lesson)
    answers: dict[str, str] = {}
    copies: dict[str, int] = {}
    added: dict[int, list[str]] = {}  # instructor cell index (-1: the top) -> code added after it
    notes: list[str] = []
    unknown: list[str] = []
    anchor = -1
    for cell in submission.cells:
        if cell.get("cell_type") != "code":
            continue
        source = cell_text(cell.get("source", ""))
        gid = grade_id_of(cell)
        spec = roles.get(gid) if gid else None
        if spec is not None:
            copies[gid] = copies.get(gid, 0) + 1
            if copies[gid] == 1:
                anchor = spec.index
                if spec.role == "solution":
                    answers[gid] = source
                continue
            if spec.role != "solution":  # a copy of a test cell: the instructor's runs, once
                continue
        elif gid:
            unknown.append(gid)
        tags = as_dict(cell.get("metadata")).get("tags")
        if isinstance(tags, list) and "experiment" in tags:
            anchor = known_code.get(normalized(source), anchor)
            continue
        if normalized(source) in known_code:
            anchor = known_code[normalized(source)]
            continue
        if source.strip():
            added.setdefault(anchor, []).append(source)
    stubs = _release_sources(lesson)
    for gid, n in sorted(copies.items()):
        if n > 1:
            how = ("the first one is graded in its place, the others run where they are, like added cells"
                   if roles[gid].role == "solution" else "the instructor's version is run once")
            notes.append(f"cell '{gid}' appears {n} times in the submission; {how}")
    if unknown:
        notes.append(f"cells with unknown ids were run as added cells: {', '.join(sorted(set(unknown)))}")
    out = nbformat.v4.new_notebook(metadata=copy.deepcopy(source_nb.metadata))  # the source is shared
    specs: list[CellSpec] = []

    def add_cells(after: int) -> None:
        for source in added.get(after, []):
            out.cells.append(nbformat.v4.new_code_cell(source, metadata={"stgrade": {"added": True}}))
            specs.append(CellSpec(-1, "added", source, defines=defined_functions(source)))

    add_cells(-1)
    for spec, cell in zip(lesson.cells, source_nb.cells):
        new = nbformat.from_dict(dict(cell))
        if cell.cell_type == "code":
            new.outputs, new.execution_count = [], None
        if spec.role == "solution":
            if spec.grade_id in answers:
                new.source = answers[spec.grade_id]
            else:
                new.source = stubs.get(spec.grade_id, _RELEASE_STUB)
                notes.append(f"answer cell '{spec.grade_id}' is missing from the submission; it was graded as unanswered")
        out.cells.append(new)
        specs.append(spec)
        add_cells(spec.index)
    n_added = sum(len(v) for v in added.values())
    if n_added:
        notes.append(f"{n_added} cell{'s' if n_added > 1 else ''} you added {'were' if n_added > 1 else 'was'} run "
                     "where you put them")
    return Assembled(out, notes, specs)

