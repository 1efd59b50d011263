"""Kernel launcher for grading: apply resource limits and switch off answer keys, then start ipykernel.

Run by jupyter_client, inside the bubblewrap sandbox (:mod:`stgrade.bwrap`) and the submission's
cgroup (:mod:`stgrade.cgroup`), as ``python -m stgrade.kernel -f {connection_file}``. Isolation
(namespaces, capabilities, the read-only view) is bubblewrap's job and the per-submission caps are
the cgroup's; this launcher adds per-process limits from the environment (set by
:mod:`stgrade.sandbox`):

- ``STGRADE_MEMORY_BYTES``: address-space cap (RLIMIT_AS) — a runaway allocation fails with
  MemoryError in that cell instead of waiting for the cgroup's OOM killer;
- ``STGRADE_FILE_BYTES``: largest file the kernel may write (RLIMIT_FSIZE);
- ``STGRADE_CPU_SECONDS``: CPU seconds for the whole kernel (RLIMIT_CPU) — a last resort behind the
  per-cell and per-notebook wall-clock limits;
- no core dumps.

Then :func:`stabletrain.exercises.guard.install` switches off the answer keys that cannot be
removed from the view, before any student code runs.
"""

from __future__ import annotations

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


def main() -> None:
    apply_limits()
    from stabletrain.exercises import guard

    guard.install()
    from ipykernel.kernelapp import launch_new_instance

    launch_new_instance()


if __name__ == "__main__":
    main()
