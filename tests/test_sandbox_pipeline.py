"""The sandbox inside `stgrade grade`: what summary.json says was in force, and no leaks.

A run (finished or interrupted with Ctrl-C) leaves nothing in the temporary directory and no
cgroup behind. The grader runs in a subprocess with a temporary directory of its own, so that
other programs writing to /tmp at the same time cannot blur the count.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _sandbox_support import require_root, require_sandbox
from stgrade.cgroup import ROOT as CGROUP_ROOT
from stgrade.cohorts.gradient_clipping import LESSON

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("grading")]


def _cohort(root: Path, students: tuple[str, ...]) -> Path:
    from stgrade.samples import build

    every = build(root / "all", only=[LESSON])
    chosen = root / "submitted"
    for student in students:
        shutil.copytree(every / student, chosen / student)
    return chosen


def _grader(submitted: Path, out: Path, tmp: Path, *extra: str) -> subprocess.Popen:
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp), "JUPYTER_RUNTIME_DIR": str(tmp.parent / "runtime")}
    return subprocess.Popen([sys.executable, "-m", "stgrade.cli", "grade", str(submitted), "--out", str(out), "-q",
                             "--jobs", "1", "--cell-timeout", "10", *extra], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _our_cgroups() -> list[Path]:
    return [p for p in CGROUP_ROOT.glob("**/stgrade-*") if p.is_dir()]


def test_a_run_records_the_protections_and_leaves_nothing_behind(tmp_path):
    require_sandbox()
    require_root()
    submitted = _cohort(tmp_path, ("perfect",))
    before = set(_our_cgroups())
    grader = _grader(submitted, tmp_path / "out", tmp_path / "tmp")
    log, _ = grader.communicate(timeout=300)
    assert grader.returncode == 0, log
    assert "sandbox: bubblewrap" in log and "NOT in force" not in log, log
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    protections = summary["protections"]
    assert protections["sandbox"] == "bubblewrap"
    assert all(protections[k] for k in ("no_capabilities_no_new_privileges", "own_pid_namespace_and_proc", "no_network",
                                         "read_only_view_without_answer_keys", "memory_cap_per_submission",
                                         "process_cap_per_submission", "cpu_cap_per_submission", "scratch_size_cap"))
    assert summary["submissions"][0]["total"] == 9, summary["submissions"][0]
    assert list((tmp_path / "tmp").iterdir()) == []
    assert set(_our_cgroups()) <= before


def test_an_interrupted_run_leaves_nothing_behind(tmp_path):
    require_sandbox()
    require_root()
    submitted = _cohort(tmp_path, ("perfect", "blank"))
    before = set(_our_cgroups())
    grader = _grader(submitted, tmp_path / "out", tmp_path / "tmp")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (set(_our_cgroups()) - before):  # a kernel is running
        time.sleep(0.2)
    assert set(_our_cgroups()) - before, "no kernel started"
    os.killpg(grader.pid, signal.SIGINT)  # Ctrl-C in the terminal reaches the grader and its workers
    grader.communicate(timeout=60)
    time.sleep(0.5)
    assert set(_our_cgroups()) <= before
    # No kernel files, connection files or scratch contents. A worker stopped by the pool while it
    # prepared the next submission may leave that submission's *empty* scratch folder (grading.py).
    left = [p for p in (tmp_path / "tmp").iterdir() if not (p.is_dir() and p.name.startswith("stgrade-")
                                                             and not any(p.iterdir()))]
    assert left == []


def test_grade_refuses_without_a_sandbox_and_no_sandbox_says_so(tmp_path):
    submitted = _cohort(tmp_path, ("perfect",))
    env_path = tmp_path / "bin"
    env_path.mkdir()
    os.symlink("/bin/sh", env_path / "sh")
    grader = subprocess.run([sys.executable, "-m", "stgrade.cli", "grade", str(submitted), "--out",
                             str(tmp_path / "out"), "-q"], env={**os.environ, "PATH": str(env_path)},
                            capture_output=True, text=True, timeout=120)
    assert grader.returncode == 2 and "refusing to grade" in grader.stderr and "bubblewrap" in grader.stderr
    assert not (tmp_path / "out").exists()
