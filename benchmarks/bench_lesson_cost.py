"""Grading cost per lesson, side by side: what a submission of each lesson costs against lesson 04.

The bar for a new lesson is that grading one of its submissions costs no more than a lesson-04
submission. Every sample student (``--copies`` each of perfect, partial and blank) hands in every
lesson compared, and one ``stgrade grade --jobs 1`` run grades them all: a student's lessons are
graded one right after the other, so each pair (this lesson, lesson 04) meets the same state of
the machine — on a shared machine whose speed drifts by ±20 % from minute to minute, comparing
whole runs graded minutes apart does not resolve a few per cent. The first student of each run
(the worker's warm-up) is left out.

Prints, per lesson, the mean wall-clock and CPU seconds per submission (CPU: the kernel's, counted
by its cgroup, plus the grader's; only when grading as root) and the ratio to lesson 04: the sum
over all pairs of this lesson's cost over lesson 04's, with its 95 % confidence interval (a
bootstrap over the pairs: how far the ratio could move on another run of the same length) and the
middle half of the per-pair ratios. A lesson "costs no more than lesson 04" beyond doubt only when
the interval's upper end is at most 1.

Starting and stopping the kernel (~1.6 s: Python, torch, ipykernel, the answer-key guard) is the
same work for every lesson but carries most of the noise, so a third table leaves it out
(``seconds - kernel_start_stop_seconds`` of each submission): the lesson's own work — its setup
cell, its cells and checks, the grader's verification — resolves a difference about four times
finer. Its ratio is of that work alone, not of a whole submission.

    .venv/bin/python benchmarks/bench_lesson_cost.py --rounds 3
    .venv/bin/python benchmarks/bench_lesson_cost.py --lessons 03_initialization --copies 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from bench_grading import run_stgrade

BASELINE = "04_gradient_clipping"
KINDS = ("perfect", "partial", "blank")


def make_cohort(lessons: list[str], copies: int, folder: Path) -> Path:
    """``copies`` + 1 students of each kind, each handing in every lesson (student 0 warms up)."""
    from stgrade.samples import build

    samples = build(folder / "samples", only=lessons)
    cohort = folder / "cohort"
    for i in range(copies + 1):
        for kind in KINDS:
            for lesson in lessons:
                target = cohort / f"{i:02d}-{kind}" / lesson
                target.mkdir(parents=True)
                shutil.copy(samples / kind / lesson / f"{lesson}.ipynb", target / f"{lesson}.ipynb")
    return cohort


def costs(out: Path) -> dict[tuple[str, str], dict[str, float | None]]:
    """``{(student, lesson): {"wall": s, "cpu": s or None, "own": s}}`` of the run that wrote ``out``
    (``own``: wall seconds without starting and stopping the kernel)."""
    found = {}
    for s in json.loads((out / "summary.json").read_text())["submissions"]:
        if s["status"] == "graded" and not s["student"].startswith("00-"):
            found[(s["student"], s["lesson"])] = {"wall": s["seconds"], "cpu": s.get("cpu_seconds"),
                                                  "own": s["seconds"] - s["kernel_start_stop_seconds"]}
    return found


def ratio_interval(mine: list[float], theirs: list[float], resamples: int = 10_000,
                   level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``Σ mine / Σ theirs``, resampling the pairs with replacement."""
    import numpy as np

    a, b = np.asarray(mine), np.asarray(theirs)
    picks = np.random.default_rng(0).integers(0, len(a), size=(resamples, len(a)))
    ratios = a[picks].sum(axis=1) / b[picks].sum(axis=1)
    low, high = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def main() -> int:
    from stgrade.samples import lessons as all_lessons

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lessons", nargs="*", default=None, help="lessons to compare (default: all)")
    parser.add_argument("--copies", type=int, default=3, help="students of each kind (perfect, partial, blank)")
    parser.add_argument("--rounds", type=int, default=3, help="grading runs")
    args = parser.parse_args()
    lessons = sorted(set(args.lessons or all_lessons()) | {BASELINE})
    unknown = sorted(set(lessons) - set(all_lessons()))
    if unknown:
        parser.error(f"no sample cohort for {', '.join(unknown)}; lessons: {', '.join(all_lessons())}")
    work = Path(tempfile.mkdtemp(prefix="bench-lesson-cost-"))
    try:
        cohort = make_cohort(lessons, args.copies, work)
        pairs: dict[str, list[tuple[dict, dict]]] = defaultdict(list)  # lesson -> [(its cost, 04's), ...]
        for r in range(args.rounds):
            run_stgrade(cohort, work / "out", 1)
            found = costs(work / "out")
            for (student, lesson), cost in found.items():
                pairs[lesson].append((cost, found[(student, BASELINE)]))
            print(f"round {r + 1}/{args.rounds} graded", file=sys.stderr)
        n = len(pairs[BASELINE])
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"load average at the end {os.getloadavg()[0]:.2f}")
        print(f"{n} submissions per lesson ({args.copies} each of {', '.join(KINDS)}, {args.rounds} runs of "
              "stgrade grade --jobs 1), each paired with the same student's lesson 04, graded next to it")
        print("ratio: Σ this lesson / Σ lesson 04 over the pairs, its 95 % bootstrap interval, and the middle "
              "half of the per-pair ratios")
        for measure, label in (("wall", "wall-clock seconds"), ("cpu", "CPU seconds (kernel + grader)"),
                               ("own", "wall s without kernel start/stop")):
            if any(c[measure] is None for ps in pairs.values() for pair in ps for c in pair):
                print(f"\n{label}: not counted (no cgroups: grade as root to count the kernels' CPU)")
                continue
            print(f"\n{label:<34}{'per submission':>15}{'ratio to 04':>13}   {'95 % interval':<15}middle half")
            for lesson in lessons:
                mine = [a[measure] for a, _ in pairs[lesson]]
                theirs = [b[measure] for _, b in pairs[lesson]]
                q = statistics.quantiles([a / b for a, b in zip(mine, theirs)], n=4)
                low, high = ratio_interval(mine, theirs)
                print(f"{lesson:<34}{statistics.mean(mine):>15.3f}{sum(mine) / sum(theirs):>12.3f}x"
                      f"   {low:.3f}–{high:.3f}    {q[0]:.3f}–{q[2]:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
