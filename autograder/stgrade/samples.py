"""The sample cohort that ``make demo`` grades: the union of every lesson's cohort
(:mod:`stgrade.cohorts`), written in nbgrader's ``submitted/<student>/<lesson>/`` layout.

``expected()`` maps (student, lesson) to the documented outcome; a student who handed in other
lessons but not this one is expected "missing" for it when the cohort takes the lesson
(:func:`stgrade.discover.cohort_lessons`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

from .cohorts import Expected, cohorts, lesson_sources
from .course import REPO_ROOT
from .discover import cohort_lessons


def lessons() -> list[str]:
    return sorted(cohorts())


def expected(only: list[str] | None = None) -> dict[tuple[str, str], Expected]:
    """(student, lesson) -> expected outcome, for every pair the grader reports."""
    chosen = [lsn for lsn in lessons() if only is None or lsn in only]
    out: dict[tuple[str, str], Expected] = {}
    for lesson in chosen:
        for student, want in cohorts()[lesson].EXPECTED.items():
            out[(student, lesson)] = want
    students = {s for s, _ in out}
    taken, _ = cohort_lessons([(s, lsn) for (s, lsn), w in out.items() if w.status != "missing"])
    for student in students:
        for lesson in taken:
            out.setdefault((student, lesson), Expected("missing", None, "did not hand in this lesson"))
    return out


def build(target: Path, root: Path = REPO_ROOT, only: list[str] | None = None) -> Path:
    """Write the cohorts of ``only`` (default: every lesson) under ``target/submitted``; return it."""
    submitted = Path(target) / "submitted"
    if submitted.exists():
        shutil.rmtree(submitted)
    for lesson in lessons():
        if only is not None and lesson not in only:
            continue
        for student, nb in cohorts()[lesson].build(lesson_sources(lesson, root)).items():
            folder = submitted / student / lesson
            if nb is None:
                (submitted / student).mkdir(parents=True, exist_ok=True)
                continue
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{lesson}.ipynb"
            if isinstance(nb, str):
                path.write_text(nb)
            else:
                nbformat.write(nb, path)
    return submitted
