"""Grading speed: the stgrade pipeline against stock, sequential `nbgrader autograde`, side by side.

Both grade the same cohort (``--submissions N`` notebooks, cycling through the sample students
that stock nbgrader can grade: perfect, partial, blank, noisy) of lesson 04. Prints seconds per
submission for each and their ratio, and the mean score each grader gave each kind of student
(stock nbgrader scores a test cell 0 when anything reaches stderr, so the noisy but correct
students differ).

    .venv/bin/python benchmarks/bench_grading.py --submissions 40
    .venv/bin/python benchmarks/bench_grading.py --submissions 8 --skip-nbgrader --sandbox-rounds 3
    .venv/bin/python benchmarks/bench_grading.py --submissions 40 --fork   # also `stgrade grade --fork`

With ``--fork`` the cohort is also graded by forked kernels (stgrade.forked), in the same run, and
the two stgrade modes must give every student the same total.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LESSON = "04_gradient_clipping"
KINDS = ("perfect", "partial", "blank", "noisy")


def make_cohort(n: int, folder: Path) -> Path:
    from stgrade.samples import build

    samples = build(folder / "samples", only=[LESSON])
    cohort = folder / "submitted"
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        target = cohort / f"{kind}{i:03d}" / LESSON
        target.mkdir(parents=True)
        shutil.copy(samples / kind / LESSON / f"{LESSON}.ipynb", target / f"{LESSON}.ipynb")
    return cohort


def kind_of(student: str) -> str:
    return student.rstrip("0123456789")


def mean_by_kind(scores: dict[str, float]) -> dict[str, float]:
    kinds = sorted({kind_of(s) for s in scores})
    return {k: sum(v for s, v in scores.items() if kind_of(s) == k) / sum(kind_of(s) == k for s in scores)
            for k in kinds}


def run_stgrade(cohort: Path, out: Path, jobs: int, extra: tuple[str, ...] = (), checkout: Path | None = None) -> float:
    """Seconds for `stgrade grade`; ``checkout``: run the grader of another checkout (its src/ and
    autograder/ first on the path), e.g. a worktree of the main branch as "today's" grader."""
    env = dict(os.environ)
    if checkout is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(checkout / "src"), str(checkout / "autograder")])
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "stgrade.cli", "grade", str(cohort), "--out", str(out), "--quiet",
                    "--jobs", str(jobs), *extra], check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started


def sandbox_cost(cohort: Path, work: Path, jobs: int, rounds: int, baseline: Path | None) -> None:
    """The sandbox's cost per submission against the grader without it, measured side by side:
    the two alternate, ``rounds`` times each, so that a busy machine slows both alike."""
    import statistics

    n = sum(1 for _ in cohort.iterdir())
    without = ("--no-sandbox",) if baseline is None else ()
    label = f"today's grader ({baseline})" if baseline else "stgrade --no-sandbox"
    times: dict[str, list[float]] = {"sandbox": [], "without": []}
    for i in range(rounds):
        order = ("sandbox", "without") if i % 2 == 0 else ("without", "sandbox")
        for which in order:
            if which == "sandbox":
                times[which].append(run_stgrade(cohort, work / "out-sandbox", jobs))
            else:
                times[which].append(run_stgrade(cohort, work / "out-without", jobs, without, baseline))
    sandboxed, plain = statistics.median(times["sandbox"]), statistics.median(times["without"])
    print(f"\nsandbox cost ({n} submissions, jobs={jobs or os.cpu_count()}, median of {rounds} alternating runs)")
    print(f"  {'stgrade (bubblewrap + cgroup)':<44}{sandboxed / n:>8.2f} s/submission  {times['sandbox']}")
    print(f"  {label:<44}{plain / n:>8.2f} s/submission  {times['without']}")
    print(f"  ratio sandbox / without: {sandboxed / plain:.2f}x (budget: 1.5x)")


def run_nbgrader(cohort: Path, course: Path) -> float:
    """Stock nbgrader: a course folder of its own, generate_assignment, then autograde."""
    (course / "source" / LESSON).mkdir(parents=True)
    shutil.copy(ROOT / "solutions" / LESSON / f"{LESSON}.ipynb", course / "source" / LESSON)
    shutil.copytree(cohort, course / "submitted")
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        "c.CourseDirectory.course_id = 'bench'\n"
        "c.Execute.timeout = 60\n")
    nbgrader = [sys.executable, "-m", "nbgrader"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # alembic
    subprocess.run([*nbgrader, "generate_assignment", LESSON, "--force"], cwd=course, check=True,
                   capture_output=True, env=env)
    started = time.perf_counter()
    subprocess.run([*nbgrader, "autograde", LESSON, "--force"], cwd=course, check=True, capture_output=True,
                   env=env)
    seconds = time.perf_counter() - started
    subprocess.run([*nbgrader, "export", "--to", str(course / "grades.csv")], cwd=course, check=True,
                   capture_output=True, env=env)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submissions", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=0, help="stgrade workers (default: one per core)")
    parser.add_argument("--skip-nbgrader", action="store_true")
    parser.add_argument("--fork", action="store_true", help="also grade with `stgrade grade --fork`, side by side")
    parser.add_argument("--sandbox-rounds", type=int, default=0,
                        help="also measure the sandbox's cost against --no-sandbox, side by side, this many rounds")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="with --sandbox-rounds: compare against the grader of this checkout instead")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-grading-"))
    try:
        cohort = make_cohort(args.submissions, work)
        n = args.submissions
        ours = run_stgrade(cohort, work / "out", args.jobs)
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
        print(f"cohort: {n} submissions of {LESSON}")
        print(f"{'grader':<34}{'total s':>10}{'s/submission':>15}")
        print(f"{'stgrade (parallel, jobs=%s)' % (args.jobs or os.cpu_count()):<34}{ours:>10.1f}{ours / n:>15.2f}")
        ours_scores = {r["student_id"]: float(r["total"]) for r in csv.DictReader((work / "out" / "grades.csv").open())}
        forked = None
        if args.fork:
            forked = run_stgrade(cohort, work / "out-fork", args.jobs, ("--fork",))
            print(f"{'stgrade --fork (jobs=%s)' % (args.jobs or os.cpu_count()):<34}{forked:>10.1f}{forked / n:>15.2f}")
            fork_scores = {r["student_id"]: float(r["total"])
                           for r in csv.DictReader((work / "out-fork" / "grades.csv").open())}
            if fork_scores != ours_scores:
                differ = sorted(s for s in ours_scores if fork_scores.get(s) != ours_scores[s])
                raise SystemExit(f"stgrade --fork graded differently: {differ}")
            print("stgrade --fork: the same total for every student")
        if not args.skip_nbgrader:
            stock = run_nbgrader(cohort, work / "nbgrader-course")
            print(f"{'nbgrader autograde (stock)':<34}{stock:>10.1f}{stock / n:>15.2f}")
            print(f"speed-up (nbgrader / stgrade): {stock / ours:.2f}x")
            if forked is not None:
                print(f"speed-up (nbgrader / stgrade --fork): {stock / forked:.2f}x (target: 40x)")
            stock_scores = {r["student_id"]: float(r["score"])
                            for r in csv.DictReader((work / "nbgrader-course" / "grades.csv").open())}
            from stgrade.course import load_lesson

            most = load_lesson(LESSON).max_points
            print(f"\nmean score by kind of student (out of {most:g}){'':<5}stgrade  nbgrader")
            theirs = mean_by_kind(stock_scores)
            for kind, score in mean_by_kind(ours_scores).items():
                print(f"  {kind:<44}{score:>7.1f}{theirs.get(kind, float('nan')):>10.1f}")
        if args.sandbox_rounds:
            sandbox_cost(cohort, work, args.jobs, args.sandbox_rounds, args.baseline)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
