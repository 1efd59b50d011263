"""Kernel launcher for grading: apply resource limits and switch off answer keys, then start ipykernel.

Run by jupyter_client as ``python -m stgrade.kernel -f {connection_file}``. Limits come from the
environment (set by :mod:`stgrade.sandbox`):

- ``STGRADE_MEMORY_BYTES``: address-space cap (RLIMIT_AS) — a runaway allocation fails with
  MemoryError in that cell instead of taking the machine down;
- ``STGRADE_FILE_BYTES``: largest file the kernel may write (RLIMIT_FSIZE);
- ``STGRADE_CPU_SECONDS``: CPU seconds for the whole kernel (RLIMIT_CPU) — a last resort behind the
  per-cell and per-notebook wall-clock limits.

When the grader runs as root, the kernel also gets a network namespace of its own (no network at
all; the grader talks to it over Unix sockets). The kernel runs in its own process group, which the grader kills at the end, so forked children
die with it.
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


def isolate_network() -> bool:
    """Move this process into an empty network namespace; False where that is not permitted."""
    if os.geteuid() != 0:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.unshare(CLONE_NEWNET) == 0


def main() -> None:
    apply_limits()
    isolate_network()
    from stabletrain.exercises import guard

    guard.install()
    from ipykernel.kernelapp import launch_new_instance

    launch_new_instance()


if __name__ == "__main__":
    main()
