"""Find submissions in a folder, and take in every one without letting any file stop the run.

Accepted layouts:

- nbgrader's ``<dir>/<student>/<lesson>/*.ipynb`` (the notebook named ``<lesson>.ipynb`` is
  preferred when there are several);
- LMS downloads: ``<dir>/<student>_<lesson>.ipynb`` (or ``<lesson>_<student>.ipynb``, or inside a
  ``.zip`` named after the student), where ``<lesson>`` is a lesson id of the course.

Intake that no file can stop. Every problem while reading one entry — whatever the exception — is
that student's ``failed`` submission with the reason, never a crash or a hang of the run:

- links are never followed: a symbolic link (as a student's folder, a lesson folder, a notebook
  or a zip) is refused, and so is a file whose inode is shared with a file outside SUBMISSIONS (a
  hard link to ``solutions/``, say); only regular files are read (a FIFO, a socket or a device is
  refused before it is opened, and opening uses ``O_NONBLOCK | O_NOFOLLOW``);
- zips are read with limits on their size, number of members (checked in the end-of-central-
  directory record before :mod:`zipfile` lists them), each member's and all members' unpacked
  size, and time; an encrypted member, one compressed with a method Python cannot read (Deflate64,
  which Windows' built-in zip writes for large archives), a corrupt stream and a zip inside the
  zip are reported with what to do;
- folder and file names that are not UTF-8 become ids with ``\\x..`` escapes;
- several submissions of one student for one lesson (a folder, a zip, an LMS file) are graded
  only when they are the same bytes, otherwise reported, never chosen among silently;
- a lesson gets ``missing`` rows only when the cohort takes it (at least half of the students
  who handed in anything handed it in): one student's stray extra lesson is graded for that
  student without a ``missing`` row for everyone else (a warning says so).
"""

from __future__ import annotations

import os
import re
import stat
import struct
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

#: a submitted file (notebook or zip) is refused above this size
MAX_FILE_BYTES = 50 * 1024**2
MAX_ZIP_BYTES = 200 * 1024**2
MAX_ZIP_MEMBERS = 1000
MAX_ZIP_UNPACKED = 200 * 1024**2  # all members read from one zip together
ZIP_SECONDS = 20.0
#: entries looked at in SUBMISSIONS and in each student's folders
MAX_ENTRIES = 100_000


class IntakeProblem(Exception):
    """One submission cannot be taken in; the message says why, in words."""


@dataclass(frozen=True)
class Submission:
    student: str
    lesson: str
    path: Path | None  # None: missing
    problem: str = ""  # why it cannot be graded, found before running anything
    original: Path | None = None  # where it was submitted, when ``path`` is the grader's snapshot
    notes: tuple[str, ...] = ()  # what intake noticed (an identical second copy, say)

    def __post_init__(self) -> None:
        if self.original is None:
            object.__setattr__(self, "original", self.path)


def student_id(name: str) -> str:
    """The id of a folder or file name: itself, or with ``\\x..`` escapes where it is not UTF-8."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _shown(name: str) -> str:
    return student_id(name)


class _Links:
    """Hard-link counts of the files seen inside SUBMISSIONS: a file whose link count is higher
    shares its inode with something outside."""

    def __init__(self) -> None:
        self.inside: dict[tuple[int, int], int] = {}

    def see(self, st: os.stat_result) -> None:
        if stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            self.inside[key] = self.inside.get(key, 0) + 1

    def outside(self, st: os.stat_result) -> bool:
        return st.st_nlink > self.inside.get((st.st_dev, st.st_ino), 0)


def _scan(folder: Path, links: _Links, budget: list[int]) -> list[tuple[str, os.stat_result]]:
    """``(name, lstat)`` of the entries of ``folder``, sorted by name, hidden ones left out."""
    found = []
    with os.scandir(folder) as it:
        for entry in it:
            budget[0] -= 1
            if budget[0] < 0:
                raise IntakeProblem(f"more than {MAX_ENTRIES} entries in the submissions folder")
            if entry.name.startswith("."):
                continue
            st = entry.stat(follow_symlinks=False)
            links.see(st)
            found.append((entry.name, st))
    return sorted(found, key=lambda e: os.fsencode(e[0]))


def check_file(name: str, st: os.stat_result, links: _Links, limit: int = MAX_FILE_BYTES) -> None:
    """Raise :class:`IntakeProblem` unless ``st`` is a regular file of SUBMISSIONS alone."""
    if stat.S_ISLNK(st.st_mode):
        raise IntakeProblem(f"{_shown(name)} is a symbolic link; links are not followed (hand in the file itself)")
    if not stat.S_ISREG(st.st_mode):
        raise IntakeProblem(f"{_shown(name)} is not a regular file")
    if links.outside(st):
        raise IntakeProblem(f"{_shown(name)} is a hard link to a file outside the submissions folder; not read")
    if st.st_size > limit:
        raise IntakeProblem(f"{_shown(name)} is over the limit of {limit // 1024**2} MB")


def read_regular(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file, opened without following a link and without blocking (a FIFO
    put in its place after discovery is refused, not waited on), at most ``limit``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise IntakeProblem(f"{_shown(path.name)} could not be opened ({exc.strerror or type(exc).__name__})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IntakeProblem(f"{_shown(path.name)} is not a regular file")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise IntakeProblem(f"{_shown(path.name)} is over the limit of {limit // 1024**2} MB")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _pick_notebook(folder: Path, lesson: str, links: _Links, budget: list[int]) -> tuple[Path | None, str]:
    entries = [(n, st) for n, st in _scan(folder, links, budget) if n.endswith(".ipynb")]
    if not entries:
        return None, f"no notebook in {_shown(folder.name)}/"
    named = [(n, st) for n, st in entries if n == f"{lesson}.ipynb"]
    if named or len(entries) == 1:
        name, st = (named or entries)[0]
        check_file(name, st, links)
        return folder / name, ""
    return None, f"{len(entries)} notebooks in {_shown(folder.name)}/ and none is named {lesson}.ipynb"


def _lms_match(name: str, lessons: list[str]) -> tuple[str, str] | None:
    for lesson in lessons:
        m = re.fullmatch(rf"(?P<s>.+?)[_-]+{re.escape(lesson)}", name) or re.fullmatch(
            rf"{re.escape(lesson)}[_-]+(?P<s>.+)", name)
        if m:
            return m.group("s"), lesson
    return None


def zip_member_count(data: bytes) -> int:
    """The number of members a zip declares in its end-of-central-directory record (zip64 too),
    read before :class:`zipfile.ZipFile` builds one object per member."""
    at = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    if at < 0 or len(data) < at + 22:
        raise IntakeProblem("not a readable zip file (no end-of-archive record)")
    count = struct.unpack_from("<H", data, at + 10)[0]
    if count == 0xFFFF:  # zip64: the locator just before points to the zip64 record
        loc = at - 20
        if loc < 0 or data[loc:loc + 4] != b"PK\x06\x07":
            raise IntakeProblem("not a readable zip file (broken zip64 record)")
        record = struct.unpack_from("<Q", data, loc + 8)[0]
        if record + 56 > len(data) or data[record:record + 4] != b"PK\x06\x06":
            raise IntakeProblem("not a readable zip file (broken zip64 record)")
        count = struct.unpack_from("<Q", data, record + 32)[0]
    return count


def _overlapping(infos: list[zipfile.ZipInfo]) -> str | None:
    """Which member's data starts inside another's (a "quoted-overlap" zip bomb, CVE-2024-0450), or None.

    A member occupies at least the fixed 30 bytes of its local header and its compressed data from
    ``header_offset`` on (its name and extra field come on top), so a member that starts before that
    end overlaps for certain: no false alarm on an honest zip. Checked here,
    not left to ``zipfile``: only Pythons patched for the CVE (3.11.8+, 3.12.2+, Debian's 3.11.2) refuse
    such members, one by one, and the verdict must not depend on the student's grader's Python.
    """
    spans = sorted((info.header_offset, 30 + info.compress_size, info.filename) for info in infos)
    for (start, size, name), (next_start, _, next_name) in zip(spans, spans[1:]):
        if next_start < start + size:
            return f"{_shown(next_name)} starts inside {_shown(name)}"
    return None


def _zip_notebooks(data: bytes, lessons: list[str]) -> tuple[dict[str, list[tuple[str, bytes | str]]], list[str]]:
    """``({lesson: [(member name, bytes, or why it cannot be read)]}, nested zips)`` of a zip."""
    import io

    started = time.monotonic()
    count = zip_member_count(data)
    if count > MAX_ZIP_MEMBERS:
        raise IntakeProblem(f"the zip has {count} members, over the limit of {MAX_ZIP_MEMBERS}")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 — any way a zip can be broken
        raise IntakeProblem(f"not a readable zip file ({type(exc).__name__})") from None
    infos = zf.infolist()
    if len(infos) > MAX_ZIP_MEMBERS:
        raise IntakeProblem(f"the zip has {len(infos)} members, over the limit of {MAX_ZIP_MEMBERS}")
    overlap = _overlapping(infos)
    if overlap:
        raise IntakeProblem(f"the zip's members overlap ({overlap}): a zip bomb, not a submission")
    found: dict[str, list[tuple[str, bytes | str]]] = {}
    nested: list[str] = []
    unpacked = 0
    for info in infos:
        if time.monotonic() - started > ZIP_SECONDS:
            raise IntakeProblem(f"reading the zip took longer than {ZIP_SECONDS:.0f} s")
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.endswith("/") or "__MACOSX" in parts or any(part.startswith(".") for part in parts):
            continue  # folders, macOS metadata, .ipynb_checkpoints and other hidden files
        lower = parts[-1].lower()
        if lower.endswith((".zip", ".tar", ".gz", ".tgz", ".7z", ".rar")):
            nested.append(name)
            continue
        if not lower.endswith(".ipynb"):
            continue
        lesson = next((lsn for lsn in lessons if lsn in parts[-1]), None)
        if lesson is None:
            continue
        if info.flag_bits & 0x1:
            why = f"{name} in the zip is encrypted: hand in a zip without a password"
        elif info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            method = {9: "Deflate64", 12: "bzip2", 14: "LZMA", 93: "Zstandard"}.get(info.compress_type,
                                                                                       f"method {info.compress_type}")
            why = (f"{name} in the zip is compressed with {method}, which cannot be read here: zip it again with "
                   "ordinary compression (Deflate), or hand in the notebook itself")
        elif info.file_size > MAX_FILE_BYTES:
            why = f"{name} in the zip is over the size limit of {MAX_FILE_BYTES // 1024**2} MB"
        elif unpacked + info.file_size > MAX_ZIP_UNPACKED:
            raise IntakeProblem(f"the zip would unpack to more than {MAX_ZIP_UNPACKED // 1024**2} MB")
        else:
            try:
                with zf.open(info) as member:
                    content = member.read(MAX_FILE_BYTES + 1)
                unpacked += len(content)
                why = f"{name} in the zip is over the size limit" if len(content) > MAX_FILE_BYTES else ""
            except Exception as exc:  # noqa: BLE001 — corrupt streams, bad CRCs, overlapping entries, …
                why = f"{name} in the zip could not be unpacked ({type(exc).__name__}: {str(exc)[:120]})"
            if unpacked > MAX_ZIP_UNPACKED:
                raise IntakeProblem(f"the zip unpacks to more than {MAX_ZIP_UNPACKED // 1024**2} MB")
            if not why:
                found.setdefault(lesson, []).append((name, content))
                continue
        found.setdefault(lesson, []).append((name, why))
    return found, nested


def discover(folder: Path, lessons: list[str], work: Path) -> tuple[list[Submission], list[str]]:
    """All (student, lesson) pairs to report: every submission found, and a ``missing`` one for
    each student and each lesson the cohort takes that the student did not hand in.

    Returns the submissions and warnings (things passed over, ids that collide, stray lessons).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"submissions folder {folder} does not exist")
    work = Path(work)
    links, budget = _Links(), [MAX_ENTRIES]
    candidates: dict[tuple[str, str], list[tuple[str, Path | None, str, bytes | None]]] = {}
    students: dict[str, None] = {}
    warnings: list[str] = []
    failed: dict[str, str] = {}  # student -> why nothing of theirs could be read

    def offer(student: str, lesson: str, where: str, path: Path | None, problem: str = "",
              data: bytes | None = None) -> None:
        students.setdefault(student)
        candidates.setdefault((student, lesson), []).append((where, path, problem, data))

    try:
        top = _scan(folder, links, budget)
    except IntakeProblem as exc:
        raise RuntimeError(f"the submissions folder cannot be read: {exc}") from None
    for name, st in top:
        student = student_id(Path(name).stem if not stat.S_ISDIR(st.st_mode) else name)
        try:
            if stat.S_ISDIR(st.st_mode):
                _take_folder(folder / name, student_id(name), lessons, links, budget, offer, warnings)
                students.setdefault(student_id(name))
            elif name.endswith(".ipynb"):
                match = _lms_match(student_id(Path(name).stem), lessons)
                if match is None:
                    warnings.append(f"{student_id(name)}: no lesson id in the file name, skipped")
                    continue
                try:
                    check_file(name, st, links)
                    offer(match[0], match[1], student_id(name), folder / name)
                except IntakeProblem as exc:
                    offer(match[0], match[1], student_id(name), None, str(exc))
            elif name.endswith(".zip"):
                _take_zip(folder / name, st, student, lessons, links, work, offer, warnings)
            elif stat.S_ISLNK(st.st_mode):
                warnings.append(f"{student_id(name)}: a symbolic link; links are not followed, skipped")
                failed.setdefault(student, f"{student_id(name)} is a symbolic link; links are not followed")
                students.setdefault(student)
            else:
                warnings.append(f"{student_id(name)}: not a notebook, zip or folder, skipped")
        except Exception as exc:  # noqa: BLE001 — whatever one entry does, it is that student's failure
            why = str(exc) if isinstance(exc, IntakeProblem) else f"could not be read ({type(exc).__name__}: {str(exc)[:200]})"
            warnings.append(f"{student_id(name)}: {why}")
            failed.setdefault(student, why)
            students.setdefault(student)
    return _resolve(candidates, students, failed, lessons, warnings, work), warnings


def _take_folder(path: Path, student: str, lessons, links, budget, offer, warnings) -> None:
    for name, st in _scan(path, links, budget):
        if stat.S_ISLNK(st.st_mode):
            if student_id(name) in lessons:
                offer(student, student_id(name), f"{student}/{student_id(name)}", None,
                      f"{student}/{student_id(name)} is a symbolic link; links are not followed")
            else:
                warnings.append(f"{student}/{student_id(name)}: a symbolic link, skipped")
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        if name not in lessons:
            warnings.append(f"{student}/{student_id(name)}: not a lesson of this course, skipped")
            continue
        try:
            nb, problem = _pick_notebook(path / name, name, links, budget)
        except IntakeProblem as exc:
            nb, problem = None, str(exc)
        offer(student, name, f"{student}/{name}/", nb, problem)


def _take_zip(path: Path, st: os.stat_result, student: str, lessons, links, work: Path, offer, warnings) -> None:
    try:
        check_file(path.name, st, links, MAX_ZIP_BYTES)
        found, nested = _zip_notebooks(read_regular(path, MAX_ZIP_BYTES), lessons)
    except IntakeProblem as exc:
        warnings.append(f"{student_id(path.name)}: {exc}")
        offer(student, "", student_id(path.name), None, f"{student_id(path.name)}: {exc}")
        return
    if nested:
        listed = ", ".join(student_id(n) for n in nested[:3])
        warnings.append(f"{student_id(path.name)}: archives inside the zip were not opened: {listed}")
    if not found:
        why = (f"{student_id(path.name)} holds no notebook of a lesson"
               + (f"; archives inside it are not opened ({', '.join(nested[:3])}): zip the notebooks themselves"
                  if nested else ""))
        offer(student, "", student_id(path.name), None, why)
        return
    for lesson, members in found.items():
        named = [m for m in members if m[0].replace("\\", "/").rsplit("/", 1)[-1] == f"{lesson}.ipynb"]
        if len(members) > 1 and len(named) == 1:  # as in a folder: the notebook named after the lesson
            members = named
        for member, content in members:
            where = f"{student_id(path.name)}:{member}"
            if isinstance(content, str):
                offer(student, lesson, where, None, content)
                continue
            work.mkdir(parents=True, exist_ok=True)
            target = work / f"zip-{len(list(work.iterdir()))}" / f"{lesson}.ipynb"
            target.parent.mkdir(mode=0o700)
            target.write_bytes(content)
            offer(student, lesson, where, target, "", content)


def cohort_lessons(handed_in: list[tuple[str, str]]) -> tuple[list[str], list[tuple[str, int, int]]]:
    """``(lessons the cohort takes, [(stray lesson, students who handed it in, students)]``) from
    the (student, lesson) pairs handed in: a lesson is the cohort's when at least half of the
    students who handed in anything handed it in. Only those get a ``missing`` row for a student
    who did not."""
    students = {s for s, lsn in handed_in if lsn}
    taken, stray = [], []
    for lesson in sorted({lsn for _, lsn in handed_in if lsn}):
        n = len({s for s, lsn in handed_in if lsn == lesson})
        if 2 * n >= len(students):
            taken.append(lesson)
        else:
            stray.append((lesson, n, len(students)))
    return taken, stray


def _resolve(candidates, students, failed, lessons, warnings, work) -> list[Submission]:
    found: dict[tuple[str, str], Submission] = {}
    for (student, lesson), offers in candidates.items():
        if not lesson:
            failed.setdefault(student, offers[0][2] or "nothing of a lesson could be read")
            continue
        readable = [(where, path, data) for where, path, problem, data in offers if path is not None]
        problems = [problem for _, path, problem, _ in offers if path is None and problem]
        if len(offers) == 1:
            where, path, problem, _ = offers[0]
            found[(student, lesson)] = Submission(student, lesson, path, problem)
            continue
        places = ", ".join(where for where, *_ in offers)
        contents = set()
        for _, path, data in readable:
            try:
                contents.add(data if data is not None else read_regular(path))
            except IntakeProblem as exc:
                problems.append(str(exc))
        if not problems and len(contents) == 1:
            first = readable[0]
            found[(student, lesson)] = Submission(student, lesson, first[1], notes=(
                f"handed in {len(offers)} times ({places}), all the same file: graded once",))
        else:
            why = f"{len(offers)} submissions for this lesson ({places})"
            why += " that differ" if not problems else f" ({'; '.join(problems)[:300]})"
            why += ": keep only the one to grade and grade again"
            warnings.append(f"{student}: {why}")
            found[(student, lesson)] = Submission(student, lesson, None, why)
    taken, stray = cohort_lessons([(s, lsn) for (s, lsn) in found])
    for lesson, n, of in stray:
        warnings.append(f"{lesson}: handed in by {n} of {of} students; graded for them, and no 'missing' row for "
                        "the others (the cohort does not take it)")
    result = []
    for student in sorted(students, key=lambda s: s.encode("utf-8", "surrogatepass")):
        mine = sorted(lsn for (s, lsn) in found if s == student)
        for lesson in sorted(set(mine) | set(taken)):
            sub = found.get((student, lesson))
            if sub is None:
                sub = Submission(student, lesson, None, failed.get(student, ""))
            result.append(sub)
        if not mine and not taken:
            result.append(Submission(student, "", None, failed.get(student, "")))
    return result
