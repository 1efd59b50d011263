"""Grade one submission: assemble, run in a sandboxed kernel, score by trusted comparison.

Scoring a test cell: it earns its points when (1) the cell ran to the end in the student's kernel
and (2) for every ``check(fn, exercise, level)`` in it, the outputs the student's function produced
on the grader's cases — published by ``check`` as one plain-data message, which the grader
collected while the cell ran (:meth:`SandboxKernel.run`) — equal the reference's outputs, which
are computed here, in the grader's process, where student code never ran. Output on stderr,
warnings and prints cost nothing.

Nothing the kernel produced is trusted: a message is decoded with size and type limits
(:func:`stabletrain.exercises.plain.loads`), a check with no message, two messages or an
unreadable one earns nothing, verifying a check has a time limit, and a grader error while
verifying one case (an answer that returns something of an unexpected form, say) costs that
case's group, never the submission. The kernel receives the submission's seed, never the secret;
feedback on a hidden case says where the result differed and the likely misconception, never the
expected or returned values (:func:`hidden_message`).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import re
import signal
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from stabletrain.exercises import get_exercise, plain
from stabletrain.exercises.base import Failure, describe_value, group_score
from stabletrain.exercises.check import CAPTURE_SEED_ENV

from . import __version__, neutral, scan
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
    cpu_seconds: float | None = None  # CPU time: the kernels' (from their cgroups) plus the grader's; None if uncounted
    kernel_start_stop_seconds: float = 0.0  # of ``seconds``: starting and stopping kernels, the same for every lesson
    source: str = ""  # the submitted file, relative to the submissions folder
    key: str = ""  # what the result depends on; equal keys give equal results
    flags: list[str] = field(default_factory=list)  # static findings for the instructor to look at (never void)
    answers: list[list[str]] = field(default_factory=list)  # [label, source] of the cells graded as answers

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> SubmissionResult:
        data = dict(data)
        data["cells"] = [CellResult(**c) for c in data.get("cells", [])]
        return cls(**data)


def grading_seed(secret: str, student: str, lesson: str, submission: bytes = b"") -> int:
    """Seed of a submission's cases, unknown without the secret: fixed for (secret, student, lesson,
    the submitted bytes). A regrade of the same file gives the same cases (and grade); a
    resubmission, changed in any byte, gets new random inputs, so what feedback said about one
    grading is no lookup table for the next."""
    fingerprint = hashlib.sha256(submission).hexdigest()
    digest = hashlib.sha256(f"{secret}\0{student}\0{lesson}\0{fingerprint}".encode("utf-8", "surrogatepass")).hexdigest()
    return int(digest[:8], 16)


#: scratch folders are named after the worker's pid, so leftovers of a killed worker can be found
SCRATCH_PREFIX = "stgrade-scratch-"
#: seconds the grader may spend verifying one check (running the reference and the mutants)
VERIFY_SECONDS = 60.0
#: characters of all result messages of one cell together
CELL_RESULT_CHARS = 4 * plain.MAX_MESSAGE_CHARS


class VerificationTimeout(BaseException):
    """Verifying one check took longer than :data:`VERIFY_SECONDS` (a BaseException, so that
    the ``except Exception`` that records what a function raised does not swallow it)."""


class _time_limit:
    """Raise :class:`VerificationTimeout` in this (main) thread after ``seconds``; a no-op elsewhere."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.armed = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")

    def _fire(self, *_: object) -> None:
        raise VerificationTimeout(f"verification took longer than {self.seconds:.0f} s")

    def __enter__(self) -> None:
        if self.armed:
            self.previous = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc: object) -> None:
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)


def _error_message(run: CellRun) -> str:
    if run.ename == "NotImplementedError":
        return "not answered yet: the function still raises NotImplementedError."
    if run.status in ("timeout", "hung", "died"):
        return f"{run.evalue}."
    return f"{run.ename}: {str(run.evalue)[:500]}"


def decode_results(messages: list) -> tuple[dict[tuple[str, str], list | str], list[str]]:
    """``{(exercise, level): outputs, or a reason why they cannot be used}`` and general problems,
    from the result messages one test cell published."""
    found: dict[tuple[str, str], list | str] = {}
    problems: list[str] = []
    total = 0
    for text in messages:
        total += len(text) if isinstance(text, str) else 0
        if not isinstance(text, str) or total > CELL_RESULT_CHARS:
            problems.append("results over the size limit were dropped")
            continue
        try:
            value = plain.loads(text)
        except plain.NotPlainData as exc:
            problems.append(f"a result could not be read as plain data ({str(exc)[:200]})")
            continue
        if not (isinstance(value, dict) and isinstance(value.get("exercise"), str)
                and isinstance(value.get("level"), str) and isinstance(value.get("outputs"), list)):
            problems.append("a result did not have the form check() gives it")
            continue
        key = (value["exercise"], value["level"])
        if key in found:
            found[key] = "its results were recorded more than once (only check() records results)"
        else:
            found[key] = value["outputs"]
    return found, problems


def _short(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value[:3]) + (", …" if len(value) > 3 else "") + "]"
    return " ".join(describe_value(value).split())[:80]


def _unexpected_form(exercise: str, case_label: str, got: object, exc: BaseException) -> Failure:
    shown = (", ".join(f"{k}: {_short(v)}" for k, v in list(got.items())[:4]) if isinstance(got, dict)
             else _short(got))
    return Failure(exercise, case_label, f"what your function gave back has an unexpected form and could not be "
                   f"compared with the expected result ({shown}). Check what it returns and what it changes.")


def verify_one(exercise, cases: list, outputs: list) -> list[Failure]:
    """Like :meth:`Exercise.verify`, but a grader error on one case (a comparison that cannot
    handle what came back) fails that case only."""
    if not isinstance(outputs, list) or len(outputs) != len(cases):
        return exercise.verify(cases, outputs if isinstance(outputs, list) else [])
    failures, failed, where = [], [], []  # where: the index in failures of each diagnosable failure
    for case, got in zip(cases, outputs):
        try:
            found = exercise.verify([case], [got], diagnose=False)
        except VerificationTimeout:
            raise
        except Exception as exc:  # noqa: BLE001 — any grader error here costs this case, nothing more
            failures.append(_unexpected_form(exercise.name, case.label, got, exc))
            continue
        for failure in found:
            where.append(len(failures))
            failures.append(failure)
            failed.append((case, got))
    # a diagnosis the catalogue cannot make costs nothing: the failure stands without a misconception
    diagnosed = exercise.name_misconception([failures[i] for i in where], failed, on_error=lambda exc: None)
    for i, failure in zip(where, diagnosed):
        failures[i] = failure
    return failures


#: how the comparisons say what was expected (the start of what a hidden case's feedback leaves out)
_EXPECTED_AT = re.compile(r"(?:^|[:;,.]\s*|\s)(?:expected|but|got|want(?:ed)?)\b", re.I)


def hidden_message(failure: Failure, cases: list) -> str:
    """What a failed *hidden* case tells the student: the kind of input (the case's group and the
    label's words before its inputs), where the result differed, and the misconception — never the
    expected value or what came back. Hidden inputs are drawn anew for every submitted file
    (:func:`grading_seed`), and feedback that quoted the expected values was a lookup table for the
    next try. The student's own error message is kept: it says nothing the student did not know."""
    case = next((c for c in cases if c.label == failure.case), None)
    kind = failure.case.split(" [", 1)[0].strip()[:160]
    group = case.group_name if case is not None else ""
    problem = failure.problem
    if problem.startswith(("your function raised", "what your function gave back")):  # the student's own values
        what = problem[:300]
    else:
        at = _EXPECTED_AT.search(problem)
        what = problem[:at.start()].strip(" :;,.") if at else ""
        what = f"what differed: {what[:200]}." if what else "its result differs from the expected one."
    text = f"{failure.exercise}: a hidden check failed — {kind}" + (f" ({group})" if group and group != kind else "")
    text += f".\n  {what}\n  (Hidden checks do not show the expected values; their random inputs change with every "
    text += "submitted version. Run check(..., level=\"hidden\") in your notebook to see the same kinds of cases with "
    text += "public inputs.)"
    if failure.misconception:
        text += f"\n  Likely misconception: {failure.misconception}"
    return text


def _verify_checks(spec: CellSpec, messages: list, seed: int) -> tuple[float, str | None]:
    """``(fraction of the cell's points earned, what went wrong in words or None)``.

    Partial credit: each check's cases fall into groups (a behaviour each); the cell earns the
    share of groups, over all its checks, whose cases all pass.
    """
    passed_groups = total_groups = 0
    found, problems = decode_results(messages)
    for check in spec.checks:
        exercise = get_exercise(check.exercise)
        cases = exercise.cases(check.level, seed)
        groups = len({c.group_name for c in cases}) or 1
        total_groups += groups
        outputs = found.get((check.exercise, check.level))
        if outputs is None:
            problems.append(f"{check.exercise}: no results were recorded (the check did not run to the end).")
            continue
        if isinstance(outputs, str):
            problems.append(f"{check.exercise}: {outputs}.")
            continue
        try:
            with _time_limit(VERIFY_SECONDS):
                failures = verify_one(exercise, cases, outputs)
        except VerificationTimeout as exc:
            problems.append(f"{check.exercise}: not verified: {exc}.")
            continue
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
        first = failures[0].message() if check.level == "visible" else hidden_message(failures[0], cases)
        problems.append(first + more + rule)
    if not problems:
        return 1.0, None
    return passed_groups / max(total_groups, 1), "\n".join(problems)


@functools.cache
def code_fingerprint() -> str:
    """A hash of the code a grade depends on: the stabletrain package (cases, comparisons, answer
    keys, mutant catalogues) and the grader itself. A fix to an exercise or the grader changes it,
    so a re-run regrades instead of reusing a result the old code produced."""
    import stabletrain

    h = hashlib.sha256()
    for root in (Path(stabletrain.__file__).parent, Path(__file__).parent):
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def submission_key(data: bytes, lesson: Lesson, seed: int, limits: Limits) -> str:
    """What a result depends on: the submitted bytes, the instructor's notebook, the grading code
    (:func:`code_fingerprint`), the seed and the limits."""
    h = hashlib.sha256()
    for part in (data, lesson.source_path.read_bytes(), __version__.encode(), code_fingerprint().encode(),
                 str(seed).encode(), repr(limits).encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def grade_submission(student: str, lesson_id: str, path: Path, autograded_dir: Path, limits: Limits,
                     seed: int, source: str = "", key: str = "", data: bytes | None = None,
                     folder: str = "") -> SubmissionResult:
    """Grade one submission with the student's ``seed`` (see :func:`grading_seed`; the secret
    itself never reaches this function, so no kernel it starts can learn it). ``data``: the
    submission's bytes as the grader read them before any student code ran (else read ``path``).
    ``folder``: the student's folder name in OUT (:func:`stgrade.neutral.folder_names`)."""
    started, cpu_started = time.monotonic(), time.process_time()
    lesson = load_lesson(lesson_id)
    result = SubmissionResult(student, lesson_id, "graded", max_total=lesson.max_points, source=source, key=key)
    try:
        assembled = assemble(lesson, read_submission(path, data))
    except SubmissionUnreadable as exc:
        result.status, result.reason = "failed", str(exc)
        cap_result(result)
        result.seconds = time.monotonic() - started
        return result
    result.notes += assembled.notes
    nb = assembled.notebook
    result.flags = static_findings(assembled)[:20]  # for the overview and validate; they cost no points
    result.answers = graded_answers(assembled)
    scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-{_safe(student)}-"))
    env = {CAPTURE_SEED_ENV: str(seed)}
    kernel_cpu = None
    try:
        result.cells, kernel_cpu, result.kernel_start_stop_seconds = _run_and_score(
            assembled, scratch, env, limits, seed)
    except Exception as exc:  # the kernel could not even start: this submission fails, the batch goes on
        result.status, result.reason = "failed", f"the notebook could not be run: {type(exc).__name__}: {str(exc)[:300]}"
        result.cells = []
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if result.status == "graded":
        result.total = round(sum(c.points for c in result.cells), 2)
        target = autograded_dir / (folder or neutral.folder_name(student)) / lesson_id / f"{lesson_id}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        neutral.sanitize_notebook(nb)
        target.write_text(neutral.text(nbformat.writes(nb)), encoding="utf-8")
    cap_result(result)
    result.seconds = time.monotonic() - started
    if kernel_cpu is not None:
        result.cpu_seconds = round(kernel_cpu + time.process_time() - cpu_started, 3)
    return result


def _safe(name: str) -> str:
    """A short ASCII tag of ``name`` for a scratch folder's name: the kernel's Unix socket paths
    must stay under about 100 *bytes* (a 32-letter Cyrillic name is 64 of them)."""
    tag = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "_" for ch in name)[:12]
    return f"{tag}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:6]}"


#: characters of one cell's message, of one note and of the reason; notes and answers kept per result
MESSAGE_CHARS, NOTE_CHARS, REASON_CHARS, MAX_NOTES = 4000, 600, 1000, 40
ANSWER_CHARS = 200_000  # all graded answer sources together, as the feedback page shows them


def cap_text(value: str, limit: int) -> str:
    value = neutral.text(value)
    return value if len(value) <= limit else value[:limit] + f" … [{len(value) - limit} more characters not shown]"


def cap_result(result: SubmissionResult) -> None:
    """Bound what one submission puts into feedback, results, summary.json and the overview,
    whatever its code returned or printed (a returned 190,000-element list is quoted in part)."""
    result.reason = cap_text(result.reason, REASON_CHARS)
    notes = [cap_text(n, NOTE_CHARS) for n in result.notes[:MAX_NOTES]]
    if len(result.notes) > MAX_NOTES:
        notes.append(f"… and {len(result.notes) - MAX_NOTES} more notes")
    result.notes = notes
    result.flags = [cap_text(f, NOTE_CHARS) for f in result.flags[:MAX_NOTES]]
    for cell in result.cells:
        cell.message = cap_text(cell.message, MESSAGE_CHARS)


def graded_answers(assembled) -> list[list[str]]:
    """``[label, source]`` of every cell graded as the student's answer — answer cells and added
    cells, in the order they ran — for the feedback page: what it shows is what was graded, not a
    decoy cell that a later one replaced."""
    shown, left = [], ANSWER_CHARS
    for i, spec in enumerate(assembled.specs):
        if spec.role not in ("solution", "added") or left <= 0:
            continue
        label = spec.grade_id if spec.role == "solution" else f"a cell you added (cell {i + 1})"
        source = cap_text(assembled.notebook.cells[i].source, left)
        left -= len(source)
        shown.append([label, source])
    return shown


def static_findings(assembled) -> list[str]:
    """What the static scan (:mod:`stgrade.scan`) finds in the answer and added cells, in words.

    A finding never costs points by itself: honest code names things too (the README's own
    ``check(fn, "clip_grad_value_", level="hidden")`` in an added cell, ``import gc``, an
    ``isinstance(m, nn.LayerNorm)``). It is a note on the student's result, a warning in
    ``stgrade validate`` and a flag in the instructor's overview. What voids an exercise is
    run-time evidence that answer-key code ran while it was checked (:mod:`stabletrain.exercises.guard`).
    """
    found_all: list[str] = []
    for i, spec in enumerate(assembled.specs):
        if spec.role not in ("solution", "added"):
            continue
        try:
            found = scan.problems(assembled.notebook.cells[i].source)
        except Exception:  # noqa: BLE001 — source the scan cannot parse runs, and fails, in the kernel
            found = []
        if found:
            where = f"answer cell '{spec.grade_id}'" if spec.role == "solution" else f"a cell you added (cell {i + 1})"
            found_all.append(f"{where} {'; '.join(found)}"[:500])
    return found_all


def _run_and_score(assembled, scratch: Path, env: dict, limits: Limits,
                   seed: int) -> tuple[list[CellResult], float | None, float]:
    """Run the notebook's graded cells and score its test cells; also return the CPU seconds its
    kernels used (None when not counted) and the wall seconds spent starting and stopping them.

    The cells run in one execute request (:meth:`SandboxKernel.run_cells`), each with the per-cell
    limit, all within the notebook's. A cell that hangs or kills the kernel costs a restart: the
    setup, answer and added cells that ran before it are replayed and the rest runs. When that
    happens in a batch, the cell blamed is only the first whose end mark did not arrive — a dying
    kernel can lose the marks of cells that had finished — so from there on the cells run one per
    request, where a hang or a death belongs to the cell that was sent, for certain.
    """
    todo = [(spec, cell) for spec, cell in zip(assembled.specs, assembled.notebook.cells)
            if cell.cell_type == "code" and spec.role != "experiment"]
    results: list[CellResult] = []
    replay: list[tuple[str, str]] = []  # (role, source) of setup, answer and added cells, re-run after a restart
    deadline = time.monotonic() + limits.notebook_seconds
    one_at_a_time = False
    with SandboxKernel(scratch, limits, env) as kernel:
        while todo and time.monotonic() < deadline:
            batch = todo[:1 if one_at_a_time else None]
            runs = kernel.run_cells([cell.source for _, cell in batch], deadline,
                                    setup=_leading_setup(spec.role for spec, _ in batch))
            lost = runs[-1].status in ("hung", "died")
            certain = runs[:-1] if lost and not one_at_a_time else runs
            for (spec, cell), run in zip(todo, certain):
                cell.outputs = run.outputs
                if run.status not in ("hung", "died") and spec.role in ("setup", "solution", "added"):
                    replay.append((spec.role, cell.source))
                if spec.role == "test":
                    results.append(_score(spec, run, seed))
                    cell.metadata["stgrade"] = {"points": results[-1].points, "message": results[-1].message}
            todo = todo[len(certain):]
            if lost:
                one_at_a_time = True
                kernel.restart()
                if replay and time.monotonic() < deadline:
                    kernel.run_cells([source for _, source in replay], deadline,
                                     setup=_leading_setup(role for role, _ in replay))
    for spec, _ in todo:  # the notebook's time ran out before these
        if spec.role == "test":
            results.append(CellResult(spec.grade_id, 0.0, spec.points, "not run: the notebook used up its "
                                      f"time budget of {limits.notebook_seconds:.0f} s.", "not run"))
    return results, kernel.cpu_seconds, round(kernel.start_stop_seconds, 3)


def _leading_setup(roles) -> int:
    """How many of the cells (by role, in order) are the lesson's setup before anything else."""
    return sum(1 for _ in itertools.takewhile(lambda role: role == "setup", roles))


def _score(spec: CellSpec, run: CellRun, seed: int) -> CellResult:
    result = _score_uncapped(spec, run, seed)
    result.message = cap_text(result.message, MESSAGE_CHARS)
    return result


def _score_uncapped(spec: CellSpec, run: CellRun, seed: int) -> CellResult:
    def failed(message: str) -> CellResult:
        return CellResult(spec.grade_id, 0.0, spec.points, message, "failed")

    if run.status != "ok":
        return failed(_error_message(run))
    try:
        fraction, problem = _verify_checks(spec, getattr(run, "results", []), seed)
    except Exception as exc:  # noqa: BLE001 — a grader error costs this cell only, and says so
        return failed(f"this cell could not be verified (grader error: {type(exc).__name__}); "
                      "tell your instructor.")
    if problem:
        points = round(spec.points * fraction, 2)
        return CellResult(spec.grade_id, points, spec.points, problem, "partly passed" if points else "failed")
    return CellResult(spec.grade_id, spec.points, spec.points, "all checks passed", "passed")
