"""The grader's memory and output for one submission are bounded, whatever it sends (issue 21).

Grader processes (not kernels) once reached 2.4-2.5 GB on a crafted notebook JSON and on one
4.8 MB answer cell, 1.7-1.9 GB on messages a kernel floods and on many result messages each
under the per-cell cap; one student's feedback, result file and summary reached 16 MB and an
autograded notebook 29 MB. Now: the notebook's JSON values, each code cell and all code are
capped before parsing (stgrade.assemble); no ZeroMQ message over the limit is accepted and only a
few wait in the grader's sockets (stgrade.sandbox); outputs and results are capped per
submission, not per cell; messages and notes are capped (stgrade.grading.cap_result).

The test grades, in a fresh process standing for a worker, an ordinary submission (the baseline
of its peak memory), then a flood — one 100 MB message, sixty 1.9 MB ones, 24 MB of results in
each of eight added cells, 400 added cells printing past their cap, a function that returns a
190,000-element list — and a crafted JSON and a 4.8 MB answer cell; the process's peak memory
may grow by at most :data:`BOUND_BYTES`, and every file written stays small.
"""

from __future__ import annotations

import json
import subprocess
import sys

import nbformat
import pytest

from _sandbox_support import require_sandbox
from stgrade.cohorts import lesson_sources
from stgrade.course import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("grading")]

LESSON = "04_gradient_clipping"
BOUND_BYTES = 400 * 1024**2

FLOOD = '''\
from IPython.display import publish_display_data
publish_display_data({"text/plain": "x" * (100 * 1024**2)})       # one message of 100 MB
for _ in range(60):
    publish_display_data({"text/plain": "y" * (1900 * 1024)})      # many of 1.9 MB each
'''
RESULTS = '''\
from IPython.display import publish_display_data
for _ in range(3):  # 24 MB of check() results in this cell: under the old per-cell cap of 32 MB
    publish_display_data({"application/x-stabletrain-result": "[" + "0," * (4 * 1024**2 - 1) + "0]"})
'''
PRINTS = 'print("z" * 15_000)'  # under the per-cell cap of 20,000 characters
HUGE_RETURN = '''\
def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    return list(range(190_000))
'''

PROBE = r'''
import json, resource, sys
from pathlib import Path
from stgrade.grading import grade_submission
from stgrade.sandbox import Limits

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

limits = Limits(cell_seconds=10, notebook_seconds=300)
out = Path(sys.argv[1])
grade_submission("warm", "04_gradient_clipping", Path(sys.argv[2]), out, limits, 1)
base = peak()
report = {"base": base}
for name in sys.argv[3:]:
    r = grade_submission(name, "04_gradient_clipping", Path(out.parent / f"{name}.ipynb"), out, limits, 1)
    report[name] = {"peak": peak(), "status": r.status, "reason": r.reason[:200], "total": r.total,
                    "result_bytes": len(json.dumps(r.to_json())),
                    "notebook_bytes": sum(p.stat().st_size for p in (out / name).rglob("*.ipynb"))}
print(json.dumps(report))
'''
# measured (2026-12-07, shared 2-core machine): the flood grew the peak by 0 MB over the ordinary
# submission's (whose peak is ~650 MB: torch and the references); before this change, 1.7-2.5 GB


def _with_added(src, answers, added: list[str]) -> nbformat.NotebookNode:
    nb = src.with_answers(answers)
    at = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "clip_grad_value")
    nb.cells[at + 1:at + 1] = [nbformat.v4.new_code_cell(code) for code in added]
    return nb


def test_one_submission_cannot_make_the_grader_hold_gigabytes(tmp_path):
    require_sandbox()
    src = lesson_sources(LESSON, REPO_ROOT)
    good = src.solutions
    nbformat.write(src.with_answers(good), tmp_path / "warm.ipynb")
    nbformat.write(_with_added(src, {**good, "clip_grad_norm": HUGE_RETURN}, [FLOOD] + [RESULTS] * 8
                               + [PRINTS] * 400), tmp_path / "flood.ipynb")
    crafted = json.loads(nbformat.writes(src.with_answers(good)))
    crafted["metadata"]["padding"] = [[] for _ in range(3_000_000)]  # 9 MB of JSON: 3 million lists
    (tmp_path / "crafted.ipynb").write_text(json.dumps(crafted))
    nbformat.write(src.with_answers({**good, "clip_grad_value": "x = 1  # " + "#" * (4_800_000) + "\n"
                                     + good["clip_grad_value"]}), tmp_path / "bigcell.ipynb")
    done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "out"), str(tmp_path / "warm.ipynb"),
                           "flood", "crafted", "bigcell"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    base = report["base"]
    for name in ("flood", "crafted", "bigcell"):
        grown = report[name]["peak"] - base
        assert grown < BOUND_BYTES, (name, grown >> 20, report)
    flood = report["flood"]
    assert flood["status"] == "graded" and flood["result_bytes"] < 200_000, flood
    assert flood["notebook_bytes"] < 2 * 1024**2, flood  # 400 cells at the old per-cell cap: 8 MB
    assert report["crafted"]["status"] == "failed" and "JSON values" in report["crafted"]["reason"]
    assert report["bigcell"]["status"] == "failed" and "characters" in report["bigcell"]["reason"]
