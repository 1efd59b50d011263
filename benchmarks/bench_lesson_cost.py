"""Grading cost per lesson, side by side: seconds per submission of each lesson against lesson 04.

The bar for a new lesson is that grading one of its submissions costs no more than a lesson-04
submission. Each lesson gets the same cohort (``--copies`` each of the sample perfect, partial and
blank students), graded by ``stgrade grade --jobs 1`` (one submission at a time, so the figure is a
submission's cost, not the pool's); the lessons take turns within a round, in an order that
rotates from round to round, so a machine that gets busier or quieter slows them alike. Prints
the median seconds per submission and the ratio to the baseline lesson.

    .venv/bin/python benchmarks/bench_lesson_cost.py --rounds 5
    .venv/bin/python benchmarks/bench_lesson_cost.py --lessons 03_initialization --rounds 7
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench_grading import run_stgrade

BASELINE = "04_gradient_clipping"
KINDS = ("perfect", "partial", "blank")


def make_cohorts(lessons: list[str], copies: int, folder: Path) -> dict[str, Path]:
    """``{lesson: folder of its submissions}``: ``copies`` of each kind, one lesson per folder."""
    from stgrade.samples import build

    samples = build(folder / "samples", only=lessons)
    cohorts = {}
    for lesson in lessons:
        cohort = folder / "cohorts" / lesson
        for kind in KINDS:
            for i in range(copies):
                target = cohort / f"{kind}{i:02d}" / lesson
                target.mkdir(parents=True)
                shutil.copy(samples / kind / lesson / f"{lesson}.ipynb", target / f"{lesson}.ipynb")
        cohorts[lesson] = cohort
    return cohorts


def main() -> int:
    from stgrade.samples import lessons as all_lessons

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lessons", nargs="*", default=None, help="lessons to compare (default: all)")
    parser.add_argument("--copies", type=int, default=2, help="copies of each sample student per lesson")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    lessons = sorted(set(args.lessons or all_lessons()) | {BASELINE})
    unknown = sorted(set(lessons) - set(all_lessons()))
    if unknown:
        parser.error(f"no sample cohort for {', '.join(unknown)}; lessons: {', '.join(all_lessons())}")
    work = Path(tempfile.mkdtemp(prefix="bench-lesson-cost-"))
    try:
        cohorts = make_cohorts(lessons, args.copies, work)
        n = args.copies * len(KINDS)
        seconds: dict[str, list[float]] = {lesson: [] for lesson in lessons}
        for r in range(args.rounds):
            order = lessons[r % len(lessons):] + lessons[:r % len(lessons)]
            for lesson in order:
                seconds[lesson].append(run_stgrade(cohorts[lesson], work / "out", 1) / n)
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{lsn[:2]} {seconds[lsn][-1]:.2f}" for lsn in lessons),
                  file=sys.stderr)
        base = statistics.median(seconds[BASELINE])
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"load average at the end {os.getloadavg()[0]:.2f}")
        print(f"cohort per lesson: {n} submissions ({args.copies} each of {', '.join(KINDS)}), stgrade --jobs 1, "
              f"median of {args.rounds} rotating rounds")
        print(f"{'lesson':<28}{'s/submission':>14}{'ratio to 04':>13}   per round")
        for lesson in lessons:
            med = statistics.median(seconds[lesson])
            rounds = " ".join(f"{s:.2f}" for s in seconds[lesson])
            print(f"{lesson:<28}{med:>14.2f}{med / base:>12.2f}x   {rounds}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
