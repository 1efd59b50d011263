"""Find submissions in a folder.

Accepted layouts:

- nbgrader's ``<dir>/<student>/<lesson>/*.ipynb`` (the notebook named ``<lesson>.ipynb`` is
  preferred when there are several);
- LMS downloads: ``<dir>/<student>_<lesson>.ipynb`` (or ``<lesson>_<student>.ipynb``, or inside a
  ``.zip`` named after the student), where ``<lesson>`` is a lesson id of the course.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Submission:
    student: str
    lesson: str
    path: Path | None  # None: missing
    problem: str = ""  # why it cannot be graded, found before running anything
    original: Path | None = None  # where it was submitted, when ``path`` is the grader's snapshot

    def __post_init__(self) -> None:
        if self.original is None:
            object.__setattr__(self, "original", self.path)


def _pick_notebook(folder: Path, lesson: str) -> tuple[Path | None, str]:
    notebooks = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))
    if not notebooks:
        return None, f"no notebook in {folder.name}/"
    for nb in notebooks:
        if nb.stem == lesson:
            return nb, ""
    if len(notebooks) == 1:
        return notebooks[0], ""
    return None, f"{len(notebooks)} notebooks in {folder.name}/ and none is named {lesson}.ipynb"


def _lms_match(name: str, lessons: list[str]) -> tuple[str, str] | None:
    for lesson in lessons:
        m = re.fullmatch(rf"(?P<s>.+?)[_-]+{re.escape(lesson)}", name) or re.fullmatch(
            rf"{re.escape(lesson)}[_-]+(?P<s>.+)", name)
        if m:
            return m.group("s"), lesson
    return None


def _extract_zip(zpath: Path, lessons: list[str], work: Path) -> list[tuple[str, str, Path]]:
    student = zpath.stem
    found = []
    with zipfile.ZipFile(zpath) as zf:
        for info in zf.infolist():
            name = Path(info.filename)
            if name.suffix != ".ipynb" or info.file_size > 50 * 1024**2 or "__MACOSX" in name.parts:
                continue
            lesson = next((lsn for lsn in lessons if lsn in name.stem), None)
            if lesson:
                target = work / student / lesson / f"{lesson}.ipynb"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(info))
                found.append((student, lesson, target))
    return found


def discover(folder: Path, lessons: list[str], work: Path) -> tuple[list[Submission], list[str]]:
    """All (student, lesson) pairs: one per student and lesson that anybody submitted.

    Returns the submissions and warnings about things that were passed over.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"submissions folder {folder} does not exist")
    found: dict[tuple[str, str], Submission] = {}
    warnings: list[str] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            for sub in sorted(p for p in entry.iterdir() if p.is_dir()):
                if sub.name not in lessons:
                    warnings.append(f"{entry.name}/{sub.name}: not a lesson of this course, skipped")
                    continue
                path, problem = _pick_notebook(sub, sub.name)
                found[(entry.name, sub.name)] = Submission(entry.name, sub.name, path, problem)
            if not any((entry.name, lsn) in found for lsn in lessons):
                found.setdefault((entry.name, ""), Submission(entry.name, "", None))
        elif entry.suffix == ".ipynb":
            match = _lms_match(entry.stem, lessons)
            if match is None:
                warnings.append(f"{entry.name}: no lesson id in the file name, skipped")
                continue
            found[match] = Submission(match[0], match[1], entry)
        elif entry.suffix == ".zip":
            try:
                for student, lesson, path in _extract_zip(entry, lessons, work):
                    found[(student, lesson)] = Submission(student, lesson, path)
            except zipfile.BadZipFile:
                warnings.append(f"{entry.name}: not a readable zip file")
                found[(entry.stem, "")] = Submission(entry.stem, "", None, "not a readable zip file")
    submitted_lessons = sorted({lsn for (_, lsn) in found if lsn})
    students = sorted({s for (s, _) in found})
    result = []
    for student in students:
        for lesson in submitted_lessons:
            sub = found.get((student, lesson))
            if sub is None:
                broken = found.get((student, ""))
                sub = Submission(student, lesson, None, broken.problem if broken else "")
            result.append(sub)
    return result, warnings
