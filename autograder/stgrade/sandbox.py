"""A limited kernel that runs one cell at a time and survives what student code does to it.

:class:`SandboxKernel` starts ``python -m stgrade.kernel`` (rlimits, answer keys switched off)
inside a bubblewrap sandbox (:mod:`stgrade.bwrap`: no capabilities, own PID namespace, no
network, a read-only view without the answer keys) and inside a cgroup of its own
(:mod:`stgrade.cgroup`: memory, processes and CPU for the submission as a whole), in a scratch
folder that is a size-capped tmpfs, its HOME and its only writable place, with a clean
environment. :attr:`SandboxKernel.protections` says what was in force. :meth:`run` executes one
cell with a wall-clock limit and returns a :class:`CellRun`: outputs (capped in size), the error
name and message if any, and a status:

- ``ok`` / ``error``: the cell finished, without or with an exception;
- ``timeout``: the cell ran past its limit and was interrupted (the kernel is usable again);
- ``hung``: the interrupt did not stop it either; the kernel was killed;
- ``died``: the kernel process died (out of memory, ``os._exit``, a crash).

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
    """A tmpfs of ``size`` bytes over ``path``; what the grader put there before is copied in."""
    if not _private_mounts():
        return False
    below = os.open(path, os.O_RDONLY | os.O_DIRECTORY)  # still reaches the folder once it is covered
    try:
        options = f"size={size},mode=0700,nr_inodes=65536".encode()
        if _LIBC.mount(b"stgrade-scratch", str(path).encode(), b"tmpfs", 0, options) != 0:
            return False
        for name in os.listdir(f"/proc/self/fd/{below}"):
            source = Path(f"/proc/self/fd/{below}", name)
            if source.is_dir() and not source.is_symlink():
                shutil.copytree(source, path / name, symlinks=True)
            else:
                shutil.copy2(source, path / name, follow_symlinks=False)
        return True
    finally:
        os.close(below)


def _unmount_scratch(path: Path) -> None:
    _LIBC.umount2(str(path).encode(), _MNT_DETACH)


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
    """One grading kernel in ``scratch``; see the module docstring."""

    def __init__(self, scratch: Path, limits: Limits, extra_env: dict[str, str] | None = None) -> None:
        self.scratch = Path(scratch)
        self.limits = limits
        self.extra_env = dict(extra_env or {})
        self.km: KernelManager | None = None
        self.kc: Any = None
        self.cgroup: SubmissionCgroup | None = None
        self.protections: dict[str, Any] = {}
        self._scratch_mounted = False
        self._cpu_used: list[float | None] = []  # per kernel started (a restart starts another)
        #: wall seconds spent starting and stopping kernels: the same work for every lesson
        self.start_stop_seconds = 0.0
        self._counting = False

    # -- lifecycle -------------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        home = str(self.scratch.resolve())
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
        })
        env.update(self.extra_env)
        return env

    def _argv(self) -> list[str]:
        kernel = [sys.executable, "-m", "stgrade.kernel", "-f"]
        if self.limits.sandbox == "off":
            argv = [*kernel, "{connection_file}"]
        else:
            argv = [*bwrap.command(self.scratch, "{connection_file}", tmp_bytes=self.limits.shm_bytes,
                                   shm_bytes=self.limits.shm_bytes), "--", bwrap.python(), *kernel[1:], bwrap.CONNECTION_FILE]
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

    def _start(self) -> None:
        problem = sandbox_problem(self.limits)
        if problem:
            raise SandboxUnavailable(f"the grading sandbox cannot be set up: {problem}")
        self.scratch.mkdir(parents=True, exist_ok=True)
        if len(str(self.scratch.resolve() / ".kernel-5").encode()) > 100:
            raise ValueError(f"the scratch folder's path is too long for the kernel's Unix sockets (at most about "
                             f"90 bytes): {self.scratch}; use a shorter TMPDIR")
        if not self._scratch_mounted:
            self._scratch_mounted = _mount_scratch(self.scratch, self.limits.scratch_bytes)
        _seed_font_list(self.scratch / MPL_CONFIG)
        self.cgroup = SubmissionCgroup.create(self.limits.memory_bytes, self.limits.max_processes, self.limits.cpus)
        self._cpu_used.append(None)  # counted when this kernel's cgroup is removed
        spec = KernelSpec(argv=self._argv(), display_name="Stable Training grading sandbox", language="python",
                          interrupt_mode="message")  # signals do not cross into the sandbox's PID namespace
        # ZeroMQ over Unix sockets in the scratch folder: no TCP port, nothing on the network.
        self.km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=_OneSpec(spec), transport="ipc",
                                ip=str(self.scratch.resolve() / ".kernel"))
        controllers = self.cgroup.controllers if self.cgroup else []
        self.protections = {
            "sandbox": "bubblewrap" if self.limits.sandbox != "off" else "none",
            "cgroup": controllers,
            "caps_by": self.cgroup.kind if self.cgroup else "none",
            "scratch_size_cap": self._scratch_mounted,
        }
        try:
            self.km.start_kernel(cwd=str(self.scratch), env=self._env())
            self.kc = self.km.client()
            self.kc.start_channels()
            self.kc.wait_for_ready(timeout=self.limits.startup_seconds)
        except BaseException:  # Ctrl-C during a start too: nothing may be left behind
            self.close()
            raise

    def shutdown(self) -> None:
        with self._counting_start_stop():
            self._shutdown()

    def _shutdown(self) -> None:
        if self.kc is not None:
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
        """Shut down and release the scratch tmpfs (its contents are gone afterwards)."""
        self.shutdown()
        if self._scratch_mounted:
            _unmount_scratch(self.scratch)
            self._scratch_mounted = False

    def restart(self) -> None:
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
        msg_id = self.kc.execute(code, store_history=False, allow_stdin=False, stop_on_error=False)
        cell = _Cell(self.limits.output_chars, limit, time.monotonic())
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
        from .kernel import CELL_END_MIME

        code = f"__import__('stgrade.kernel', fromlist=['run_cells']).run_cells({list(sources)!r}, setup={int(setup)})"
        msg_id = self.kc.execute(code, store_history=False, allow_stdin=False, stop_on_error=False)
        runs: list[CellRun] = []

        def begin() -> _Cell:
            now = time.monotonic()
            return _Cell(self.limits.output_chars, max(min(self.limits.cell_seconds, deadline - now), 0.0), now)

        cell = begin()
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
                continue
            if isinstance(msg, dict) and isinstance(msg.get("parent_header"), dict) and "msg_type" in msg:
                return msg


def _idle(msg: dict) -> bool:
    content = msg.get("content")
    return msg["msg_type"] == "status" and isinstance(content, dict) and content.get("execution_state") == "idle"


class _Cell:
    """What one cell produced, as its messages arrive: outputs (capped), check() results (apart,
    capped), the error, and its time limit."""

    def __init__(self, output_chars: int, limit: float, started: float) -> None:
        self.output_chars, self.limit, self.started = output_chars, limit, started
        self.deadline = started + limit
        self.interrupted_at: float | None = None
        self.run = CellRun(status="ok")
        self.chars = self.results_chars = 0
        self.truncated = False

    def fail(self, status: str, ename: str, evalue: str) -> None:
        self.run.status, self.run.ename, self.run.evalue = status, ename, evalue

    def take(self, msg: dict) -> None:
        """Record one iopub message of this cell (a malformed one is ignored)."""
        try:
            self._take(msg)
        except (KeyError, TypeError, AttributeError, ValueError):
            pass

    def _take(self, msg: dict) -> None:
        run, kind = self.run, msg["msg_type"]
        data = msg["content"].get("data")
        if kind == "display_data" and isinstance(data, dict) and RESULT_MIME in data:
            # check()'s results: kept apart from the outputs, capped, never written to a file
            text = data[RESULT_MIME]
            self.results_chars += len(text) if isinstance(text, str) else 0
            run.results.append(text if isinstance(text, str) and self.results_chars <= RESULTS_CHARS else None)
            return
        if kind == "error":
            run.status = "error"
            run.ename, run.evalue = str(msg["content"]["ename"])[:200], str(msg["content"]["evalue"])[:2000]
        if kind in ("stream", "display_data", "execute_result", "error"):
            size = len(json.dumps(msg["content"]))
            if self.chars + size <= self.output_chars:
                run.outputs.append(output_from_msg(msg))
                self.chars += size
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
