"""Which way the per-submission caps are made, and what the grader says about it.

The ways this machine offers are tested for real elsewhere: as root and, not root, in a delegated
cgroup (tests/test_sandbox_containment.py, test_sandbox_pipeline.py; .ci/run runs them as a normal
user too), and the scratch tmpfs in the workers' own user namespace. Here: the plain statement where
there is none, and the systemd user scope (``systemd-run --user --scope``), which needs a systemd user
session on cgroup v2 — with stand-ins for ``systemd-run`` and ``systemctl`` that apply nothing, so
that what the grader asks for and how it reads the scope's counters are checked on any machine.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap

from _sandbox_support import output, processes_with
from stgrade import cgroup, sandbox, userns
from stgrade.sandbox import Limits, SandboxKernel


def test_without_cgroups_or_a_user_namespace_the_summary_says_so(monkeypatch):
    monkeypatch.setattr(sandbox.SubmissionCgroup, "create", classmethod(lambda cls, *a: None))
    monkeypatch.setattr(userns, "possible", lambda: False)
    found = sandbox.protections_in_force(Limits())
    assert found["per_submission_caps_by"] == "none (per-process rlimits only)" and found["scratch_size_cap_by"] == "none"
    assert found["limits"]["scratch_bytes"] is None
    text = sandbox.describe(found)
    assert ("NOT in force: memory cap per submission, process cap per submission, cpu cap per submission, "
            "scratch size cap") in text, text


FAKE_SYSTEMD_RUN = r'''#!/bin/sh
# stand-in for systemd-run --user --scope: records its arguments, "applies" the limits by writing them
# where the probe reads them (FAKE_CGROUP, a folder), then runs the command (the kernel's environment is
# the grader's choice: the folder is written into this script)
FAKE_CGROUP=%s
printf '%s ' "$@" >> "$FAKE_CGROUP/calls"; echo >> "$FAKE_CGROUP/calls"
while [ "$1" != "--" ]; do
  case "$1" in
    MemoryMax=*) echo "${1#MemoryMax=}" > "$FAKE_CGROUP/memory.max" ;;
    TasksMax=*) echo "${1#TasksMax=}" > "$FAKE_CGROUP/pids.max" ;;
    CPUQuota=100%) echo "100000 100000" > "$FAKE_CGROUP/cpu.max" ;;
  esac
  shift
done
shift
exec "$@"
'''

FAKE_SYSTEMCTL = r'''#!/bin/sh
[ "$2" = show ] && echo /
exit 0
'''


def test_a_systemd_user_scope_per_kernel(tmp_path, monkeypatch):
    fake = tmp_path / "cgroup"
    fake.mkdir()
    (fake / "cgroup.controllers").write_text("cpu memory pids\n")
    (fake / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\n")
    (fake / "cgroup.procs").write_text("")
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name, text in (("systemd-run", FAKE_SYSTEMD_RUN), ("systemctl", FAKE_SYSTEMCTL)):
        (bin_ / name).write_text(text.replace("%s", str(fake), 1))
        (bin_ / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}:{os.environ['PATH']}")
    monkeypatch.setattr(cgroup, "ROOT", fake)
    cgroup.scope_controllers.cache_clear()
    try:
        assert cgroup.scope_controllers() == ("memory", "pids", "cpu")  # the probe read back what it asked for
        limits = Limits(cell_seconds=20, memory_bytes=2 * 1024**3, max_processes=48, cpus=1.0, sandbox="off")
        monkeypatch.setattr(sandbox.SubmissionCgroup, "create",
                            classmethod(lambda cls, *a: cgroup.ScopeCgroup.create(*a)))
        with SandboxKernel(tmp_path / "scratch", limits) as k:
            assert k.protections["caps_by"] == "systemd user scope" and k.protections["cgroup"] == ["cpu", "memory", "pids"]
            assert output(k, "print(6 * 7)").strip() == "42"
        calls = (fake / "calls").read_text().splitlines()
        kernel_call = calls[-1].split()
        assert kernel_call[:5] == ["--user", "--scope", "--quiet", "--collect", kernel_call[4]]
        assert kernel_call[4].startswith(f"--unit={cgroup.PREFIX}{os.getpid()}-") and kernel_call[4].endswith(".scope")
        assert {"MemoryMax=2147483648", "MemorySwapMax=0", "TasksMax=48", "CPUQuota=100%"} <= set(kernel_call)
        assert kernel_call[kernel_call.index("--") + 1:][:2] == ["/bin/sh", "-c"]  # the holder, then the kernel
        assert k.cpu_seconds == 1.5  # read from the scope's cpu.stat once the kernel had stopped
        assert (fake / "cgroup.kill").read_text() == "1"  # and everything in the scope killed
    finally:
        cgroup.scope_controllers.cache_clear()
        for pid in processes_with(f"--pid={os.getpid()}"):  # the stand-in kills nothing: stop the holder
            os.kill(pid, signal.SIGKILL)


def test_the_scope_holder_follows_the_grader():
    """The holder keeps a scope's counters after its kernel exits, and ends with the grader."""
    script = textwrap.dedent(f"""
        import subprocess, sys, time
        holder = subprocess.Popen(["/bin/sh", "-c", {cgroup.HOLD_SCRIPT!r}, "sh", str(sys.argv[1]), "true"])
        holder.wait()
    """)
    import subprocess

    grader = subprocess.Popen(["sleep", "30"])
    subprocess.run([sys.executable, "-c", script, str(grader.pid)], check=True, timeout=30)
    assert processes_with(f"--pid={grader.pid}")  # the kernel ("true") is gone, the holder is there
    grader.kill()
    grader.wait()
    import time

    deadline = time.monotonic() + 5
    while processes_with(f"--pid={grader.pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not processes_with(f"--pid={grader.pid}")


def test_a_killed_runs_cgroups_are_swept_wherever_a_grader_made_them():
    """A kernel cgroup whose grader is gone is removed by the next run, also inside a folder delegated
    to another user's grader (where .ci/as-a-normal-user runs one), and it is what the tests call stale;
    one whose lock a live grader holds (its process id may belong to another PID namespace sharing this
    cgroup file system) and one of a live grader of this namespace that took no lock are left alone."""
    import subprocess
    import uuid

    from _sandbox_support import require_cgroup

    require_cgroup()
    parents = cgroup._parents(64)
    if not parents:  # a systemd user scope: systemd removes a scope when its processes are gone
        return
    gone = subprocess.Popen(["true"])
    gone.wait()  # its process id now names no process
    delegated = next(iter(parents.values())) / f"delegated-test-{uuid.uuid4().hex[:8]}"
    delegated.mkdir()
    left, held, alive = (delegated / f"{cgroup.PREFIX}{pid}-{uuid.uuid4().hex[:8]}"
                         for pid in (gone.pid, gone.pid, os.getpid()))
    lock = None
    try:
        for path in (left, held, alive):
            path.mkdir()
        lock = cgroup._lock(held)
        stale = cgroup.find_stale()
        assert left in stale and held not in stale and alive not in stale, stale
        assert left in cgroup.sweep_stale()
        assert not left.exists() and held.is_dir() and alive.is_dir()
        os.close(lock)
        lock = None
        assert held in cgroup.find_stale()  # once its grader let go
    finally:
        if lock is not None:
            os.close(lock)
        for path in (left, held, alive, delegated):
            if path.is_dir():
                path.rmdir()


def test_cpu_and_cpuacct_in_one_hierarchy_make_one_cgroup(tmp_path, monkeypatch):
    """The usual cgroup v1 layout mounts cpu and cpuacct together (``cpu,cpuacct``, linked under both
    names): the kernel gets one folder there, with the CPU cap, counted by cpuacct, joined once."""
    root = tmp_path / "cgroup"
    for name in ("memory", "pids", "cpu,cpuacct"):
        (root / name).mkdir(parents=True)
        (root / name / "cgroup.procs").write_text("")
    for name in ("cpu", "cpuacct"):
        (root / name).symlink_to("cpu,cpuacct")
    monkeypatch.setattr(cgroup, "ROOT", root)
    monkeypatch.setattr(cgroup, "_own_path", lambda hierarchy: "/")
    monkeypatch.setattr(cgroup, "_v2", lambda: False)
    made = cgroup.SubmissionCgroup.create(1 << 30, 64, 1.0)
    assert made is not None and made.paths["cpu"] == made.paths["cpuacct"] and made.paths["cpu"].parent.name == "cpu,cpuacct"
    assert made.controllers == ["cpu", "memory", "pids"] and len(made.procs_files()) == 3
    assert (made.paths["cpu"] / "cpu.cfs_quota_us").read_text() == str(cgroup.CPU_PERIOD_US)
    (made.paths["cpuacct"] / "cpuacct.usage").write_text("2500000000")
    assert made.cpu_seconds() == 2.5
    assert cgroup.sweep_roots() == [root / "memory", root / "pids", root / "cpu,cpuacct"] or os.geteuid() != 0
    for fd in made._locks:  # regular folders here: nothing to remove but the locks
        os.close(fd)
