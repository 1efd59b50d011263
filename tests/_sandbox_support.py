"""Shared by tests/test_sandbox_*.py: skip without a sandbox (or without per-submission cgroups, which
need root or a delegated cgroup), except in CI, where that fails."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stgrade.cgroup import SubmissionCgroup
from stgrade.sandbox import Limits, SandboxKernel, sandbox_problem

ROOT = Path(__file__).resolve().parents[1]
ADVERSARIAL = ROOT / "tests" / "adversarial" / "containment"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition_problem: str | None) -> None:
    """Skip with the reason, or fail in CI, where every containment test must run."""
    if condition_problem is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true and the protection cannot be tested here: {condition_problem}")
    pytest.skip(condition_problem)


def require_sandbox() -> None:
    require(sandbox_problem(Limits()))


@functools.cache
def cgroup_problem() -> str | None:
    """None when a kernel gets a cgroup of its own here (stgrade.cgroup: as root, in a cgroup delegated to
    this user, or in a systemd user scope); otherwise why not."""
    made = SubmissionCgroup.create(1 << 30, 64, 1.0)
    if made is not None:
        made.remove()
        return None
    return (f"per-submission cgroups need root, or a cgroup delegated to this user (uid {os.geteuid()}), or a "
            "systemd user session on cgroup v2; this machine gives this user none")


def require_cgroup() -> None:
    require(cgroup_problem())


WORKER = """
import json, sys
from pathlib import Path
from stgrade import userns
entered = userns.enter()  # what every grading worker does first (stgrade.workers)
from stgrade.sandbox import Limits, SandboxKernel
with SandboxKernel(Path(sys.argv[1]), Limits(**json.loads(sys.argv[2]))) as k:
    run = k.run(sys.stdin.read())
    text = "".join(o.get("text", "") for o in run.outputs if o.get("output_type") == "stream")
    print(json.dumps({"entered": entered, "protections": k.protections, "status": run.status, "text": text}))
"""


def in_a_worker(scratch: Path, code: str, **limits: object) -> dict:
    """Run ``code`` in a grading kernel started by a fresh process that begins as the grader's workers do
    (in a user namespace of its own where it is not root: the scratch tmpfs with its size cap)."""
    done = subprocess.run([sys.executable, "-c", WORKER, str(scratch), json.dumps(limits)], input=code,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def attack(name: str, **args: object) -> str:
    """The hostile cell ``tests/adversarial/containment/<name>.py`` with its ``ARGS``."""
    return f"ARGS = {args!r}\n" + (ADVERSARIAL / f"{name}.py").read_text()


def output(kernel: SandboxKernel, code: str, timeout: float | None = None) -> str:
    run = kernel.run(code, timeout=timeout)
    text = "".join(o.get("text", "") for o in run.outputs if o.get("output_type") == "stream")
    if run.status != "ok":
        text += f"\n[{run.status}: {run.ename}: {run.evalue}]"
    return text


def verdict(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith(("CONTAINED", "ESCAPED"))]
    assert lines, f"the attack printed no verdict: {text!r}"
    return lines[-1]


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found
