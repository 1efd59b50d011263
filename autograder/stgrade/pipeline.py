"""Grade a folder of submissions in parallel and write every output.

Writes into OUT: ``autograded/<student>/<lesson>/<lesson>.ipynb``,
``feedback/<student>/<lesson>.html``, ``grades.csv``, ``summary.json``, ``index.html`` (an overview
linking every feedback page) and ``results/<student>/<lesson>.json`` (one per submission, written
as soon as it is graded). A result whose inputs are unchanged (same file, same instructor notebook,
same grader version, seed and limits) is reused, so an interrupted run resumes where it stopped and
a repeated run gives the same grades; a result that would change is kept beside the new one as
``<lesson>.previous-N.json``, never silently replaced.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import __version__, feedback, report
from .assemble import SubmissionUnreadable, read_submission
from .course import lesson_ids, load_lesson
from .discover import Submission, discover
from .grading import SubmissionResult, grade_submission, grading_seed, submission_key
from .sandbox import Limits, protections_in_force

DEFAULT_SECRET = "stabletrain-default-secret"


@dataclass
class RunOptions:
    jobs: int = 0  # 0: one per core
    limits: Limits = Limits()
    secret: str = DEFAULT_SECRET
    force: bool = False  # regrade even when a result with the same inputs exists
    quiet: bool = False


def _result_path(out: Path, student: str, lesson: str) -> Path:
    return out / "results" / student / f"{lesson or '_'}.json"


def _load_previous(path: Path) -> SubmissionResult | None:
    try:
        return SubmissionResult.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _keep_previous(path: Path) -> Path:
    n = 1
    while (kept := path.with_name(f"{path.stem}.previous-{n}.json")).exists():
        n += 1
    path.rename(kept)
    return kept


def _answers(sub: Submission, lesson_id: str) -> dict[str, str]:
    if sub.path is None:
        return {}
    try:
        nb = read_submission(sub.path)
    except SubmissionUnreadable:
        return {}
    lesson = load_lesson(lesson_id)
    wanted = [c.grade_id for c in lesson.cells if c.role == "solution"]
    found = {}
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in wanted and gid not in found:
            found[gid] = cell.get("source", "")
    return found


class Progress:
    """One line per finished submission on stderr, with a count and an estimate of the time left."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.done, self.quiet, self.started = total, 0, quiet, time.monotonic()

    def update(self, r: SubmissionResult, how: str) -> None:
        self.done += 1
        if self.quiet:
            return
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done)
        score = f"{r.total:g}/{r.max_total:g}" if r.status == "graded" else r.status
        width = len(str(self.total))
        print(f"[{self.done:>{width}}/{self.total}] {r.student} / {r.lesson or '—'}: {score} ({how}, "
              f"{r.seconds:.1f} s) — about {left:.0f} s left", file=sys.stderr, flush=True)


def grade_folder(submissions: Path, out: Path, options: RunOptions) -> list[SubmissionResult]:
    """Grade everything in ``submissions``; write all outputs into ``out``; return the results."""
    started = datetime.now(timezone.utc)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="stgrade-unpacked-"))  # notebooks taken out of zip files
    try:
        subs, warnings = discover(submissions, lesson_ids(), work)
        results = _grade_all(subs, submissions, out, options)
        for sub, r in zip(subs, results):
            feedback.write(r, _answers(sub, r.lesson) if r.lesson else {}, out / "feedback")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cell_ids = {lid: [c.grade_id for c in load_lesson(lid).test_cells] for lid in {r.lesson for r in results if r.lesson}}
    report.write_csv(results, cell_ids, out / "grades.csv")
    meta = {"stgrade_version": __version__, "started": started.isoformat(),
            "finished": datetime.now(timezone.utc).isoformat(), "submissions_folder": str(submissions),
            "protections": protections_in_force(options.limits)}  # what contained the kernels (stgrade.sandbox)
    report.write_json(results, warnings, meta, out / "summary.json")
    report.write_index(results, out / "index.html")
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return results


def _grade_all(subs: list[Submission], folder: Path, out: Path, options: RunOptions) -> list[SubmissionResult]:
    results: dict[int, SubmissionResult] = {}
    todo: list[int] = []
    progress = Progress(len(subs), options.quiet)
    for i, sub in enumerate(subs):
        if sub.path is None:
            reason = sub.problem or ("no lesson submitted" if not sub.lesson else "no submission for this lesson")
            results[i] = SubmissionResult(sub.student, sub.lesson, "failed" if sub.problem else "missing", reason,
                                          max_total=load_lesson(sub.lesson).max_points if sub.lesson else 0.0)
            progress.update(results[i], "nothing to grade")
            continue
        path = _result_path(out, sub.student, sub.lesson)
        previous = _load_previous(path) if path.exists() else None
        key = submission_key(sub.path, load_lesson(sub.lesson), grading_seed(options.secret, sub.student, sub.lesson),
                             options.limits)
        if previous is not None and previous.key == key and not options.force:
            results[i] = previous
            progress.update(previous, "unchanged, kept")
            continue
        todo.append(i)
    jobs = options.jobs or os.cpu_count() or 1
    autograded = out / "autograded"
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(todo) or 1)), mp_context=context) as pool:
        futures = {
            pool.submit(grade_submission, subs[i].student, subs[i].lesson, subs[i].path, autograded,
                        options.limits, options.secret, _relative(subs[i].path, folder)): i
            for i in todo
        }
        for future in as_completed(futures):
            i = futures[future]
            sub = subs[i]
            try:
                r = future.result()
            except Exception as exc:  # a grader bug costs this submission only, and says so
                r = SubmissionResult(sub.student, sub.lesson, "failed", f"grader error: {type(exc).__name__}: {exc}",
                                     max_total=load_lesson(sub.lesson).max_points)
            path = _result_path(out, sub.student, sub.lesson)
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                kept = _keep_previous(path)
                r.notes.append(f"regraded; the earlier result is kept in {kept.relative_to(out)}")
            path.write_text(json.dumps(r.to_json(), indent=2))
            results[i] = r
            progress.update(r, "done")
    return [results[i] for i in range(len(subs))]


def _relative(path: Path, folder: Path) -> str:
    try:
        return str(path.relative_to(folder))
    except ValueError:
        return path.name
