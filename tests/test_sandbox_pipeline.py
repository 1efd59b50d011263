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
import tempfile
import time
from pathlib import Path

import pytest

from _sandbox_support import require_cgroup, require_sandbox
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


@pytest.fixture
def tmp(tmp_path):
    """A temporary directory of the grader's own, with a short path: the kernel's Unix sockets
    live there, and socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="stg-test-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _grader(submitted: Path, out: Path, tmp: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmp), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime")}
    return subprocess.Popen([sys.executable, "-m", "stgrade.cli", "grade", str(submitted), "--out", str(out), "-q",
                             "--jobs", "1", "--cell-timeout", "10", *extra], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _stale_cgroups() -> list[Path]:
    """Kernel cgroups a killed run left, wherever a grader may have made them (delegated folders
    included): what the grader itself sweeps (others may be in use by parallel tests or other graders)."""
    from stgrade.cgroup import find_stale

    return find_stale()


def _kernels_running(pid: int) -> bool:
    """Whether a grading kernel of the grader ``pid`` (or of its workers) is running."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return any(CGROUP_ROOT.glob(f"**/stgrade-{child}-*") for child in children + [str(pid)])


def test_a_run_records_the_protections_and_leaves_nothing_behind(tmp_path, tmp):
    require_sandbox()
    require_cgroup()
    submitted = _cohort(tmp_path, ("perfect",))
    grader = _grader(submitted, tmp_path / "out", tmp)
    log, _ = grader.communicate(timeout=300)
    assert grader.returncode == 0, log
    assert "sandbox: bubblewrap" in log and "NOT in force" not in log, log
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    protections = summary["protections"]
    assert protections["sandbox"] == "bubblewrap"
    # which way the caps were made: as root, or (not root) a delegated cgroup or a systemd user scope and
    # the scratch tmpfs in the workers' own user namespace
    from stgrade.cgroup import SubmissionCgroup

    made = SubmissionCgroup.create(1 << 30, 64, 1.0)
    made.remove()
    assert protections["per_submission_caps_by"] == made.kind
    assert protections["scratch_size_cap_by"] == ("tmpfs" if os.geteuid() == 0 else "tmpfs in the grader's own user namespace")
    assert all(protections[k] for k in ("no_capabilities_no_new_privileges", "own_pid_namespace_and_proc", "no_network",
                                         "read_only_view_without_answer_keys", "memory_cap_per_submission",
                                         "process_cap_per_submission", "cpu_cap_per_submission", "scratch_size_cap"))
    perfect = summary["submissions"][0]
    assert perfect["total"] == perfect["max_total"] > 0, perfect["reason"]  # full marks inside the sandbox
    # what the submission cost: the kernel's CPU (its cgroup; starting it with torch takes ~1 s) and the grader's
    assert 0.3 < perfect["cpu_seconds"] < 60, perfect["cpu_seconds"]
    # of its wall-clock seconds, starting and stopping the kernel (the same work for every lesson)
    assert 0.2 < perfect["kernel_start_stop_seconds"] < perfect["seconds"], perfect
    assert list(tmp.iterdir()) == []
    assert _stale_cgroups() == []


def test_an_interrupted_run_leaves_nothing_behind(tmp_path, tmp):
    require_sandbox()
    require_cgroup()
    submitted = _cohort(tmp_path, ("perfect", "blank"))
    grader = _grader(submitted, tmp_path / "out", tmp)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _kernels_running(grader.pid):
        time.sleep(0.2)
    assert _kernels_running(grader.pid), "no kernel started"
    os.killpg(grader.pid, signal.SIGINT)  # Ctrl-C in the terminal reaches the grader and its workers
    grader.communicate(timeout=60)
    time.sleep(0.5)
    assert _stale_cgroups() == []
    # No kernel files, connection files or scratch contents. A worker stopped by the pool while it
    # prepared the next submission may leave that submission's *empty* scratch folder (grading.py).
    left = [p for p in tmp.iterdir() if not (p.is_dir() and p.name.startswith("stgrade-")
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
