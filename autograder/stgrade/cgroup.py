"""A cgroup per grading kernel: memory, processes and CPU capped for the whole submission.

Where cgroups are writable (the grader runs as root on Linux), each kernel gets its own cgroup —
one per controller on cgroup v1 (``memory``, ``pids``, ``cpu``), one with all three on cgroup v2 —
with

- ``memory``: the kernel and all its children *together* (tmpfs pages included) stay under the
  submission's memory cap; above it the kernel's OOM killer stops one of them, nothing else;
- ``pids``: a fork bomb fails with an error inside that submission;
- ``cpu``: the submission gets at most ``cpus`` cores of CPU time, whatever it starts.

The kernel process is moved in by the launcher (:data:`JOIN_SCRIPT`) *before* bubblewrap starts,
so everything it ever starts is inside; the kernel itself never sees the cgroup file system (no
/sys in the sandbox) and cannot move out, raise a limit, or outlive :meth:`SubmissionCgroup.remove`,
which kills every process inside and deletes the cgroup. Cgroups left by a run that was killed
(SIGKILL, a crash) are removed by the next run (:func:`sweep_stale`). Elsewhere
:meth:`SubmissionCgroup.create` returns None, the kernel keeps its per-process rlimits, and the
grader says so.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PREFIX = "stgrade-"
CPU_PERIOD_US = 100_000

#: ``sh -c JOIN_SCRIPT sh PROCS_FILE... -- COMMAND...``: move this shell into each cgroup, then exec
#: the command; fails closed (exit 97) when a cgroup cannot be joined.
JOIN_SCRIPT = ('while [ "$1" != "--" ]; do echo $$ > "$1" || exit 97; shift; done; shift; exec "$@"')


def _own_path(hierarchy: str) -> str:
    """This process's cgroup path in a v1 hierarchy (``memory``) or v2 (``""``)."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers.split(",") == [hierarchy] or (hierarchy in controllers.split(",") and hierarchy):
                return path
            if not hierarchy and controllers == "":
                return path
    except OSError:
        pass
    return "/"


def _v2() -> bool:
    return (ROOT / "cgroup.controllers").exists()


def _parents(max_pids: int) -> dict[str, Path]:
    """controller -> the writable folder in which to create this kernel's cgroup."""
    if os.geteuid() != 0 and not os.access(ROOT, os.W_OK):
        return {}
    if _v2():
        wanted = {"memory", "pids", "cpu"}
        for parent in (ROOT, ROOT / _own_path("").lstrip("/")):
            try:
                available = set((parent / "cgroup.controllers").read_text().split())
                enabled = set((parent / "cgroup.subtree_control").read_text().split())
                if wanted - enabled and wanted <= available:
                    (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted - enabled))
                if os.access(parent, os.W_OK) and wanted <= set((parent / "cgroup.subtree_control").read_text().split()):
                    return {"unified": parent}
            except OSError:
                continue
        return {}
    found = {}
    for controller in ("memory", "pids", "cpu", "cpuacct"):  # cpuacct: accounting only (cpu_seconds)
        base = ROOT / controller
        if not (base / "cgroup.procs").exists():
            continue
        parent = base / _own_path(controller).lstrip("/")
        for candidate in (parent, base):
            if (candidate / "cgroup.procs").exists() and os.access(candidate, os.W_OK):
                found[controller] = candidate
                break
    return found


class SubmissionCgroup:
    """The cgroup(s) of one kernel; ``controllers`` says which limits are in force."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths

    @property
    def controllers(self) -> list[str]:
        """The controllers that limit the kernel (cpuacct only counts)."""
        if "unified" in self.paths:
            return ["memory", "pids", "cpu"]
        return sorted(c for c in self.paths if c != "cpuacct")

    @property
    def path(self) -> Path:  # the pids cgroup (or the unified one): what tests look at
        return self.paths.get("unified") or self.paths.get("pids") or next(iter(self.paths.values()))

    @classmethod
    def create(cls, memory_bytes: int, max_pids: int, cpus: float) -> SubmissionCgroup | None:
        parents = _parents(max_pids)
        if not parents:
            return None
        sweep_stale(parents.values())
        name = f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        made: dict[str, Path] = {}
        settings = {
            "memory": [("memory.limit_in_bytes", str(memory_bytes)), ("memory.swappiness", "0")],
            "pids": [("pids.max", str(max_pids))],
            "cpu": [("cpu.cfs_period_us", str(CPU_PERIOD_US)), ("cpu.cfs_quota_us", str(int(cpus * CPU_PERIOD_US)))],
            "cpuacct": [],
            "unified": [("memory.max", str(memory_bytes)), ("memory.swap.max", "0"), ("pids.max", str(max_pids)),
                        ("cpu.max", f"{int(cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")],
        }
        for controller, parent in parents.items():
            path = parent / name
            try:
                path.mkdir()
            except OSError:
                continue
            made[controller] = path
            for filename, value in settings[controller]:
                try:
                    (path / filename).write_text(value)
                except OSError:
                    if filename not in ("memory.swappiness", "memory.swap.max"):  # optional
                        cls(made).remove()
                        return None
        return cls(made) if made else None

    def procs_files(self) -> list[str]:
        return [str(p / "cgroup.procs") for p in self.paths.values()]

    def pids(self) -> list[int]:
        found: set[int] = set()
        for path in self.paths.values():
            try:
                found.update(int(p) for p in (path / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return sorted(found)

    def memory_peak(self) -> int | None:
        for name in ("memory.max_usage_in_bytes", "memory.peak"):
            for path in self.paths.values():
                try:
                    return int((path / name).read_text())
                except (OSError, ValueError):
                    continue
        return None

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) that everything in the cgroup has used so far, or None when
        no controller counts it (cgroup v1 without cpuacct)."""
        try:
            if "unified" in self.paths:  # cpu.stat: "usage_usec N" first
                for line in (self.paths["unified"] / "cpu.stat").read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "usage_usec":
                        return int(value) / 1e6
                return None
            if "cpuacct" in self.paths:
                return int((self.paths["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            pass
        return None

    def remove(self) -> None:
        """Kill everything inside, then delete the cgroup(s)."""
        for path in self.paths.values():
            _kill_and_remove(path)


def _kill_and_remove(path: Path) -> None:
    try:
        (path / "cgroup.kill").write_text("1")  # cgroup v2: the kernel kills everything, atomically
    except OSError:
        pass
    for _ in range(100):
        try:
            pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
        except OSError:
            break
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user counts: it cannot be signalled, but it is there)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(parents) -> list[Path]:
    """Remove cgroups left by grader processes that no longer exist (a run killed with SIGKILL)."""
    removed = []
    for parent in parents:
        try:
            entries = list(Path(parent).glob(f"{PREFIX}*"))
        except OSError:
            continue
        for path in entries:
            try:
                owner = int(path.name[len(PREFIX):].split("-", 1)[0])
            except ValueError:
                continue
            if not process_alive(owner):
                _kill_and_remove(path)
                removed.append(path)
    return removed


# kept for callers of the previous, pids-only interface
PidsCgroup = SubmissionCgroup
