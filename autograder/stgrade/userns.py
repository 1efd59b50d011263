"""A user namespace of the grader's own: the size-capped scratch tmpfs without root.

Mounting a tmpfs needs ``CAP_SYS_ADMIN``, which root has. Linux gives any process the same
capability inside a *user namespace* it creates, over the mount namespace it creates with it:
there it may mount a tmpfs with a ``size=`` limit (tmpfs is one of the file systems a user
namespace may mount). :func:`enter` does that for the calling process with its uid and gid mapped
to themselves, so nothing else changes for it: it is the same user, reads and writes the same
files, and its mounts exist only for it and its children (the kernel's bubblewrap sandbox nests
its own user namespace inside), and vanish with them. Files of other users appear as owned by
``nobody``; their permissions are unchanged.

Only a single-threaded process may enter a new user namespace, so the grader's workers
(:mod:`stgrade.workers`) call :func:`enter` first thing, before any thread exists. A machine that
forbids unprivileged user namespaces (``kernel.unprivileged_userns_clone=0``, a container's
seccomp profile, AppArmor's ``apparmor_restrict_unprivileged_userns``) keeps the scratch folder
uncapped, and :func:`possible` says so.
"""

from __future__ import annotations

import ctypes
import functools
import os
import subprocess
import sys

CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
MS_REC, MS_PRIVATE = 16384, 1 << 18
CAP_SYS_ADMIN = 21


def can_mount() -> bool:
    """Whether this process may mount (``CAP_SYS_ADMIN`` over its mount namespace): root, or after :func:`enter`."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    except (OSError, ValueError):
        pass
    return False


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def enter() -> bool:
    """Give this process a user namespace (its uid and gid mapped to themselves) and a private mount
    namespace, unless it may mount already. True when it may mount afterwards; False (and nothing
    changed) when the process has threads or the machine does not allow it."""
    if can_mount():
        return True
    if not sys.platform.startswith("linux") or _threads() != 1:
        return False
    uid, gid = os.getuid(), os.getgid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
        return False
    try:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    except OSError:
        return False
    libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None)  # nothing mounted here reaches the machine
    return can_mount()


#: run by :func:`possible` in a fresh interpreter: enter, then mount a 1 MiB tmpfs over /tmp (its own view)
_PROBE = (
    "import ctypes, sys\n"
    "from stgrade.userns import enter\n"
    "sys.exit(0 if enter() and ctypes.CDLL(None).mount(b'none', b'/tmp', b'tmpfs', 0, b'size=1048576') == 0 else 3)\n"
)


@functools.lru_cache(maxsize=1)
def possible() -> bool:
    """Whether a fresh process of this user can enter a user namespace and mount a size-capped tmpfs
    there (what the grader's workers do); True for root. About 30 ms, once per process."""
    if can_mount():
        return True
    if not sys.platform.startswith("linux"):
        return False
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        done = subprocess.run([sys.executable, "-S", "-c", _PROBE], env={**os.environ, "PYTHONPATH": package},
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0
