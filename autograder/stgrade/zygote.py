"""The fork server ("zygote") of :mod:`stgrade.forked`: one per grading worker, inside a sandbox.

Run as ``python -s -P /opt/stgrade/lib/stgrade/zygote.py`` inside bubblewrap (the view of
:func:`stgrade.bwrap.command` with ``zygote=True``), it does once what every grading kernel does
before ipykernel runs (the guard, torch, numpy, matplotlib, IPython, ipykernel, the lessons'
imports: ~1.5 CPU-seconds) and then forks one child per submission, which becomes that
submission's kernel for ~0.1 CPU-seconds. It holds no secret, no seed, no submission, no
connection key: what it is sent is a home folder's path and a socket (``SCM_RIGHTS``) whose
other end only the grader holds; everything of the submission (its environment with the seed,
the kernel's connection key) travels to the child over that socket, after the fork. It has no
thread, no ZeroMQ context and no open socket but its control socket, which every child closes
first thing (:func:`_assert_forkable` checks the threads before every fork).

The zygote keeps one capability, ``CAP_SYS_ADMIN`` in the user namespace bubblewrap made for it
(nothing on the host), so that each child can make its own namespaces and mounts. Its view has no
``--dev`` (bubblewrap would then nest a second user namespace, and the zygote's capability would not
cover its mount namespace): the device nodes are bound one by one. A child (:func:`_child`), before
any code of the submission exists in it:

1. closes every descriptor but its socket, dies with the zygote (``PR_SET_PDEATHSIG``) and tells
   the grader it exists (the kernel translates the pid in ``SCM_CREDENTIALS`` into the grader's
   PID namespace); the grader moves that host pid into the submission's cgroup and only then
   sends the submission's configuration;
2. unshares mount, PID, IPC, network, UTS and cgroup namespaces and forks: the grandchild is PID 1
   of a new PID namespace (the child waits for it and exits as it does; it dies with it, and the
   grandchild with the child), which stays PID 1 there and reaps (as bubblewrap's init does) while
   the kernel runs as PID 2;
3. mounts its own /proc (only its own processes), /tmp and /dev/shm (fresh size-capped tmpfs),
   /dev/pts (a new devpts instance), brings up its own loopback, and hides the scratch root (where
   other submissions' worlds and the zygote's folder are: under the new /tmp, or covered by a
   read-only tmpfs) with only its own home bound back, writable, at its path (as bubblewrap binds a
   cold kernel's);
4. enters a new user namespace (uid and gid 65534, mapped to the zygote's 65534: so its own
   keyrings too), forbids further user namespaces in it (``user.max_user_namespaces = 0``: what
   ``bwrap --disable-userns`` does), drops every capability (effective, permitted, inheritable,
   ambient, bounding set), sets ``no_new_privs``, starts a new session and a new session keyring;
   its mounts belong to the zygote's user namespace, so nothing can unmount them;
5. takes the submission's environment, reseeds ``random`` and numpy's global generator (which the
   fork would otherwise share with its siblings), applies the kernel's rlimits and starts ipykernel
   (:func:`stgrade.kernel.serve`), which binds its sockets in the home, whence the grader takes them
   (as for any kernel).
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import socket
import struct
import sys

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x02000000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 1, 2, 4, 8, 32, 4096
MS_REC, MS_PRIVATE = 16384, 1 << 18
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 1, 24, 38, 47, 4
KEYCTL_JOIN_SESSION_KEYRING = 1
_SYS_KEYCTL = {"x86_64": 250, "aarch64": 219}
SANDBOX_UID = 65534
#: variables a forked kernel keeps from the zygote's environment (set by bubblewrap: paths in the view)
_FROM_VIEW = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "JPY_PARENT_PID")
#: the control socket's descriptor number in the zygote (passed by the grader)
FD_ENV = "STGRADE_ZYGOTE_FD"
#: modules imported once in the zygote: the kernel's own and the lessons' setup cells' imports
PRELOAD = ("numpy", "torch", "torch.nn", "torch.nn.functional", "scipy.special", "matplotlib", "matplotlib.pyplot",
           "IPython", "ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell", "stabletrain",
           "stabletrain.exercises", "stabletrain.data", "stabletrain.models", "stabletrain.exercises.layernorm")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda s: None if s is None else s.encode())
    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _assert_forkable() -> None:
    """A zygote forks only while it is one thread: a child enters new namespaces (unshare refuses a
    threaded process a user namespace) and nothing half-held by another thread is copied."""
    if _threads() != 1:
        raise RuntimeError(f"the zygote has {_threads()} threads; it forks only single-threaded")


def preload() -> list[str]:
    """Do once what every grading kernel does before ipykernel (:func:`stgrade.kernel.prepare`) and
    import :data:`PRELOAD`; return what could not be imported."""
    gc.disable()  # as in a kernel's start (stgrade.kernel): the imports' objects live as long as the process
    from stgrade import kernel

    kernel.prepare()
    missing = []
    for name in PRELOAD:
        try:
            __import__(name)
        except Exception:  # noqa: BLE001 — a lesson's module missing here is imported (and fails) in the cell
            missing.append(name)
    gc.freeze()  # the children's copies of these pages stay shared: the collector never touches them
    return missing


def _recv(conn: socket.socket) -> tuple[bytes, list[int]]:
    fds = []
    data, ancdata, _, _ = conn.recvmsg(1 << 16, socket.CMSG_SPACE(4 * 4))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.extend(struct.unpack(f"{len(payload) // 4}i", payload[: len(payload) // 4 * 4]))
    return data, fds


def _reap(*_: object) -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def serve(control: socket.socket) -> None:
    """Fork a child for each request until the grader closes the control socket."""
    signal.signal(signal.SIGCHLD, _reap)
    zygote = os.getpid()
    while True:
        data, fds = _recv(control)
        if not data:
            return
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            control.send(b"error: one socket per request")
            continue
        try:
            request = json.loads(data)
            _assert_forkable()
            pid = os.fork()
        except Exception as exc:  # noqa: BLE001 — said to the grader; the zygote goes on
            os.close(fds[0])
            control.send(f"error: {type(exc).__name__}: {exc}".encode()[:2000])
            continue
        if pid == 0:
            code = 70
            try:
                _child(socket.socket(fileno=fds[0]), request, zygote, control.fileno())
            except BaseException:  # noqa: BLE001 — a child that cannot set itself up exits; the grader sees it
                pass
            os._exit(code)
        os.close(fds[0])
        del request, data
        control.send(f"ok {pid}".encode())


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        try:
            os.write(fd, text.encode())
        except OSError as exc:
            raise OSError(exc.errno, f"writing {text!r} to {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _loopback_up() -> None:
    import fcntl

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), siocgifflags, request))[1]
        fcntl.ioctl(s.fileno(), siocsifflags, struct.pack("16sH22x", b"lo", flags | iff_up))


def _drop_capabilities() -> None:
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap} from the bounding set")
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient capabilities")
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = ctypes.create_string_buffer(24)  # two __user_cap_data_struct, all zero
    _check(_libc.capset(ctypes.c_char_p(header), data), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def _isolate(config: dict) -> None:
    """Steps 3 and 4 of the module's docstring, in the grandchild (PID 1 of its namespace)."""
    home, root = config["home"], config["root"]
    home_fd = os.open(home, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)  # before anything covers it
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for path, size in (("/tmp", config["tmp_bytes"]), ("/dev/shm", config["shm_bytes"])):
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=1777,nr_inodes=65536")
    _mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
    _loopback_up()
    # the scratch root (every world, the zygote's folder): hidden under the new /tmp when it lives there,
    # else covered by a read-only tmpfs; either way only this kernel's home is bound back, at its path
    covered = os.path.isdir(root)
    if covered:
        _mount("stgrade-hidden", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=65536,mode=0755,nr_inodes=1024")
    os.makedirs(home, mode=0o755, exist_ok=True)
    _mount(f"/proc/self/fd/{home_fd}", home, None, MS_BIND)
    os.close(home_fd)
    if covered:
        _mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    uid, gid = os.getuid(), os.getgid()
    _check(_libc.unshare(CLONE_NEWUSER), "unshare the user namespace")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{SANDBOX_UID} {uid} 1")
    _write("/proc/self/gid_map", f"{SANDBOX_UID} {gid} 1")
    _write("/proc/sys/user/max_user_namespaces", "0")  # no user namespace can be made in here (bwrap --disable-userns)
    _drop_capabilities()
    os.setsid()
    number = _SYS_KEYCTL.get(os.uname().machine)
    if number is not None:  # a session keyring of its own: nothing of a sibling's or the grader's
        _libc.syscall(number, KEYCTL_JOIN_SESSION_KEYRING, None)


def _init(kernel_pid: int) -> None:
    """PID 1 of a forked kernel's namespace: reap whatever ends in it; exit as the kernel does."""
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(number, signal.SIG_DFL)  # from inside its namespace, PID 1 gets only signals it handles
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        except InterruptedError:
            continue
        if pid == kernel_pid:
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _fresh_randomness() -> None:
    import random

    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()
    import tempfile

    tempfile.tempdir = None  # found again from this kernel's TMPDIR


def _child(conn: socket.socket, request: dict, zygote: int, control: int) -> None:
    """One submission's kernel: see the module's docstring."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "die with the zygote")
    if os.getppid() != zygote:
        return
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.close(control)
    keep = conn.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 16)
    uid, gid = os.getuid(), os.getgid()
    conn.sendmsg([b"hello"], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, struct.pack("iII", os.getpid(), uid, gid))])
    data = conn.recv(1 << 20)  # sent once the grader has moved this process into the submission's cgroup
    if not data:
        return
    config = json.loads(data)
    config.update(request)
    del data
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWCGROUP),
           "unshare")
    pid = os.fork()
    if pid:
        conn.close()
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "die with the child")
    try:
        _isolate(config)
    except BaseException as exc:
        conn.send(f"error: {exc!r} {getattr(exc, 'filename', '') or ''}".encode()[:2000])
        raise
    kernel_pid = os.fork()  # the kernel is PID 2; this one stays PID 1 and reaps, as bubblewrap's own init does
    if kernel_pid:
        conn.close()
        _init(kernel_pid)
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "die with the namespace's init")
    view = {k: os.environ[k] for k in _FROM_VIEW if k in os.environ}
    os.environ.clear()
    os.environ.update(config["env"])
    os.environ.update(view)
    _fresh_randomness()
    connection = "/tmp/.stgrade-connection.json"  # its own /tmp; removed once ipykernel has read it
    with open(os.open(connection, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        json.dump(config["connection"], f)
    conn.send(b"ready")
    conn.close()
    del config
    from stgrade import kernel

    kernel.apply_limits()
    os.chdir("/")
    sys.argv = [sys.argv[0], "-f", connection]
    kernel.serve(forget_connection_file=True)


def main() -> None:
    control = socket.socket(fileno=int(os.environ.pop(FD_ENV)))
    missing = preload()
    _assert_forkable()
    control.send(json.dumps({"ready": True, "missing": missing}).encode())
    serve(control)


if __name__ == "__main__":
    main()
