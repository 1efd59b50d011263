"""Regenerate the student notebooks (course/) from the instructor notebooks (solutions/).

For each lesson: the jupytext pair ``solutions/<id>/<id>.py`` → ``<id>.ipynb`` is synced (the .py
is the reviewable text; the .ipynb is what nbgrader reads), then ``nbgrader generate_assignment``
writes ``course/<id>/<id>.ipynb`` (stubs instead of solutions, no hidden tests, no outputs), and
the jupytext pairing is removed from the student copy so that JupyterLab does not create .py files
next to students' notebooks. Cells tagged ``instructor`` (instructor notes: answers to the
explorer and inline questions, with the numbers) are removed from the student copy as well.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jupytext
import nbformat

from .course import REPO_ROOT, lesson_ids


#: cells with this tag are instructor notes: kept in solutions/, removed from course/
INSTRUCTOR_TAG = "instructor"


def notebook_from_text(py_path: Path) -> nbformat.NotebookNode:
    """The notebook of a jupytext .py, without outputs and with cell ids that depend only on the
    cells' content (so regenerating it changes nothing, and editing one cell changes one id)."""
    nb = jupytext.read(py_path)
    seen: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        digest = hashlib.sha1(f"{cell.cell_type}\0{cell.source}".encode()).hexdigest()
        n = 0
        while (cell_id := digest[:8] + (f"-{n}" if n else "")) in seen:
            n += 1
        seen.add(cell_id)
        cell.id = cell_id
    return nb


def sync_source(lesson_id: str, root: Path = REPO_ROOT) -> bool:
    """Write solutions/<id>/<id>.ipynb from its .py twin; True when it changed."""
    folder = root / "solutions" / lesson_id
    py_path, ipynb_path = folder / f"{lesson_id}.py", folder / f"{lesson_id}.ipynb"
    if not py_path.exists():
        return False
    text = jupytext.writes(notebook_from_text(py_path), fmt="ipynb")
    if ipynb_path.exists() and ipynb_path.read_text() == text:
        return False
    ipynb_path.write_text(text)
    return True


def generate(lesson_id: str, release_root: Path, root: Path = REPO_ROOT) -> Path:
    """Run nbgrader generate_assignment for one lesson into ``release_root``; return the notebook."""
    with tempfile.TemporaryDirectory(prefix="stgrade-db-") as folder:  # removed, whatever happens
        db = Path(folder) / "gradebook.db"
        cmd = [sys.executable, "-m", "nbgrader", "generate_assignment", lesson_id, "--force",
               f"--CourseDirectory.release_directory={release_root}", f"--CourseDirectory.db_url=sqlite:///{db}",
               "--log-level=WARN"]
        # nbgrader runs `alembic` for its database: make the environment's own scripts visible.
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        proc = subprocess.run(cmd, cwd=root / "autograder", capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment {lesson_id} failed:\n{proc.stdout}\n{proc.stderr}")
    target = Path(release_root) / lesson_id / f"{lesson_id}.ipynb"
    nb = nbformat.read(target, as_version=4)
    nb.metadata.pop("jupytext", None)
    nb.cells = [c for c in nb.cells if INSTRUCTOR_TAG not in c.metadata.get("tags", [])]
    nbformat.write(nb, target)
    return target


def release(root: Path = REPO_ROOT, lessons: list[str] | None = None) -> list[Path]:
    written = []
    for lesson_id in lessons or _lessons_with_text(root):
        sync_source(lesson_id, root)
    for lesson_id in lessons or lesson_ids(root):
        written.append(generate(lesson_id, root / "course", root))
    return written


def _lessons_with_text(root: Path) -> list[str]:
    return sorted(p.parent.name for p in (root / "solutions").glob("*/*.py") if p.stem == p.parent.name)
