"""Intake that no file can stop (issue 21): one grading run over a SUBMISSIONS folder holding every
kind of file that once stopped or stalled the whole run, or was taken in silently or wrongly.

Each of them must end as that one student's ``failed`` (with a reason) or be graded correctly,
and the run must finish with grades.csv for everyone: zips with an encrypted member, a Deflate64
member, a corrupt deflate stream, overlapping entries (a zip bomb) and 500,000 members; a FIFO in
place of a notebook; a folder name that is not UTF-8; a lone surrogate in an answer cell; a
symbolic link and a hard link to the instructor's solution; a zip inside the zip; two different
submissions of one student; ids that collide on a case-insensitive file system; a 32-letter
Cyrillic folder name; one student's stray extra lesson.

The run is a subprocess with a time limit, so that a protection removed shows as a hang or a
crash (no grades.csv) instead of stalling the test session.
"""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import nbformat
import pytest

from stgrade.cohorts import lesson_sources
from stgrade.course import REPO_ROOT, load_lesson

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("grading")]

LESSON = "04_gradient_clipping"
NB = f"{LESSON}.ipynb"
CYRILLIC = "Александрапетровнаивановасмирно"[:32].ljust(32, "я")
NON_UTF8 = b"stud\xff\xfeent"
SECRET_LINE = "### BEGIN SOLUTION"  # in the instructor's notebook only


def _zip_with(name: str, content: bytes, *, method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        zf.writestr(name, content)
    return buf.getvalue()


def _set_header_field(data: bytes, local_offset: int, central_offset: int, value: bytes) -> bytes:
    """Overwrite a field of the (only) member's local header and central directory entry."""
    out = bytearray(data)
    central = data.rfind(b"PK\x01\x02")
    out[local_offset:local_offset + len(value)] = value
    out[central + central_offset:central + central_offset + len(value)] = value
    return bytes(out)


def _bomb(name: str, members: int, unpacked: int) -> bytes:
    """Every central-directory entry points at one deflated local entry of ``unpacked`` zeros."""
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    kernel = raw.compress(b"\0" * unpacked) + raw.flush()
    crc = zlib.crc32(b"\0" * unpacked)
    fname = name.encode()
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(kernel), unpacked, len(fname), 0)
    local += fname + kernel
    entry = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(kernel), unpacked, len(fname),
                        0, 0, 0, 0, 0, 0) + fname
    central = entry * members
    count = min(members, 0xFFFF)
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(central), len(local), 0)
    if members >= 0xFFFF:  # zip64 end record and locator
        z64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, members, members, len(central), len(local))
        loc = struct.pack("<4sLQL", b"PK\x06\x07", 0, len(local) + len(central), 1)
        return local + central + z64 + loc + eocd
    return local + central + eocd


def _write_nb(path: Path, nb) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("intake")
    src = lesson_sources(LESSON, REPO_ROOT)
    blank, perfect = src.release, src.with_answers(src.solutions)
    blank_bytes = nbformat.writes(blank).encode()
    sub = root / "submitted"
    sub.mkdir()
    nb_name = f"x/{NB}"
    (sub / "encrypted.zip").write_bytes(_set_header_field(_zip_with(nb_name, blank_bytes), 6, 8, b"\x01\x00"))
    (sub / "deflate64.zip").write_bytes(_set_header_field(_zip_with(nb_name, blank_bytes), 8, 10, b"\x09\x00"))
    corrupt = bytearray(_zip_with(nb_name, blank_bytes, method=zipfile.ZIP_DEFLATED))
    corrupt[30 + len(nb_name) + 10:30 + len(nb_name) + 200] = os.urandom(190)
    (sub / "corrupt.zip").write_bytes(bytes(corrupt))
    (sub / "overlap.zip").write_bytes(_bomb(nb_name, 1000, 50 * 1024**2))
    (sub / "manymembers.zip").write_bytes(_bomb("a.txt", 500_000, 1))
    inner = _zip_with(NB, blank_bytes)
    (sub / "nested.zip").write_bytes(_zip_with("inner.zip", inner))
    fifo = sub / "fifo" / LESSON / NB
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    weird = os.path.join(os.fsencode(sub), NON_UTF8, LESSON.encode())
    os.makedirs(weird)
    with open(os.path.join(weird, NB.encode()), "wb") as f:
        f.write(blank_bytes)
    surrogate = json.loads(nbformat.writes(blank))
    cell = next(c for c in surrogate["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "clip_grad_value")
    cell["source"] = "# a stray character: \ud800\n" + src.solutions["clip_grad_value"]
    (sub / "surrogate" / LESSON).mkdir(parents=True)
    (sub / "surrogate" / LESSON / NB).write_text(json.dumps(surrogate), encoding="utf-8")  # \ud800 escaped
    solution = REPO_ROOT / "solutions" / LESSON / NB
    (sub / f"symlinker_{LESSON}.ipynb").symlink_to(solution)
    outside = root / "outside"
    (outside / LESSON).mkdir(parents=True)
    (outside / LESSON / NB).write_bytes(solution.read_bytes())
    (sub / "folderlinker").symlink_to(outside)
    (sub / "hardlinker" / LESSON).mkdir(parents=True)
    os.link(outside / LESSON / NB, sub / "hardlinker" / LESSON / NB)
    _write_nb(sub / "twice" / LESSON / NB, blank)
    _write_nb(sub / f"twice_{LESSON}.ipynb", perfect)
    _write_nb(sub / "same" / LESSON / NB, blank)
    _write_nb(sub / f"same_{LESSON}.ipynb", blank)
    for name in ("Casey", "casey"):
        (sub / name / LESSON).mkdir(parents=True)
        (sub / name / LESSON / NB).write_text("not json")
    _write_nb(sub / CYRILLIC / LESSON / NB, perfect)
    _write_nb(sub / CYRILLIC / "05_batch_norm" / "05_batch_norm.ipynb", lesson_sources("05_batch_norm", REPO_ROOT).release)
    out = root / "out"
    env = {**os.environ, "STGRADE_SECRET": "intake-test-secret-0123456789abcdef"}
    done = subprocess.run([sys.executable, "-m", "stgrade.cli", "grade", str(sub), "--out", str(out), "--jobs", "2",
                           "--cell-timeout", "20", "--quiet"], capture_output=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    with (out / "grades.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {"out": out, "rows": rows, "summary": summary, "stdout": done.stdout.decode(errors="replace"),
            "by": {(r["student_id"], r["lesson"]): r for r in rows}}


def _row(run, student, lesson=LESSON):
    return run["by"][(student, lesson)]


@pytest.mark.parametrize(("student", "why"), [
    ("encrypted", "encrypted"), ("deflate64", "Deflate64"), ("corrupt", "could not be unpacked"),
    ("overlap", "zip bomb"), ("manymembers", "500000 members"), ("nested", "inner.zip"),
])
def test_every_broken_zip_is_its_own_students_failure(run, student, why):
    row = _row(run, student)
    assert row["status"] == "failed" and why in row["reason"], row


def test_a_fifo_is_refused_not_waited_on(run):
    row = _row(run, "fifo")
    assert row["status"] == "failed" and "regular file" in row["reason"], row


def test_a_folder_name_that_is_not_utf8_is_graded(run):
    row = _row(run, "stud\\xff\\xfeent")
    assert row["status"] == "graded" and row["total"] == "0", row


def test_a_lone_surrogate_in_a_source_is_graded_and_reported(run):
    row = _row(run, "surrogate")
    assert row["status"] == "graded" and float(row["total"]) == 3, row  # clip_grad_value_ right: 3 points
    assert (run["out"] / "feedback" / "surrogate" / f"{LESSON}.html").exists()


def test_links_out_of_submissions_are_refused_and_nothing_of_the_solution_leaks(run):
    for student, why in (("symlinker", "symbolic link"), ("hardlinker", "hard link"), ("folderlinker", "symbolic link")):
        row = run["by"].get((student, LESSON)) or run["by"].get((student, ""))
        assert row is not None and row["status"] == "failed" and why in row["reason"], (student, row)
    for path in run["out"].rglob("*"):
        if path.is_file():
            assert SECRET_LINE not in path.read_text(errors="replace"), path


def test_several_submissions_are_reported_not_chosen_among(run):
    row = _row(run, "twice")
    assert row["status"] == "failed" and "2 submissions" in row["reason"] and "differ" in row["reason"], row
    same = _row(run, "same")
    assert same["status"] == "graded"
    notes = next(s for s in run["summary"]["submissions"] if s["student"] == "same")["notes"]
    assert any("all the same file" in n for n in notes), notes


def test_ids_that_collide_on_case_insensitive_file_systems_are_reported_and_kept_apart(run):
    assert any("Casey" in w and "casey" in w for w in run["summary"]["warnings"]), run["summary"]["warnings"]
    pages = [p.parent.name.lower() for p in (run["out"] / "feedback").glob("*asey*/*.html")]
    assert len(pages) == 2 and len(set(pages)) == 2, pages


def test_a_32_letter_cyrillic_folder_name_is_graded(run):
    row = _row(run, CYRILLIC)
    assert row["status"] == "graded" and float(row["total"]) == load_lesson(LESSON).max_points, row


def test_one_students_stray_lesson_renames_no_column_and_adds_no_missing_rows(run):
    rows = run["rows"]
    assert not any(r["status"] == "missing" for r in rows), [r for r in rows if r["status"] == "missing"]
    header = list(rows[0])
    assert "clip_grad_value_visible" in header and not any(h.startswith(f"{LESSON}:") for h in header), header
    assert _row(run, CYRILLIC, "05_batch_norm")["status"] == "graded"
    assert any("05_batch_norm: handed in by 1 of" in w for w in run["summary"]["warnings"])
