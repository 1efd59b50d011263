"""Kernel launcher for grading: apply resource limits and switch off answer keys, then start ipykernel.

Run by jupyter_client as ``python -m stgrade.kernel -f {connection_file}``. Limits come from the
environment (set by :mod:`stgrade.sandbox`):

- ``STGRADE_MEMORY_BYTES``: address-space cap (RLIMIT_AS) — a runaway allocation fails with
  MemoryError in that cell instead of taking the machine down;
- ``STGRADE_FILE_BYTES``: largest file the kernel may write (RLIMIT_FSIZE);
- ``STGRADE_CPU_SECONDS``: CPU seconds for the whole kernel (RLIMIT_CPU) — a last resort behind the
  per-cell and per-notebook wall-clock limits;
- ``STGRADE_PIDS_CGROUP``: a cgroup to join whose ``pids.max`` caps the number of processes
  (see :mod:`stgrade.cgroup`).

When the grader runs as root, the kernel also gets namespaces of its own: an empty network (the
grader talks to it over Unix sockets) and a view of the file system in which everything is
read-only except its scratch folder (its working directory). Elsewhere these steps are skipped and
the limits above still apply. The kernel runs in its own process group, which the grader kills at
the end, so forked children die with it.
"""

from __future__ import annotations

import ctypes
import os
import resource

_LIMITS = {
    "STGRADE_MEMORY_BYTES": resource.RLIMIT_AS,
    "STGRADE_FILE_BYTES": resource.RLIMIT_FSIZE,
    "STGRADE_CPU_SECONDS": resource.RLIMIT_CPU,
}


def apply_limits() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for variable, limit in _LIMITS.items():
        value = os.environ.get(variable)
        if value:
            resource.setrlimit(limit, (int(value), int(value)))


CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
_LIBC = ctypes.CDLL(None, use_errno=True)


def isolate_network() -> bool:
    """Move this process into an empty network namespace; False where that is not permitted."""
    return os.geteuid() == 0 and _LIBC.unshare(CLONE_NEWNET) == 0


def confine_filesystem(writable: str) -> bool:
    """Make every mount read-only for this process, except ``writable`` (a private bind mount).

    Uses a mount namespace of its own, so nothing changes for any other process. False where
    that is not permitted (not root); /proc, /sys and /dev are left as they are.
    """
    if os.geteuid() != 0 or _LIBC.unshare(CLONE_NEWNS) != 0:
        return False
    if _LIBC.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return False
    target = os.path.realpath(writable).encode()
    if _LIBC.mount(target, target, None, MS_BIND | MS_REC, None) != 0:
        return False
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1].encode().decode("unicode_escape") for line in mounts]
    for point in points:
        if point.startswith(("/proc", "/sys", "/dev")) or point.encode() == target:
            continue
        _LIBC.mount(point.encode(), point.encode(), None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)
    os.chdir(target)  # the old working directory still points into the now read-only mount below
    return True


def main() -> None:
    if os.environ.get("STGRADE_PIDS_CGROUP"):
        from .cgroup import join

        join(os.environ["STGRADE_PIDS_CGROUP"])
    apply_limits()
    if os.environ.get("STGRADE_CONFINE") == "1":
        isolate_network()
        confine_filesystem(os.getcwd())
    from stabletrain.exercises import guard

    guard.install()
    from ipykernel.kernelapp import launch_new_instance

    launch_new_instance()


if __name__ == "__main__":
    main()
