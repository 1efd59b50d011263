"""A limited kernel that runs one cell at a time and survives what student code does to it.

:class:`SandboxKernel` starts the launcher ``stgrade/kernel.py`` (rlimits, answer keys switched
off; by its absolute path with ``python -s -P`` from ``/``) inside a bubblewrap sandbox
(:mod:`stgrade.bwrap`: no capabilities, own PID namespace, no network, a read-only view without
the answer keys) and inside a cgroup of its own (:mod:`stgrade.cgroup`: memory, processes and CPU
for the submission as a whole), with a fresh home for every kernel started (a size-capped tmpfs,
its HOME and its only writable place) and a clean environment. Nothing outside the sandbox opens,
follows or trusts a path in that home (see :class:`SandboxKernel`). What a kernel can make the
grader hold is bounded: no ZeroMQ message over :data:`MAX_KERNEL_MESSAGE_BYTES`, at most
:data:`KERNEL_QUEUE_MESSAGES` waiting per socket, outputs and results capped per submission.
:attr:`SandboxKernel.protections` says what was in force. :meth:`run` executes one
cell with a wall-clock limit and returns a :class:`CellRun`: outputs (capped in size), the error
name and message if any, and a status:

- ``ok`` / ``error``: the cell finished, without or with an exception;
- ``timeout``: the cell ran past its limit and was interrupted (the kernel is usable again);
- ``hung``: the interrupt did not stop it either; the kernel was killed;
- ``died``: the kernel process died (out of memory, ``os._exit``, a crash), or its connection to
  the grader broke (a message over the size limit: ZeroMQ does not reconnect it).

After ``hung`` or ``died`` the caller restarts the kernel (:meth:`restart`) and replays what it
needs; nothing outside this submission is affected.

:meth:`run_cells` runs a notebook's cells in one execute request (the grader's way: a request
costs the kernel about 2 ms of messaging, a graded lesson has 15–27 cells), each cell with the
same limits and its own :class:`CellRun`; the kernel marks where each cell ends
(:func:`stgrade.kernel.run_cells`).

``Limits(sandbox="off")`` (``stgrade grade --no-sandbox``) runs the kernel without bubblewrap —
for trusted notebooks only; with the default ``"required"``, a machine where the sandbox cannot
be set up refuses to start a kernel (:class:`SandboxUnavailable`) instead of grading unprotected.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import queue
import shutil
import stat
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from nbformat.v4 import output_from_msg

from stabletrain.exercises.plain import MAX_MESSAGE_CHARS, RESULT_MIME

from . import bwrap, userns
from .cgroup import SubmissionCgroup

KERNEL_NAME = "stgrade-sandbox"
#: matplotlib's configuration and cache folder, in the scratch folder
MPL_CONFIG = ".mpl"
#: characters of check() result messages kept per cell (all messages together)
RESULTS_CHARS = 4 * MAX_MESSAGE_CHARS
#: largest message the grader accepts from a kernel (bytes of one ZeroMQ frame): a check() result
#: message at its size limit, with room for the envelope
MAX_KERNEL_MESSAGE_BYTES = MAX_MESSAGE_CHARS + MAX_MESSAGE_CHARS // 4
#: messages that may wait in one of the grader's sockets; more stay in the kernel (its memory cap)
KERNEL_QUEUE_MESSAGES = 16
#: the kernel binds its ZeroMQ sockets at ``<its home>/<SOCKET_PREFIX>-<port>``; the grader moves
#: them out of the kernel's reach before any student code runs, and connects only there
SOCKET_PREFIX = ".k"


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot be set up on this machine, and the limits require it."""


@dataclass(frozen=True)
class Limits:
    """Per-submission limits."""

    cell_seconds: float = 30.0
    notebook_seconds: float = 300.0
    memory_bytes: int = 4 * 1024**3  # the kernel and all its children together (cgroup), each process (rlimit)
    file_bytes: int = 64 * 1024**2
    output_chars: int = 20_000  # per cell; the rest is dropped with a note
    max_processes: int = 64  # threads count too: torch's pool and ipykernel's need about 20
    startup_seconds: float = 60.0
    interrupt_grace_seconds: float = 5.0
    scratch_bytes: int = 256 * 1024**2  # the scratch folder (HOME, working directory) as a whole
    submission_output_chars: int = 1_000_000  # outputs kept of all cells together (the autograded notebook)
    submission_results_chars: int = 32 * 1024**2  # check() results of all cells together
    shm_bytes: int = 64 * 1024**2  # /dev/shm, and likewise /tmp
    cpus: float = 1.0  # cores of CPU time for the whole submission (cgroup)
    sandbox: str = "required"  # "required": bubblewrap or refuse; "off": no sandbox (trusted notebooks only)


@dataclass
class CellRun:
    status: str
    outputs: list[dict[str, Any]] = field(default_factory=list)
    ename: str | None = None
    evalue: str | None = None
    seconds: float = 0.0
    results: list[Any] = field(default_factory=list)  # check()'s result messages (text), apart from outputs


class _OneSpec(KernelSpecManager):
    """Serves the one kernel spec in memory: nothing written to disk, nothing left in /tmp."""

    def __init__(self, spec: KernelSpec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._one = spec

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return self._one

    def find_kernel_specs(self) -> dict[str, str]:
        return {}


# -- a size-capped scratch folder -----------------------------------------------------------------
_LIBC = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNS, _MS_REC, _MS_PRIVATE, _MNT_DETACH = 0x00020000, 16384, 1 << 18, 2
_private_threads: set[int] = set()


def _private_mounts() -> bool:
    """Give this thread (and the processes it starts) a mount namespace of its own, once, so that
    the scratch tmpfs mounted next exists only for this grader and its kernel: it cannot be left
    behind, whatever stops the grader. Root, or a process in a user namespace of its own
    (:func:`stgrade.userns.enter`: the grader's workers); False elsewhere."""
    ident = threading.get_ident()
    if ident in _private_threads:
        return True
    if not userns.can_mount() or _LIBC.unshare(_CLONE_NEWNS) != 0:
        return False
    if _LIBC.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        return False
    _private_threads.add(ident)
    return True


def _mount_scratch(path: Path, size: int) -> bool:
    """A fresh tmpfs of ``size`` bytes over ``path`` (a folder only the grader can reach)."""
    if not _private_mounts():
        return False
    options = f"size={size},mode=0700,nr_inodes=65536".encode()
    return _LIBC.mount(b"stgrade-scratch", str(path).encode(), b"tmpfs", 0, options) == 0


def _unmount_scratch(path: Path) -> None:
    _LIBC.umount2(str(path).encode(), _MNT_DETACH)


_ZMQ_CONTEXT: list[Any] = []


def _zmq_context() -> Any:
    """The ZeroMQ context of this grader process's kernel clients, with every socket it creates
    capped: no message over :data:`MAX_KERNEL_MESSAGE_BYTES` is accepted (its sender is
    disconnected instead), and at most :data:`KERNEL_QUEUE_MESSAGES` wait in a socket's queue.
    Together they bound what a kernel can make the grader hold, whatever it sends (a flood of large
    messages used to queue up to 1000 of them, gigabytes)."""
    if not _ZMQ_CONTEXT:
        import zmq

        context = zmq.Context()
        context.setsockopt(zmq.MAXMSGSIZE, MAX_KERNEL_MESSAGE_BYTES)
        context.setsockopt(zmq.RCVHWM, KERNEL_QUEUE_MESSAGES)
        _ZMQ_CONTEXT.append(context)
    return _ZMQ_CONTEXT[0]


@functools.cache
def _font_list() -> tuple[str, bytes] | None:
    """``(file name, contents)`` of matplotlib's font list as the grader's matplotlib built it.
    Seeded into every kernel's ``MPLCONFIGDIR`` (a fresh scratch folder), where matplotlib would
    otherwise search the fonts again: about 0.1 s of every submission. The kernel sees the same
    font files, read-only; a font it cannot find makes its matplotlib rebuild the list."""
    try:
        import matplotlib
        from matplotlib import font_manager  # builds and saves the list if it is not there yet
    except ImportError:
        return None
    path = Path(matplotlib.get_cachedir(), f"fontlist-v{font_manager.FontManager.__version__}.json")
    try:
        return path.name, path.read_bytes()
    except OSError:
        return None


def _seed_font_list(config_dir: Path) -> None:
    found = _font_list()
    if found is not None and not (config_dir / found[0]).exists():
        config_dir.mkdir(exist_ok=True)
        (config_dir / found[0]).write_bytes(found[1])


def sandbox_problem(limits: Limits) -> str | None:
    """Why the sandbox required by ``limits`` cannot be set up here (None: it can, or it is off)."""
    return None if limits.sandbox == "off" else bwrap.probe()


def protections_in_force(limits: Limits) -> dict[str, Any]:
    """What protects the machine and other students from one submission, as in force on this
    machine (for summary.json and ``make demo``)."""
    problem = sandbox_problem(limits)
    sandboxed = limits.sandbox != "off" and problem is None
    cgroup = SubmissionCgroup.create(limits.memory_bytes, limits.max_processes, limits.cpus)
    controllers = cgroup.controllers if cgroup else []
    if cgroup:
        cgroup.remove()
    # the grader's workers enter a user namespace of their own where they are not root (stgrade.workers)
    scratch_cap = userns.possible()
    return {
        "per_submission_caps_by": cgroup.kind if cgroup else "none (per-process rlimits only)",
        "scratch_size_cap_by": ("none" if not scratch_cap else "tmpfs" if os.geteuid() == 0
                                else "tmpfs in the grader's own user namespace"),
        "sandbox": "bubblewrap" if sandboxed else "none",
        "sandbox_problem": problem if limits.sandbox != "off" else "switched off with --no-sandbox",
        "no_capabilities_no_new_privileges": sandboxed,
        "own_pid_namespace_and_proc": sandboxed,
        "no_network": sandboxed,
        "private_dev_tmp_shm": sandboxed,
        "read_only_view_without_answer_keys": sandboxed,
        "answer_key_functions_blocked_in_kernel": True,
        "answer_keys_torch_needs_watched_during_checks": True,
        "memory_cap_per_submission": "memory" in controllers,
        "process_cap_per_submission": "pids" in controllers,
        "cpu_cap_per_submission": "cpu" in controllers,
        "scratch_size_cap": scratch_cap,
        "per_process_rlimits": True,
        "limits": {"memory_bytes": limits.memory_bytes, "max_processes": limits.max_processes, "cpus": limits.cpus,
                   "scratch_bytes": limits.scratch_bytes if scratch_cap else None, "file_bytes": limits.file_bytes,
                   "shm_bytes": limits.shm_bytes if sandboxed else None},
    }


def describe(protections: dict[str, Any]) -> str:
    """One readable paragraph of what :func:`protections_in_force` found."""
    on = [k.replace("_", " ") for k, v in protections.items() if v is True]
    off = [k.replace("_", " ") for k, v in protections.items() if v is False]
    text = f"sandbox: {protections['sandbox']}"
    if protections["sandbox"] == "none":
        text += f" ({protections['sandbox_problem']})"
    if "per_submission_caps_by" in protections:
        text += (f"\n  caps per submission by: {protections['per_submission_caps_by']}; "
                 f"scratch size cap by: {protections['scratch_size_cap_by']}")
    text += "\n  in force: " + ", ".join(on)
    if off:
        text += "\n  NOT in force: " + ", ".join(off)
    return text


class SandboxKernel:
    """One grading kernel; see the module docstring.

    ``scratch`` is a folder only the grader can reach (created if missing). Every kernel started
    gets a fresh world inside it, ``<scratch>/<n>`` (a size-capped tmpfs when the grader is root):
    its home ``h`` — HOME, working directory and the only writable place, the one folder of it in
    the kernel's view — and ``s``, where the grader keeps the kernel's sockets. A restarted kernel
    never sees what the previous one left, and nothing outside the sandbox opens, follows or
    trusts a path inside a home: the grader writes there only before the kernel starts (the font
    list), removes a world only with :func:`shutil.rmtree` (which follows no link) and takes the
    kernel's sockets out of its home before any student code runs (:meth:`_claim_sockets`).
    """

    def __init__(self, scratch: Path, limits: Limits, extra_env: dict[str, str] | None = None) -> None:
        self.scratch = Path(scratch)
        self.limits = limits
        self.extra_env = dict(extra_env or {})
        self.km: KernelManager | None = None
        self.kc: Any = None
        self.cgroup: SubmissionCgroup | None = None
        self.protections: dict[str, Any] = {}
        self.home: Path | None = None  # the running kernel's home (HOME, working directory)
        self._world: Path | None = None
        self._world_mounted = False
        self._worlds = 0
        self._cpu_used: list[float | None] = []  # per kernel started (a restart starts another)
        #: wall seconds spent starting and stopping kernels: the same work for every lesson
        self.start_stop_seconds = 0.0
        self._counting = False
        #: what this submission's cells may still bring into the grader, all cells and restarts together
        self.budget = {"outputs": limits.submission_output_chars, "results": limits.submission_results_chars}

    # -- lifecycle -------------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        if os.environ.get("PYTHONPATH"):  # absolute: a relative entry would be looked up in the home
            env["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in os.environ["PYTHONPATH"].split(os.pathsep)
                                                if p)
        home = str(self.home)
        env.update({
            "HOME": home,
            "TMPDIR": home,
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": f"{home}/{MPL_CONFIG}",
            "IPYTHONDIR": f"{home}/.ipython",
            "JUPYTER_RUNTIME_DIR": f"{home}/.runtime",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONHASHSEED": "0",
            "PYTHONWARNINGS": "ignore",
            "PYTHONDONTWRITEBYTECODE": "1",
            "STGRADE_MEMORY_BYTES": str(self.limits.memory_bytes),
            "STGRADE_FILE_BYTES": str(self.limits.file_bytes),
            "STGRADE_CPU_SECONDS": str(int(self.limits.notebook_seconds * 2 + 60)),
            "STGRADE_HOME": home,  # the launcher's working directory once it has set up (stgrade.kernel)
            "STGRADE_SOCKETS": f"{home}/{SOCKET_PREFIX}",
        })
        env.update(self.extra_env)
        return env

    def _argv(self) -> list[str]:
        # The launcher by its absolute path, with -P (no script folder or working directory on the
        # import path) and -s (no user site-packages, which would be in the home): nothing the
        # kernel can write is importable before the launcher has run; it starts in "/".
        launcher = Path(__file__).with_name("kernel.py").resolve()
        kernel = [sys.executable, "-s", "-P", str(launcher), "-f"]
        if self.limits.sandbox == "off":
            argv = [*kernel, "{connection_file}"]
        else:
            # inside, the interpreter and the launcher are where the view puts them (/opt/stgrade)
            inner = [bwrap.python(), "-s", "-P", bwrap.inside(launcher), "-f"]
            argv = [*bwrap.command(self.home, "{connection_file}", tmp_bytes=self.limits.shm_bytes,
                                   shm_bytes=self.limits.shm_bytes), "--", *inner, bwrap.CONNECTION_FILE]
        if self.cgroup is not None:  # join the cgroups first, so that everything started later is inside
            argv = self.cgroup.wrap(argv)
        return argv

    @contextlib.contextmanager
    def _counting_start_stop(self) -> Iterator[None]:
        """Add the time inside to :attr:`start_stop_seconds` (once: a failed start's own shutdown
        is part of that start)."""
        if self._counting:
            yield
            return
        self._counting, started = True, time.monotonic()
        try:
            yield
        finally:
            self._counting = False
            self.start_stop_seconds += time.monotonic() - started

    def start(self) -> None:
        with self._counting_start_stop():
            self._start()

    def _new_world(self) -> None:
        """A fresh world for the next kernel: nothing of an earlier kernel is in it."""
        self.scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._worlds += 1
        world = self.scratch / str(self._worlds)
        world.mkdir(mode=0o700)  # new: fails if anything is there
        self._world = world
        self._world_mounted = _mount_scratch(world, self.limits.scratch_bytes)
        self.home = world / "h"
        self.home.mkdir(mode=0o700)
        (world / "s").mkdir(mode=0o700)
        for path in (self.home / f"{SOCKET_PREFIX}-99999", world / "s" / "k-99999"):
            if len(str(path).encode()) > 104:  # bytes, not characters: sun_path holds 108 with its NUL
                raise ValueError(f"the scratch folder's path is too long for the kernel's Unix sockets (at most "
                                 f"about 90 bytes): {self.scratch}; use a shorter TMPDIR")

    def _release_world(self) -> None:
        world, self._world, self.home = self._world, None, None
        if world is None:
            return
        if self._world_mounted:
            _unmount_scratch(world)
            self._world_mounted = False
        shutil.rmtree(world, ignore_errors=True)  # follows no link (fd-based on Linux)

    def _start(self) -> None:
        self.launch()
        self.connect()

    def launch(self) -> None:
        """The first half of :meth:`start`: a new world, cgroup and sandboxed kernel process, not
        waited for (its Python imports torch meanwhile). :mod:`stgrade.warm` launches kernels
        ahead of their submissions and connects each when its submission comes."""
        problem = sandbox_problem(self.limits)
        if problem:
            raise SandboxUnavailable(f"the grading sandbox cannot be set up: {problem}")
        self._release_world()
        self._new_world()
        _seed_font_list(self.home / MPL_CONFIG)  # before the kernel exists: a fresh folder nobody else wrote
        self.cgroup = SubmissionCgroup.create(self.limits.memory_bytes, self.limits.max_processes, self.limits.cpus)
        self._cpu_used.append(None)  # counted when this kernel's cgroup is removed
        spec = KernelSpec(argv=self._argv(), display_name="Stable Training grading sandbox", language="python",
                          interrupt_mode="message")  # signals do not cross into the sandbox's PID namespace
        # ZeroMQ over Unix sockets: no TCP port, nothing on the network. The kernel binds them in its
        # home; the grader connects only in the world's "s", where _claim_sockets moves them.
        self.km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=_OneSpec(spec), transport="ipc",
                                ip=str(self._world / "s" / "k"), context=_zmq_context())
        controllers = self.cgroup.controllers if self.cgroup else []
        self.protections = {
            "sandbox": "bubblewrap" if self.limits.sandbox != "off" else "none",
            "cgroup": controllers,
            "caps_by": self.cgroup.kind if self.cgroup else "none",
            "scratch_size_cap": self._world_mounted,
        }
        try:
            self.km.start_kernel(cwd="/", env=self._env())
        except BaseException:
            self.close()
            raise

    def connect(self) -> None:
        """The second half of :meth:`start`: wait for the launched kernel, take its sockets, connect
        (counted in :attr:`start_stop_seconds`; :meth:`launch` is, only within :meth:`start`)."""
        with self._counting_start_stop():
            self._connect()

    def _connect(self) -> None:
        try:
            self._claim_sockets()
            self.kc = self.km.client(context=_zmq_context())
            self.kc.start_channels()
            self._wait_ready()
            self._watch_connections()
        except BaseException:  # Ctrl-C during a start too: nothing may be left behind
            self.close()
            raise

    def _wait_ready(self) -> None:
        self.kc.wait_for_ready(timeout=self.limits.startup_seconds)

    def _claim_sockets(self) -> None:
        """Move the kernel's five sockets from its home into the world's ``s`` (beyond its reach),
        where the grader connects, as the kernel binds them: only the launcher and ipykernel have
        run so far, so what is moved is the kernel's own. Afterwards the kernel can plant nothing
        the grader would connect to (a link to another socket on the host, say), and a reconnection
        goes where it went first. Entries are opened relative to folder descriptors, never followed."""
        info = self.km.get_connection_info()
        ports = [info[f"{name}_port"] for name in ("shell", "iopub", "stdin", "control", "hb")]
        deadline = time.monotonic() + self.limits.startup_seconds
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
        home_fd, sockets_fd = os.open(self.home, flags), os.open(self._world / "s", flags)
        try:
            left = list(ports)
            while left:
                for port in list(left):
                    try:
                        found = os.stat(f"{SOCKET_PREFIX}-{port}", dir_fd=home_fd, follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if not stat.S_ISSOCK(found.st_mode):
                        raise RuntimeError("the kernel's socket is not a socket")
                    os.rename(f"{SOCKET_PREFIX}-{port}", f"k-{port}", src_dir_fd=home_fd, dst_dir_fd=sockets_fd)
                    if not stat.S_ISSOCK(os.stat(f"k-{port}", dir_fd=sockets_fd, follow_symlinks=False).st_mode):
                        raise RuntimeError("the kernel's socket is not a socket")
                    left.remove(port)
                if not left:
                    break
                if not self.km.is_alive():
                    raise RuntimeError("the kernel died while it started")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the kernel did not start within {self.limits.startup_seconds:.0f} s")
                time.sleep(0.005)
        finally:
            os.close(home_fd)
            os.close(sockets_fd)

    def _watch_connections(self) -> None:
        """Watch the shell and iopub connections: ZeroMQ drops one whose peer sent a message over
        :data:`MAX_KERNEL_MESSAGE_BYTES` and does not reconnect it, so a kernel that did so is
        treated as one that died (the cell costs what a crash costs, and the kernel is restarted)
        instead of leaving the grader waiting for messages that cannot come. A send never blocks
        for long either (a request to a kernel whose connection broke fails instead)."""
        import zmq

        self._monitors = []
        for channel in (self.kc.shell_channel, self.kc.iopub_channel):
            channel.socket.setsockopt(zmq.SNDTIMEO, int(self.limits.startup_seconds * 1000))
            self._monitors.append(channel.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED))

    def connection_broken(self) -> bool:
        """Whether the shell or iopub connection to the kernel broke since it started."""
        for monitor in getattr(self, "_monitors", []):
            try:
                if monitor.poll(0):
                    return True
            except Exception:  # a closed monitor: the kernel is being shut down
                return True
        return False

    def _close_monitors(self) -> None:
        for channel, monitor in zip((getattr(self.kc, "shell_channel", None), getattr(self.kc, "iopub_channel", None)),
                                    getattr(self, "_monitors", [])):
            try:
                if channel is not None and channel.socket is not None:
                    channel.socket.disable_monitor()
                monitor.close(linger=0)
            except Exception:
                pass
        self._monitors = []

    def shutdown(self) -> None:
        with self._counting_start_stop():
            self._shutdown()

    def _shutdown(self) -> None:
        if self.kc is not None:
            self._close_monitors()
            self.kc.stop_channels()
            self.kc = None
        if self.km is not None:
            try:
                self.km.shutdown_kernel(now=True)
            except Exception:  # already dead: nothing left to stop
                pass
            try:  # the connection file and sockets, also when the start was interrupted half-way
                self.km.cleanup_resources()
                Path(self.km.connection_file).unlink(missing_ok=True)
            except Exception:
                pass
            self.km = None
        if self.cgroup is not None:
            self._cpu_used[-1] = self.cgroup.cpu_seconds()
            self.cgroup.remove()
            self.cgroup = None

    @property
    def cpu_seconds(self) -> float | None:
        """CPU time the kernels of this submission used (everything in their cgroups), or None
        when it cannot be counted (no cgroup: not root, or no CPU accounting)."""
        used = self._cpu_used
        return None if not used or None in used else sum(used)

    def close(self) -> None:
        """Shut down and remove the kernel's world (its home is gone afterwards)."""
        self.shutdown()
        self._release_world()

    def restart(self) -> None:
        """A new kernel in a new world: whatever the previous one left (startup files, a full
        home, links, a deleted ~/.ipython) is not there."""
        self.shutdown()
        self.start()

    def alive(self) -> bool:
        return self.km is not None and self.km.is_alive()

    def __enter__(self) -> SandboxKernel:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- execution -------------------------------------------------------------------------------
    def run(self, code: str, timeout: float | None = None) -> CellRun:
        """Execute ``code``; wall-clock limit ``timeout`` (default: the per-cell limit)."""
        limit = self.limits.cell_seconds if timeout is None else timeout
        cell = _Cell(self.limits.output_chars, limit, time.monotonic(), self.budget)
        msg_id = self._execute(code, cell)
        if msg_id is None:
            return cell.finish()
        while True:
            msg = self._next_message(cell)
            if msg is None:
                break
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if _idle(msg):
                break
            cell.take(msg)
        return cell.finish()

    def run_cells(self, sources: list[str], deadline: float, setup: int = 0) -> list[CellRun]:
        """Execute ``sources`` as consecutive cells in one request (:func:`stgrade.kernel.run_cells`),
        each with the per-cell limit, none past ``deadline`` (``time.monotonic()``); the first
        ``setup`` of them are the lesson's setup (run with the garbage collector off).

        Returns a :class:`CellRun` for the first ``k ≥ 1`` cells, in order; ``k < len(sources)``
        when a cell was ``hung`` or ``died`` (restart, then run the rest), when the request ended
        before every cell reported its end (a cell broke the loop: run the rest), or when the
        deadline stopped a cell (its status is ``timeout``). A cell's outputs are the messages
        between the previous cell's end mark and its own; a mark counts only in order. A cell's
        clock starts when the previous mark arrives; an interrupt sent for a cell that then ends
        without an error is the next cell's (its mark was late, not the cell).
        """
        from .kernel import CELL_END_MIME, MODULE_NAME

        code = f"__import__({MODULE_NAME!r}).run_cells({list(sources)!r}, setup={int(setup)})"
        runs: list[CellRun] = []

        def begin() -> _Cell:
            now = time.monotonic()
            return _Cell(self.limits.output_chars, max(min(self.limits.cell_seconds, deadline - now), 0.0), now,
                         self.budget)

        cell = begin()
        msg_id = self._execute(code, cell)
        if msg_id is None:
            return [cell.finish()]
        while len(runs) < len(sources):
            msg = self._next_message(cell)
            if msg is None:  # hung or died: the rest needs a new kernel
                runs.append(cell.finish())
                break
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if _idle(msg):
                runs.append(cell.finish())  # the loop ended early: this cell is as far as it got
                break
            content = msg.get("content")
            data = content.get("data") if msg["msg_type"] == "display_data" and isinstance(content, dict) else None
            if isinstance(data, dict) and CELL_END_MIME in data:
                if data[CELL_END_MIME] == str(len(runs)):
                    # interrupted, yet it ended without an error: the interrupt reached the kernel after this
                    # cell ended (C code holding the GIL delays the end mark), so it is the next cell's
                    carried = cell.interrupted_at if cell.run.status == "ok" else None
                    if carried is not None:
                        cell.interrupted_at = None
                    runs.append(cell.finish())
                    if time.monotonic() >= deadline and (runs[-1].status == "timeout" or carried is not None):
                        break  # the notebook's time is up: nothing more runs
                    cell = begin()
                    cell.interrupted_at = carried
                continue
            cell.take(msg)
        return runs

    def _execute(self, code: str, cell: _Cell) -> str | None:
        """Send ``code``; None (and ``cell`` marked ``died``) when the connection to the kernel broke."""
        if not self.connection_broken():
            try:
                return self.kc.execute(code, store_history=False, allow_stdin=False, stop_on_error=False)
            except Exception:  # zmq.Again: the request could not be sent
                pass
        cell.fail("died", "KernelConnectionLost", _CONNECTION_LOST)
        return None

    def _next_message(self, cell: _Cell) -> dict | None:
        """The next iopub message, interrupting ``cell`` past its limit; None (and ``cell`` marked
        ``hung`` or ``died``) when the kernel will not give one."""
        while True:
            now = time.monotonic()
            if cell.interrupted_at is None and now > cell.deadline:
                self.km.interrupt_kernel()
                cell.interrupted_at = now
            if cell.interrupted_at is not None and now > cell.interrupted_at + self.limits.interrupt_grace_seconds:
                cell.fail("hung", "TimeoutError", f"the cell ran past {cell.limit:.0f} s and did not stop when interrupted")
                return None
            try:
                msg = self.kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                if not self.alive():
                    cell.fail("died", "KernelDied", "the Python process running the notebook died during this cell "
                              "(out of memory, os._exit, or a crash)")
                    return None
                if self.connection_broken():
                    cell.fail("died", "KernelConnectionLost", _CONNECTION_LOST)
                    return None
                continue
            if isinstance(msg, dict) and isinstance(msg.get("parent_header"), dict) and "msg_type" in msg:
                return msg


_CONNECTION_LOST = (f"the notebook's connection to the grader broke during this cell (a message over the size "
                    f"limit of {MAX_KERNEL_MESSAGE_BYTES // 1024**2} MiB, or a closed socket); the kernel was restarted")


def _idle(msg: dict) -> bool:
    content = msg.get("content")
    return msg["msg_type"] == "status" and isinstance(content, dict) and content.get("execution_state") == "idle"


class _Cell:
    """What one cell produced, as its messages arrive: outputs (capped), check() results (apart,
    capped), the error, and its time limit. ``budget`` is what the whole submission may still
    bring in (shared by its cells): the caps hold per submission, not only per cell."""

    def __init__(self, output_chars: int, limit: float, started: float, budget: dict[str, int] | None = None) -> None:
        self.output_chars, self.limit, self.started = output_chars, limit, started
        self.deadline = started + limit
        self.interrupted_at: float | None = None
        self.run = CellRun(status="ok")
        self.chars = self.results_chars = 0
        self.truncated = self.results_dropped = False
        self.budget = budget if budget is not None else {"outputs": 1 << 62, "results": 1 << 62}

    def fail(self, status: str, ename: str, evalue: str) -> None:
        self.run.status, self.run.ename, self.run.evalue = status, ename, evalue

    def take(self, msg: dict) -> None:
        """Record one iopub message of this cell (a malformed one is ignored)."""
        try:
            self._take(msg)
        except (KeyError, TypeError, AttributeError, ValueError):
            pass

    def _take(self, msg: dict) -> None:
        run, kind, budget = self.run, msg["msg_type"], self.budget
        data = msg["content"].get("data")
        if kind == "display_data" and isinstance(data, dict) and RESULT_MIME in data:
            # check()'s results: kept apart from the outputs, capped, never written to a file
            text = data[RESULT_MIME]
            size = len(text) if isinstance(text, str) else 0
            self.results_chars += size
            if isinstance(text, str) and self.results_chars <= RESULTS_CHARS and size <= budget["results"]:
                budget["results"] -= size
                run.results.append(text)
            elif not self.results_dropped:  # one mark for all that was dropped: the check reads it as over the limit
                self.results_dropped = True
                run.results.append(None)
            return
        if kind == "error":
            run.status = "error"
            run.ename, run.evalue = str(msg["content"]["ename"])[:200], str(msg["content"]["evalue"])[:2000]
        if kind in ("stream", "display_data", "execute_result", "error"):
            size = len(json.dumps(msg["content"]))
            if self.chars + size <= self.output_chars and size <= budget["outputs"]:
                run.outputs.append(output_from_msg(msg))
                self.chars += size
                budget["outputs"] -= size
            elif not self.truncated:
                self.truncated = True
                run.outputs.append(output_from_msg({
                    "header": {"msg_type": "stream"}, "msg_type": "stream",
                    "content": {"name": "stdout", "text": "\n[stgrade: further output of this cell dropped]\n"},
                }))

    def finish(self) -> CellRun:
        run = self.run
        if self.interrupted_at is not None and run.status in ("ok", "error"):
            run.status, run.ename = "timeout", "TimeoutError"
            run.evalue = f"the cell ran past its time limit of {self.limit:.0f} s and was interrupted"
        run.seconds = time.monotonic() - self.started
        return run
