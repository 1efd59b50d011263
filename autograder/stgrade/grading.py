"""Grade one submission: assemble, run in a sandboxed kernel, score by trusted comparison.

Scoring a test cell: it earns its points when (1) the cell ran to the end in the student's kernel
and (2) for every ``check(fn, exercise, level)`` in it, the outputs the student's function produced
on the grader's cases — written as plain data by ``check`` — equal the reference's outputs, which
are computed here, in the grader's process, where student code never ran. Output on stderr,
warnings and prints cost nothing.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from stabletrain.exercises import get_exercise, plain
from stabletrain.exercises.base import group_score
from stabletrain.exercises.check import CAPTURE_DIR_ENV, CAPTURE_SEED_ENV, capture_stem

from . import __version__, scan
from .assemble import SubmissionUnreadable, assemble, read_submission
from .course import CellSpec, Lesson, load_lesson
from .sandbox import CellRun, Limits, SandboxKernel


@dataclass
class CellResult:
    grade_id: str
    points: float
    max_points: float
    message: str
    status: str  # passed | partly passed | failed | not run


@dataclass
class SubmissionResult:
    student: str
    lesson: str
    status: str  # graded | failed | missing
    reason: str = ""
    cells: list[CellResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    total: float | None = None
    max_total: float = 0.0
    seconds: float = 0.0
    source: str = ""  # the submitted file, relative to the submissions folder
    key: str = ""  # what the result depends on; equal keys give equal results

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> SubmissionResult:
        data = dict(data)
        data["cells"] = [CellResult(**c) for c in data.get("cells", [])]
        return cls(**data)


def grading_seed(secret: str, student: str, lesson: str) -> int:
    """Seed of a student's hidden cases: fixed for (secret, student, lesson), unknown without the secret."""
    digest = hashlib.sha256(f"{secret}\0{student}\0{lesson}".encode()).hexdigest()
    return int(digest[:8], 16)


def _error_message(run: CellRun) -> str:
    if run.ename == "NotImplementedError":
        return "not answered yet: the function still raises NotImplementedError."
    if run.status in ("timeout", "hung", "died"):
        return f"{run.evalue}."
    return f"{run.ename}: {run.evalue}"


def _verify_checks(spec: CellSpec, capture_dir: Path, seed: int) -> tuple[float, str | None]:
    """``(fraction of the cell's points earned, what went wrong in words or None)``.

    Partial credit: each check's cases fall into groups (a behaviour each); the cell earns the
    share of groups, over all its checks, whose cases all pass.
    """
    passed_groups = total_groups = 0
    problems: list[str] = []
    for check in spec.checks:
        exercise = get_exercise(check.exercise)
        cases = exercise.cases(check.level, seed)
        groups = len({c.group_name for c in cases}) or 1
        stem = capture_stem(capture_dir, check.exercise, check.level)
        total_groups += groups
        if not stem.with_suffix(".json").exists():
            problems.append(f"{check.exercise}: no results were recorded (the check did not run to the end).")
            continue
        try:
            outputs = plain.from_files(stem)
        except Exception as exc:  # anything but well-formed plain data is a wrong answer
            problems.append(f"{check.exercise}: the results could not be read as plain data ({type(exc).__name__}).")
            continue
        if not isinstance(outputs, list):
            problems.append(f"{check.exercise}: the results are not a list of case outputs.")
            continue
        failures = exercise.verify(cases, outputs)
        if not failures:
            passed_groups += groups
            continue
        if all("NotImplementedError" in f.problem for f in failures):
            problems.append(f"{check.exercise}: not answered yet (the function raises NotImplementedError).")
            continue
        ok, n, failed_groups = group_score(cases, failures)
        passed_groups += ok
        more = f"\n({len(failures) - 1} more {check.level} checks failed.)" if len(failures) > 1 else ""
        rule = (f"\nPartial credit: {ok} of {n} groups of cases passed; failed: {'; '.join(failed_groups)}."
                if n > 1 else "")
        problems.append(failures[0].message() + more + rule)
    if not problems:
        return 1.0, None
    return passed_groups / max(total_groups, 1), "\n".join(problems)


def submission_key(path: Path, lesson: Lesson, seed: int, limits: Limits) -> str:
    h = hashlib.sha256()
    for part in (path.read_bytes(), lesson.source_path.read_bytes(), __version__.encode(), str(seed).encode(),
                 repr(limits).encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def grade_submission(student: str, lesson_id: str, path: Path, autograded_dir: Path, limits: Limits,
                     secret: str, source: str = "") -> SubmissionResult:
    started = time.monotonic()
    lesson = load_lesson(lesson_id)
    seed = grading_seed(secret, student, lesson_id)
    result = SubmissionResult(student, lesson_id, "graded", max_total=lesson.max_points, source=source,
                              key=submission_key(path, lesson, seed, limits))
    try:
        assembled = assemble(lesson, read_submission(path))
    except SubmissionUnreadable as exc:
        result.status, result.reason = "failed", str(exc)
        result.seconds = time.monotonic() - started
        return result
    result.notes += assembled.notes
    nb = assembled.notebook
    flagged = {}
    for spec, cell in zip(lesson.cells, nb.cells):
        if spec.role == "solution":
            found = scan.problems(cell.source)
            if found:
                flagged.update({name: (spec.grade_id, found) for name in spec.defines})
                result.notes.append(f"answer cell '{spec.grade_id}' {'; '.join(found)}: "
                                    "the exercises it defines earn nothing")
    scratch = Path(tempfile.mkdtemp(prefix=f"stgrade-{student}-"))
    capture_dir = scratch / ".captures"
    env = {CAPTURE_DIR_ENV: str(capture_dir), CAPTURE_SEED_ENV: str(seed)}
    try:
        result.cells = _run_and_score(lesson, nb, scratch, capture_dir, env, limits, seed, flagged)
    except Exception as exc:  # the kernel could not even start: this submission fails, the batch goes on
        result.status, result.reason = "failed", f"the notebook could not be run: {type(exc).__name__}: {exc}"
        result.cells = []
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if result.status == "graded":
        result.total = sum(c.points for c in result.cells)
        target = autograded_dir / student / lesson_id / f"{lesson_id}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
    result.seconds = time.monotonic() - started
    return result


def _run_and_score(lesson: Lesson, nb: nbformat.NotebookNode, scratch: Path, capture_dir: Path, env: dict,
                   limits: Limits, seed: int, flagged: dict) -> list[CellResult]:
    results: list[CellResult] = []
    replay: list[str] = []  # setup and answer cells, re-run after a kernel restart
    deadline = time.monotonic() + limits.notebook_seconds
    with SandboxKernel(scratch, limits, env) as kernel:
        for spec, cell in zip(lesson.cells, nb.cells):
            if cell.cell_type != "code" or spec.role == "experiment":
                continue
            if time.monotonic() > deadline:
                if spec.role == "test":
                    results.append(CellResult(spec.grade_id, 0.0, spec.points, "not run: the notebook used up its "
                                              f"time budget of {limits.notebook_seconds:.0f} s.", "not run"))
                continue
            if spec.role == "test":
                shutil.rmtree(capture_dir, ignore_errors=True)
                capture_dir.mkdir(parents=True)
            run = kernel.run(cell.source)
            cell.outputs = run.outputs
            if run.status in ("hung", "died"):
                kernel.restart()
                for code in replay:
                    kernel.run(code)
            elif spec.role in ("setup", "solution"):
                replay.append(cell.source)
            if spec.role == "test":
                results.append(_score(spec, run, capture_dir, seed, flagged))
                cell.metadata["stgrade"] = {"points": results[-1].points, "message": results[-1].message}
    return results


def _score(spec: CellSpec, run: CellRun, capture_dir: Path, seed: int, flagged: dict) -> CellResult:
    def failed(message: str) -> CellResult:
        return CellResult(spec.grade_id, 0.0, spec.points, message, "failed")

    for check in spec.checks:
        if check.function in flagged:
            grade_id, found = flagged[check.function]
            return failed(f"{check.function} is defined in answer cell '{grade_id}', which {'; '.join(found)}. "
                          "Implement the exercise with basic tensor operations.")
    if run.status != "ok":
        return failed(_error_message(run))
    fraction, problem = _verify_checks(spec, capture_dir, seed)
    if problem:
        points = round(spec.points * fraction, 2)
        return CellResult(spec.grade_id, points, spec.points, problem, "partly passed" if points else "failed")
    return CellResult(spec.grade_id, spec.points, spec.points, "all checks passed", "passed")
