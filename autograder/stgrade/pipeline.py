"""Grade a folder of submissions in parallel and write every output.

Writes into OUT: ``autograded/<student>/<lesson>/<lesson>.ipynb``,
``feedback/<student>/<lesson>.html``, ``grades.csv``, ``summary.json``, ``index.html`` (an overview
linking every feedback page) and ``results/<student>/<lesson>.json`` (one per submission, written
as soon as it is graded). A result whose inputs are unchanged (same file, same instructor notebook,
same grader version, seed and limits) and whose signature (an HMAC with the course secret) is
intact is reused, so an interrupted run resumes where it stopped and a repeated run gives the same
grades; a result that would change, or that was changed after it was written, is kept beside the
new one as ``<lesson>.previous-N.json``, never silently replaced.

Only this process writes results and grades. Each submission is graded in a worker process of
its own pool, under a watchdog: a worker that dies or runs past the submission's budget is killed
(with its kernel) and replaced, and only that submission fails, with the reason. Each worker
launches its next kernel ahead (:mod:`stgrade.warm`, ``RunOptions.warm``); with
``RunOptions.scheduler`` the submissions are graded on a Dask cluster instead
(:mod:`stgrade.dask_backend`), and everything is written here all the same.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import __version__, feedback, neutral, report
from . import secret as secrets_
from .cgroup import process_alive
from .course import lesson_ids, load_lesson
from .discover import IntakeProblem, Submission, discover, read_regular
from .grading import SCRATCH_PREFIX, SubmissionResult, grading_seed, submission_key
from .sandbox import Limits, protections_in_force
from .workers import Pool, Task

UNPACKED_PREFIX = "stgrade-unpacked-"


@dataclass
class RunOptions:
    jobs: int = 0  # 0: one per core
    limits: Limits = field(default_factory=Limits)
    secret: str | None = None  # None: $STGRADE_SECRET, else the course's secret file (created on first use)
    force: bool = False  # regrade even when a result with the same inputs exists
    quiet: bool = False
    watchdog_seconds: float | None = None  # None: from the limits (see watchdog_seconds)
    warm: int = 1  # kernels each worker launches ahead of its submissions (stgrade.warm); 0: started on demand
    scheduler: str | None = None  # a Dask scheduler's address: grade on that cluster (stgrade.dask_backend)
    fork: bool = False  # each worker forks its kernels from a sandboxed fork server (stgrade.forked); local runs only


def _result_path(out: Path, folder: str, lesson: str) -> Path:
    """Where a result is stored; ``folder``: the student's folder name (:func:`neutral.folder_names`)."""
    return out / "results" / folder / f"{lesson or '_'}.json"


def _load_previous(path: Path, secret: str) -> tuple[SubmissionResult | None, str]:
    """The stored result, if it is intact; otherwise None and why not."""
    try:
        if path.is_symlink() or path.stat().st_size > 16 * 1024**2:
            return None, "the stored result is not a plain file of a sensible size"
        data = json.loads(path.read_text(encoding="utf-8"))
        if not secrets_.signed(secret, data):
            return None, "the stored result was changed after it was written (its signature does not match)"
        data.pop("signature")
        return SubmissionResult.from_json(data), ""
    except (OSError, ValueError, TypeError, AttributeError, RecursionError):
        return None, "the stored result could not be read"


def _write_result(path: Path, r: SubmissionResult, secret: str) -> None:
    """Write atomically (never through a link someone left there), signed."""
    data = r.to_json()
    data["signature"] = secrets_.sign(secret, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8", errors="replace")
    os.replace(tmp, path)


def _redact(r: SubmissionResult, secret: str) -> SubmissionResult:
    """Never let the secret reach a message (feedback, summary, index)."""
    r.reason = secrets_.redact(r.reason, secret)
    r.notes = [secrets_.redact(n, secret) for n in r.notes]
    for c in r.cells:
        c.message = secrets_.redact(c.message, secret)
    return r


def _keep_previous(path: Path) -> Path:
    n = 1
    while (kept := path.with_name(f"{path.stem}.previous-{n}.json")).exists():
        n += 1
    path.rename(kept)
    return kept


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
        print(f"[{self.done:>{width}}/{self.total}] {neutral.terminal(r.student)} / {r.lesson or '—'}: {score} ({how}, "
              f"{r.seconds:.1f} s) — about {left:.0f} s left", file=sys.stderr, flush=True)


def grade_folder(submissions: Path, out: Path, options: RunOptions) -> list[SubmissionResult]:
    """Grade everything in ``submissions``; write all outputs into ``out``; return the results."""
    started = datetime.now(timezone.utc)
    secret = secrets_.load(options.secret, announce=lambda line: print(line, file=sys.stderr))
    secrets_.hide_from_proc(secret.value)
    out.mkdir(parents=True, exist_ok=True)
    _remove_leftovers()
    work = Path(tempfile.mkdtemp(prefix=f"{UNPACKED_PREFIX}{os.getpid()}-"))  # unzipped notebooks, snapshots
    try:
        subs, warnings = discover(submissions, lesson_ids(), work / "unzipped")
        folders, collisions = neutral.folder_names(s.student for s in subs)
        for group in collisions:
            warnings.append("student ids that one file system may see as the same name (case or Unicode form): "
                            + ", ".join(repr(s) for s in group) + "; their files are kept apart with a short hash")
        subs = _snapshot(subs, work / "snapshots")
        results = _grade_all(subs, folders, submissions, out, options, secret.value)
        for r in results:
            if any(r.student in group for group in collisions):
                r.notes.append("another student id differs from this one only in case or Unicode form: check that "
                               "the two are different students")
            feedback.write(r, out / "feedback" / folders[r.student])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lessons = sorted({r.lesson for r in results if r.lesson})
    cell_ids = {lid: [c.grade_id for c in load_lesson(lid).test_cells] for lid in lessons}
    report.write_csv(results, cell_ids, out / "grades.csv")
    meta = {"stgrade_version": __version__, "started": started.isoformat(),
            "finished": datetime.now(timezone.utc).isoformat(), "submissions_folder": neutral.text(str(submissions)),
            "secret": secret.describe(),
            "protections": protections_in_force(options.limits),  # what contained the kernels (stgrade.sandbox)
            "warm_kernels_ahead": 0 if options.fork else options.warm, "fork_server": options.fork}
    if options.scheduler:  # the kernels ran on the cluster's workers: the protections above are this machine's
        meta["dask_scheduler"] = neutral.text(options.scheduler)
    report.write_json(results, warnings, meta, out / "summary.json")
    report.write_index(results, folders, out / "index.html")
    for w in warnings:
        print(f"warning: {neutral.terminal(w)}", file=sys.stderr)
    return results


def _remove_leftovers() -> None:
    """Folders an interrupted run (killed, power cut) or a killed worker left in the temporary
    directory: unpacked notebooks and scratch folders of grader processes that no longer exist."""
    for prefix in (UNPACKED_PREFIX, SCRATCH_PREFIX):
        for folder in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
            pid = folder.name[len(prefix):].split("-")[0]
            if pid.isdigit() and not process_alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)


def _snapshot(subs: list[Submission], folder: Path) -> list[Submission]:
    """Copy every submission into the grader's private folder before any student code runs, so
    no submission can change a classmate's (or its own) file before it is graded. Reading one is
    bounded (:func:`stgrade.discover.read_regular`: a regular file, no link, no waiting on a FIFO,
    a size limit) and whatever goes wrong is that submission's failure."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    taken = []
    for i, sub in enumerate(subs):
        if sub.path is None:
            taken.append(sub)
            continue
        try:
            data = read_regular(sub.path)
            copy = folder / f"{i}" / f"{sub.lesson}.ipynb"
            copy.parent.mkdir()
            copy.write_bytes(data)
        except Exception as exc:  # noqa: BLE001 — any failure reading one file is that submission's
            why = str(exc) if isinstance(exc, IntakeProblem) else f"could not be read ({type(exc).__name__})"
            taken.append(Submission(sub.student, sub.lesson, None, why, notes=sub.notes))
            continue
        taken.append(Submission(sub.student, sub.lesson, copy, sub.problem, original=sub.path, notes=sub.notes))
    return taken


def watchdog_seconds(limits: Limits) -> float:
    """How long one submission may take, all in, before its worker is killed: the notebook's
    budget, a kernel restart and the verification, with a margin for a loaded machine."""
    return 2 * limits.notebook_seconds + 2 * limits.startup_seconds + 120


def _grade_all(subs: list[Submission], folders: dict[str, str], folder: Path, out: Path, options: RunOptions,
               secret: str) -> list[SubmissionResult]:
    results: dict[int, SubmissionResult] = {}
    todo: list[Task] = []
    progress = Progress(len(subs), options.quiet)

    def max_points(lesson: str) -> float:
        return load_lesson(lesson).max_points if lesson else 0.0

    for i, sub in enumerate(subs):
        if sub.path is None:
            reason = sub.problem or ("no lesson submitted" if not sub.lesson else "no submission for this lesson")
            results[i] = SubmissionResult(sub.student, sub.lesson, "failed" if sub.problem else "missing", reason,
                                          max_total=max_points(sub.lesson), notes=list(sub.notes))
            progress.update(results[i], "nothing to grade")
            continue
        try:
            path = _result_path(out, folders[sub.student], sub.lesson)
            data = sub.path.read_bytes()  # the grader's own snapshot
            seed = grading_seed(secret, sub.student, sub.lesson, data)
            key = submission_key(data, load_lesson(sub.lesson), seed, options.limits)
            note = ""
            if path.exists() or path.is_symlink():
                previous, note = _load_previous(path, secret)
                if previous is not None and previous.key == key and not options.force:
                    results[i] = previous
                    progress.update(previous, "unchanged, kept")
                    continue
        except Exception as exc:  # noqa: BLE001 — one submission's trouble is its own failure
            results[i] = SubmissionResult(sub.student, sub.lesson, "failed", f"could not be prepared for grading "
                                          f"({type(exc).__name__})", max_total=max_points(sub.lesson))
            progress.update(results[i], "failed")
            continue
        todo.append(Task(i, (sub.student, sub.lesson, sub.path, out / "autograded", options.limits, seed,
                             _relative(sub.original, folder), key, data, folders[sub.student]), note))
    jobs = options.jobs or os.cpu_count() or 1
    watchdog = options.watchdog_seconds or watchdog_seconds(options.limits)
    keys = {task.index: task.args[7] for task in todo}
    if options.scheduler and todo:
        from .dask_backend import DaskRunner

        runner = DaskRunner(options.scheduler, watchdog, options.warm)
    else:
        todo, target = warm_tasks(todo, jobs, options.warm, options.fork)
        runner = Pool(max(1, min(jobs, len(todo) or 1)), watchdog, target=target, on_replace=_remove_leftovers)
    with runner as pool:
        for task, r, failure in pool.run(todo):
            sub = subs[task.index]
            if r is None:  # the worker died or was stopped: this submission alone fails, and says why
                r = SubmissionResult(sub.student, sub.lesson, "failed", failure, max_total=max_points(sub.lesson),
                                     source=_relative(sub.original, folder), key=keys[task.index])
            r = _redact(r, secret)
            r.notes[:0] = list(sub.notes)
            path = _result_path(out, folders[sub.student], sub.lesson)
            if path.exists() or path.is_symlink():
                kept = _keep_previous(path)
                why = f" ({task.note})" if task.note else ""
                r.notes.append(f"regraded{why}; the earlier result is kept in {kept.relative_to(out)}")
            _write_result(path, r, secret)
            results[task.index] = r
            progress.update(r, "done")
    return [results[i] for i in range(len(subs))]


def warm_tasks(todo: list[Task], jobs: int, warm: int, fork: bool = False) -> tuple[list[Task], str]:
    """The tasks for the worker pool and its target: with ``fork``, each worker forks its kernels
    from its fork server (:func:`stgrade.forked.grade`); with ``warm``, each worker launches the next
    kernels ahead (:func:`stgrade.warm.grade`), except for the last ``jobs`` tasks, after which a
    worker may get nothing more (no kernel started for nobody)."""
    if fork:
        return todo, "stgrade.forked:grade"
    if not warm:
        return todo, "stgrade.grading:grade_submission"
    return ([Task(t.index, (t.args, warm if n < len(todo) - jobs else 0), t.note) for n, t in enumerate(todo)],
            "stgrade.warm:grade")


def _relative(path: Path, folder: Path) -> str:
    try:
        return neutral.text(str(path.relative_to(folder)))
    except ValueError:
        return neutral.text(path.name)
