"""A process-count cgroup per grading kernel: the answer to a fork bomb.

Where the pids controller is writable (the grader runs as root on Linux), each kernel joins a
cgroup of its own with ``pids.max`` set, so ``os.fork`` in a loop fails with an error inside that
submission instead of filling the machine's process table; at the end every process in the cgroup
is killed, including any that left the kernel's process group. Elsewhere :meth:`PidsCgroup.create`
returns None and the process-group kill at shutdown is what remains.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))


def _pids_root() -> Path | None:
    for root in _ROOTS:
        if (root / "cgroup.procs").exists() and os.access(root, os.W_OK):
            if root.name == "pids" or "pids" in (root / "cgroup.controllers").read_text(errors="ignore").split():
                return root
    return None


class PidsCgroup:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, max_pids: int) -> PidsCgroup | None:
        root = _pids_root()
        if root is None:
            return None
        path = root / f"stgrade-{uuid.uuid4().hex[:12]}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(max_pids))
        except OSError:
            return None
        return cls(path)

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def remove(self) -> None:
        """Kill everything inside, then delete the cgroup."""
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        for _ in range(20):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.05)


def join(path: str) -> bool:
    """Move the calling process into the cgroup at ``path`` (used by the kernel launcher)."""
    try:
        Path(path, "cgroup.procs").write_text(str(os.getpid()))
        return True
    except OSError:
        return False
