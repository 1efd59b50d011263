"""A cgroup per grading kernel: memory, processes and CPU capped for the whole submission.

Each kernel gets its own cgroup — one per controller on cgroup v1 (``memory``, ``pids``, ``cpu``),
one with all three on cgroup v2 — by the first of these ways that works here (:attr:`SubmissionCgroup.kind`):

- ``cgroup``: the grader is root and creates it;
- ``delegated cgroup``: the grader is not root, but its own cgroup was delegated to it (cgroup v1:
  the folder of each controller and its ``cgroup.procs`` belong to the grader's user, as systemd's
  ``Delegate=yes`` or an administrator leaves them), and it creates the kernel's cgroup below;
- ``systemd user scope``: the grader is not root, and a systemd user session (cgroup v2) runs the
  kernel in a transient scope of its own (``systemd-run --user --scope -p MemoryMax= -p TasksMax=
  -p CPUQuota=``); only the limits the user manager can apply count (:func:`scope_controllers`:
  distributions delegate ``memory pids`` and mostly ``cpu`` to it), checked once per process;

with

- ``memory``: the kernel and all its children *together* (tmpfs pages included) stay under the
  submission's memory cap; above it the kernel's OOM killer stops one of them, nothing else;
- ``pids``: a fork bomb fails with an error inside that submission;
- ``cpu``: the submission gets at most ``cpus`` cores of CPU time, whatever it starts.

The kernel process is moved in by the launcher (:data:`JOIN_SCRIPT`) *before* bubblewrap starts,
so everything it ever starts is inside; the kernel itself never sees the cgroup file system (no
/sys in the sandbox) and cannot move out, raise a limit, or outlive :meth:`SubmissionCgroup.remove`,
which kills every process inside and deletes the cgroup. While a grader process lives it holds a
lock (``flock``) on each cgroup it made; cgroups left by a run that was killed (SIGKILL, a crash)
are those whose lock nobody holds and whose grader process is gone, and the next run removes them
wherever a grader may have made them, delegated folders included (:func:`sweep_stale`,
:func:`find_stale`). The lock is what counts on a cgroup file system that machines or containers
with other process ids share; the process id keeps graders that take no lock (older versions) safe.
A scope goes when its processes do (its holder, ``tail --pid``, follows the grader). Elsewhere :meth:`SubmissionCgroup.create`
returns None, the kernel keeps its per-process rlimits, and the grader says so.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import signal
import subprocess
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
    """controller -> the writable folder in which to create this kernel's cgroup: the root (as root) or
    this process's own cgroup (as root, or delegated to its user)."""
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
        base = (ROOT / controller).resolve()  # cpu and cpuacct are often one hierarchy, linked under both names
        if not (base / "cgroup.procs").exists():
            continue
        parent = base / _own_path(controller).lstrip("/")
        for candidate in (parent, base):
            if os.access(candidate, os.W_OK) and os.access(candidate / "cgroup.procs", os.W_OK):
                found[controller] = candidate
                break
    return found


class SubmissionCgroup:
    """The cgroup(s) of one kernel; ``controllers`` says which limits are in force."""

    def __init__(self, paths: dict[str, Path], locks: list[int] | None = None) -> None:
        self.paths = paths
        self._locks = locks or []  # descriptors holding each cgroup's flock while this grader lives

    @property
    def controllers(self) -> list[str]:
        """The controllers that limit the kernel (cpuacct only counts)."""
        if "unified" in self.paths:
            return ["memory", "pids", "cpu"]
        return sorted(c for c in self.paths if c != "cpuacct")

    @property
    def kind(self) -> str:
        """How it was made: ``cgroup`` (as root), ``delegated cgroup`` (not root) or ``systemd user scope``."""
        return "cgroup" if os.geteuid() == 0 else "delegated cgroup"

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this cgroup: a shell joins it first, then becomes the command."""
        return ["/bin/sh", "-c", JOIN_SCRIPT, "sh", *self.procs_files(), "--", *argv]

    @property
    def path(self) -> Path:  # the pids cgroup (or the unified one): what tests look at
        return self.paths.get("unified") or self.paths.get("pids") or next(iter(self.paths.values()))

    @classmethod
    def create(cls, memory_bytes: int, max_pids: int, cpus: float) -> SubmissionCgroup | None:
        parents = _parents(max_pids)
        if not parents:
            return ScopeCgroup.create(memory_bytes, max_pids, cpus) if os.geteuid() != 0 else None
        sweep_stale()  # what killed runs left (0.5 ms for the 29 cgroup folders of the machine it was written on)
        name = f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        made: dict[str, Path] = {}
        locks: list[int] = []
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
            if path in made.values():  # one hierarchy for two controllers (cpu,cpuacct): made already
                made[controller] = path
                continue
            try:
                path.mkdir()
            except OSError:
                continue
            made[controller] = path
            held = _hold(path)  # ours while this process lives: a sweeper leaves it alone
            if held is not None:
                locks.append(held)
            for filename, value in settings[controller]:
                try:
                    (path / filename).write_text(value)
                except OSError:
                    if filename not in ("memory.swappiness", "memory.swap.max"):  # optional
                        cls(made, locks).remove()
                        return None
        if not made:
            return None
        return cls(made, locks)

    def procs_files(self) -> list[str]:
        return [str(p / "cgroup.procs") for p in dict.fromkeys(self.paths.values())]

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
        """Kill everything inside, then delete the cgroup(s) and let go of their locks."""
        for path in dict.fromkeys(self.paths.values()):
            _kill_and_remove(path)
        for fd in self._locks:
            os.close(fd)
        self._locks = []


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


def _lock(path: Path) -> int:
    """An open descriptor of the folder ``path`` holding its exclusive ``flock`` (not inherited by
    children: the descriptor is closed on exec). Raises OSError if another holds it."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


def _hold(path: Path) -> int | None:
    """:func:`_lock` on a cgroup just made (a sweeper testing it lets go at once); None if it cannot."""
    for _ in range(50):
        try:
            return _lock(path)
        except BlockingIOError:
            time.sleep(0.001)
        except OSError:
            return None
    return None


def _owner(path: Path) -> int | None:
    """The grader process id in a kernel cgroup's name (``stgrade-PID-HEX``, a scope's ``….scope``)."""
    pid, dash, rest = path.name[len(PREFIX):].partition("-")
    return int(pid) if path.name.startswith(PREFIX) and pid.isdigit() and dash and rest else None


def _is_stale(path: Path) -> bool:
    """A kernel cgroup no grader holds: nobody holds its lock, and its grader process is gone."""
    owner = _owner(path)
    if owner is None or process_alive(owner) or not path.is_dir() or path.is_symlink():
        return False
    try:
        os.close(_lock(path))  # taken and let go at once: nobody held it
    except BlockingIOError:
        return False  # a live grader's, perhaps in another PID namespace sharing this file system
    except OSError:
        return False
    return True


def sweep_roots() -> list[Path]:
    """Where a grader on this machine may have made kernel cgroups, as far as this process may
    remove them: as root, each hierarchy as a whole (a delegated folder a normal user's grader used
    lies somewhere below); otherwise the folders this user may write (its delegated cgroup)."""
    if os.geteuid() == 0:
        if _v2():
            return [ROOT]
        return list(dict.fromkeys((ROOT / c).resolve() for c in ("memory", "pids", "cpu", "cpuacct")
                                  if (ROOT / c / "cgroup.procs").exists()))
    return list(_parents(0).values())


def find_stale(roots=None) -> list[Path]:
    """The kernel cgroups below ``roots`` (default :func:`sweep_roots`) that a killed run left:
    see :func:`_is_stale`. A kernel's cgroup holds no cgroups of its own (the kernel never sees the
    cgroup file system), so the walk does not enter them."""
    found: list[Path] = []
    for root in (sweep_roots() if roots is None else roots):
        for folder, children, _ in os.walk(root, followlinks=False):
            ours = [c for c in children if c.startswith(PREFIX)]
            children[:] = [c for c in children if not c.startswith(PREFIX)]
            found.extend(Path(folder, c) for c in ours if _is_stale(Path(folder, c)))
    return sorted(set(found))


def sweep_stale(roots=None) -> list[Path]:
    """Kill what is inside each cgroup :func:`find_stale` returns, and remove it."""
    removed = []
    for path in find_stale(roots):
        _kill_and_remove(path)
        removed.append(path)
    return removed


# -- a transient systemd user scope per kernel (not root, cgroup v2, a systemd user session) ---------
#: ``sh -c HOLD_SCRIPT sh GRADER_PID COMMAND...``: a holder keeps the scope (and its counters) after the
#: kernel exits, until :meth:`ScopeCgroup.remove` reads and kills it, or the grader is gone
HOLD_SCRIPT = 'tail --pid="$1" -f /dev/null </dev/null >/dev/null 2>&1 & shift; exec "$@"'
#: run in a probe scope: the values of its limits, as the kernel applies them
_PROBE_SCRIPT = ('cg=$(sed -n "s/^0:://p" /proc/self/cgroup); for f in memory.max pids.max cpu.max; do '
                 'printf "%s=%s\\n" "$f" "$(cat "$1$cg/$f" 2>/dev/null)"; done')


def _scope_properties(memory_bytes: int, max_pids: int, cpus: float) -> list[str]:
    return ["-p", f"MemoryMax={memory_bytes}", "-p", "MemorySwapMax=0", "-p", f"TasksMax={max_pids}",
            "-p", f"CPUQuota={round(cpus * 100)}%"]


def _user_manager(*args: str, timeout: float = 20) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None


@functools.lru_cache(maxsize=1)
def scope_controllers() -> tuple[str, ...]:
    """Which of ``memory``, ``pids``, ``cpu`` a transient systemd user scope limits on this machine
    (a probe scope with known limits reports what the kernel applied); empty without a systemd user
    session on cgroup v2 (root makes its cgroups itself). About 0.1 s, once per process."""
    run = shutil.which("systemd-run")
    if run is None or not _v2():
        return ()
    done = _user_manager(run, "--user", "--scope", "--quiet", "--collect", *_scope_properties(1 << 30, 64, 1.0),
                         "--", "/bin/sh", "-c", _PROBE_SCRIPT, "sh", str(ROOT))
    if done is None or done.returncode != 0:
        return ()
    seen = dict(line.partition("=")[::2] for line in done.stdout.splitlines())
    expected = {"memory": ("memory.max", str(1 << 30)), "pids": ("pids.max", "64"), "cpu": ("cpu.max", f"{CPU_PERIOD_US} {CPU_PERIOD_US}")}
    return tuple(c for c, (name, value) in expected.items() if seen.get(name, "").strip() == value)


class ScopeCgroup(SubmissionCgroup):
    """A kernel's transient systemd user scope: ``systemd-run --user --scope`` starts the kernel in it.
    Its cgroup (in the user's delegated subtree, so readable and killable by the grader) is found once
    the kernel runs."""

    def __init__(self, unit: str, properties: list[str], controllers: tuple[str, ...]) -> None:
        super().__init__({})
        self.unit, self.properties, self._controllers = unit, properties, controllers
        self.started = False  # wrap() was asked for a command line: the scope may exist

    @classmethod
    def create(cls, memory_bytes: int, max_pids: int, cpus: float) -> ScopeCgroup | None:
        controllers = scope_controllers()
        if not controllers:
            return None
        unit = f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}.scope"
        return cls(unit, _scope_properties(memory_bytes, max_pids, cpus), controllers)

    @property
    def controllers(self) -> list[str]:
        return sorted(self._controllers)

    @property
    def kind(self) -> str:
        return "systemd user scope"

    def wrap(self, argv: list[str]) -> list[str]:
        self.started = True
        return [shutil.which("systemd-run") or "systemd-run", "--user", "--scope", "--quiet", "--collect",
                f"--unit={self.unit}", *self.properties, "--", "/bin/sh", "-c", HOLD_SCRIPT, "sh", str(os.getpid()), *argv]

    def _resolve(self) -> None:
        if self.paths:
            return
        done = _user_manager("systemctl", "--user", "show", "--property=ControlGroup", "--value", self.unit)
        group = done.stdout.strip() if done is not None and done.returncode == 0 else ""
        if group and (ROOT / group.lstrip("/")).is_dir():
            self.paths = {"unified": ROOT / group.lstrip("/")}

    def procs_files(self) -> list[str]:
        self._resolve()
        return super().procs_files()

    def pids(self) -> list[int]:
        self._resolve()
        return super().pids()

    def memory_peak(self) -> int | None:
        self._resolve()
        return super().memory_peak()

    def cpu_seconds(self) -> float | None:
        self._resolve()
        return super().cpu_seconds() if self.paths else None

    def remove(self) -> None:
        """Kill everything in the scope; systemd removes the empty scope."""
        self._resolve()
        for path in self.paths.values():
            try:
                (path / "cgroup.kill").write_text("1")
            except OSError:
                pass
        if self.started and not self.paths:  # not found: ask the user manager
            _user_manager("systemctl", "--user", "kill", "--signal=SIGKILL", self.unit)


# kept for callers of the previous, pids-only interface
PidsCgroup = SubmissionCgroup
