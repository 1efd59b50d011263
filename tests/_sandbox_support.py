"""Shared by tests/test_sandbox_*.py: skip without a sandbox, except in CI, where that fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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


def require_root() -> None:
    require(None if os.geteuid() == 0 else "cgroups and the scratch tmpfs need the grader to run as root")


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
