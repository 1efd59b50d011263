"""Kernels forked from a sandboxed fork server: the kernel's start paid once per worker, not per submission.

``stgrade grade --fork`` (``RunOptions.fork``): each grading worker starts one fork server
(:class:`Zygote`, the process of :mod:`stgrade.zygote`) inside bubblewrap, with the same read-only
view as a kernel's (no answer keys: torch is imported *inside* the view, so the real
``clip_grad.py`` is never in its memory) and a cgroup of its own. It imports what every kernel
imports (~1.5 CPU-seconds, once) and then forks one child per submission (:class:`ForkedKernel`):
~0.1 CPU-seconds for a ready kernel instead of ~2.

**What each child has, per submission** (made by the child itself before any code of the
submission exists, :mod:`stgrade.zygote`): its own PID namespace and /proc, mount, IPC, network
(loopback only), UTS and cgroup namespaces; uid and gid 65534 in a user namespace of its own,
with no capability left (bounding set empty, no_new_privs) and no user namespace allowed in it;
its own /tmp, /dev/shm (size-capped tmpfs) and /dev/pts; its own scratch world (a size-capped tmpfs
mounted by the grader, the only writable folder it sees: the scratch root with the other
worlds is covered by a read-only tmpfs); its own cgroup (memory, processes, CPU), which the grader
moves its host pid into (:meth:`Zygote.fork`, the pid told by the kernel in ``SCM_CREDENTIALS``)
before the child does anything else. It is used for one submission and killed with its cgroup.

**What is in a child's memory**: the zygote's, which never holds a secret, a seed, a submission or a
connection key (see :mod:`stgrade.zygote`): the submission's environment (its seed) and the kernel's
key go to the child over a socket whose other end the grader holds, after the fork.

Why this shape: bubblewrap must ``exec`` its command, so it cannot confine a forked copy of a warm
process; the zygote therefore runs *inside* one bubblewrap sandbox that allows user namespaces and
keeps ``CAP_SYS_ADMIN`` there, and each child builds its own confinement with the same system calls
bubblewrap uses (unshare, mount, capset, prctl), then drops the capability. The zygote is started
by a user mapped to 65534 (``unshare --user --map-user=65534``) so that bubblewrap runs
unprivileged and the sandbox's user namespace owns its mount namespace (as root, bubblewrap makes
the mount namespace in the machine's user namespace, where the zygote's capability means nothing).

Needs: util-linux ``unshare``, user namespaces, and a cgroup the grader can create (as root, or
delegated): without them :class:`ForkServer` grades with ordinary (cold) kernels and says so.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import queue
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import bwrap
from .cgroup import ScopeCgroup, SubmissionCgroup
from .grading import SCRATCH_PREFIX
from .sandbox import (KERNEL_NAME, MPL_CONFIG, Limits, SandboxKernel, SandboxUnavailable, _LIBC, _private_mounts,
                      _seed_font_list, _unmount_scratch, _zmq_context, sandbox_problem)
from .zygote import _FROM_VIEW, FD_ENV

_MS_BIND, _MS_SHARED = 4096, 1 << 20


def zygote_argv(root: Path, limits: Limits) -> list[str]:
    """The zygote's command: bubblewrap (``zygote=True`` view) run by a user mapped to 65534."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise SandboxUnavailable("the fork server needs util-linux's unshare")
    inner = [bwrap.python(), "-s", "-P", bwrap.inside(Path(__file__).with_name("zygote.py").resolve())]
    return [unshare, "--user", f"--map-user={bwrap.SANDBOX_UID}", f"--map-group={bwrap.SANDBOX_UID}", "--",
            *bwrap.command(root, None, tmp_bytes=limits.shm_bytes, shm_bytes=limits.shm_bytes, zygote=True),
            "--", *inner]


def _share(path: Path) -> bool:
    """Make ``path`` a shared mount in this thread's private mount namespace, so that what the grader
    mounts under it later (each world's size-capped tmpfs) appears in the zygote's view as well."""
    if not _private_mounts():
        return False
    p = str(path).encode()
    return _LIBC.mount(p, p, None, _MS_BIND, None) == 0 and _LIBC.mount(None, p, None, _MS_SHARED, None) == 0


def _credentials(conn: socket.socket, size: int = 1 << 16) -> tuple[bytes, int | None]:
    """A message and its sender's pid in this process's PID namespace (``SCM_CREDENTIALS``)."""
    data, ancdata, _, _ = conn.recvmsg(size, socket.CMSG_SPACE(12))
    pid = None
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(payload) >= 12:
            pid = struct.unpack("iII", payload[:12])[0]
    return data, pid


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[1])
    except (OSError, ValueError):
        return None


def _movable(cgroup: SubmissionCgroup | None) -> bool:
    """Whether the grader can move a forked kernel into ``cgroup`` (a systemd scope exists only
    with the process systemd-run started in it)."""
    return cgroup is not None and not isinstance(cgroup, ScopeCgroup) and bool(cgroup.procs_files())


class Zygote:
    """One worker's fork server, started with :meth:`start` for one set of limits."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.root: Path | None = None
        self.process: subprocess.Popen | None = None
        self.control: socket.socket | None = None
        self.cgroup: SubmissionCgroup | None = None
        self.host_pid: int | None = None
        self.missing: list[str] = []
        self.forks = 0
        self._worlds = 0

    def start(self) -> None:
        problem = sandbox_problem(self.limits)
        if problem or self.limits.sandbox == "off":
            raise SandboxUnavailable(f"no fork server without the sandbox: {problem or 'switched off'}")
        self.root = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-zygote-"))
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        self.shared = _share(self.root)
        home = self.root / "z"
        home.mkdir(mode=0o700)
        _seed_font_list(home / MPL_CONFIG)
        like = SandboxKernel(self.root, self.limits)
        like.home = home
        env = {k: v for k, v in like._env().items() if k not in ("STGRADE_SOCKETS", "STGRADE_HOME")}
        self.cgroup = SubmissionCgroup.create(self.limits.memory_bytes, self.limits.max_processes, self.limits.cpus)
        if not _movable(self.cgroup):
            raise SandboxUnavailable("the fork server needs a cgroup per submission that the grader can move a "
                                     "process into (root, or a delegated cgroup; not a systemd user scope)")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.control = ours
        env[FD_ENV] = str(theirs.fileno())
        quiet = None if os.environ.get("STGRADE_ZYGOTE_DEBUG") else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(self.cgroup.wrap(zygote_argv(self.root, self.limits)), env=env, cwd="/",
                                            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=quiet,
                                            stderr=quiet)
        finally:
            theirs.close()
        ours.settimeout(self.limits.startup_seconds)
        data, self.host_pid = _credentials(ours)
        if not data or self.host_pid is None:
            raise RuntimeError("the fork server did not start")
        self.missing = json.loads(data).get("missing", [])

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def new_scratch(self) -> Path:
        self._worlds += 1
        return self.root / f"k{self._worlds}"

    def fork(self, home: Path, cgroup: SubmissionCgroup, config: dict[str, Any]) -> tuple[int, int]:
        """A child for one kernel whose home is ``home``: moved into ``cgroup``, then given ``config``
        (its environment, connection, …) over its own socket. Returns its host pid and a pidfd."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        ours.settimeout(self.limits.startup_seconds)
        request = {"home": str(home), "root": str(self.root), "tmp_bytes": self.limits.shm_bytes,
                   "shm_bytes": self.limits.shm_bytes}  # nothing of the submission: the zygote keeps what it is sent
        pidfd = None
        try:
            try:
                self.control.sendmsg([json.dumps(request).encode()],
                                     [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", theirs.fileno()))])
            finally:
                theirs.close()
            reply = self.control.recv(4096)
            if not reply.startswith(b"ok "):
                raise RuntimeError(f"the fork server refused: {reply[:300].decode(errors='replace') or 'it died'}")
            self.forks += 1
            hello, pid = _credentials(ours, 64)
            if hello != b"hello" or pid is None:
                raise RuntimeError("the forked kernel did not start")
            pidfd = os.pidfd_open(pid)
            if _parent(pid) != self.host_pid:
                raise RuntimeError("the forked kernel is not the fork server's child")
            moved = cgroup.procs_files()
            if not moved:
                raise SandboxUnavailable("the submission's cgroup has no cgroup.procs to move the kernel into")
            for procs in moved:  # before it runs anything of the submission
                Path(procs).write_text(str(pid))
            ours.send(json.dumps(config).encode())
            answer = ours.recv(4096)
            if answer != b"ready":
                raise RuntimeError(f"the forked kernel could not confine itself: "
                                   f"{answer[:300].decode(errors='replace') or 'it died'}")
            return pid, pidfd
        except BaseException:
            if pidfd is not None:
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                os.close(pidfd)
            raise
        finally:
            ours.close()

    def cpu_seconds(self) -> float | None:
        return self.cgroup.cpu_seconds() if self.cgroup is not None else None

    def close(self) -> None:
        if self.control is not None:
            with contextlib.suppress(OSError):
                self.control.close()
            self.control = None
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=2)  # the zygote returns when its control socket closes
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self.cgroup is not None:
            self.cpu_used = self.cgroup.cpu_seconds()
            self.cgroup.remove()
            self.cgroup = None
        if self.root is not None:
            if getattr(self, "shared", False):
                _unmount_scratch(self.root)
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


class _ForkedManager:
    """What :class:`SandboxKernel` asks of jupyter_client's ``KernelManager``, for a forked kernel."""

    def __init__(self, info: dict[str, Any], pid: int, pidfd: int) -> None:
        from jupyter_client.session import Session

        self.info, self.pid, self.pidfd = info, pid, pidfd
        self.connection_file = str(Path(info["ip"]).parent / "none.json")  # there is none: nothing to remove
        self.session = Session(key=info["key"].encode(), signature_scheme=info["signature_scheme"])
        self._control = None

    def get_connection_info(self, session: bool = False) -> dict[str, Any]:
        return dict(self.info)

    def client(self, context=None):
        from jupyter_client.blocking import BlockingKernelClient

        kc = BlockingKernelClient(context=context)
        kc.load_connection_info(self.info)
        return kc

    def is_alive(self) -> bool:
        return self.pidfd is not None and not select.select([self.pidfd], [], [], 0)[0]

    def interrupt_kernel(self) -> None:  # interrupt_mode "message", as for a sandboxed kernel
        import zmq

        if self._control is None:
            self._control = _zmq_context().socket(zmq.DEALER)
            self._control.setsockopt(zmq.LINGER, 0)
            self._control.connect(f"ipc://{self.info['ip']}-{self.info['control_port']}")
        self.session.send(self._control, self.session.msg("interrupt_request", content={}))

    def shutdown_kernel(self, now: bool = True) -> None:
        if self.pidfd is not None:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)  # its PID namespace's init dies with it

    def cleanup_resources(self) -> None:
        if self._control is not None:
            self._control.close(linger=0)
            self._control = None
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


class ForkedKernel(SandboxKernel):
    """A :class:`SandboxKernel` whose process is a child of ``zygote`` (see the module's docstring);
    a restart forks another child, in a new world."""

    def __init__(self, zygote: Zygote, limits: Limits, extra_env: dict[str, str] | None = None) -> None:
        super().__init__(zygote.new_scratch(), limits, extra_env)
        self.zygote = zygote

    def launch(self) -> None:
        self._release_world()
        self._new_world()
        _seed_font_list(self.home / MPL_CONFIG)
        self.cgroup = SubmissionCgroup.create(self.limits.memory_bytes, self.limits.max_processes, self.limits.cpus)
        self._cpu_used.append(None)
        if not _movable(self.cgroup):
            self.close()
            raise SandboxUnavailable("a forked kernel needs a cgroup the grader can move it into")
        ports = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}
        info = {"transport": "ipc", "ip": str(self._world / "s" / "k"), "key": uuid.uuid4().hex + uuid.uuid4().hex,
                "signature_scheme": "hmac-sha256", "kernel_name": KERNEL_NAME, **ports}
        env = {k: v for k, v in self._env().items() if k not in _FROM_VIEW}
        config = {"env": env, "connection": {**info, "ip": "unused"}}  # the kernel binds at STGRADE_SOCKETS
        self.protections = {"sandbox": "bubblewrap fork server", "cgroup": self.cgroup.controllers,
                            "caps_by": self.cgroup.kind, "scratch_size_cap": self._world_mounted}
        try:
            pid, pidfd = self.zygote.fork(self.home, self.cgroup, config)
        except BaseException:
            self.close()
            raise
        self.km = _ForkedManager(info, pid, pidfd)


    def _wait_ready(self) -> None:
        """As jupyter_client's ``wait_for_ready``, without its last step, which waits for 0.2 s of
        silence on IOPub (a third of a forked kernel's start): ready once a ``kernel_info`` request
        is answered on shell and IOPub delivers (its status messages); those left in the queue are
        no cell's (a cell's messages are picked by its request's id)."""
        deadline = time.monotonic() + self.limits.startup_seconds
        while time.monotonic() < deadline:
            msg_id = self.kc.kernel_info()
            try:
                reply = self.kc.get_shell_msg(timeout=1)
            except queue.Empty:
                reply = None
            if reply is not None and reply.get("parent_header", {}).get("msg_id") == msg_id:
                try:
                    self.kc.get_iopub_msg(timeout=0.2)
                    return
                except queue.Empty:  # IOPub not connected yet: ask again
                    pass
            if not self.km.is_alive():
                raise RuntimeError("the kernel died while it started")
        raise TimeoutError(f"the kernel did not start within {self.limits.startup_seconds:.0f} s")


class ForkServer:
    """One worker's zygote; :meth:`kernel` is ``grade_submission``'s ``kernels``."""

    def __init__(self) -> None:
        self.zygote: Zygote | None = None
        self.forked = self.cold = self.zygotes = 0  # for tests and benchmarks
        self.problem: str | None = None

    def _ready(self, limits: Limits) -> Zygote:
        if self.zygote is not None and (self.zygote.limits != limits or not self.zygote.alive()):
            self.zygote.close()
            self.zygote = None
        if self.zygote is None:
            zygote = Zygote(limits)
            zygote.start()
            self.zygote, self.zygotes = zygote, self.zygotes + 1
        return self.zygote

    @contextlib.contextmanager
    def kernel(self, scratch: Path, limits: Limits, env: dict[str, str]) -> Iterator[SandboxKernel]:
        """The kernel of one submission, forked; a cold one where no fork server can run (said in
        :attr:`problem`). ``scratch`` is used by a cold kernel only (a forked one's is the zygote's)."""
        kernel: SandboxKernel | None = None
        if limits.sandbox != "off" and self.problem is None:
            try:
                kernel = ForkedKernel(self._ready(limits), limits, env)
                kernel.start()
                self.forked += 1
            except SandboxUnavailable as exc:
                self.problem, kernel = str(exc), None
                print(f"stgrade: no fork server in this worker ({exc}): its kernels start cold", file=sys.stderr)
            except Exception:  # the zygote died (killed from outside, say): a new one, once
                self.close()
                kernel = ForkedKernel(self._ready(limits), limits, env)
                kernel.start()
                self.forked += 1
        if kernel is None:
            kernel = SandboxKernel(scratch, limits, env)
            kernel.start()
            self.cold += 1
        try:
            yield kernel
        finally:
            kernel.close()
            if isinstance(kernel, ForkedKernel):
                shutil.rmtree(kernel.scratch, ignore_errors=True)

    def close(self) -> None:
        if self.zygote is not None:
            self.zygote.close()
            self.zygote = None


@functools.cache
def worker_server() -> ForkServer:
    """This worker process's :class:`ForkServer` (closed when the process exits)."""
    server = ForkServer()
    atexit.register(server.close)
    return server


def grade(*args):
    """The worker pool's target (``stgrade.forked:grade``): grade one submission
    (:func:`stgrade.grading.grade_submission`'s ``args``) in a kernel forked from this worker's zygote."""
    from .grading import grade_submission

    return grade_submission(*args, kernels=worker_server().kernel)
