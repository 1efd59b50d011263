"""Command line: ``stgrade grade | validate | release | demo | samples``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .sandbox import Limits


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(cell_seconds=args.cell_timeout, notebook_seconds=args.notebook_timeout,
                  memory_bytes=int(args.memory_mb) * 1024**2, sandbox="off" if args.no_sandbox else "required")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", "-j", type=int, default=0, help="submissions graded at once (default: one per core)")
    p.add_argument("--cell-timeout", type=float, default=30.0, help="seconds one cell may run (default: 30)")
    p.add_argument("--notebook-timeout", type=float, default=300.0,
                   help="seconds a whole submission may run (default: 300)")
    p.add_argument("--memory-mb", type=int, default=4096, help="memory cap of a student's kernel (default: 4096)")
    p.add_argument("--secret", default=None,
                   help="secret that picks the hidden cases' random inputs and signs results (default: "
                   "$STGRADE_SECRET, else the course's private secret file autograder/.stgrade-secret, "
                   "created on first use; a value given here shows in the process list)")
    p.add_argument("--force", action="store_true", help="regrade submissions whose results are already up to date")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    p.add_argument("--warm", type=int, default=1, metavar="N",
                   help="kernels each worker launches ahead of its submissions, each used for one submission only "
                   "(default: 1; 0: start each kernel when its submission comes)")
    p.add_argument("--fork", action="store_true",
                   help="fork each submission's kernel from a sandboxed fork server per worker (torch and the "
                   "lessons' imports loaded once), each child in namespaces, a cgroup and a scratch folder of its own "
                   "(stgrade.forked; needs util-linux unshare and user namespaces; local runs only; replaces --warm)")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="grade on this Dask cluster instead of local workers (its workers need the same course "
                   "installed and bubblewrap; see the README); results stream into OUT as locally")
    p.add_argument("--no-sandbox", action="store_true",
                   help="run kernels without the bubblewrap sandbox: only for notebooks you trust")


def _grade(submissions: Path, out: Path, args: argparse.Namespace) -> int:
    from . import report
    from .pipeline import RunOptions, grade_folder

    from .sandbox import describe, protections_in_force, sandbox_problem

    limits = _limits(args)
    if getattr(args, "fork", False) and getattr(args, "scheduler", None):
        print("stgrade: --fork grades with local workers only; leave out --scheduler or --fork", file=sys.stderr)
        return 2
    problem = sandbox_problem(limits)
    if problem:
        print(f"stgrade: refusing to grade: the grading sandbox cannot be set up on this machine.\n  {problem}\n"
              "Student notebooks are untrusted code. Install bubblewrap, or pass --no-sandbox only for notebooks "
              "you trust.", file=sys.stderr)
        return 2
    print(describe(protections_in_force(limits)), flush=True)
    options = RunOptions(jobs=args.jobs, limits=limits, secret=args.secret,
                         force=args.force, quiet=args.quiet, warm=args.warm,
                         scheduler=getattr(args, "scheduler", None), fork=getattr(args, "fork", False))
    started = time.monotonic()
    results = grade_folder(submissions, out, options)
    print(report.table(results))
    print(f"\n{len(results)} submissions in {time.monotonic() - started:.1f} s: {report.counts_line(results)}")
    print(f"overview: {out / 'index.html'}\ngrades:   {out / 'grades.csv'}\nsummary:  {out / 'summary.json'}\n"
          f"feedback: {out / 'feedback'}/<student>/<lesson>.html\nnotebooks: {out / 'autograded'}")
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    return _grade(Path(args.submissions), Path(args.out), args)


def cmd_validate(args: argparse.Namespace) -> int:
    from .validate import render, validate

    limits = Limits(cell_seconds=args.cell_timeout, notebook_seconds=args.notebook_timeout)
    print(render(validate(Path(args.notebook), args.lesson, limits)))
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    from .release import release

    for path in release(lessons=args.lessons or None):
        print(f"wrote {path}")
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    from .samples import build

    print(f"sample cohort written to {build(Path(args.target))}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import csv

    from .course import REPO_ROOT
    from .release import release
    from .samples import build, expected

    print("1/3  building the student notebooks (course/) from solutions/ …", flush=True)
    release()
    print("2/3  writing a sample cohort to autograder/samples/submitted …", flush=True)
    submitted = build(REPO_ROOT / "autograder" / "samples")
    from .sandbox import sandbox_problem

    if not args.no_sandbox and (problem := sandbox_problem(_limits(args))):
        print(f"     no sandbox on this machine ({problem});\n     grading the bundled samples without it "
              "(they are trusted; `stgrade grade` would refuse).", flush=True)
        args.no_sandbox = True
    print("3/3  grading it …\n", flush=True)
    out = Path(args.out)
    _grade(submitted, out, args)
    rows = {(r["student_id"], r["lesson"]): r for r in csv.DictReader((out / "grades.csv").open())}
    want_all = expected()
    mismatches = []
    for key, want in sorted(want_all.items()):
        row = rows.get(key)
        got_total = float(row["total"]) if row and row["total"] else None
        if row is None or row["status"] != want.status or got_total != want.total:
            mismatches.append(f"{key[0]} / {key[1]}: expected {want.status} {want.total}, got "
                              f"{row['status'] if row else 'no row'} {got_total}")
    unexpected = sorted(set(rows) - set(want_all))
    mismatches += [f"{s} / {lsn}: a row nobody expected" for s, lsn in unexpected]
    print("\nExpected outcomes:")
    for (student, lesson), want in sorted(want_all.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if want.status != "missing" or student == "absent":
            print(f"  {lesson:<24} {student:<14} {want.why}")
    if mismatches:
        print("\nDEMO MISMATCH:\n  " + "\n  ".join(mismatches), file=sys.stderr)
        return 1
    print(f"\nEvery sample student got the expected result. Open {out / 'index.html'} for the overview, or "
          f"{out / 'feedback' / 'partial'}/04_gradient_clipping.html to see what a student reads.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stgrade", description="Grade Stable Training submissions: parallel, sandboxed, with trusted "
        "comparison against the reference and per-student feedback.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("grade", help="grade a folder of submissions",
                       description="Grade every submission in SUBMISSIONS (nbgrader's submitted/<student>/<lesson>/"
                       "*.ipynb layout, or <student>_<lesson>.ipynb / <student>.zip files) into OUT.")
    p.add_argument("submissions", help="folder of submissions")
    p.add_argument("--out", "-o", default="grading-out", help="output folder (default: grading-out)")
    _add_run_options(p)
    p.set_defaults(func=cmd_grade)
    p = sub.add_parser("validate", help="for students: grade one notebook as the grader will, and say what differs",
                       description="Grade NOTEBOOK as `stgrade grade` will (the original test cells, your answers "
                       "and the cells you added, in a fresh kernel, top to bottom), with the visible checks and "
                       "hidden-style checks, and warn about anything the grader treats differently from your session.")
    p.add_argument("notebook", help="your notebook (.ipynb)")
    p.add_argument("--lesson", help="lesson id (default: from the file name or the notebook's cells)")
    p.add_argument("--cell-timeout", type=float, default=30.0, help="seconds one cell may run (default: 30)")
    p.add_argument("--notebook-timeout", type=float, default=300.0, help="seconds the notebook may run (default: 300)")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("release", help="regenerate course/ from solutions/")
    p.add_argument("lessons", nargs="*", help="lesson ids (default: all)")
    p.set_defaults(func=cmd_release)
    p = sub.add_parser("samples", help="write the sample cohort")
    p.add_argument("--target", default="autograder/samples")
    p.set_defaults(func=cmd_samples)
    p = sub.add_parser("demo", help="release, build the sample cohort and grade it")
    p.add_argument("--out", "-o", default="grading-out/demo")
    _add_run_options(p)
    p.set_defaults(func=cmd_demo, cell_timeout=10.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"stgrade: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
